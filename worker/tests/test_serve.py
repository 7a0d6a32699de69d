"""`ratchet-worker serve` as a real subprocess, called with the official openai client."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import free_port, run_method, subprocess_env


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, train_pairs) -> dict[str, str]:
    """A chat adapter (sft), a reward-model adapter and the chat adapter merged into a full model."""
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
    paths = {"sft": sft.of("artifacts")[0]["adapter_path"], "reward": reward.of("artifacts")[0]["adapter_path"]}
    paths["merged"] = str(tmp / "merged")
    _merge(tiny_model, paths["sft"], paths["merged"])
    return paths


def _merge(base: str, adapter: str, out: str) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter).merge_and_unload()
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)


@pytest.fixture(scope="module")
def server(tiny_model, trained):
    adapters = f"support-v2={trained['sft']},judge={trained['reward']}"
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


# ---------------------------------------------------------------------------------------------
# Batching: concurrent requests are generated together and answer as if alone
# ---------------------------------------------------------------------------------------------
PROMPTS = [
    "I forgot my password.",
    "Where is my order A1042?",
    "Hi",
    "Can I get a refund for my broken blender? It arrived damaged and the box was open.",
    "Cancel my subscription",
    "What are your opening hours?",
    "My package never arrived and I am upset",
    "How do I change my address?",
]


def _chat(url: str, model: str, prompt: str, max_tokens: int = 40, **extra) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    response = httpx.post(f"{url}/v1/chat/completions", json={"temperature": 0, **body, **extra}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def _at_once(calls):
    """Runs the calls in threads that start together; their results in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _reference_answers(tiny_model: str, adapter: str, cases: list[tuple[str, str]]) -> list[str]:
    """Greedy answers from transformers' own generate, one prompt at a time, no padding."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter).eval()
    answers = []
    for model_name, prompt in cases:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        context = model.disable_adapter() if model_name == "tiny" else contextlib.nullcontext()
        with torch.inference_mode(), context:
            out = model.generate(**ids, max_new_tokens=40, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids["input_ids"].shape[1] :]
        answers.append(tokenizer.decode(new, skip_special_tokens=True))
    return answers


def test_concurrent_greedy_answers_equal_unbatched_ones(server, tiny_model, trained):
    """Eight calls at once, to the base and to an adapter mixed (one batch, left-padded prompts of
    different lengths, rows leaving as they finish), answer exactly what transformers' generate
    answers for each alone, and what the server answers for each alone."""
    cases = [("tiny" if i % 2 else "support-v2", p) for i, p in enumerate(PROMPTS)]
    reference = _reference_answers(tiny_model, trained["sft"], cases)
    together = _at_once([lambda m=m, p=p: _chat(server, m, p) for m, p in cases])
    alone = [_chat(server, m, p) for m, p in cases]
    texts = [r["choices"][0]["message"]["content"] for r in together]
    assert texts == reference
    assert [r["choices"][0]["message"]["content"] for r in alone] == reference
    assert [r["usage"] for r in together] == [r["usage"] for r in alone]
    assert len(set(texts)) > 4  # the prompts and models really differ


def test_concurrent_streams_arrive_interleaved_and_whole(server):
    """Six streams at once each get their own text (equal to the non-streamed answer) in pieces,
    and the pieces of different streams interleave: they were generated together, not in turn."""
    cases = [("tiny" if i % 2 else "support-v2", p) for i, p in enumerate(PROMPTS[:6])]
    # 60 tokens each (past the end of the answer), so that no stream can end before the last
    # thread has even sent its call; the threads send together.
    clients, together = [_client(server) for _ in cases], threading.Barrier(len(cases))

    def stream(model: str, prompt: str) -> tuple[str, list[float], str]:
        client = clients[[p for _, p in cases].index(prompt)]
        together.wait()
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=60,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        text, times, finish = "", [], None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
                times.append(time.monotonic())
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
        return text, times, finish

    results = _at_once([lambda m=m, p=p: stream(m, p) for m, p in cases])
    expected = [_chat(server, m, p, 60, ignore_eos=True)["choices"][0]["message"]["content"] for m, p in cases]
    assert [text for text, _, _ in results] == expected
    assert all(len(times) > 3 and finish in ("stop", "length") for _, times, finish in results)
    first_done = min(times[-1] for _, times, _ in results)
    last_started = max(times[0] for _, times, _ in results)
    assert last_started < first_done  # every stream was under way before any had ended


def test_n_choices_and_seeded_sampling_are_per_request(server):
    """n > 1 choices are rows of one batch; a seeded sampled call gives the same text alone and
    among other calls (each row draws from its own seeded generator)."""
    prompt = "Where is my order A1042?"
    body = _chat(server, "support-v2", prompt, n=3)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) == 1  # greedy: all the same
    seeded = {"temperature": 1.0, "seed": 7}
    alone = _chat(server, "tiny", prompt, **seeded)["choices"][0]["message"]["content"]
    crowd = _at_once(
        [lambda: _chat(server, "tiny", prompt, **seeded)]
        + [lambda p=p: _chat(server, "support-v2", p, temperature=1.0) for p in PROMPTS[:5]]
    )
    assert crowd[0]["choices"][0]["message"]["content"] == alone
    # n seeded choices are n samples: choice 0 is the seed's own answer, the others differ from it.
    several = [c["message"]["content"] for c in _chat(server, "tiny", prompt, n=3, **seeded)["choices"]]
    assert several[0] == alone
    assert len(set(several)) == 3


def test_ignore_eos_generates_exactly_max_tokens(server):
    body = _chat(server, "tiny", "Hi", max_tokens=90, ignore_eos=True)
    assert body["usage"]["completion_tokens"] == 90 and body["choices"][0]["finish_reason"] == "length"


# ---------------------------------------------------------------------------------------------
# Loading and unloading at run time
# ---------------------------------------------------------------------------------------------
def _models(url: str) -> dict[str, dict]:
    return {m["id"]: m for m in httpx.get(f"{url}/v1/models").json()["data"]}


def _post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=120)


def _logprobs(url: str, model: str) -> list[float]:
    body = {"model": model, "messages": [{"role": "user", "content": "I forgot my password."}]}
    response = _post(url, "/v1/logprobs", {**body, "completion": "Open Settings and press Forgot password."})
    assert response.status_code == 200, response.text
    return response.json()["token_logprobs"]


def test_load_and_unload_adapters_merged_models_and_aliases(server, tiny_model, trained):
    """An adapter, a merged model, a reward adapter and a second name for the base are served
    once loaded (each answers like what it is) and refused once unloaded; the base stays."""
    loaded = {
        "hot-adapter": trained["sft"],
        "hot-merged": trained["merged"],
        "hot-judge": trained["reward"],
        "hot-base": tiny_model,
    }
    for name, path in loaded.items():
        response = _post(server, "/v1/models/load", {"name": name, "path": path})
        assert response.status_code == 200, response.text
        assert response.json()["id"] == name
    listed = _models(server)
    assert {n: (listed[n]["kind"], listed[n]["path"]) for n in loaded} == {
        "hot-adapter": ("chat", str(Path(trained["sft"]).resolve())),
        "hot-merged": ("chat", str(Path(trained["merged"]).resolve())),
        "hot-judge": ("reward", str(Path(trained["reward"]).resolve())),
        "hot-base": ("chat", str(Path(tiny_model).resolve())),
    }
    prompt = PROMPTS[0]
    assert _chat(server, "hot-adapter", prompt)["choices"] == _chat(server, "support-v2", prompt)["choices"]
    assert _chat(server, "hot-base", prompt)["choices"] == _chat(server, "tiny", prompt)["choices"]
    # The merged model is the adapter's weights folded in: the same probabilities up to rounding.
    assert _logprobs(server, "hot-merged") == pytest.approx(_logprobs(server, "support-v2"), abs=1e-4)
    assert _logprobs(server, "hot-merged") != pytest.approx(_logprobs(server, "tiny"), abs=1e-3)
    conversation = [{"role": "user", "content": prompt}, {"role": "assistant", "content": "Press Forgot password."}]
    scores = {
        m: _post(server, "/v1/score", {"model": m, "messages": conversation}).json()["data"][0]["score"]
        for m in ("judge", "hot-judge")
    }
    assert scores["hot-judge"] == pytest.approx(scores["judge"], abs=1e-5)

    for name in loaded:
        response = _post(server, "/v1/models/unload", {"name": name})
        assert response.status_code == 200 and response.json()["unloaded"] is True
    assert set(_models(server)) == {"tiny", "support-v2", "judge"}
    for name in ("hot-adapter", "hot-merged", "hot-base"):
        gone = _post(server, "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "Hi"}]})
        assert gone.status_code == 404 and gone.json()["error"]["param"] == "model"
    assert _post(server, "/v1/score", {"model": "hot-judge", "messages": conversation}).status_code == 404
    # What stays answers as before.
    assert _chat(server, "support-v2", prompt)["choices"][0]["message"]["content"]


def test_load_and_unload_refuse_bad_input(server, tmp_path):
    cases = [
        ("/v1/models/load", {"name": "x", "path": str(tmp_path / "missing")}, 400, "path"),
        ("/v1/models/load", {"name": "x", "path": str(tmp_path)}, 400, "path"),  # no model in it
        ("/v1/models/load", {"name": "support-v2", "path": str(tmp_path)}, 409, "name"),
        ("/v1/models/load", {"name": "has space", "path": str(tmp_path)}, 400, "name"),
        ("/v1/models/load", {"name": "x"}, 400, "path"),
        ("/v1/models/unload", {"name": "never-loaded"}, 404, "name"),
        ("/v1/models/unload", {"name": "tiny"}, 400, "name"),
    ]
    for path, body, status, param in cases:
        response = _post(server, path, body)
        assert (response.status_code, response.json()["error"]["param"]) == (status, param), (body, response.text)
    assert set(_models(server)) == {"tiny", "support-v2", "judge"}  # nothing half-loaded


def test_unload_waits_for_requests_in_flight(server, trained):
    """A model unloaded while it streams a long answer finishes that answer; new calls to it are
    refused from the moment the unload starts, and the unload returns after the stream ends."""
    assert _post(server, "/v1/models/load", {"name": "leaving", "path": trained["sft"]}).status_code == 200
    started = threading.Event()
    ended: dict[str, float] = {}

    def long_stream() -> tuple[int, str | None]:
        stream = _client(server).chat.completions.create(
            model="leaving",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=400,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        finish, tokens = None, 0
        for chunk in stream:
            started.set()
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        ended["stream"] = time.monotonic()
        return tokens, finish

    def unload() -> int:
        started.wait(60)
        status = _post(server, "/v1/models/unload", {"name": "leaving"}).status_code
        ended["unload"] = time.monotonic()
        return status

    with ThreadPoolExecutor(2) as pool:
        streaming, unloading = pool.submit(long_stream), pool.submit(unload)
        started.wait(60)
        deadline = time.monotonic() + 30
        while "leaving" in _models(server) and time.monotonic() < deadline:
            time.sleep(0.01)
        hi = [{"role": "user", "content": "Hi"}]
        refused = _post(server, "/v1/chat/completions", {"model": "leaving", "messages": hi})
        assert refused.status_code == 404
        assert "stream" not in ended  # refused while the earlier call was still streaming
        assert streaming.result() == (400, "length")
        assert unloading.result() == 200
    assert ended["unload"] >= ended["stream"] - 0.05


def test_a_stream_the_client_closes_frees_its_row(server):
    """A client that goes away mid-stream stops its generation: the row leaves the batch instead
    of generating the rest of its 400 tokens for nobody."""
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    health = lambda: httpx.get(f"{server}/health").json()  # noqa: E731
    before = health()["generated_tokens"]
    with httpx.stream("POST", f"{server}/v1/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        for _ in range(6):  # the role chunk and a few tokens (with their blank separator lines)
            next(lines)
        assert health()["generating"] == 1
    deadline = time.monotonic() + 30
    while health()["generating"] and time.monotonic() < deadline:
        time.sleep(0.05)
    after = health()
    assert after["generating"] == 0
    assert after["generated_tokens"] - before < 400  # stopped early, not at its max_tokens
