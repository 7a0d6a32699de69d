"""Logging for the official ``openai`` client: ``wrap_openai``, and ids from the Ratchet gateway."""

from __future__ import annotations

import functools
import inspect
import json
import threading
import time
from typing import TYPE_CHECKING, Any, Awaitable, Dict, List, Optional, Sequence, Tuple, TypeVar

from ._ids import new_id

if TYPE_CHECKING:
    from .client import Ratchet

INTERACTION_ID_HEADER = "x-ratchet-interaction-id"
# The header with the token that lets the call's end user rate it with the public key.
FEEDBACK_TOKEN_HEADER = "x-ratchet-feedback-token"
"""The header by which the Ratchet gateway names the interaction it logged for a call."""

# Per-call fields the gateway reads from headers; the wrapper reads (and strips) the same ones.
_CONTEXT_HEADERS = {
    "x-ratchet-user-id": "user_id",
    "x-ratchet-session-id": "session_id",
    "x-ratchet-tags": "tags",
    "x-ratchet-metadata": "metadata",
}

# Fields that describe the call rather than parameterize the model (as in the gateway), and
# the openai client's request options, which are not part of the body.
_NOT_PARAMETERS = {"model", "messages", "stream", "user", "extra_headers", "extra_query", "extra_body", "timeout"}

_WRAPPED = "_ratchet_wrapped"
_INFO = "_ratchet"

C = TypeVar("C")


def wrap_openai(
    client: C,
    ratchet: "Ratchet",
    *,
    route: Optional[str] = None,
    tags: Optional[Sequence[str]] = None,
    metadata: Optional[Dict[str, Any]] = None,
) -> C:
    """Makes ``client.chat.completions.create`` log every call to Ratchet, and returns the client.

    Works with ``OpenAI`` and ``AsyncOpenAI``, streaming and not, and through
    ``with_raw_response``. Logs messages, output, model, parameters, latency, usage and end user
    (``user=``); per-call user, session, tags and metadata can go in the same ``x-ratchet-*``
    headers the gateway reads (``extra_headers=``), which the wrapper keeps from the provider.
    The interaction id is on each result: ``ratchet_interaction_id(result)``.

    A streamed call is logged when the app has read it to the end or closes it (``with stream:``
    or ``stream.close()``); a stream dropped half-read is logged when it is garbage collected.
    For apps that call a provider directly; calls through the Ratchet gateway are logged by it
    (see ``interaction_id_of``).
    """
    completions = client.chat.completions  # type: ignore[attr-defined]
    if getattr(completions, _WRAPPED, False):
        return client
    original = completions.create
    defaults = {"route": route, "tags": list(tags or []), "metadata": dict(metadata or {})}

    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        call, kwargs = _start_call(ratchet, kwargs, defaults)
        try:
            result = original(*args, **kwargs)
        except BaseException as err:
            call.failed(err)
            raise
        # AsyncOpenAI's create returns a coroutine (its decorators hide that it is async).
        if inspect.isawaitable(result):
            return _observe_when_done(result, call)
        return _observe(result, call, asynchronous=False)

    completions.create = create
    # with_raw_response and with_streaming_response are cached, binding `create` when first
    # built; dropping them makes the next access bind the wrapped one.
    for name in ("with_raw_response", "with_streaming_response"):
        completions.__dict__.pop(name, None)
    setattr(completions, _WRAPPED, True)
    return client


def ratchet_interaction_id(result: Any) -> Optional[str]:
    """The interaction id ``wrap_openai`` attached to a completion, stream or raw response."""
    info = getattr(result, _INFO, None)
    return info.get("interaction_id") if isinstance(info, dict) else None


def ratchet_feedback_token(result: Any) -> Optional[str]:
    """The feedback token of a completion or stream ``wrap_openai`` logged (sends it first if queued).

    Hand it to the page with the interaction id, so the user's browser can rate the answer with
    the public key. For a stream, ask after it has been read.
    """
    info = getattr(result, _INFO, None)
    call = info.get("call") if isinstance(info, dict) else None
    return call.ratchet.feedback_token(call.id) if call is not None else None


