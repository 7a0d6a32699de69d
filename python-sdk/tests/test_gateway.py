"""The Foundation's must-show for Python: the official openai client calls the Ratchet gateway,
streaming and not; each call is an interaction, and feedback sent with the id is stored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest
from openai import OpenAI

from ratchet_sdk import Ratchet, RatchetApiError, feedback_token_of, interaction_id_of

if TYPE_CHECKING:
    from conftest import RatchetServer


@pytest.fixture
def gateway_client(ratchet_server: RatchetServer) -> OpenAI:
    return OpenAI(base_url=f"{ratchet_server.url}/v1", api_key=ratchet_server.secret_key, max_retries=0)


@pytest.fixture
def browser(ratchet_server: RatchetServer) -> Iterator[Ratchet]:
    """A client with the public key: what a browser may hold, only able to send feedback."""
    client = Ratchet(ratchet_server.url, ratchet_server.public_key, flush_interval=60, flush_at_exit=False)
    yield client
    client.shutdown()


def test_non_streaming_call_is_logged_and_takes_feedback(
    gateway_client: OpenAI, browser: Ratchet, ratchet_server: RatchetServer
) -> None:
    raw = gateway_client.chat.completions.with_raw_response.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "Where is my parcel?"}],
        user="alice",
        temperature=0.3,
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "You said: Where is my parcel?"
    interaction_id = interaction_id_of(raw)
    assert interaction_id and len(interaction_id) == 36

    feedback_token = feedback_token_of(raw)
    assert feedback_token and feedback_token.startswith("ft1.")
    # Without the token the public key writes nothing; the refusal names the field.
    with pytest.raises(RatchetApiError) as refused:
        browser.send_feedback("thumbs", interaction_id, value="up")
    assert (refused.value.status, refused.value.path) == (401, "items.0.feedbackToken")
    # A forged rater is refused, not rewritten.
    with pytest.raises(RatchetApiError) as forged:
        browser.send_feedback("thumbs", interaction_id, value="up", feedback_token=feedback_token, rater_id="mallory")
    assert (forged.value.status, forged.value.path) == (403, "items.0.raterId")
    # Sent at once: the server finds the interaction even before the gateway's buffered write.
    written = browser.send_feedback("thumbs", interaction_id, value="up", feedback_token=feedback_token)
    assert written["created"] is True

    got = ratchet_server.interaction(interaction_id)
    assert got["source"] == "gateway"
    assert got["userId"] == "alice"
    assert got["messages"] == [{"role": "user", "content": "Where is my parcel?"}]
    assert got["output"]["content"] == "You said: Where is my parcel?"
    assert got["parameters"] == {"temperature": 0.3}
    assert got["usage"] == {"inputTokens": 4, "outputTokens": 6, "totalTokens": 10}
    assert [(f["kind"], f["label"], f["raterId"], f["source"], f["current"]) for f in got["feedback"]] == [
        ("thumbs", "up", "alice", "user", True)
    ]


def test_streaming_call_is_logged_and_takes_feedback(
    gateway_client: OpenAI, browser: Ratchet, ratchet_server: RatchetServer
) -> None:
    raw = gateway_client.chat.completions.with_raw_response.create(
        model="tiny-chat",
        messages=[{"role": "user", "content": "tell me about refunds please"}],
        stream=True,
        stream_options={"include_usage": True},
        user="bob",
    )
    interaction_id = interaction_id_of(raw)
    assert interaction_id
    text = ""
    chunks = 0
    for chunk in raw.parse():
        chunks += 1
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "You said: tell me about refunds please"
    assert chunks > 5

    feedback_token = feedback_token_of(raw)
    browser.feedback("stars", interaction_id, value=4, feedback_token=feedback_token)
    browser.feedback("comment", interaction_id, text="clear and short", feedback_token=feedback_token)
    browser.flush()

    got = ratchet_server.interaction(interaction_id)
    assert got["userId"] == "bob"
    assert got["output"]["content"] == text
    assert got["usage"]["inputTokens"] == 5
    assert sorted((f["kind"], f["value"], f["text"]) for f in got["feedback"]) == [
        ("comment", None, "clear and short"),
        ("stars", 4, None),
    ]


def test_plain_stream_carries_the_id_on_its_response(
    gateway_client: OpenAI, browser: Ratchet, ratchet_server: RatchetServer
) -> None:
    stream = gateway_client.chat.completions.create(
        model="tiny-chat", messages=[{"role": "user", "content": "no raw response"}], stream=True
    )
    interaction_id = interaction_id_of(stream)
    assert interaction_id
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    browser.send_feedback("implicit", interaction_id, signal="copied", feedback_token=feedback_token_of(stream))
    got = ratchet_server.interaction(interaction_id)
    assert got["output"]["content"] == text
    assert got["feedback"][0]["label"] == "copied"
