"""Deterministic fake OpenAI-compatible HTTP server (stdlib only).

A real Letta server (and Letta Code, through it) is pointed at this instead of
a real model: ``OPENAI_API_BASE=<base_url>``. It speaks the OpenAI wire format
the official ``openai`` SDK parses: ``/v1/models``, ``/v1/embeddings`` (float and
base64) and ``/v1/chat/completions`` (plain and SSE streaming, with tool calls),
and, at ``/mcp``, a deterministic MCP server (``fake_mcp``).
Replies are a pure function of the request, so tests can assert on them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import unquote, urlsplit

from . import fake_mcp
from .fake_llm_replies import (REPLY_PREFIX, embed, fill_args, last_tool_name, last_user_text, scripted_call,
                               split_text, word_count)

CREATED = 1700000000  # fixed timestamp: keeps every response byte-for-byte reproducible


class FakeLLM:
    """Fake OpenAI endpoint in a background thread. Use as a context manager."""

    api_key = "sk-fake-llm"  # not a secret: servers just need *some* OPENAI_API_KEY
    # A real model takes time to answer. Letta 0.16.2 writes a step's metrics twice from racing
    # tasks; an instant reply makes them collide and the request hangs 60 s, then fails with 500.
    chat_delay = 0.25
    # True in FakeOllama (fake_ollama.py): OpenAI paths only under /v1, others "404 page not found".
    strict_v1 = False

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = "fake-gpt",
                 embedding_model: str = "fake-embedding", embedding_dim: int = 1536,
                 log_path: str | os.PathLike | None = None, context_window: int = 128000,
                 keep_alive: bool = False):
        self.host, self.port = host, port
        # Off: every answer says "Connection: close" and the socket is closed after it. Letta opens a
        # new OpenAI client per call and never closes it; a kept-alive connection of such a client
        # is torn down later by the garbage collector in an order that can remove a reused file
        # descriptor from Letta's event loop (docs/internals.md, "Known Letta bug"). On: HTTP/1.1
        # keep-alive, as a real endpoint does, to reproduce that stall.
        self.keep_alive = keep_alive
        self.model, self.embedding_model = model, embedding_model
        self.embedding_dim, self.context_window = embedding_dim, context_window
        self.log_path = os.fspath(log_path) if log_path is not None else None
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._conns: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> FakeLLM:
        if self._server is not None:
            return self
        server = _Server((self.host, self.port), _Handler)
        server.fake = self
        self._server, self.port = server, server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        # Idle keep-alive connections would otherwise keep handler threads parked.
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def server_env(self) -> dict[str, str]:
        return {"OPENAI_API_KEY": self.api_key, "OPENAI_API_BASE": self.base_url}

    def native(self, method: str, path: str, body: Any) -> tuple[int, dict] | None:
        """A provider's own API beside the OpenAI one (FakeOllama's /api/*): (status, JSON) or None."""
        return None

    # -- bookkeeping -----------------------------------------------------------
    def _record(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.requests.append({"path": path, "method": method, "body": body, "time": time.time()})

    def _uid(self, body: dict) -> str:
        """Deterministic for a given request sequence, yet unique per response (counter salt)."""
        with self._lock:
            n = next(self._counter)
        return hashlib.sha256(f"{json.dumps(body, sort_keys=True, default=str)}#{n}".encode()).hexdigest()[:24]

    def _log(self, line: str) -> None:
        if self.log_path:
            with self._lock, open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

    def _model_record(self, model_id: str) -> dict:
        rec = {"id": model_id, "object": "model", "created": CREATED, "owned_by": "fake-llm"}
        if model_id != self.embedding_model:
            # Letta's OpenAI provider reads this to size the context window of unknown models.
            rec["context_length"] = self.context_window
        return rec

    # -- embeddings ------------------------------------------------------------
    def embeddings(self, body: dict) -> dict:
        raw = body.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
            items = [raw]  # one string, or one list of token ids
        elif isinstance(raw, list) and raw:
            items = raw
        else:
            raise _BadRequest("'input' must be a non-empty string or array")
        dim = int(body.get("dimensions") or self.embedding_dim)
        as_b64 = body.get("encoding_format") == "base64"
        data, tokens = [], 0
        for i, item in enumerate(items):
            vec = embed(json.dumps(item), dim)
            tokens += len(item.split()) if isinstance(item, str) else len(item)
            emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode() if as_b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return {"object": "list", "data": data, "model": body.get("model") or self.embedding_model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # -- chat ------------------------------------------------------------------
    def chat_plan(self, body: dict) -> tuple[str | None, dict | None, bool]:
        """Decide the reply: (text, tool_call {"id","name","arguments"}, legacy_function_call)."""
        messages = body.get("messages") or []
        legacy = not body.get("tools") and bool(body.get("functions"))
        if legacy:
            funcs = [f for f in body["functions"] if isinstance(f, dict)]
            choice = body.get("function_call", "auto")
        else:
            funcs = [t.get("function") or {} for t in body.get("tools") or []
                     if isinstance(t, dict) and t.get("type", "function") == "function"]
            choice = body.get("tool_choice", "auto")
        by_name = {f.get("name"): f for f in funcs}
        forced = None
        if isinstance(choice, dict):  # {"type":"function","function":{"name":..}} or legacy {"name":..}
            forced = (choice.get("function") or {}).get("name") or choice.get("name")
        reply = REPLY_PREFIX + last_user_text(messages)[:200]

        scripted = scripted_call(messages)
        if scripted is not None and funcs and last_tool_name(messages) is None:
            uid = self._uid(body)
            also = [{"id": f"call_{uid}_{i}", "name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}
                    for i, c in enumerate(scripted.get("also") or [], start=1)]
            return None, {"id": "call_" + uid, "name": scripted["name"],
                          "arguments": json.dumps(scripted.get("arguments") or {}), **({"also": also} if also else {})}, legacy
        target = None
        if funcs and choice != "none":
            if forced:
                target = by_name.get(forced, {"name": forced})
            elif "send_message" in by_name and last_tool_name(messages) != "send_message":
                target = by_name["send_message"]
            elif choice == "required":
                target = funcs[0]
        if target is None:
            return reply, None, legacy
        call = {"id": "call_" + self._uid(body), "name": target.get("name", ""),
                "arguments": json.dumps(fill_args(target.get("parameters") or {}, reply))}
        return None, call, legacy

    def chat_completion(self, body: dict) -> tuple[dict, list[dict]]:
        """Build the non-stream response and the equivalent list of stream chunks."""
        text, call, legacy = self.chat_plan(body)
        cid = "chatcmpl-" + self._uid(body)
        model = body.get("model") or self.model
        prompt = max(1, sum(word_count(m) for m in body.get("messages") or []))
        completion = max(1, len((text if call is None else call["arguments"]).split()))
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0}}
        head = {"id": cid, "created": CREATED, "model": model, "system_fingerprint": "fp_fake"}
        msg: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if call is None:
            finish, deltas = "stop", [{"role": "assistant", "content": ""}]
            deltas += [{"content": p} for p in split_text(text)]
        elif legacy:
            finish = "function_call"
            msg["function_call"] = {"name": call["name"], "arguments": call["arguments"]}
            deltas = [{"role": "assistant", "content": None,
                       "function_call": {"name": call["name"], "arguments": ""}}]
            deltas += [{"function_call": {"arguments": p}} for p in split_text(call["arguments"])]
        else:
            finish = "tool_calls"
            calls = [call, *call.get("also", [])]  # parallel calls when the script asked for several
            msg["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]
            deltas = []
            for index, c in enumerate(calls):  # the first chunk also carries the role, as OpenAI's does
                deltas.append({**({"role": "assistant", "content": None} if index == 0 else {}), "tool_calls": [
                    {"index": index, "id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": ""}}]})
                deltas += [{"tool_calls": [{"index": index, "function": {"arguments": p}}]}
                           for p in split_text(c["arguments"])]
        full = {**head, "object": "chat.completion", "usage": usage, "choices": [
            {"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}]}

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        extra = {"usage": None} if include_usage else {}  # real OpenAI sends usage:null until the last chunk
        chunk = {**head, "object": "chat.completion.chunk", **extra}
        choice = {"index": 0, "logprobs": None, "finish_reason": None}
        chunks = [{**chunk, "choices": [{**choice, "delta": d}]} for d in deltas]
        chunks.append({**chunk, "choices": [{**choice, "delta": {}, "finish_reason": finish}]})
        if include_usage:
            chunks.append({**chunk, "choices": [], "usage": usage})
        return full, chunks


class _BadRequest(Exception):
    pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must never block interpreter exit
    fake: FakeLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-stream are normal; don't spray tracebacks on stderr.
        exc = sys.exc_info()[1]
        self.fake._log(f"error from {client_address}: {exc!r}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # every non-stream reply carries Content-Length
    server_version = "fake-llm/1.0"

    @property
    def fake(self) -> FakeLLM:
        return self.server.fake  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.fake._lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        with self.fake._lock:
            self.fake._conns.discard(self.connection)
        super().finish()

    def end_headers(self) -> None:
        if not self.fake.keep_alive:
            self.send_header("Connection", "close")
            self.close_connection = True
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        self.fake._log(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {format % args}")

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, status: int, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": "invalid_request_error",
                                           "param": None, "code": None}})

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                out += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return out
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        route = path[3:] if path.startswith("/v1/") or path == "/v1" else path
        raw = self._read_body() if method == "POST" else b""
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            self.fake._record(method, path, None)
            return self._error(400, "could not parse the JSON body of your request")
        self.fake._record(method, path, body)
        if path == fake_mcp.PATH and not self.fake.strict_v1:  # a real Ollama serves no MCP
            return self._mcp(method, body)
        if (native := self.fake.native(method, path, body)) is not None:
            return self._send_json(*native)
        if self.fake.strict_v1 and route == path:  # as a real Ollama: no OpenAI API outside /v1
            return self._send_text(404, "404 page not found")
        try:
            if method == "GET" and route == "/models":
                ids = [self.fake.model, self.fake.embedding_model]
                return self._send_json(200, {"object": "list", "data": [self.fake._model_record(i) for i in ids]})
            if method == "GET" and route.startswith("/models/"):
                return self._send_json(200, self.fake._model_record(unquote(route[len("/models/"):])))
            if method == "POST" and route in ("/embeddings", "/chat/completions"):
                if not isinstance(body, dict):
                    raise _BadRequest("request body must be a JSON object")
                if route == "/embeddings":
                    return self._send_json(200, self.fake.embeddings(body))
                time.sleep(self.fake.chat_delay)
                full, chunks = self.fake.chat_completion(body)
                return self._stream(chunks) if body.get("stream") else self._send_json(200, full)
        except _BadRequest as exc:
            return self._error(400, str(exc))
        self._error(404, f"Unknown request URL: {method} {self.path}")

    def _mcp(self, method: str, body: Any) -> None:
        if method != "POST":  # no server-to-client stream, no sessions to end
            return self._send_empty(405, Allow="POST")
        reply = fake_mcp.answer(body)
        if reply is None:  # a notification
            return self._send_empty(202)
        self._send_json(200, reply)

    def _send_empty(self, status: int, **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _stream(self, chunks: list[dict]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in [f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pytest_letta_compat.provision.fake_llm", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--model", default="fake-gpt")
    ap.add_argument("--embedding-model", default="fake-embedding")
    ap.add_argument("--embedding-dim", type=int, default=1536)
    ap.add_argument("--log-path", default=None)
    args = ap.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with FakeLLM(args.host, args.port, args.model, args.embedding_model, args.embedding_dim, args.log_path) as fake:
        print(f"FAKE_LLM_URL={fake.base_url}", flush=True)
        while not done.wait(0.5):  # short waits so signal handlers run promptly
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
