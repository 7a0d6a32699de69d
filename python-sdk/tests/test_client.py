"""The Python client against a real Ratchet server: batching, retries, idempotency, errors."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, List

import pytest

from ratchet_sdk import (
    RatchetApiError,
    RatchetDeliveryError,
    RatchetFlushError,
    RatchetSdkError,
    RatchetValidationError,
    RetryPolicy,
    backoff_delay,
    parse_retry_after,
)
from ratchet_sdk import Ratchet as RatchetClient

if TYPE_CHECKING:
    from conftest import FlakyProxy, RatchetServer

UUID_V7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def interaction(i: int, **extra: Any) -> dict:
    messages = [{"role": "user", "content": f"question {i}"}]
    return {"model": "tiny-chat", "messages": messages, "output": f"answer {i}", **extra}


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


@pytest.fixture
def errors() -> List[RatchetSdkError]:
    return []


@pytest.fixture
def make_client(
    proxy: "FlakyProxy", ratchet_server: "RatchetServer", errors: List[RatchetSdkError]
) -> Iterator[Callable[..., RatchetClient]]:
    """Clients that talk to the server through the flaky proxy, with fast retries."""
    made: List[RatchetClient] = []

    def make(**options: Any) -> RatchetClient:
        settings: dict = {
            "api_key": ratchet_server.secret_key,
            "retry_base_delay": 0.005,
            "flush_interval": 60,
            "flush_at_exit": False,
            "on_error": errors.append,
        }
        settings.update(options)
        client = RatchetClient(proxy.url, **settings)
        made.append(client)
        return client

    yield make
    proxy.heal()
    for client in made:
        try:
            client.shutdown()
        except RatchetSdkError:
            pass


def feedback_of(server: "RatchetServer", interaction_id: str) -> list:
    return server.interaction(interaction_id)["feedback"]


def test_batches_in_the_background_and_reads_back(make_client, proxy, ratchet_server, errors) -> None:
    client = make_client(max_batch_size=20, flush_interval=0.05)
    first = len(proxy.requests)
    ids = []
    for i in range(60):
        interaction_id = client.log_interaction(**interaction(i, user_id=f"user-{i % 3}", tags=["py-batched"]))
        ids.append(interaction_id)
        client.feedback("thumbs", interaction_id, value="up" if i % 2 else "down")
    assert all(UUID_V7.match(i) for i in ids) and len(set(ids)) == 60

    wait_for(lambda: client.pending == {"interactions": 0, "feedback": 0})
    client.flush()  # waits for a pass the background thread may still be running
    sent = proxy.since(first)
    assert len(sent) >= 6 and all(1 <= r.items <= 20 for r in sent)
    assert sum(r.items for r in sent if r.path == "/api/v1/interactions") == 60
    assert sum(r.items for r in sent if r.path == "/api/v1/feedback") == 60
    assert errors == []

    got = ratchet_server.interaction(ids[7])
    assert got["userId"] == "user-1" and got["tags"] == ["py-batched"] and got["source"] == "sdk"
    assert got["output"] == {"role": "assistant", "content": "answer 7"}
    assert [(f["kind"], f["label"]) for f in got["feedback"]] == [("thumbs", "up")]


def test_retries_503s_and_writes_each_item_once(make_client, proxy, ratchet_server, errors) -> None:
    client = make_client(max_retries=5)
    first = len(proxy.requests)
    proxy.fail_next(3, "refuse")
    ids = [client.log_interaction(**interaction(i)) for i in range(5)]
    for interaction_id in ids:
        client.feedback("stars", interaction_id, value=5)
    client.flush()
    assert [r.mode for r in proxy.since(first)] == ["refuse", "refuse", "refuse", "forward", "forward"]
    assert all(len(feedback_of(ratchet_server, i)) == 1 for i in ids)
    assert errors == []


def test_a_lost_answer_is_retried_without_writing_twice(make_client, proxy, ratchet_server, errors) -> None:
    client = make_client()
    ids = [client.log_interaction(**interaction(i)) for i in range(3)]
    proxy.fail_next(2, "lose-answer")
    client.flush()
    for interaction_id in ids:
        client.feedback("implicit", interaction_id, signal="copied")
    proxy.fail_next(2, "lose-answer")
    client.flush()
    # Each batch reached the server three times; ids and idempotency keys kept one copy.
    assert all(len(feedback_of(ratchet_server, i)) == 1 for i in ids)
    assert errors == []


def test_honors_retry_after_on_429(make_client, proxy) -> None:
    client = make_client(retry_base_delay=0.001)
    proxy.fail_next(1, "refuse", status=429, retry_after="1")
    first = len(proxy.requests)
    client.log_interaction(**interaction(1))
    client.flush()
    refused, accepted = proxy.since(first)
    assert refused.mode == "refuse" and accepted.at - refused.at >= 0.95


def test_surfaces_a_rejected_item_and_writes_the_rest(make_client, proxy, ratchet_server, errors) -> None:
    client = make_client()
    ids = [client.log_interaction(**interaction(i)) for i in range(3)]
    client.flush()
    first = len(proxy.requests)
    client.feedback("thumbs", ids[0], value="up")
    bad_key = client.feedback("stars", ids[1], value=9)
    client.feedback("thumbs", ids[2], value="down")

    with pytest.raises(RatchetFlushError) as caught:
        client.flush()
    (rejected,) = caught.value.errors
    assert isinstance(rejected, RatchetApiError)
    assert (rejected.status, rejected.code, rejected.path) == (400, "invalid_request", "items.1.value")
    assert rejected.items[0]["idempotencyKey"] == bad_key
    assert errors == [rejected]
    assert [r.items for r in proxy.since(first)] == [3, 2]
    assert [len(feedback_of(ratchet_server, i)) for i in ids] == [1, 0, 1]
    assert client.pending == {"interactions": 0, "feedback": 0}


@pytest.mark.parametrize("key, status, code", [("rk_sec_not-a-key", 401, "unauthorized"), ("public", 403, "forbidden")])
def test_reports_auth_errors_once_without_retrying(
    make_client, proxy, ratchet_server, errors, key, status, code
) -> None:
    client = make_client(api_key=ratchet_server.public_key if key == "public" else key)
    first = len(proxy.requests)
    client.log_interaction(**interaction(1))
    with pytest.raises(RatchetFlushError) as caught:
        client.flush()
    assert [(e.status, e.code) for e in caught.value.errors] == [(status, code)]
    assert len(errors) == 1 and len(proxy.since(first)) == 1


def test_keeps_writes_queued_while_the_server_is_down(make_client, proxy, ratchet_server) -> None:
    client = make_client(max_retries=2)
    proxy.fail_all("refuse")
    interaction_id = client.log_interaction(**interaction(1))
    client.feedback("thumbs", interaction_id, value="up")
    with pytest.raises(RatchetFlushError) as caught:
        client.flush()
    failure = caught.value.errors[0]
    assert isinstance(failure, RatchetDeliveryError) and (failure.attempts, failure.status) == (3, 503)
    assert client.pending == {"interactions": 1, "feedback": 1}

    proxy.heal()
    client.flush()
    assert client.pending == {"interactions": 0, "feedback": 0}
    assert len(feedback_of(ratchet_server, interaction_id)) == 1


def test_shutdown_drops_and_reports_what_it_cannot_deliver(make_client, proxy) -> None:
    client = make_client(max_retries=1)
    proxy.fail_all("refuse")
    client.log_interaction(**interaction(1))
    with pytest.raises(RatchetFlushError) as caught:
        client.shutdown()
    assert isinstance(caught.value.errors[0], RatchetDeliveryError)
    assert len(caught.value.errors[0].items) == 1
    assert client.pending == {"interactions": 0, "feedback": 0}


def test_direct_sends_await_the_answer_idempotently(make_client, ratchet_server, errors) -> None:
    client = make_client()
    (written,) = client.send_interactions([interaction(1)])
    assert written["created"] is True and UUID_V7.match(written["id"])

    first = client.send_feedback("comment", written["id"], text="helpful", idempotency_key="py-c-1")
    again = client.send_feedback("comment", written["id"], text="helpful", idempotency_key="py-c-1")
    assert first["created"] is True and again == {"id": first["id"], "created": False}

    with pytest.raises(RatchetApiError) as caught:
        client.send_feedback("thumbs", "no-such-interaction", value="up")
    assert (caught.value.status, caught.value.path) == (404, "items.0.interactionId")

    # Feedback on an interaction still queued sends the interaction first.
    queued = client.log_interaction(**interaction(2))
    assert client.send_feedback("thumbs", queued, value="up")["created"] is True
    assert errors == []


def test_holds_feedback_on_a_reserved_id_until_it_is_logged(make_client, ratchet_server, errors) -> None:
    client = make_client()
    interaction_id = client.reserve_interaction_id()
    client.feedback("thumbs", interaction_id, value="down")
    client.flush()
    assert client.pending == {"interactions": 0, "feedback": 1}
    client.log_interaction(id=interaction_id, **interaction(1))
    client.flush()
    assert [f["label"] for f in feedback_of(ratchet_server, interaction_id)] == ["down"]
    assert errors == []


def test_rejects_plainly_invalid_input_where_it_is_made(make_client) -> None:
    client = make_client()
    with pytest.raises(RatchetValidationError, match="^kind:"):
        client.feedback("smiley", "x", value=1)
    with pytest.raises(RatchetValidationError, match="^messages:"):
        client.log_interaction(model="m", messages=[], output="x")
    assert client.pending == {"interactions": 0, "feedback": 0}


def test_shutdown_sends_what_is_left_and_refuses_later_writes(make_client, ratchet_server, errors) -> None:
    client = make_client()
    interaction_id = client.log_interaction(**interaction(1))
    client.feedback("correction", interaction_id, text="a better answer")
    client.shutdown()
    assert [f["kind"] for f in feedback_of(ratchet_server, interaction_id)] == ["correction"]
    client.log_interaction(**interaction(2))
    assert [e.message for e in errors] == ["log_interaction after shutdown(); not sent"]


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=0.1, max_delay=1.0)
    assert backoff_delay(0, policy, lambda: 0.0) == pytest.approx(0.05)
    assert backoff_delay(0, policy, lambda: 1.0) == pytest.approx(0.1)
    assert backoff_delay(3, policy, lambda: 0.5) == pytest.approx(0.6)
    assert backoff_delay(10, policy, lambda: 1.0) == pytest.approx(1.0)


def test_reads_retry_after_as_seconds_or_a_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now=7.0) == pytest.approx(3.0)
    assert parse_retry_after("3600") == 60.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