def _gateway_header(response: Any, name: str) -> Optional[str]:
    for candidate in (response, getattr(response, "http_response", None), getattr(response, "response", None)):
        headers = getattr(candidate, "headers", None)
        if headers is not None and hasattr(headers, "get"):
            value = headers.get(name)
            if value:
                return value
    return None


def interaction_id_of(response: Any) -> Optional[str]:
    """The id of the interaction the Ratchet gateway logged for a call.

    Pass what ``client.chat.completions.with_raw_response.create(...)`` returns, an
    ``httpx.Response``, or a stream from the gateway (its ``response`` carries the headers).
    """
    return _gateway_header(response, INTERACTION_ID_HEADER)


def feedback_token_of(response: Any) -> Optional[str]:
    """The feedback token the Ratchet gateway returned for a call (pass what ``interaction_id_of`` takes)."""
    return _gateway_header(response, FEEDBACK_TOKEN_HEADER)


def _attach(target: Any, call: "_CallRecorder") -> None:
    try:
        setattr(target, _INFO, {"interaction_id": call.id, "call": call})
    except (AttributeError, TypeError, ValueError):
        pass  # an object that takes no attributes; the id is still logged


def _start_call(
    ratchet: "Ratchet", kwargs: Dict[str, Any], defaults: Dict[str, Any]
) -> Tuple["_CallRecorder", Dict[str, Any]]:
    kwargs = dict(kwargs)
    context = _take_context_headers(kwargs, ratchet)
    if kwargs.get("messages") is not None and not isinstance(kwargs["messages"], list):
        kwargs["messages"] = list(kwargs["messages"])  # read once, here, so the provider gets the same list
    merged = {
        "route": defaults["route"],
        "user_id": context.get("user_id") or _given(kwargs.get("user")),
        "session_id": context.get("session_id"),
        "tags": defaults["tags"] + context.get("tags", []),
        "metadata": {**defaults["metadata"], **context.get("metadata", {})},
    }
    return _CallRecorder(ratchet, kwargs, merged), kwargs


def _given(value: Any) -> Any:
    """None for the openai client's NOT_GIVEN / omit sentinels."""
    return None if type(value).__name__ in ("NotGiven", "Omit") else value


