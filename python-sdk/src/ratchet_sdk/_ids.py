"""Client-side ids: UUIDv7, the same kind the server makes."""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id() -> str:
    """A UUIDv7 (RFC 9562).

    Time-ordered, so the server's B-tree inserts stay append-only; a 12-bit counter keeps ids
    made by this process within one millisecond in order.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms == _last_ms:
            _counter = (_counter + 1) & 0xFFF
        else:
            _last_ms = ms
            _counter = secrets.randbits(11)
        counter = _counter
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | secrets.randbits(62)
    return str(uuid.UUID(int=value))
