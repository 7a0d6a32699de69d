"""The Ratchet client: log interactions and send feedback, batched in the background."""

from __future__ import annotations

import atexit
import json
import re
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, TypedDict, Union

import httpx

from ._ids import new_id
from ._transport import RetryPolicy, Transport
from .errors import (
    RatchetApiError,
    RatchetDeliveryError,
    RatchetFlushError,
    RatchetQueueFullError,
    RatchetSdkError,
    RatchetValidationError,
)

INTERACTIONS_PATH = "/api/v1/interactions"
FEEDBACK_PATH = "/api/v1/feedback"

# The server takes at most this many items per request.
SERVER_MAX_BATCH = 1000
# Feedback tokens kept for interactions this client logged (the most recent ones).
MAX_KEPT_TOKENS = 10_000

# The server's feedback kinds, written from core's registry (packages/core/src/feedback-kinds.ts) by
# scripts/write-registries.ts; packages/core/src/registries.test.ts fails when they disagree.
FEEDBACK_KINDS = tuple(
    k["kind"] for k in json.loads(Path(__file__).with_name("feedback_kinds.json").read_text(encoding="utf-8"))["kinds"]
)

Message = Mapping[str, Any]
Payload = Dict[str, Any]


class _WriteResultFields(TypedDict):
    id: str
    created: bool


class WriteResult(_WriteResultFields, total=False):
    """What the server answers per written item (``created`` False: an idempotent repeat).

    For interactions also ``feedbackToken``: what a browser sends with the public key to rate it.
    """

    feedbackToken: str


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _api_fields(fields: Mapping[str, Any]) -> Payload:
    """snake_case keyword arguments to the API's camelCase fields (top level only: metadata keys stay)."""
    return {_camel(key): value for key, value in fields.items() if value is not None}


def _referenced_ids(feedback: Payload) -> List[str]:
    ids = [feedback["interactionId"]]
    if feedback.get("other"):
        ids.append(feedback["other"])
    ids.extend(feedback.get("ranking") or [])
    return ids


def _rejected_item_index(error: RatchetApiError, batch_length: int) -> Optional[int]:
    """The batch item a 4xx names (``items.3.value`` -> 3), if it names one."""
    match = re.match(r"^items\.(\d+)(?:\.|$)", error.path or "")
    if not match:
        return None
    index = int(match.group(1))
    return index if index < batch_length else None


