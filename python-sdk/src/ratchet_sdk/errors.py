"""Every error the SDK reports (through ``on_error``, a failed ``flush()`` or a direct send)."""

from __future__ import annotations

from typing import Any, List, Optional, Sequence


class RatchetSdkError(Exception):
    """Base class. ``items`` are the payloads concerned; for queued writes, the ones dropped."""

    def __init__(self, message: str, items: Optional[Sequence[Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.items: List[Any] = list(items or [])


class RatchetValidationError(RatchetSdkError, ValueError):
    """The input is wrong before anything is sent; ``path`` names the field."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class RatchetApiError(RatchetSdkError):
    """The server answered with a 4xx other than 429: not retried, since sending it again cannot help.

    ``code`` and ``path`` are the server's ``{"error": {"code", "message", "path"}}``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        path: Optional[str] = None,
        items: Optional[Sequence[Any]] = None,
    ) -> None:
        super().__init__(message, items)
        self.status = status
        self.code = code
        self.path = path


class RatchetDeliveryError(RatchetSdkError):
    """Every attempt failed (network error, timeout, 429 or 5xx).

    Queued items stay queued for the next flush, except at shutdown, when they are dropped.
    """

    def __init__(
        self,
        message: str,
        attempts: int,
        status: Optional[int] = None,
        items: Optional[Sequence[Any]] = None,
    ) -> None:
        super().__init__(message, items)
        self.attempts = attempts
        self.status = status


class RatchetQueueFullError(RatchetSdkError):
    """The queue was full (the server has been unreachable for long): its oldest item was dropped."""


class RatchetFlushError(RatchetSdkError):
    """A ``flush()`` or ``shutdown()`` that met errors; each was also passed to ``on_error``."""

    def __init__(self, errors: Sequence[RatchetSdkError]) -> None:
        first = errors[0].message if errors else "unknown error"
        message = (
            f"flush failed: {first}"
            if len(errors) == 1
            else f"flush failed with {len(errors)} errors; first: {first}"
        )
        super().__init__(message, [item for e in errors for item in e.items])
        self.errors = list(errors)
