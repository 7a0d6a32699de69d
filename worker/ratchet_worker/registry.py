"""Training methods and their row formats, as packages/core/src/methods.ts declares them.

registry.json is written from that TypeScript registry (scripts/write-registries.ts) and checked
against it by packages/core/src/registries.test.ts, so the method list lives in one place: a new
method on an existing row format is one registry entry there plus its trainer, train/<method>.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_REGISTRY: dict[str, Any] = json.loads((Path(__file__).parent / "registry.json").read_text(encoding="utf-8"))

# Row format name -> the columns a trainer reads (everything else is dropped before TRL sees it).
FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    name: tuple(fmt["columns"]) for name, fmt in _REGISTRY["formats"].items()
}
# Method -> the row format its trainer reads.
METHOD_FORMATS: dict[str, str] = {name: m["format"] for name, m in _REGISTRY["methods"].items()}
# Methods whose trainer scores its own generations with a reward model.
NEEDS_REWARD_MODEL: frozenset[str] = frozenset(
    name for name, m in _REGISTRY["methods"].items() if m["needsRewardModel"]
)
METHODS: tuple[str, ...] = tuple(METHOD_FORMATS)
