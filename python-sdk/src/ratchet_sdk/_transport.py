"""JSON over HTTP to a Ratchet server, with the retry policy every SDK write shares."""

from __future__ import annotations

import email.utils
import json
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import httpx

from ._version import VERSION
from .errors import RatchetApiError, RatchetDeliveryError

# A server's retry-after is honored, but never beyond this, so one bad header cannot stall a client.
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    """Attempts after the first one."""
    base_delay: float = 0.25
    """First backoff, in seconds; doubles per retry."""
    max_delay: float = 10.0
    """Backoff never grows beyond this (a server's retry-after may ask for longer, up to a minute)."""


def is_retryable_status(status: int) -> bool:
    """429 and 5xx are worth another try; any other 4xx means the request itself is wrong."""
    return status == 429 or status >= 500


def backoff_delay(attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random.

    Clients that failed together spread out, but none retries at once.
    """
    step = min(policy.max_delay, policy.base_delay * 2**attempt)
    return step / 2 + rand() * step / 2


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """``retry-after`` as seconds or an HTTP date, in seconds; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def to_json(value: Any) -> str:
    """JSON for the wire; pydantic models (e.g. openai message objects put in `messages`) become dicts."""

    def fallback(obj: Any) -> Any:
        dump = getattr(obj, "model_dump", None)
        if callable(dump):
            return dump(mode="json", exclude_none=True)
        if hasattr(obj, "isoformat"):
            return obj.isoformat()
        if isinstance(obj, (set, tuple)) or hasattr(obj, "__iter__"):
            return list(obj)
        return str(obj)

    return json.dumps(value, default=fallback, separators=(",", ":"))


def _api_error(response: httpx.Response) -> RatchetApiError:
    text = response.text
    try:
        error = json.loads(text).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = error.get("code") if isinstance(error.get("code"), str) else f"http_{response.status_code}"
    message = error.get("message")
    if not isinstance(message, str):
        message = f"HTTP {response.status_code}: {text[:500]}"
    path = error.get("path") if isinstance(error.get("path"), str) else None
    return RatchetApiError(response.status_code, code, message, path)


class Transport:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        timeout: float,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._retry = retry
        self._owns_client = http_client is None
        self._client = http_client or httpx.Client(timeout=timeout)
        self._headers = {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "user-agent": f"ratchet-sdk-python/{VERSION}",
        }

    def post(self, path: str, body: Any) -> Any:
        """POSTs ``body`` as JSON and returns the parsed answer.

        Network errors, timeouts, 429 and 5xx are retried with backoff (honoring retry-after)
        and end in a RatchetDeliveryError; any other 4xx raises a RatchetApiError at once.
        """
        payload = to_json(body)
        attempt = 0
        while True:
            value, error, retry_after = self._attempt(path, payload)
            if error is None:
                return value
            if isinstance(error, RatchetApiError) and not is_retryable_status(error.status):
                raise error
            if attempt >= self._retry.max_retries:
                raise RatchetDeliveryError(
                    f"POST {path} failed after {attempt + 1} attempts: {error}",
                    attempt + 1,
                    error.status if isinstance(error, RatchetApiError) else None,
                ) from error
            time.sleep(retry_after if retry_after is not None else backoff_delay(attempt, self._retry))
            attempt += 1

    def _attempt(self, path: str, payload: str) -> Tuple[Any, Optional[Exception], Optional[float]]:
        try:
            response = self._client.post(self._base_url + path, content=payload, headers=self._headers)
        except httpx.HTTPError as err:
            return None, err, None
        if response.is_success:
            try:
                return response.json(), None, None
            except ValueError as err:
                # The answer was cut off after the write may have committed; retrying is safe (idempotent).
                return None, err, None
        return None, _api_error(response), parse_retry_after(response.headers.get("retry-after"))

    def close(self) -> None:
        if self._owns_client:
            self._client.close()
