"""JSON-lines events: the worker's only protocol on stdout.

The TypeScript orchestrator reads stdout line by line, so nothing else may be printed there.
Libraries (Transformers, TRL, tqdm) print freely, so `claim_stdout` moves file descriptor 1 to
stderr for the whole process and keeps a private handle on the real stdout for events.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from typing import IO, Any


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity; send null instead of an unparsable line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return _clean(value.item())
        except (ValueError, RuntimeError):
            return str(value)
    return value


class Emitter:
    """Writes one JSON object per line and flushes, so progress is seen as it happens."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> None:
        line = json.dumps(_clean(event), separators=(",", ":"), default=str)
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    __call__ = emit


def claim_stdout() -> Emitter:
    """Point fd 1 (and sys.stdout) at stderr; return an Emitter on the original stdout."""
    sys.stdout.flush()
    private_fd = os.dup(1)
    os.dup2(2, 1)
    events = os.fdopen(private_fd, "w", buffering=1, encoding="utf-8")
    sys.stdout = sys.stderr
    return Emitter(events)
