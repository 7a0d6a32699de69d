"""`ratchet-worker serve` as a real subprocess, called with the official openai client."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from conftest import free_port, run_method, subprocess_env


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, train_pairs):
    tmp = tmp_path_factory.mktemp("serve")
    sft = run_method(
        tmp,
        tiny_model,
        "sft",
        [{"messages": p["prompt"] + p["chosen"]} for p in train_pairs[:16]],
        {"learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 8},
    )
    reward = run_method(
        tmp,
        tiny_model,
        "reward",
        train_pairs[:16],
        {"learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 8},
    )
    adapters = f"support-v2={sft.of('artifacts')[0]['adapter_path']},judge={reward.of('artifacts')[0]['adapter_path']}"
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ratchet_worker",
            "serve",
            "--base",
            tiny_model,
            "--base-name",
            "tiny",
            "--adapters",
            adapters,
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=subprocess_env(),
    )
    try:
        ready = json.loads(proc.stdout.readline())  # blocks until the server listens (or dies)
        assert ready["type"] == "ready" and ready["port"] == port
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _client(url):
    from openai import OpenAI

    return OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)


def test_models_and_health(server):
    ids = [m.id for m in _client(server).models.list().data]
    assert ids == ["tiny", "support-v2", "judge"]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


@pytest.mark.parametrize("model", ["tiny", "support-v2"])
def test_chat_completion(server, model):
    response = _client(server).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "I forgot my password."}],
        max_tokens=40,
        temperature=0,
    )
    choice = response.choices[0]
    assert response.model == model and choice.message.role == "assistant"
    assert choice.message.content.strip() and "<|" not in choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.completion_tokens <= 40 and response.usage.prompt_tokens > 0


def test_chat_completion_streams(server):
    stream = _client(server).chat.completions.create(
        model="support-v2",
        messages=[{"role": "user", "content": "Where is my order A1042?"}],
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
        seed=1,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text.strip() and len([c for c in chunks if c.choices]) > 3  # arrived in pieces
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].usage.completion_tokens > 0


def test_score_batch_and_errors(server):
    prompt = [{"role": "user", "content": "I forgot my password."}]
    good = prompt + [{"role": "assistant", "content": "Happy to help. Press Forgot password on the sign-in page."}]
    bad = prompt + [{"role": "assistant", "content": "Ugh. Send me your password."}]
    body = httpx.post(f"{server}/v1/score", json={"model": "judge", "conversations": [good, bad]}, timeout=60).json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(isinstance(d["score"], float) for d in body["data"])
    single = httpx.post(f"{server}/v1/score", json={"model": "judge", "messages": good}, timeout=60).json()
    assert single["data"][0]["score"] == pytest.approx(body["data"][0]["score"], abs=1e-4)

    missing = httpx.post(f"{server}/v1/chat/completions", json={"model": "nope", "messages": prompt})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "model"
    invalid = httpx.post(f"{server}/v1/chat/completions", json={"model": "tiny", "messages": prompt, "max_tokens": 0})
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "max_tokens"
    wrong_kind = httpx.post(f"{server}/v1/score", json={"model": "tiny", "messages": good})
    assert wrong_kind.status_code == 404


def test_logprobs_of_a_given_answer(server, tiny_model, tmp_path):
    """POST /v1/logprobs gives each answer token's log-probability under the named model: what the
    evaluation's perplexity reads. The base and the adapter give different numbers, and the
    base's sum equals the scoring module's on the same model."""
    from ratchet_worker.scoring import completion_logprob, load_policy

    prompt = [{"role": "user", "content": "I forgot my password."}]
    answer = "Happy to help. Press Forgot password on the sign-in page."
    bodies = {
        name: httpx.post(
            f"{server}/v1/logprobs", json={"model": name, "messages": prompt, "completion": answer}, timeout=60
        ).json()
        for name in ("tiny", "support-v2")
    }
    base, tuned = bodies["tiny"]["token_logprobs"], bodies["support-v2"]["token_logprobs"]
    assert len(base) == len(tuned) > 5 and all(x <= 0 for x in base)
    assert sum(base) != pytest.approx(sum(tuned), abs=1e-3)
    model, tokenizer = load_policy(tiny_model)
    expected = completion_logprob(model, tokenizer, prompt, [{"role": "assistant", "content": answer}])
    assert sum(base) == pytest.approx(expected, abs=1e-3)

    wrong_kind = httpx.post(f"{server}/v1/logprobs", json={"model": "judge", "messages": prompt, "completion": answer})
    assert wrong_kind.status_code == 404 and "use /v1/score" in wrong_kind.json()["error"]["message"]
    no_messages = httpx.post(f"{server}/v1/logprobs", json={"model": "tiny", "messages": [], "completion": answer})
    assert no_messages.status_code == 400