def _chunks(items: List[Payload], size: int) -> List[List[Payload]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _warn(error: RatchetSdkError) -> None:
    import logging

    logging.getLogger("ratchet_sdk").warning("%s", error.message)


class _Delivery:
    """Items that could not be delivered for now (network, 429, 5xx after every retry), and why."""

    def __init__(self, undelivered: Optional[List[Payload]] = None, failure: Optional[RatchetDeliveryError] = None):
        self.undelivered = undelivered or []
        self.failure = failure


class Ratchet:
    """The client applications use to log interactions and send feedback.

    Writes are queued and sent in batches by a background thread; every item carries a
    client-made id (interactions) or idempotency key (feedback), so a retry after a lost answer
    never writes anything twice. Interactions are always delivered before feedback that refers
    to them. ``flush()`` sends what is queued and waits; ``shutdown()`` (also run at exit) sends
    what is left.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        flush_interval: float = 1.0,
        max_batch_size: int = 100,
        max_retries: int = 5,
        retry_base_delay: float = 0.25,
        retry_max_delay: float = 10.0,
        timeout: float = 10.0,
        max_queue_size: int = 10_000,
        max_hold: float = 300.0,
        flush_at_exit: bool = True,
        on_error: Optional[Callable[[RatchetSdkError], None]] = None,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        """
        Args:
            base_url: the Ratchet server's root, e.g. ``http://localhost:4400``.
            api_key: ``rk_sec_...`` (everything) or ``rk_pub_...`` (feedback only).
            flush_interval: queued items are sent at least this often, in seconds.
            max_batch_size: items per request, and the queue length that triggers a send (at most 1000).
            max_retries: retries after a network error, timeout, 429 or 5xx.
            retry_base_delay: first backoff in seconds; doubles per retry.
            retry_max_delay: largest backoff in seconds.
            timeout: per request attempt, in seconds.
            max_queue_size: items kept while the server is unreachable; beyond it the oldest are dropped.
            max_hold: seconds feedback waits for an interaction whose id was reserved but not logged.
            flush_at_exit: send what is left when the interpreter exits.
            on_error: receives every error of background delivery (default: a logging warning).
            http_client: an httpx.Client to use (e.g. with a proxy); the caller closes it.
        """
        if not base_url:
            raise ValueError("Ratchet: base_url is required")
        if not api_key:
            raise ValueError("Ratchet: api_key is required")
        self._flush_interval = flush_interval
        self._max_batch_size = min(max(1, max_batch_size), SERVER_MAX_BATCH)
        self._max_queue_size = max_queue_size
        self._max_hold = max_hold
        self._on_error = on_error or _warn
        self._transport = Transport(
            base_url,
            api_key,
            RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay, max_delay=retry_max_delay),
            timeout,
            http_client,
        )
        # A browser's key: feedback only, each item with its interaction's feedback token.
        self._public = api_key.startswith("rk_pub_")
        # Feedback tokens the server returned for interactions this client logged, oldest first.
        self._feedback_tokens: "OrderedDict[str, str]" = OrderedDict()
        self._interactions: List[Payload] = []
        self._feedback: List[Payload] = []
        # Ids of interactions queued or being sent, so direct feedback on them can wait for them.
        self._unsent_interaction_ids: set = set()
        # Ids handed out for calls still running (streams), with when: feedback on them waits.
        self._reserved: Dict[str, float] = {}
        self._queue_lock = threading.Lock()
        # One flush pass at a time, whether the background thread or a caller runs it.
        self._send_lock = threading.Lock()
        self._wake = threading.Condition()
        self._closing = False
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ratchet-sdk-flush", daemon=True)
        self._thread.start()
        self._exit_hook: Optional[Callable[[], None]] = None
        if flush_at_exit:
            # A weak reference, so the hook does not keep a discarded client alive.
            ref = weakref.ref(self)

            def hook() -> None:
                client = ref()
                if client is not None:
                    try:
                        client.shutdown()
                    except RatchetSdkError:
                        pass  # already reported through on_error

            self._exit_hook = hook
            atexit.register(hook)

    # ---- queueing ---------------------------------------------------------------------------

    @property
    def pending(self) -> Dict[str, int]:
        """Items waiting to be sent."""
        with self._queue_lock:
            return {"interactions": len(self._interactions), "feedback": len(self._feedback)}

    def log_interaction(
        self,
        *,
        model: str,
        messages: Sequence[Message],
        output: Union[str, Message],
        id: Optional[str] = None,
        route: Optional[str] = None,
        variant: Optional[str] = None,
        parameters: Optional[Mapping[str, Any]] = None,
        latency_ms: Optional[float] = None,
        usage: Optional[Mapping[str, int]] = None,
        session_id: Optional[str] = None,
        user_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        tags: Optional[Sequence[str]] = None,
        status: Optional[str] = None,
        error: Optional[str] = None,
        trace_id: Optional[str] = None,
        span_id: Optional[str] = None,
        source: Optional[str] = None,
        created_at: Union[int, str, None] = None,
    ) -> str:
        """Queues an interaction and returns its id at once (``id``, or a new UUIDv7).

        ``usage`` takes ``input_tokens``/``output_tokens``/``total_tokens``. Raises
        RatchetValidationError naming the field when the input is plainly wrong.
        """
        item = self._prepare_interaction(
            dict(
                id=id,
                model=model,
                messages=messages,
                output=output,
                route=route,
                variant=variant,
                parameters=parameters,
                latency_ms=latency_ms,
                usage=usage,
                session_id=session_id,
                user_id=user_id,
                metadata=metadata,
                tags=tags,
                status=status,
                error=error,
                trace_id=trace_id,
                span_id=span_id,
                source=source,
                created_at=created_at,
            )
        )
        dropped = None
        with self._queue_lock:
            self._reserved.pop(item["id"], None)
            refused = self._closing
            if not refused:
                self._unsent_interaction_ids.add(item["id"])
                dropped = self._enqueue(self._interactions, item)
        if refused:
            self._report(RatchetSdkError("log_interaction after shutdown(); not sent", [item]))
        elif dropped is not None:
            self._report(dropped)
        return item["id"]

    def feedback(self, kind: str, interaction_id: str, **fields: Any) -> str:
        """Queues a feedback event; returns its idempotency key (given, or new), which makes retries safe.

        ``fields`` are the kind's fields in snake_case: ``value``, ``scale``, ``scores``, ``text``,
        ``message``, ``other``, ``choice``, ``ranking``, ``signal``, ``rater_id``, ``source``,
        ``idempotency_key``, ``metadata``, ``created_at``, ``feedback_token``. With a public key
        ``feedback_token`` is required (the gateway's ``x-ratchet-feedback-token``); the server
        then rates as the interaction's end user, with source ``user``, at its own time.
        """
        item = self._prepare_feedback(kind, interaction_id, fields)
        dropped = None
        with self._queue_lock:
            refused = self._closing
            if not refused:
                dropped = self._enqueue(self._feedback, item)
        if refused:
            self._report(RatchetSdkError("feedback after shutdown(); not sent", [item]))
        elif dropped is not None:
            self._report(dropped)
        return item["idempotencyKey"]

    def reserve_interaction_id(self) -> str:
        """A new id for a call still running (a stream).

        Feedback on it is held back until ``log_interaction(id=...)`` logs it,
        ``release_interaction_id`` gives up on it, or ``max_hold`` passes.
        """
        interaction_id = new_id()
        with self._queue_lock:
            self._reserved[interaction_id] = time.monotonic()
        return interaction_id

    def release_interaction_id(self, interaction_id: str) -> None:
        """Stops holding feedback for a reserved id (the call was abandoned without being logged)."""
        with self._queue_lock:
            self._reserved.pop(interaction_id, None)

    def feedback_token(self, interaction_id: str) -> Optional[str]:
        """The feedback token of an interaction this client logged (sent first if still queued).

        Hand it to the page with the interaction id: the browser sends it with the public key to
        rate the interaction. None when the interaction was not delivered (or a stream not yet read).
        """
        with self._queue_lock:
            unsent = interaction_id in self._unsent_interaction_ids
        if unsent:
            try:
                self.flush()
            except RatchetFlushError:
                pass  # reported through on_error
        with self._queue_lock:
            return self._feedback_tokens.get(interaction_id)

    def _remember_tokens(self, results: Any) -> None:
        with self._queue_lock:
            for r in results or []:
                token = r.get("feedbackToken") if isinstance(r, dict) else None
                if not token:
                    continue
                self._feedback_tokens.pop(r["id"], None)
                self._feedback_tokens[r["id"]] = token
                if len(self._feedback_tokens) > MAX_KEPT_TOKENS:
                    self._feedback_tokens.popitem(last=False)

    def report_error(self, error: BaseException) -> None:
        """Hands an error to ``on_error``; for integrations (wrap_openai) that must never raise into the app."""
        self._report(error if isinstance(error, RatchetSdkError) else RatchetSdkError(str(error)))

    # ---- sending ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Sends everything queued so far and returns when the server has committed it.

        Raises RatchetFlushError if items were rejected (4xx) or could not be delivered;
        undelivered items stay queued for the next attempt.
        """
        self._flush_pass(final=False)

    def shutdown(self) -> None:
        """Sends everything left (feedback held for reserved ids too) and stops the background thread.

        What cannot be delivered is reported and dropped (RatchetFlushError).
        """
        with self._queue_lock:
            if self._closing:
                return
            self._closing = True
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
        self._closed.set()
        with self._wake:
            self._wake.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=self._flush_interval + 60)
        try:
            self._flush_pass(final=True)
        finally:
            self._transport.close()

    def send_interactions(self, items: Iterable[Mapping[str, Any]]) -> List[WriteResult]:
        """Writes interactions now, all or nothing, and returns the server's answer; nothing is queued.

        Each item takes ``log_interaction``'s keyword arguments as keys.
        """
        payload = [self._prepare_interaction(dict(item)) for item in items]
        return self._send_now(INTERACTIONS_PATH, payload)

    def send_feedback(self, kind: str, interaction_id: str, **fields: Any) -> WriteResult:
        """Writes one feedback event now and returns the server's answer; nothing is queued.

        If it refers to interactions still in this client's queue, those are sent first.
        """
        return self.send_feedback_batch([dict(fields, kind=kind, interaction_id=interaction_id)])[0]

    def send_feedback_batch(self, items: Iterable[Mapping[str, Any]]) -> List[WriteResult]:
        """Writes feedback events now, all or nothing (each a dict of ``feedback``'s arguments)."""
        payload = []
        for raw in items:
            fields = dict(raw)
            payload.append(self._prepare_feedback(fields.pop("kind", None), fields.pop("interaction_id", None), fields))
        with self._queue_lock:
            waiting = any(i in self._unsent_interaction_ids for f in payload for i in _referenced_ids(f))
        if waiting:
            try:
                self.flush()
            except RatchetFlushError:
                pass  # reported through on_error; if the interaction did not make it, the 404 says so
        return self._send_now(FEEDBACK_PATH, payload)

    # ---- internals --------------------------------------------------------------------------

    def _prepare_interaction(self, fields: Dict[str, Any]) -> Payload:
        messages = fields.get("messages")
        if not fields.get("model") or not isinstance(fields.get("model"), str):
            raise RatchetValidationError("must be a non-empty string", "model")
        if messages is None or isinstance(messages, (str, bytes)):
            raise RatchetValidationError("must be a list of messages", "messages")
        fields["messages"] = list(messages)
        if not fields["messages"]:
            raise RatchetValidationError("needs at least one message", "messages")
        if fields.get("output") is None:
            raise RatchetValidationError("is required (text or a message)", "output")
        if fields.get("usage"):
            fields["usage"] = _api_fields(fields["usage"])
        item = _api_fields(fields)
        item.setdefault("id", new_id())
        item.setdefault("source", "sdk")
        item.setdefault("createdAt", int(time.time() * 1000))
        return item

    def _prepare_feedback(self, kind: Any, interaction_id: Any, fields: Mapping[str, Any]) -> Payload:
        if kind not in FEEDBACK_KINDS:
            raise RatchetValidationError(f"must be one of {', '.join(FEEDBACK_KINDS)}", "kind")
        if not isinstance(interaction_id, str) or not interaction_id:
            raise RatchetValidationError("must be an interaction id", "interactionId")
        item = _api_fields(dict(fields))
        item["kind"] = kind
        item["interactionId"] = interaction_id
        item.setdefault("idempotencyKey", new_id())
        # Timestamped when it happened, not when a batch finally got through. Not with a public
        # key: the server uses its own time then (and a user's clock may run ahead).
        if not self._public:
            item.setdefault("createdAt", int(time.time() * 1000))
        return item

    def _send_now(self, path: str, items: List[Payload]) -> List[WriteResult]:
        try:
            results = self._transport.post(path, {"items": items})["items"]
            self._remember_tokens(results)
            return results
        except RatchetSdkError as err:
            err.items = list(items)
            raise

    def _enqueue(self, queue: List[Payload], item: Payload) -> Optional[RatchetQueueFullError]:
        """Appends (under the queue lock); wakes the sender when a batch is full.

        Returns the error to report, outside the lock, if the queue overflowed.
        """
        queue.append(item)
        overflow = None
        if len(self._interactions) + len(self._feedback) > self._max_queue_size:
            overflow = self._drop_oldest()
        if len(self._interactions) + len(self._feedback) >= self._max_batch_size:
            with self._wake:
                self._wake.notify()
        return overflow

    def _drop_oldest(self) -> RatchetQueueFullError:
        """Bounds memory while the server is unreachable: the longer queue loses its oldest item."""
        from_interactions = len(self._interactions) >= len(self._feedback)
        dropped = (self._interactions if from_interactions else self._feedback).pop(0)
        if from_interactions:
            self._unsent_interaction_ids.discard(dropped["id"])
        return RatchetQueueFullError(f"queue full ({self._max_queue_size} items); dropped the oldest item", [dropped])

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._wake:
                self._wake.wait(timeout=self._flush_interval)
            if self._closed.is_set():
                return
            try:
                self._flush_pass(final=False)
            except RatchetFlushError:
                pass  # reported through on_error; what is left waits for the next tick
            except Exception as err:  # noqa: BLE001 - the sender thread must survive anything
                self._report(RatchetSdkError(f"background flush failed: {err!r}"))

    def _is_held(self, feedback: Payload, now: float) -> bool:
        for interaction_id in _referenced_ids(feedback):
            since = self._reserved.get(interaction_id)
            if since is None:
                continue
            if now - since <= self._max_hold:
                return True
            self._reserved.pop(interaction_id, None)
        return False

    def _flush_pass(self, final: bool) -> None:
        """One pass over what is queued now: interactions first, then the feedback free to go.

        Feedback waits whenever some interaction did not get through, since it may refer to it.
        """
        with self._send_lock:
            with self._queue_lock:
                interactions, self._interactions = self._interactions, []
                feedback, self._feedback = self._feedback, []
            errors: List[RatchetSdkError] = []

            sent = self._deliver(INTERACTIONS_PATH, interactions, errors)
            still_unsent = {i["id"] for i in sent.undelivered}
            feedback_left = feedback
            failure = sent.failure
            if failure is None:
                with self._queue_lock:
                    now = time.monotonic()
                    held = [f for f in feedback if not final and self._is_held(f, now)]
                held_keys = {id(f) for f in held}
                ready = [f for f in feedback if id(f) not in held_keys]
                sent_feedback = self._deliver(FEEDBACK_PATH, ready, errors)
                feedback_left = sent_feedback.undelivered + held
                failure = sent_feedback.failure

            with self._queue_lock:
                for item in interactions:
                    if item["id"] not in still_unsent:
                        self._unsent_interaction_ids.discard(item["id"])
                if final:
                    self._unsent_interaction_ids.clear()
                    if failure is not None:
                        dropped = sent.undelivered + feedback_left
                        errors.append(
                            RatchetDeliveryError(
                                f"{failure.message}; dropped {len(dropped)} items at shutdown",
                                failure.attempts,
                                failure.status,
                                dropped,
                            )
                        )
                else:
                    # Back to the front, so the next pass keeps the original order.
                    self._interactions[:0] = sent.undelivered
                    self._feedback[:0] = feedback_left
                    if failure is not None:
                        count = len(sent.undelivered) + len(feedback_left)
                        errors.append(
                            RatchetDeliveryError(
                                f"{failure.message}; {count} items stay queued for the next flush",
                                failure.attempts,
                                failure.status,
                            )
                        )
            for error in errors:
                self._report(error)
            if errors:
                raise RatchetFlushError(errors)

    def _deliver(self, path: str, items: List[Payload], errors: List[RatchetSdkError]) -> _Delivery:
        """Sends items in batches of max_batch_size; stops at the first batch that cannot be delivered."""
        batches = _chunks(items, self._max_batch_size)
        for index, batch in enumerate(batches):
            result = self._deliver_batch(path, batch, errors)
            if result.failure is not None:
                rest = [item for later in batches[index + 1 :] for item in later]
                return _Delivery(result.undelivered + rest, result.failure)
        return _Delivery()

    def _deliver_batch(self, path: str, batch: List[Payload], errors: List[RatchetSdkError]) -> _Delivery:
        """Sends one batch (written all or nothing by the server).

        When the server rejects one item (the error's path names it), that item is dropped and
        reported and the rest is sent again; a body too large is split in half.
        """
        remaining = batch
        while remaining:
            try:
                answer = self._transport.post(path, {"items": remaining})
                self._remember_tokens(answer.get("items") if isinstance(answer, dict) else None)
                return _Delivery()
            except RatchetDeliveryError as err:
                return _Delivery(remaining, err)
            except RatchetApiError as err:
                index = _rejected_item_index(err, len(remaining))
                if index is not None and len(remaining) > 1:
                    err.items = [remaining[index]]
                    errors.append(err)
                    remaining = remaining[:index] + remaining[index + 1 :]
                    continue
                if err.status == 413 and len(remaining) > 1:
                    return self._deliver_halves(path, remaining, errors)
                err.items = list(remaining)
                errors.append(err)
                return _Delivery()
        return _Delivery()

    def _deliver_halves(self, path: str, items: List[Payload], errors: List[RatchetSdkError]) -> _Delivery:
        middle = (len(items) + 1) // 2
        first = self._deliver_batch(path, items[:middle], errors)
        if first.failure is not None:
            return _Delivery(first.undelivered + items[middle:], first.failure)
        return self._deliver_batch(path, items[middle:], errors)

    def _report(self, error: RatchetSdkError) -> None:
        try:
            self._on_error(error)
        except Exception:  # noqa: BLE001 - a failing on_error must not break delivery
            pass

    def __enter__(self) -> "Ratchet":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