def _take_context_headers(kwargs: Dict[str, Any], ratchet: "Ratchet") -> Dict[str, Any]:
    """Takes the ``x-ratchet-*`` headers out of ``extra_headers``: the provider has no business seeing them."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, dict):
        return {}
    ours = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratchet-") and isinstance(v, str)}
    if not ours:
        return {}
    kwargs["extra_headers"] = {k: v for k, v in headers.items() if not k.lower().startswith("x-ratchet-")}
    context: Dict[str, Any] = {}
    for header, field in _CONTEXT_HEADERS.items():
        value = ours.get(header)
        if value is None:
            continue
        if field == "tags":
            context["tags"] = [t.strip() for t in value.split(",") if t.strip()]
        elif field == "metadata":
            try:
                context["metadata"] = dict(json.loads(value))
            except (ValueError, TypeError):
                ratchet.report_error(ValueError(f"{header}: not a JSON object; ignored"))
        else:
            context[field] = value
    return context


async def _observe_when_done(awaitable: Awaitable[Any], call: "_CallRecorder") -> Any:
    try:
        result = await awaitable
    except BaseException as err:
        call.failed(err)
        raise
    return _observe(result, call, asynchronous=True)


def _observe(result: Any, call: "_CallRecorder", asynchronous: bool) -> Any:
    """Logs (or arranges to log) what a call returned; never changes what the app gets back."""
    try:
        if type(result).__name__ == "LegacyAPIResponse":
            # with_raw_response: parse() caches, so the app's own parse() gets the object seen here.
            _attach(result, call)
            _observe_parsed(result.parse(), call, asynchronous)
        else:
            _observe_parsed(result, call, asynchronous)
    except Exception as err:  # noqa: BLE001 - a logging bug must not reach the app
        call.ratchet.report_error(err)
    return result


def _observe_parsed(result: Any, call: "_CallRecorder", asynchronous: bool) -> None:
    if hasattr(result, "_iterator") and hasattr(result, "response"):
        (_tap_async_stream if asynchronous else _tap_stream)(result, call)
    elif hasattr(result, "choices"):
        _record_completion(result, call)
    else:
        call.release()  # a response type this wrapper does not read (e.g. with_streaming_response)


def _record_completion(completion: Any, call: "_CallRecorder") -> None:
    choices = getattr(completion, "choices", None) or []
    choice = choices[0] if choices else None
    call.succeeded(
        _compact_message(getattr(choice, "message", None)),
        usage=_usage(getattr(completion, "usage", None)),
        finish_reason=getattr(choice, "finish_reason", None),
        response_model=getattr(completion, "model", None),
    )
    _attach(completion, call)


def _tap_stream(stream: Any, call: "_CallRecorder") -> None:
    """Assembles the answer as the app reads the stream (same object, same chunks) and logs it at the end."""
    assembler = _StreamAssembler()
    source = stream._iterator

    def tapped() -> Any:
        try:
            for chunk in source:
                assembler.add(chunk, call)
                yield chunk
        except GeneratorExit:
            call.succeeded(**assembler.outcome(abandoned=True))
            raise
        except BaseException as err:
            call.failed(err, **assembler.outcome())
            raise
        call.succeeded(**assembler.outcome())

    stream._iterator = tapped()
    original_close = stream.close

    def close() -> None:
        call.succeeded(**assembler.outcome(abandoned=True))  # no-op when already logged
        original_close()

    stream.close = close
    _attach(stream, call)


def _tap_async_stream(stream: Any, call: "_CallRecorder") -> None:
    assembler = _StreamAssembler()
    source = stream._iterator

    async def tapped() -> Any:
        try:
            async for chunk in source:
                assembler.add(chunk, call)
                yield chunk
        except GeneratorExit:
            call.succeeded(**assembler.outcome(abandoned=True))
            raise
        except BaseException as err:
            call.failed(err, **assembler.outcome())
            raise
        call.succeeded(**assembler.outcome())

    stream._iterator = tapped()
    original_close = stream.close

    async def close() -> None:
        call.succeeded(**assembler.outcome(abandoned=True))
        await original_close()

    stream.close = close
    _attach(stream, call)


def _usage(usage: Any) -> Optional[Dict[str, int]]:
    if usage is None:
        return None
    fields = {
        "input_tokens": getattr(usage, "prompt_tokens", None),
        "output_tokens": getattr(usage, "completion_tokens", None),
        "total_tokens": getattr(usage, "total_tokens", None),
    }
    return {k: v for k, v in fields.items() if isinstance(v, int)} or None


def _as_dict(value: Any) -> Dict[str, Any]:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    return dict(value)


def _compact_message(message: Any) -> Dict[str, Any]:
    """The answer without the null and empty fields providers add (refusal: null, annotations: [])."""
    if message is None:
        return {"role": "assistant", "content": ""}
    data = _as_dict(message)
    kept = {k: v for k, v in data.items() if k == "content" or (v is not None and v != [])}
    kept.setdefault("role", "assistant")
    return kept


class _StreamAssembler:
    """Rebuilds the first choice's message from chunks: text, tool calls, finish reason, usage."""

    def __init__(self) -> None:
        self.chunks = 0
        self.content: List[str] = []
        self.refusal: List[str] = []
        self.tool_calls: Dict[int, Dict[str, Any]] = {}
        self.finish_reason: Optional[str] = None
        self.usage: Optional[Dict[str, int]] = None
        self.model: Optional[str] = None

    def add(self, chunk: Any, call: "_CallRecorder") -> None:
        if self.chunks == 0:
            call.first_chunk()
        self.chunks += 1
        self.model = getattr(chunk, "model", None) or self.model
        usage = _usage(getattr(chunk, "usage", None))
        if usage:
            self.usage = usage
        choice = next((c for c in getattr(chunk, "choices", None) or [] if (getattr(c, "index", 0) or 0) == 0), None)
        if choice is None:
            return
        delta = getattr(choice, "delta", None)
        if delta is not None:
            if isinstance(getattr(delta, "content", None), str):
                self.content.append(delta.content)
            if isinstance(getattr(delta, "refusal", None), str):
                self.refusal.append(delta.refusal)
            for piece in getattr(delta, "tool_calls", None) or []:
                self._add_tool_call(piece)
        if isinstance(getattr(choice, "finish_reason", None), str):
            self.finish_reason = choice.finish_reason

    def _add_tool_call(self, piece: Any) -> None:
        slot = self.tool_calls.setdefault(getattr(piece, "index", 0) or 0, {"function": {"name": "", "arguments": ""}})
        if getattr(piece, "id", None):
            slot["id"] = piece.id
        if getattr(piece, "type", None):
            slot["type"] = piece.type
        function = getattr(piece, "function", None)
        if function is not None:
            slot["function"]["name"] += getattr(function, "name", None) or ""
            slot["function"]["arguments"] += getattr(function, "arguments", None) or ""

    def outcome(self, abandoned: bool = False) -> Dict[str, Any]:
        message: Dict[str, Any] = {"role": "assistant", "content": "".join(self.content)}
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[i] for i in sorted(self.tool_calls)]
        if self.refusal:
            message["refusal"] = "".join(self.refusal)
        extra: Dict[str, Any] = {"streamed": True}
        if abandoned:
            extra["abandoned"] = True
        return {
            "output": message,
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "response_model": self.model,
            "extra": extra,
        }


