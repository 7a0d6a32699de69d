"""`ratchet-worker serve`: an OpenAI-compatible server for a local base model and its adapters.

  POST /v1/chat/completions  generation (streaming SSE or not); `model` picks the base or an adapter
  GET  /v1/models            what can be called (name, kind, folder)
  POST /v1/models/load       {name, path}: serve an adapter, a full (merged) model or the base under a name
  POST /v1/models/unload     {name}: stop serving it (freed once its requests in flight have finished)
  POST /v1/score             reward-model scores for conversations
  POST /v1/logprobs          log-probabilities of a given answer's tokens (for perplexity)
  GET  /health               liveness and the loaded models

Adapters are read from their adapter_config.json: causal-LM LoRA adapters share one base model
in memory; SEQ_CLS adapters (reward models from `train`'s `reward` method) are served at
/v1/score. A folder without adapter_config.json is a full model. Generation is batched across
concurrent requests and adapters by the engine (`engine.py`); models are loaded and unloaded
while it runs, so the server never restarts to change what it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from .device import inference_device, inference_dtype
from .engine import Finish, Sequence


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
    # vLLM's extension: generate max_tokens tokens even past the end-of-answer token (benchmarks).
    ignore_eos: bool = False


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
def _adapter_task(path: Path) -> str | None:
    """ "SEQ_CLS", "CAUSAL_LM", ... for a PEFT adapter folder; None for a full model folder."""
    config = path / "adapter_config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("task_type") or "CAUSAL_LM"


def _is_classifier(path: Path) -> bool:
    config = json.loads((path / "config.json").read_text())
    return any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or [])


@dataclass
class Served:
    """A name callers can use: what answers to it and how many requests are using it now."""

    kind: Literal["chat", "reward"]
    path: str
    family: str  # chat: "" for the base and its adapters, else the full model's own name
    adapter: str | None  # LoRA adapter on the shared base (chat) or classifier base (reward)
    model: Any = None  # a full model's weights
    users: int = 0


class ModelHost:
    """Holds the base model, its adapters and any full models, loaded at start or at run time.

    Chat generation goes through the batching engine; scoring and log-probabilities run between
    its steps (one lock guards every forward pass and every change to the models). A model being
    unloaded stops being callable at once and is freed when its last request has finished.
    """

    def __init__(
        self,
        base: str,
        adapters: dict[str, str],
        base_name: str | None = None,
        max_batch: int = 16,
        batch_window_ms: float = 4.0,
    ) -> None:
        from transformers import AutoTokenizer

        from .engine import Engine

        self.base_path = Path(base).resolve()
        self.base_name = base_name or self.base_path.name
        self.device = inference_device()
        self.dtype = inference_dtype()
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lock = threading.RLock()  # every forward pass, every change to the models
        self.admin = threading.Lock()  # one load or unload at a time
        self.names = threading.Lock()  # `served` and the `users` counts (never held for long)
        self.lm = self._load_causal(base)
        self.reward_base = None
        self.full_models: dict[str, Any] = {}  # full chat models by name, until freed
        self.served: dict[str, Served] = {self.base_name: Served("chat", str(self.base_path), "", None)}
        self.engine = Engine(
            self.tokenizer, self.device, self._family_model, self.lock, max_batch, batch_window_ms / 1000
        )
        for name, path in adapters.items():
            self.load(name, path)

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

    def load(self, name: str, path: str) -> Served:
        """Serves the model at `path` (a LoRA adapter of the base, a full model, or the base itself,
        which then also answers to `name`) under `name`, while requests keep being answered."""
        with self.admin:
            if name in self.served:
                raise LoadError(409, f"model {name!r} is already served", "name")
            folder = Path(path).resolve()
            if not folder.is_dir():
                raise LoadError(400, f"model {name!r}: no folder at {path}", "path")
            if folder == self.base_path:
                entry = Served("chat", str(folder), "", None)
            else:
                try:
                    entry = self._load_entry(name, folder)
                except LoadError:
                    raise
                except Exception as err:  # noqa: BLE001 - a broken folder is the caller's input
                    raise LoadError(400, f"model {name!r}: cannot load {path}: {err}", "path") from err
            with self.names:
                if entry.kind == "chat" and entry.model is not None:
                    self.full_models[name] = entry.model
                self.served[name] = entry
            return entry

    def _load_entry(self, name: str, folder: Path) -> Served:
        from peft import PeftModel

        task = _adapter_task(folder)
        if task is None:  # a full (e.g. merged) model: loaded aside, then made callable
            if not (folder / "config.json").is_file():
                why = f"model {name!r}: {folder} has neither adapter_config.json nor config.json"
                raise LoadError(400, why, "path")
            if _is_classifier(folder):
                return Served("reward", str(folder), name, None, self._load_classifier(folder))
            return Served("chat", str(folder), name, None, self._load_causal(folder))
        if task == "SEQ_CLS":
            classifier = self._load_classifier(self.base_path) if self.reward_base is None else None
            with self.lock:
                if self.reward_base is None:
                    self.reward_base = PeftModel.from_pretrained(classifier, str(folder), adapter_name=name).eval()
                else:
                    self._load_adapter(self.reward_base, name, folder)
            return Served("reward", str(folder), "", name)
        with self.lock:  # the engine waits between two steps while the base gains the adapter
            if isinstance(self.lm, PeftModel):
                self._load_adapter(self.lm, name, folder)
            else:
                self.lm = PeftModel.from_pretrained(self.lm, str(folder), adapter_name=name).eval()
        return Served("chat", str(folder), "", name)

    @staticmethod
    def _load_adapter(model: Any, name: str, folder: Path) -> None:
        try:
            model.load_adapter(str(folder), adapter_name=name)
        except Exception:
            if name in model.peft_config:  # nothing half-loaded stays behind
                model.delete_adapter(name)
            raise
        model.eval()

    def unload(self, name: str) -> Served:
        """Stops serving `name` at once (new requests get 404) and frees it once the requests
        already using it have finished."""
        with self.admin:
            if name == self.base_name:
                raise LoadError(400, f"{name!r} is the base model; it is served as long as the worker runs", "name")
            with self.names:
                entry = self.served.pop(name, None)
            if entry is None:
                raise LoadError(404, f"model {name!r} is not served", "name")
            while entry.users:
                time.sleep(0.01)
            with self.lock:
                self._free(entry)
            return entry

    def _free(self, entry: Served) -> None:
        if entry.model is not None:
            self.full_models.pop(entry.family, None)
            entry.model = None
        elif entry.adapter and entry.kind == "reward":
            self.reward_base.delete_adapter(entry.adapter)
            if not self.reward_base.peft_config:
                self.reward_base = None
        elif entry.adapter:
            self.lm.delete_adapter(entry.adapter)
            if not self.lm.peft_config:  # the last adapter: back to the plain base
                self.lm = self.lm.unload()

    # -- lookup ----------------------------------------------------------------------------
    def chat_models(self) -> list[str]:
        return [n for n, e in list(self.served.items()) if e.kind == "chat"]

    def reward_models(self) -> list[str]:
        return [n for n, e in list(self.served.items()) if e.kind == "reward"]

    def model_names(self) -> list[str]:
        return [*self.chat_models(), *self.reward_models()]

    @contextlib.contextmanager
    def using(self, name: str, kind: str) -> Iterator[Served | None]:
        """The served entry for `name` (None if there is none of that kind), counted as in use."""
        entry = self.acquire(name, kind)
        try:
            yield entry
        finally:
            if entry is not None:
                self.release(entry)

    def acquire(self, name: str, kind: str) -> Served | None:
        with self.names:
            entry = self.served.get(name)
            if entry is None or entry.kind != kind:
                return None
            entry.users += 1
            return entry

    def release(self, entry: Served) -> None:
        with self.names:
            entry.users -= 1

    def _family_model(self, family: str) -> Any:
        """For the engine (under the lock): a full model stays here until its last request ends."""
        return self.lm if family == "" else self.full_models[family]

    @contextlib.contextmanager
    def _chat_model(self, entry: Served) -> Iterator[Any]:
        """The model to run one pass with (under the lock): adapters are switched on the base."""
        from peft import PeftModel

        if entry.model is not None:
            yield entry.model
        elif entry.adapter:
            self.lm.set_adapter(entry.adapter)
            yield self.lm
        elif isinstance(self.lm, PeftModel):  # the base, with every adapter switched off
            with self.lm.disable_adapter():
                yield self.lm
        else:
            yield self.lm

    @contextlib.contextmanager
    def _reward_model(self, entry: Served) -> Iterator[Any]:
        if entry.model is not None:
            yield entry.model
        else:
            self.reward_base.set_adapter(entry.adapter)
            yield self.reward_base

    # -- work ------------------------------------------------------------------------------
    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
        return list(encoded["input_ids"])

    def submit(self, entry: Served, req: ChatRequest, emit, choice: int = 0) -> Sequence:
        """Queues choice `choice` of `req` on the engine; `emit` gets its text and its end."""
        import torch

        generator = None
        if req.seed is not None and req.temperature > 0:
            # Each choice draws from its own stream (the seed plus its index), so `n` seeded choices
            # are `n` samples, not one sample `n` times; choice 0 is what the seed gives alone.
            generator = torch.Generator().manual_seed(req.seed + choice)
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        seq = Sequence(
            family=entry.family,
            adapter=entry.adapter if entry.kind == "chat" else None,
            prompt_ids=self.prompt_ids([_text(m) for m in req.messages]),
            max_new=req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS,
            temperature=req.temperature,
            top_p=req.top_p,
            stops=stops,
            emit=emit,
            generator=generator,
            ignore_eos=req.ignore_eos,
        )
        self.engine.submit(seq)
        return seq

    def logprobs(self, entry: Served, messages: list[dict[str, str]], completion: str) -> list[float]:
        """log p of each token of `completion` as the model's answer to `messages` (for perplexity)."""
        from .scoring import completion_token_logprobs

        answer = [{"role": "assistant", "content": completion}]
        with self.lock, self._chat_model(entry) as model:
            return completion_token_logprobs(model, self.tokenizer, messages, answer)

    def score(self, entry: Served, conversations: list[list[dict[str, str]]]) -> list[float]:
        import torch

        texts = [self.tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        self.tokenizer.padding_side = "right"
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with self.lock, torch.inference_mode(), self._reward_model(entry) as model:
            logits = model(**batch).logits
        return [float(x) for x in logits[:, 0].float().cpu()]


class LoadError(Exception):
    """A load or unload the caller asked for that cannot be done: an HTTP status and the field."""

    def __init__(self, status: int, message: str, param: str) -> None:
        super().__init__(message)
        self.status, self.param = status, param


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------
class LoadRequest(BaseModel):
    name: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")
    path: str = Field(min_length=1, max_length=4096)


class UnloadRequest(BaseModel):
    name: str = Field(min_length=1, max_length=256)


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


def _usage(prompt: int, *finishes: Finish) -> dict[str, int]:
    completion = sum(f.completion_tokens for f in finishes)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _choices(
    host: ModelHost, entry: Served, req: ChatRequest, count: int
) -> tuple[list[asyncio.Queue], list[Sequence]]:
    """Submits `count` choices; each queue gets ("delta", text)... then ("done", Finish) or
    ("error", err). The entry counts as in use until the last choice has ended."""
    loop = asyncio.get_running_loop()
    queues: list[asyncio.Queue] = []
    seqs: list[Sequence] = []
    left = [count]

    def emitter(queue: asyncio.Queue):
        def emit(kind: str, value: Any) -> None:
            if kind != "delta":
                with host.names:
                    left[0] -= 1
                    last = left[0] == 0
                if last:
                    host.release(entry)
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        return emit

    for choice in range(count):
        queue: asyncio.Queue = asyncio.Queue()
        queues.append(queue)
        seqs.append(host.submit(entry, req, emitter(queue), choice))
    return queues, seqs


def _stream_response(chunks: AsyncIterator[str], seq: Sequence):
    """SSE chunks as the engine produces the tokens. A client that goes away frees its row at
    once: uvicorn drops writes to a closed connection without an error, so the connection's
    disconnect message is watched for alongside the sending."""
    from fastapi.responses import StreamingResponse

    class Stream(StreamingResponse):
        async def __call__(self, scope, receive, send) -> None:
            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                seq.cancelled = True

            watcher = asyncio.ensure_future(watch())
            try:
                await super().__call__(scope, receive, send)
            finally:
                watcher.cancel()
                seq.cancelled = True  # a no-op once the sequence has finished

    return Stream(chunks, media_type="text/event-stream")


async def _chunks(queue: asyncio.Queue, req: ChatRequest, prompt_tokens: int) -> AsyncIterator[str]:
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    yield _chunk(cid, created, req.model, {"role": "assistant", "content": ""}, None)
    while True:
        kind, value = await queue.get()
        if kind == "delta":
            yield _chunk(cid, created, req.model, {"content": value}, None)
        elif kind == "error":
            yield f"data: {json.dumps({'error': {'message': str(value), 'type': 'server_error'}})}\n\n"
            yield "data: [DONE]\n\n"
            return
        else:
            break
    finish: Finish = value
    yield _chunk(cid, created, req.model, {}, finish.finish_reason)
    if req.stream_options and req.stream_options.include_usage:
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [],
            "usage": _usage(prompt_tokens, finish),
        }
        yield f"data: {json.dumps(usage)}\n\n"
    yield "data: [DONE]\n\n"


