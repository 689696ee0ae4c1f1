"""A small OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks (no network, no model).

``with LoopbackServer(delay=0.2) as server: ... server.base_url ...`` answers
``POST /v1/chat/completions`` after ``delay`` seconds (one thread per connection, keep-alive), with
text from ``responder(body)`` (default: ``"echo: <last user message>"``).

Faults are injected by markers in the last user message, counted per distinct message so a retried
request sees its own history: ``[[429xN]]`` / ``[[500xN]]`` / ``[[garbagexN]]`` / ``[[timeoutxN]]``
fail the first N attempts (429 with ``Retry-After: 0``; garbage = a 200 whose body is not JSON; timeout
= sleep ``hang`` seconds before answering) and then answer normally; ``[[400]]`` always answers 400;
``[[401]]`` always 401. ``server.hits`` counts requests per message; ``server.total`` all requests;
``server.max_in_flight`` the most requests handled at once; ``server.authorizations`` the headers seen.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LoopbackServer"]

_MARK = re.compile(r"\[\[(429|500|garbage|timeout)x(\d+)\]\]|\[\[(400|401)\]\]")


def _echo(body: dict[str, Any]) -> str:
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return "echo: " + (users[-1] if users else "")


class LoopbackServer:
    """Threaded OpenAI-compatible server for tests (see the module docstring)."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        hang: float = 5.0,
        responder: Callable[[dict[str, Any]], str] = _echo,
        retry_after: str = "0",
    ) -> None:
        self.delay = delay
        self.hang = hang
        self.responder = responder
        self.retry_after = retry_after
        self.hits: Counter = Counter()
        self.total = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> LoopbackServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                body = json.loads(raw)
                with owner._lock:
                    owner.authorizations.append(self.headers.get("Authorization"))
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                try:
                    owner._handle(self, body)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="loopback-openai")
        self._thread.start()
        return self

    def _handle(self, handler: Any, body: dict[str, Any]) -> None:
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        last = users[-1] if users else ""
        with self._lock:
            self.total += 1
            self.hits[last] += 1
            attempt = self.hits[last]
            self.bodies.append(body)
        if self.delay:
            time.sleep(self.delay)
        match = _MARK.search(last)
        if match and match.group(3):
            status = int(match.group(3))
            handler._send(status, json.dumps({"error": {"message": f"injected {status}"}}).encode())
            return
        if match and attempt <= int(match.group(2)):
            kind = match.group(1)
            if kind == "429":
                handler._send(429, b'{"error": "rate limited"}', {"Retry-After": self.retry_after})
            elif kind == "500":
                handler._send(500, b'{"error": "boom"}')
            elif kind == "garbage":
                handler._send(200, b"<html>not json")
            else:
                time.sleep(self.hang)
                handler._send(200, b'{"choices": []}')
            return
        text = self.responder(body)
        answer = {
            "id": f"cmpl-{self.total}",
            "object": "chat.completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])),
                      "completion_tokens": len(text.split())},
        }
        handler._send(200, json.dumps(answer).encode())

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
