"""`ratchet-worker train`: one module per method, each with its Config dataclass beside it."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..spec import METHODS


def method_module(method: str) -> ModuleType:
    """The module implementing a method (imported on demand: each pulls in TRL)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    return importlib.import_module(f"{__name__}.{method}")