async def _collect(queue: asyncio.Queue) -> Finish:
    while True:
        kind, value = await queue.get()
        if kind == "error":
            raise value
        if kind == "done":
            return value


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
        return {
            "status": "ok",
            "pid": os.getpid(),  # so a caller can tell the process was never restarted
            "device": host.device,
            "models": host.model_names(),
            "generating": host.engine.busy(),
            "generated_tokens": host.engine.generated,
        }

    def listing(name: str, entry: Served, created: int) -> dict[str, Any]:
        kind, path = entry.kind, entry.path
        return {"id": name, "object": "model", "created": created, "owned_by": "ratchet", "kind": kind, "path": path}

    @app.get("/v1/models")
    def models():
        created = int(time.time())
        with host.names:
            served = list(host.served.items())
        ordered = [x for x in served if x[1].kind == "chat"] + [x for x in served if x[1].kind == "reward"]
        return {"object": "list", "data": [listing(n, e, created) for n, e in ordered]}

    @app.post("/v1/models/load")
    async def load(req: LoadRequest):
        try:
            entry = await run_in_threadpool(host.load, req.name, req.path)
        except LoadError as err:
            return _error(err.status, str(err), err.param)
        return listing(req.name, entry, int(time.time()))

    @app.post("/v1/models/unload")
    async def unload(req: UnloadRequest):
        try:
            entry = await run_in_threadpool(host.unload, req.name)
        except LoadError as err:
            return _error(err.status, str(err), err.param)
        return {**listing(req.name, entry, int(time.time())), "unloaded": True}

    def not_found(name: str):
        hint = " (a reward model: use /v1/score)" if name in host.reward_models() else ""
        return _error(404, f"model {name!r} not found{hint}", "model", "model_not_found")

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        if req.stream and req.n != 1:
            return _error(400, "n > 1 is not supported with stream", "n")
        entry = host.acquire(req.model, "chat")
        if entry is None:
            return not_found(req.model)
        try:
            prompt_tokens = len(host.prompt_ids([_text(m) for m in req.messages]))
            queues, seqs = _choices(host, entry, req, req.n)
        except Exception:
            host.release(entry)
            raise
        if req.stream:
            return _stream_response(_chunks(queues[0], req, prompt_tokens), seqs[0])
        try:
            finishes = [await _collect(q) for q in queues]
        except Exception as err:  # noqa: BLE001 - the engine's error, as OpenAI's error shape
            return _error(500, f"generation failed: {err}")
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [
                {
                    "index": i,
                    "message": {"role": "assistant", "content": f.text},
                    "finish_reason": f.finish_reason,
                    "logprobs": None,
                }
                for i, f in enumerate(finishes)
            ],
            "usage": _usage(prompt_tokens, *finishes),
        }

    @app.post("/v1/logprobs")
    async def logprobs(req: LogprobsRequest):
        plain = [_text(m) for m in req.messages]
        with host.using(req.model, "chat") as entry:
            if entry is None:
                return not_found(req.model)
            token_logprobs = await run_in_threadpool(host.logprobs, entry, plain, req.completion)
        return {"object": "logprobs", "model": req.model, "token_logprobs": token_logprobs}

    @app.post("/v1/score")
    async def score(req: ScoreRequest):
        if (req.messages is None) == (req.conversations is None):
            if req.model not in host.reward_models():
                return _error(404, f"reward model {req.model!r} not found", "model", "model_not_found")
            return _error(400, "give exactly one of messages or conversations", "messages")
        conversations = [req.messages] if req.messages is not None else req.conversations
        with host.using(req.model, "reward") as entry:
            if entry is None:
                return _error(404, f"reward model {req.model!r} not found", "model", "model_not_found")
            if not conversations or any(not c for c in conversations):
                return _error(400, "conversations must be non-empty", "conversations")
            plain = [[_text(m) for m in c] for c in conversations]
            scores = await run_in_threadpool(host.score, entry, plain)
        return {
            "object": "list",
            "model": req.model,
            "data": [{"object": "score", "index": i, "score": s} for i, s in enumerate(scores)],
        }

    return app


def run_server(
    base: str,
    adapters: str | dict[str, str],
    host: str,
    port: int,
    base_name: str | None,
    max_batch: int = 16,
    batch_window_ms: float = 4.0,
) -> None:
    """Load the models, then serve; prints one `ready` JSON line on stdout once listening."""
    import uvicorn

    model_host = ModelHost(base, parse_adapters(adapters), base_name, max_batch, batch_window_ms)
    server = uvicorn.Server(uvicorn.Config(create_app(model_host), host=host, port=port, log_level="warning"))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready = {"type": "ready", "host": host, "port": port, "models": model_host.model_names()}
            print(json.dumps(ready), flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()
    if not server.started:
        raise SystemExit(f"could not listen on {host}:{port}")
