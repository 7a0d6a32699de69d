"""The official openai Python client against the gateway (``ratchet serve``): every choice of n=2
logged (streamed and not), tool calls logged the same streamed and not, usage logged for a
stream that did not ask for it (and none handed to it), a stream the client closes early logged
as aborted and rateable, the Responses API, the models list, embeddings as usage. Each logged
call takes feedback."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict

import pytest
from openai import OpenAI

from ratchet_sdk import interaction_id_of

if TYPE_CHECKING:
    from conftest import RatchetServer


@pytest.fixture
def gateway_client(ratchet_server: RatchetServer) -> OpenAI:
    return OpenAI(base_url=f"{ratchet_server.url}/v1", api_key=ratchet_server.secret_key, max_retries=0)


def logged(server: RatchetServer, interaction_id: str) -> Dict[str, Any]:
    """The interaction once the gateway's buffered write has landed (within a few seconds)."""
    deadline = time.monotonic() + 10
    while True:
        response = server.get(f"/api/v1/interactions/{interaction_id}")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return response.json()
        time.sleep(0.05)


def rated(server: RatchetServer, interaction_id: str) -> None:
    feedback = server.post(
        "/api/v1/feedback", {"kind": "thumbs", "interactionId": interaction_id, "value": "up", "raterId": "carol"}
    )
    assert feedback.status_code == 201, feedback.text


def test_tool_calls_are_logged_the_same_streamed_and_not(
    gateway_client: OpenAI, ratchet_server: RatchetServer
) -> None:
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages: Any = [{"role": "user", "content": "weather in Oslo"}]
    raw = gateway_client.chat.completions.with_raw_response.create(model="tiny-chat", messages=messages, tools=tools)
    call = raw.parse().choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"query": "weather in Oslo"}')  # type: ignore[union-attr]
    plain = logged(ratchet_server, interaction_id_of(raw))
    rated(ratchet_server, interaction_id_of(raw))

    with gateway_client.chat.completions.with_streaming_response.create(
        model="tiny-chat", messages=messages, tools=tools, stream=True
    ) as response:
        arguments = ""
        for chunk in response.parse():
            for piece in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
                arguments += (piece.function.arguments or "") if piece.function else ""
        interaction_id = interaction_id_of(response)
    assert arguments == call.function.arguments  # type: ignore[union-attr]
    streamed = logged(ratchet_server, interaction_id)
    rated(ratchet_server, interaction_id)
    expected = [{"id": "call_0", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]
    assert plain["output"]["tool_calls"] == expected
    assert streamed["output"]["tool_calls"] == expected
    assert (plain["metadata"]["streamed"], streamed["metadata"]["streamed"]) == (False, True)


def test_n2_logs_both_choices_streamed_and_not(gateway_client: OpenAI, ratchet_server: RatchetServer) -> None:
    messages = [{"role": "user", "content": "hi there"}]
    raw = gateway_client.chat.completions.with_raw_response.create(model="tiny-chat", messages=messages, n=2)
    plain = logged(ratchet_server, interaction_id_of(raw))
    assert [c.message.content for c in raw.parse().choices] == ["You said: hi there", "You said: hi there (choice 2)"]
    rated(ratchet_server, interaction_id_of(raw))

    with gateway_client.chat.completions.with_streaming_response.create(
        model="tiny-chat", messages=messages, n=2, stream=True
    ) as response:
        seen = ["", ""]
        for chunk in response.parse():
            for choice in chunk.choices:
                seen[choice.index] += choice.delta.content or ""
        streamed = logged(ratchet_server, interaction_id_of(response))
    assert seen == ["You said: hi there", "You said: hi there (choice 2)"]
    for got, was_streamed in ((plain, False), (streamed, True)):
        assert got["output"]["content"] == seen[0]
        assert got["metadata"]["streamed"] is was_streamed
        assert got["metadata"]["choices"] == [
            {"index": 1, "message": {"role": "assistant", "content": seen[1]}, "finishReason": "stop"}
        ]


def test_stream_without_include_usage_is_logged_with_usage_and_gets_none(
    gateway_client: OpenAI, ratchet_server: RatchetServer
) -> None:
    with gateway_client.chat.completions.with_streaming_response.create(
        model="tiny-chat", messages=[{"role": "user", "content": "count my tokens"}], stream=True
    ) as response:
        chunks = list(response.parse())
        got = logged(ratchet_server, interaction_id_of(response))
    assert chunks and all(c.usage is None and c.choices for c in chunks)
    assert got["usage"] == {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8}


def test_a_stream_closed_early_is_logged_aborted_and_takes_feedback(
    gateway_client: OpenAI, ratchet_server: RatchetServer
) -> None:
    with gateway_client.chat.completions.with_streaming_response.create(
        model="slow",
        messages=[{"role": "user", "content": "one two three four five six seven eight nine ten"}],
        stream=True,
    ) as response:
        interaction_id = interaction_id_of(response)
        read = ""
        stream = response.parse()
        for chunk in stream:
            read += chunk.choices[0].delta.content or ""
            if len(read.split()) >= 3:
                stream.close()  # the "stop" button
                break
    got = logged(ratchet_server, interaction_id)
    assert got["status"] == "aborted"
    full = "You said: one two three four five six seven eight nine ten"
    assert full.startswith(got["output"]["content"]) and read in full
    assert len(read) <= len(got["output"]["content"]) < len(full)
    feedback = ratchet_server.post(
        "/api/v1/feedback", {"kind": "thumbs", "interactionId": interaction_id, "value": "down", "raterId": "bob"}
    )
    assert feedback.status_code == 201, feedback.text


def test_models_and_embeddings(gateway_client: OpenAI, ratchet_server: RatchetServer) -> None:
    assert "tiny-chat" in [m.id for m in gateway_client.models.list()]
    raw = gateway_client.embeddings.with_raw_response.create(model="embed-small", input=["a b", "c"])
    result = raw.parse()
    assert [len(d.embedding) for d in result.data] == [8, 8]
    assert raw.headers.get("x-ratchet-interaction-id") is None
    usage_id = raw.headers["x-ratchet-usage-id"]
    deadline = time.monotonic() + 10
    while True:
        items = ratchet_server.get("/api/v1/usage-records").json()["items"]
        record = next((r for r in items if r["id"] == usage_id), None)
        if record or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert record is not None
    assert (record["kind"], record["model"], record["inputs"], record["inputTokens"]) == ("embeddings", "embed-small", 2, 3)
    assert ratchet_server.get(f"/api/v1/interactions/{usage_id}").status_code == 404


def test_responses_api_streamed_and_not(gateway_client: OpenAI, ratchet_server: RatchetServer) -> None:
    raw = gateway_client.responses.with_raw_response.create(
        model="tiny-chat", instructions="Be brief.", input="where is my parcel"
    )
    response = raw.parse()
    assert response.output_text == "You said: where is my parcel"
    got = logged(ratchet_server, interaction_id_of(raw))
    assert got["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "where is my parcel"},
    ]
    assert got["metadata"]["api"] == "responses"
    rated(ratchet_server, interaction_id_of(raw))

    with gateway_client.responses.stream(model="tiny-chat", input="refunds please") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == "You said: refunds please"
    assert final.output_text == text
    assert final.usage is not None and final.usage.input_tokens == 2
