"""Fixtures: a real Ratchet server (the CLI, run from source), a local OpenAI-compatible upstream
and a flaky proxy, all on loopback ports."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# The CLI from source, as `ratchet` runs once built.
CLI_MAIN = str(REPO_ROOT / "packages" / "cli" / "src" / "main-bin.ts")


def cli_command(*args: str) -> List[str]:
    return ["node", "--conditions=source", "--import", "tsx", CLI_MAIN, *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http_server(handler: type) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# ---- a local OpenAI-compatible upstream ---------------------------------------------------------


class UpstreamHandler(BaseHTTPRequestHandler):
    """Answers chat completions at once and deterministically: "You said: <last user message>",
    with " (choice N)" after the first of ``n`` choices.

    Streams as SSE when asked (one chunk per word and choice, the choices interleaved, usage last
    if include_usage); the model "overloaded" gets a 429 and "slow" streams 50 ms per chunk.
    With ``tools`` the answer calls the first tool with the user's text (streamed: the arguments
    in two pieces).
    Also ``GET /models`` and ``POST /embeddings`` (8 floats per input, or base64 when asked).
    Requests (body and headers) are recorded on the server object.
    """

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if not self.path.endswith("/models"):
            return self._json(404, {"error": {"message": "not found"}})
        models = [{"id": "tiny-chat", "object": "model", "created": 1700000000, "owned_by": "local"}]
        self._json(200, {"object": "list", "data": models})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.requests.append({"body": body, "headers": headers})  # type: ignore[attr-defined]
        if self.path.endswith("/embeddings"):
            return self._json(200, _embeddings(body))
        if not self.path.endswith("/chat/completions"):
            return self._json(404, {"error": {"message": "not found"}})
        if body.get("model") == "overloaded":
            return self._json(429, {"error": {"message": "upstream refused with 429", "type": "rate_limit"}})
        user_texts = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
        prompt = user_texts[-1] if user_texts and isinstance(user_texts[-1], str) else ""
        n = body.get("n") if isinstance(body.get("n"), int) and body.get("n") > 1 else 1
        texts = [f"You said: {prompt}" + (f" (choice {i + 1})" if i else "") for i in range(n)]
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": sum(len(t.split()) for t in texts)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": "chatcmpl-local", "created": int(time.time()), "model": body.get("model")}
        tools = body.get("tools") or []
        if tools and body.get("tool_choice") != "none":
            call = {
                "id": "call_0",
                "type": "function",
                "function": {"name": tools[0]["function"]["name"], "arguments": json.dumps({"query": prompt})},
            }
            return self._tool_call(base, call, usage, bool(body.get("stream")))
        if body.get("stream"):
            delay = 0.05 if body.get("model") == "slow" else 0.0
            include_usage = (body.get("stream_options") or {}).get("include_usage")
            try:
                return self._stream(base, texts, usage, include_usage, delay)
            except (BrokenPipeError, ConnectionResetError):
                return  # the gateway went away (its client stopped the stream)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        self._json(200, {**base, "object": "chat.completion", "choices": choices, "usage": usage})

    def _tool_call(self, base: Dict[str, Any], call: Dict[str, Any], usage: Dict[str, int], stream: bool) -> None:
        if not stream:
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            return self._json(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("connection", "close")
        self.end_headers()
        args = call["function"]["arguments"]
        half = len(args) // 2
        first_piece = {**call, "index": 0, "function": {**call["function"], "arguments": args[:half]}}
        deltas = [
            ({"role": "assistant", "content": None, "tool_calls": [first_piece]}, None),
            ({"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]}, None),
            ({}, "tool_calls"),
        ]
        for delta, finish_reason in deltas:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _json(self, status: int, payload: Dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self, base: Dict[str, Any], texts: List[str], usage: Dict[str, int], include_usage: bool, delay: float
    ) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()
        chunk = {**base, "object": "chat.completion.chunk"}

        def event(payload: Any) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()
            if delay:
                time.sleep(delay)

        first = [
            {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None} for i in range(len(texts))
        ]
        event({**chunk, "choices": first})
        pieces = [[w if k == len(t.split(" ")) - 1 else w + " " for k, w in enumerate(t.split(" "))] for t in texts]
        for k in range(max(len(p) for p in pieces)):
            for i, p in enumerate(pieces):
                if k < len(p):
                    event({**chunk, "choices": [{"index": i, "delta": {"content": p[k]}, "finish_reason": None}]})
        event({**chunk, "choices": [{"index": i, "delta": {}, "finish_reason": "stop"} for i in range(len(texts))]})
        if include_usage:
            event({**chunk, "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _embeddings(body: Dict[str, Any]) -> Dict[str, Any]:
    inputs = body.get("input") if isinstance(body.get("input"), list) else [body.get("input")]
    data = []
    for index, text in enumerate(inputs):
        vector = [((len(str(text)) * (d + 1)) % 97) / 97 for d in range(8)]
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack("<8f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(str(t).split()) for t in inputs)
    return {"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@dataclass
class Upstream:
    url: str
    requests: List[Dict[str, Any]]


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    server = start_http_server(UpstreamHandler)
    server.requests = []  # type: ignore[attr-defined]
    yield Upstream(f"http://127.0.0.1:{server.server_address[1]}/v1", server.requests)  # type: ignore[attr-defined]
    server.shutdown()


# ---- the Ratchet server -------------------------------------------------------------------------


# One client for the tests' own reads: a new httpx client per call costs tens of milliseconds.
_http = httpx.Client(timeout=10)


@dataclass
class RatchetServer:
    url: str
    secret_key: str
    public_key: str

    def get(self, path: str) -> httpx.Response:
        return _http.get(self.url + path, headers={"authorization": f"Bearer {self.secret_key}"})

    def post(self, path: str, body: Any) -> httpx.Response:
        return _http.post(self.url + path, json=body, headers={"authorization": f"Bearer {self.secret_key}"})

    def interaction(self, interaction_id: str) -> Dict[str, Any]:
        """GET /api/v1/interactions/:id (with its feedback); fails the test on anything but 200."""
        response = self.get(f"/api/v1/interactions/{interaction_id}")
        assert response.status_code == 200, response.text
        return response.json()


def _create_key(kind: str, env: Dict[str, str]) -> str:
    done = subprocess.run(
        cli_command("keys", "create", "--project", "t", "--kind", kind, "--json"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])["key"]


@pytest.fixture(scope="session")
def ratchet_server(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[RatchetServer]:
    workdir = tmp_path_factory.mktemp("ratchet")
    gateway_config = workdir / "gateway.json"
    gateway_config.write_text(
        json.dumps({"upstreams": {"local": {"baseURL": upstream.url}}, "defaultUpstream": "local"})
    )
    env = {**os.environ, "RATCHET_DATABASE_URL": f"sqlite:{workdir / 'r.db'}", "RATCHET_LOG_LEVEL": "warn"}
    # The first key creates the database; the second is made while the server starts (each
    # node process takes seconds to load from source, and the suite should stay fast).
    secret_key = _create_key("secret", env)
    port = free_port()
    log = open(workdir / "server.log", "w")
    process = subprocess.Popen(
        cli_command("serve", "--port", str(port), "--gateway-config", str(gateway_config)),
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        public_key = _create_key("public", env)
        _wait_until_healthy(url, process, workdir / "server.log")
        yield RatchetServer(url, secret_key, public_key)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_until_healthy(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ratchet serve exited ({process.returncode}): {log_path.read_text()}")
        try:
            if _http.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"ratchet serve did not become healthy: {log_path.read_text()}")


# ---- a flaky proxy --------------------------------------------------------------------------------


@dataclass
class ProxiedRequest:
    path: str
    mode: str
    at: float
    items: int


@dataclass
class FlakyProxy:
    """A real HTTP proxy in front of the Ratchet server that fails the requests a test tells it to.

    ``refuse`` answers the status without passing the request on; ``lose-answer`` passes it on
    (the server commits it) and then answers the status, as when a response is lost.
    """

    target: str
    url: str = ""
    requests: List[ProxiedRequest] = field(default_factory=list)
    faults: List[Dict[str, Any]] = field(default_factory=list)
    always: Optional[Dict[str, Any]] = None

    def fail_next(self, count: int, mode: str, status: int = 503, retry_after: Optional[str] = None) -> None:
        self.faults.extend({"mode": mode, "status": status, "retry_after": retry_after} for _ in range(count))

    def fail_all(self, mode: str, status: int = 503) -> None:
        self.always = {"mode": mode, "status": status, "retry_after": None}

    def heal(self) -> None:
        self.always = None
        self.faults.clear()

    def since(self, n: int) -> List[ProxiedRequest]:
        return self.requests[n:]


def _proxy_handler(proxy: FlakyProxy) -> type:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            try:
                items = len(json.loads(body).get("items", [None]))
            except ValueError:
                items = 0
            with lock:
                fault = proxy.always or (proxy.faults.pop(0) if proxy.faults else None)
                mode = fault["mode"] if fault else "forward"
                proxy.requests.append(ProxiedRequest(self.path, mode, time.monotonic(), items))
            if fault and fault["mode"] == "refuse":
                return self._fail(fault)
            answer = _http.post(
                proxy.target + self.path,
                content=body,
                headers={k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")},
            )
            if fault and fault["mode"] == "lose-answer":
                return self._fail(fault)
            self._send(answer.status_code, answer.content, {"content-type": answer.headers.get("content-type", "")})

        def _fail(self, fault: Dict[str, Any]) -> None:
            headers = {"content-type": "application/json"}
            if fault["retry_after"] is not None:
                headers["retry-after"] = fault["retry_after"]
            payload = {"error": {"code": "unavailable", "message": f"proxy says {fault['status']}"}}
            self._send(fault["status"], json.dumps(payload).encode(), headers)

        def _send(self, status: int, data: bytes, headers: Dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture(scope="session")
def _proxy_server(ratchet_server: RatchetServer) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(target=ratchet_server.url)
    server = start_http_server(_proxy_handler(proxy))
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield proxy
    server.shutdown()


@pytest.fixture
def proxy(_proxy_server: FlakyProxy) -> Iterator[FlakyProxy]:
    _proxy_server.heal()
    yield _proxy_server
    _proxy_server.heal()
