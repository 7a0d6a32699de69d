"""`ratchet-worker serve`: an OpenAI-compatible server for a local base model and its adapters.

  POST /v1/chat/completions  generation (streaming SSE or not); `model` picks the base or an adapter
  GET  /v1/models            what can be called
  POST /v1/score             reward-model scores for conversations
  POST /v1/logprobs          log-probabilities of a given answer's tokens (for perplexity)
  GET  /health               liveness and the loaded models

Adapters are read from their adapter_config.json: causal-LM LoRA adapters share one base model
in memory and are switched per request; SEQ_CLS adapters (reward models from `train`'s `reward`
method) are served at /v1/score. A folder without adapter_config.json is a full model. One
request runs on the model at a time (a lock): this is the embedded, single-machine server; vLLM
or another engine takes over when throughput matters.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from .device import inference_device, inference_dtype


# ---------------------------------------------------------------------------------------------
# Request bodies (OpenAI's field names; unknown fields are ignored as OpenAI does)
# ---------------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=8)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    seed: int | None = None


class LogprobsRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    completion: str


class ScoreRequest(BaseModel):
    model: str
    messages: list[ChatMessage] | None = None
    conversations: list[list[ChatMessage]] | None = None


DEFAULT_MAX_TOKENS = 128


def _text(message: ChatMessage) -> dict[str, str]:
    """OpenAI allows content as a list of parts; a text model takes their text joined."""
    content = message.content
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    role = "system" if message.role == "developer" else message.role
    return {"role": role, "content": content or ""}


def parse_adapters(value: str | dict[str, str] | None) -> dict[str, str]:
    """ "name=path,name2=path2" (the CLI form) or a dict -> {name: path}."""
    if not value:
        return {}
    if isinstance(value, dict):
        return dict(value)
    out = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapters: expected name=path, got {item!r}")
        out[name.strip()] = path.strip()
    return out


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def _adapter_task(path: Path) -> str | None:
    """ "SEQ_CLS", "CAUSAL_LM", ... for a PEFT adapter folder; None for a full model folder."""
    config = path / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("task_type") or "CAUSAL_LM"


def _is_classifier(path: Path) -> bool:
    config = json.loads((path / "config.json").read_text())
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


class ModelHost:
    """Holds the base model, its adapters and any full models; runs one request at a time."""

    def __init__(self, base: str, adapters: dict[str, str], base_name: str | None = None) -> None:
        from transformers import AutoTokenizer

        self.base_path = Path(base)
        self.base_name = base_name or self.base_path.name
        self.device = inference_device()
        self.dtype = inference_dtype()
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lock = threading.Lock()
        self.lm = self._load_causal(base)
        self.lm_adapters: list[str] = []
        self.reward_base = None
        self.reward_adapters: list[str] = []
        self.full_models: dict[str, tuple[str, Any]] = {}  # name -> (kind, model)
        for name, path in adapters.items():
            self._add(name, Path(path))

    # -- loading ---------------------------------------------------------------------------
    def _load_causal(self, path: str | Path):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        return model.to(self.device).eval()

    def _load_classifier(self, path: str | Path):
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=self.dtype)
        model.config.pad_token_id = self.tokenizer.pad_token_id
        return model.to(self.device).eval()

    def _add(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if name == self.base_name or name in self.names():
            raise ValueError(f"adapter name {name!r} is used twice")
        if not path.is_dir():
            raise ValueError(f"adapter {name!r}: no folder at {path}")
        task = _adapter_task(path)
        if task is None:
            kind = "reward" if _is_classifier(path) else "chat"
            model = self._load_classifier(path) if kind == "reward" else self._load_causal(path)
            self.full_models[name] = (kind, model)
        elif task == "SEQ_CLS":
            if self.reward_base is None:
                self.reward_base = PeftModel.from_pretrained(
                    self._load_classifier(self.base_path), str(path), adapter_name=name
                ).eval()
            else:
                self.reward_base.load_adapter(str(path), adapter_name=name)
            self.reward_adapters.append(name)
        else:
            if not self.lm_adapters:
                self.lm = PeftModel.from_pretrained(self.lm, str(path), adapter_name=name).eval()
            else:
                self.lm.load_adapter(str(path), adapter_name=name)
            self.lm_adapters.append(name)

    # -- lookup ----------------------------------------------------------------------------
    def chat_models(self) -> list[str]:
        full = [n for n, (kind, _) in self.full_models.items() if kind == "chat"]
        return [self.base_name, *self.lm_adapters, *full]

    def reward_models(self) -> list[str]:
        full = [n for n, (kind, _) in self.full_models.items() if kind == "reward"]
        return [*self.reward_adapters, *full]

    def names(self) -> list[str]:
        return [*self.chat_models(), *self.reward_models()]

    @contextlib.contextmanager
    def _chat_model(self, name: str) -> Iterator[Any]:
        """The model to generate with; adapters are switched on the shared base (under the lock)."""
        if name in self.full_models:
            yield self.full_models[name][1]
        elif name in self.lm_adapters:
            self.lm.set_adapter(name)
            yield self.lm
        elif self.lm_adapters:  # the base, with every adapter switched off
            with self.lm.disable_adapter():
                yield self.lm
        else:
            yield self.lm

    @contextlib.contextmanager
    def _reward_model(self, name: str) -> Iterator[Any]:
        if name in self.full_models:
            yield self.full_models[name][1]
        else:
            self.reward_base.set_adapter(name)
            yield self.reward_base

    # -- work ------------------------------------------------------------------------------
    def _encode(self, messages: list[dict[str, str]]):
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return {k: v.to(self.device) for k, v in encoded.items()}

    def generate(self, req: ChatRequest, streamer=None) -> Generation:
        import torch

        messages = [_text(m) for m in req.messages]
        max_new = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
        inputs = self._encode(messages)
        prompt_len = inputs["input_ids"].shape[1]
        sample = req.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if sample:
            kwargs.update(temperature=req.temperature, top_p=req.top_p, top_k=0)
        with self.lock, torch.inference_mode(), self._chat_model(req.model) as model:
            if req.seed is not None:
                torch.manual_seed(req.seed)
            output = model.generate(**inputs, **kwargs, streamer=streamer)
        new_tokens = output[0, prompt_len:].tolist()
        ended = self.tokenizer.eos_token_id in new_tokens
        if ended:
            new_tokens = new_tokens[: new_tokens.index(self.tokenizer.eos_token_id)]
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        text, stopped = apply_stop(text, req.stop)
        finish = "stop" if ended or stopped or len(new_tokens) < max_new else "length"
        return Generation(text, prompt_len, len(new_tokens), finish)

    def logprobs(self, name: str, messages: list[dict[str, str]], completion: str) -> list[float]:
        """log p of each token of `completion` as the model's answer to `messages` (for perplexity)."""
        from .scoring import completion_token_logprobs

        answer = [{"role": "assistant", "content": completion}]
        with self.lock, self._chat_model(name) as model:
            return completion_token_logprobs(model, self.tokenizer, messages, answer)

    def score(self, name: str, conversations: list[list[dict[str, str]]]) -> list[float]:
        import torch

        texts = [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        self.tokenizer.padding_side = "right"
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.lock, torch.inference_mode(), self._reward_model(name) as model:
            logits = model(**batch).logits
        return [float(x) for x in logits[:, 0].float().cpu()]


def apply_stop(text: str, stop: str | list[str] | None) -> tuple[str, bool]:
    """Cut the text at the first stop sequence; says whether one was found."""
    stops = [stop] if isinstance(stop, str) else (stop or [])
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
def _error(status: int, message: str, param: str | None = None, code: str | None = None):
    from fastapi.responses import JSONResponse

    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _chunk(cid: str, created: int, model: str, delta: dict, finish: str | None) -> str:
    payload = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n"


def _stream(host: ModelHost, req: ChatRequest) -> Iterator[str]:
    """SSE chunks as tokens are produced; generation runs in a thread feeding a streamer."""
    from transformers import TextIteratorStreamer

    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    streamer = TextIteratorStreamer(host.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["generation"] = host.generate(req, streamer=streamer)
        except Exception as err:  # noqa: BLE001 - surfaced to the client below
            result["error"] = err
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    yield _chunk(cid, created, req.model, {"role": "assistant", "content": ""}, None)
    sent = ""
    for piece in streamer:
        candidate, stopped = apply_stop(sent + piece, req.stop)
        if len(candidate) > len(sent):
            yield _chunk(cid, created, req.model, {"content": candidate[len(sent) :]}, None)
            sent = candidate
        if stopped:
            # Keep consuming so the generating thread never blocks; the streamer ends once.
            for _ in streamer:
                pass
            break
    thread.join()
    if "error" in result:
        yield f"data: {json.dumps({'error': {'message': str(result['error']), 'type': 'server_error'}})}\n\n"
        yield "data: [DONE]\n\n"
        return
    gen: Generation = result["generation"]
    yield _chunk(cid, created, req.model, {}, gen.finish_reason)
    if req.stream_options and req.stream_options.include_usage:
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [],
            "usage": _usage(gen),
        }
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


def _usage(*gens: Generation) -> dict[str, int]:
    prompt = gens[0].prompt_tokens if gens else 0
    completion = sum(g.completion_tokens for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app(host: ModelHost):
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    app = FastAPI(title="ratchet-worker", version="0.1.0")

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        loc = [str(p) for p in first.get("loc", []) if p != "body"]
        param = ".".join(loc) or None
        return _error(400, f"{param or 'body'}: {first.get('msg', 'invalid value')}", param)

    @app.get("/health")
    def health():
        return {"status": "ok", "device": host.device, "models": host.names()}

    @app.get("/v1/models")
    def models():
        created = int(time.time())
        data = [
            {"id": n, "object": "model", "created": created, "owned_by": "ratchet", "kind": "chat"}
            for n in host.chat_models()
        ] + [
            {"id": n, "object": "model", "created": created, "owned_by": "ratchet", "kind": "reward"}
            for n in host.reward_models()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        if req.model not in host.chat_models():
            hint = " (a reward model: use /v1/score)" if req.model in host.reward_models() else ""
            return _error(404, f"model {req.model!r} not found{hint}", "model", "model_not_found")
        if req.stream:
            if req.n != 1:
                return _error(400, "n > 1 is not supported with stream", "n")
            return StreamingResponse(_stream(host, req), media_type="text/event-stream")
        gens = [await run_in_threadpool(host.generate, req) for _ in range(req.n)]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason,
                    "logprobs": None,
                }
                for i, g in enumerate(gens)
            ],
            "usage": _usage(*gens),
        }

    @app.post("/v1/logprobs")
    async def logprobs(req: LogprobsRequest):
        if req.model not in host.chat_models():
            hint = " (a reward model: use /v1/score)" if req.model in host.reward_models() else ""
            return _error(404, f"model {req.model!r} not found{hint}", "model", "model_not_found")
        plain = [_text(m) for m in req.messages]
        token_logprobs = await run_in_threadpool(host.logprobs, req.model, plain, req.completion)
        return {"object": "logprobs", "model": req.model, "token_logprobs": token_logprobs}

    @app.post("/v1/score")
    async def score(req: ScoreRequest):
        if req.model not in host.reward_models():
            return _error(404, f"reward model {req.model!r} not found", "model", "model_not_found")
        if (req.messages is None) == (req.conversations is None):
            return _error(400, "give exactly one of messages or conversations", "messages")
        conversations = [req.messages] if req.messages is not None else req.conversations
        if not conversations or any(not c for c in conversations):
            return _error(400, "conversations must be non-empty", "conversations")
        plain = [[_text(m) for m in c] for c in conversations]
        scores = await run_in_threadpool(host.score, req.model, plain)
        return {
            "object": "list",
            "model": req.model,
            "data": [{"object": "score", "index": i, "score": s} for i, s in enumerate(scores)],
        }

    return app


def run_server(base: str, adapters: str | dict[str, str], host: str, port: int, base_name: str | None) -> None:
    """Load the models, then serve; prints one `ready` JSON line on stdout once listening."""
    import uvicorn

    model_host = ModelHost(base, parse_adapters(adapters), base_name)
    server = uvicorn.Server(uvicorn.Config(create_app(model_host), host=host, port=port, log_level="warning"))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready = {"type": "ready", "host": host, "port": port, "models": model_host.names()}
            print(json.dumps(ready), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    if not server.started:
        raise SystemExit(f"could not listen on {host}:{port}")
