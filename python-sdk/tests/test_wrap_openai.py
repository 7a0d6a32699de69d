"""wrap_openai with the official openai Python client calling a provider (the local upstream) directly."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Iterator, List

import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from ratchet_sdk import Ratchet, RatchetSdkError, ratchet_feedback_token, ratchet_interaction_id, wrap_openai

if TYPE_CHECKING:
    from conftest import RatchetServer, Upstream


@pytest.fixture
def errors() -> List[RatchetSdkError]:
    return []


@pytest.fixture
def ratchet(ratchet_server: "RatchetServer", errors: List[RatchetSdkError]) -> Iterator[Ratchet]:
    client = Ratchet(
        ratchet_server.url, ratchet_server.secret_key, flush_interval=60, flush_at_exit=False, on_error=errors.append
    )
    yield client
    client.shutdown()


@pytest.fixture
def wrapped(upstream: "Upstream", ratchet: Ratchet) -> OpenAI:
    return wrap_openai(
        OpenAI(base_url=upstream.url, api_key="sk-local", max_retries=0), ratchet, route="support-bot", tags=["wrapped"]
    )


def test_logs_a_non_streaming_call(wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer", errors) -> None:
    completion = wrapped.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my parcel?"}],
        temperature=0.2,
        user="alice",
    )
    assert completion.choices[0].message.content == "You said: Where is my parcel?"
    interaction_id = ratchet_interaction_id(completion)
    assert interaction_id
    assert "_ratchet" not in completion.model_dump_json()

    ratchet.flush()
    got = ratchet_server.interaction(interaction_id)
    assert got["route"] == "support-bot" and got["model"] == "tiny-chat" and got["source"] == "sdk"
    assert got["userId"] == "alice" and got["tags"] == ["wrapped"] and got["status"] == "ok"
    assert got["messages"][1] == {"role": "user", "content": "Where is my parcel?"}
    assert got["output"] == {"role": "assistant", "content": "You said: Where is my parcel?"}
    assert got["parameters"] == {"temperature": 0.2}
    assert got["usage"] == {"inputTokens": 4, "outputTokens": 6, "totalTokens": 10}
    assert got["metadata"]["finishReason"] == "stop"
    assert got["latencyMs"] > 0
    assert errors == []


def test_exposes_the_feedback_token_a_browser_rates_with(
    wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer", errors
) -> None:
    completion = wrapped.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "token please"}], user="erin"
    )
    interaction_id = ratchet_interaction_id(completion)
    # Still queued: asking for the token sends the interaction first.
    token = ratchet_feedback_token(completion)
    assert token and token.startswith("ft1.")
    assert ratchet.feedback_token(interaction_id) == token
    browser = Ratchet(ratchet_server.url, ratchet_server.public_key, flush_at_exit=False, max_retries=0)
    try:
        assert browser.send_feedback("thumbs", interaction_id, value="up", feedback_token=token)["created"] is True
    finally:
        browser.shutdown()
    got = ratchet_server.interaction(interaction_id)
    assert [(f["kind"], f["raterId"], f["source"]) for f in got["feedback"]] == [("thumbs", "erin", "user")]
    assert errors == []


def test_logs_a_stream_holding_early_feedback_until_it_ends(
    wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer", errors
) -> None:
    stream = wrapped.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "tell me about refunds please"}],
        stream=True,
        stream_options={"include_usage": True},
        user="bob",
    )
    interaction_id = ratchet_interaction_id(stream)
    assert interaction_id
    ratchet.feedback("thumbs", interaction_id, value="up")
    ratchet.flush()
    assert ratchet.pending["feedback"] == 1  # held: the interaction is not logged yet

    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "You said: tell me about refunds please"
    ratchet.flush()
    got = ratchet_server.interaction(interaction_id)
    assert got["output"] == {"role": "assistant", "content": text}
    assert got["usage"] == {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}
    assert got["metadata"]["streamed"] is True and got["metadata"]["finishReason"] == "stop"
    assert [(f["kind"], f["label"], f["raterId"]) for f in got["feedback"]] == [("thumbs", "up", "bob")]
    assert errors == []


def test_logs_what_was_read_of_a_closed_stream(
    wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer"
) -> None:
    with wrapped.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "one two three four five"}], stream=True
    ) as stream:
        text = ""
        for chunk in stream:
            text += chunk.choices[0].delta.content or ""
            if len(text) > 10:
                break
    ratchet.flush()
    got = ratchet_server.interaction(ratchet_interaction_id(stream))
    assert got["output"]["content"] == text and got["metadata"]["abandoned"] is True


def test_logs_a_failed_call_and_still_raises_it(
    wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer"
) -> None:
    with pytest.raises(openai.RateLimitError):
        wrapped.chat.completions.create(model="overloaded", messages=[{"role": "user", "content": "x"}])
    ratchet.flush()
    items = ratchet_server.get("/api/v1/interactions?model=overloaded").json()["items"]
    assert items[0]["status"] == "error" and "429" in items[0]["error"]


def test_with_raw_response_on_a_wrapped_client(
    wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer"
) -> None:
    raw = wrapped.chat.completions.with_raw_response.create(
        model="tiny-chat", messages=[{"role": "user", "content": "raw"}]
    )
    assert raw.http_response.status_code == 200
    completion = raw.parse()
    assert ratchet_interaction_id(raw) == ratchet_interaction_id(completion)
    ratchet.flush()
    assert ratchet_server.interaction(ratchet_interaction_id(raw))["output"]["content"] == "You said: raw"


def test_context_headers_are_recorded_and_kept_from_the_provider(
    wrapped: OpenAI, ratchet: Ratchet, ratchet_server: "RatchetServer", upstream: "Upstream"
) -> None:
    completion = wrapped.chat.completions.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "context"}],
        extra_headers={
            "x-ratchet-user-id": "carol",
            "x-ratchet-session-id": "s-1",
            "x-ratchet-tags": "vip, mobile",
            "x-ratchet-metadata": '{"plan": "pro"}',
        },
    )
    assert not [h for h in upstream.requests[-1]["headers"] if h.startswith("x-ratchet-")]
    ratchet.flush()
    got = ratchet_server.interaction(ratchet_interaction_id(completion))
    assert (got["userId"], got["sessionId"], got["tags"]) == ("carol", "s-1", ["wrapped", "vip", "mobile"])
    assert got["metadata"]["plan"] == "pro"


def test_async_client_streaming_and_not(
    upstream: "Upstream", ratchet: Ratchet, ratchet_server: "RatchetServer", errors
) -> None:
    async def calls() -> tuple:
        client = wrap_openai(AsyncOpenAI(base_url=upstream.url, api_key="sk-local", max_retries=0), ratchet)
        completion = await client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "async hello"}]
        )
        stream = await client.chat.completions.create(
            model="tiny-chat", messages=[{"role": "user", "content": "async stream"}], stream=True
        )
        text = ""
        async for chunk in stream:
            text += chunk.choices[0].delta.content or ""
        await client.close()
        return completion, stream, text

    completion, stream, text = asyncio.run(calls())
    assert text == "You said: async stream"
    ratchet.flush()
    answered = ratchet_server.interaction(ratchet_interaction_id(completion))
    assert answered["output"]["content"] == "You said: async hello"
    streamed = ratchet_server.interaction(ratchet_interaction_id(stream))
    assert streamed["output"]["content"] == text and streamed["metadata"]["streamed"] is True
    assert errors == []