class _CallRecorder:
    """One wrapped call: its id, timing and context, logged exactly once however it ends."""

    def __init__(self, ratchet: "Ratchet", request: Dict[str, Any], context: Dict[str, Any]) -> None:
        self.ratchet = ratchet
        self._request = request
        self._context = context
        # A stream's id is known before its answer; reserving it holds feedback on it until it is logged.
        self.id = ratchet.reserve_interaction_id() if request.get("stream") is True else new_id()
        self._started = time.perf_counter()
        self._created_at = int(time.time() * 1000)
        self._first_chunk_ms: Optional[float] = None
        self._logged = False
        self._lock = threading.Lock()

    def first_chunk(self) -> None:
        self._first_chunk_ms = (time.perf_counter() - self._started) * 1000

    def succeeded(
        self,
        output: Dict[str, Any],
        usage: Optional[Dict[str, int]] = None,
        finish_reason: Optional[str] = None,
        response_model: Optional[str] = None,
        extra: Optional[Dict[str, Any]] = None,
    ) -> None:
        self._log(output, "ok", None, usage, finish_reason, response_model, extra)

    def failed(
        self,
        error: BaseException,
        output: Optional[Dict[str, Any]] = None,
        usage: Optional[Dict[str, int]] = None,
        finish_reason: Optional[str] = None,
        response_model: Optional[str] = None,
        extra: Optional[Dict[str, Any]] = None,
    ) -> None:
        message = str(error) or type(error).__name__
        self._log(
            output or {"role": "assistant", "content": ""},
            "error",
            message[:10_000],
            usage,
            finish_reason,
            response_model,
            extra,
        )

    def release(self) -> None:
        with self._lock:
            self._logged = True
        self.ratchet.release_interaction_id(self.id)

    def _log(
        self,
        output: Dict[str, Any],
        status: str,
        error: Optional[str],
        usage: Optional[Dict[str, int]],
        finish_reason: Optional[str],
        response_model: Optional[str],
        extra: Optional[Dict[str, Any]],
    ) -> None:
        with self._lock:
            if self._logged:
                return
            self._logged = True
        request = self._request
        metadata = {**self._context["metadata"], **(extra or {})}
        if finish_reason:
            metadata["finishReason"] = finish_reason
        if response_model and response_model != request.get("model"):
            metadata["responseModel"] = response_model
        if self._first_chunk_ms is not None:
            metadata["timeToFirstChunkMs"] = round(self._first_chunk_ms)
        try:
            self.ratchet.log_interaction(
                id=self.id,
                route=self._context["route"],
                model=request.get("model"),
                messages=[_as_dict(m) for m in request.get("messages") or []],
                output=output,
                parameters={k: v for k, v in request.items() if k not in _NOT_PARAMETERS and _given(v) is not None},
                latency_ms=(time.perf_counter() - self._started) * 1000,
                usage=usage,
                user_id=self._context["user_id"],
                session_id=self._context["session_id"],
                tags=self._context["tags"] or None,
                metadata=metadata,
                status=status,
                error=error,
                created_at=self._created_at,
            )
        except Exception as err:  # noqa: BLE001 - logging must never raise into the app
            self.ratchet.release_interaction_id(self.id)
            self.ratchet.report_error(err)
