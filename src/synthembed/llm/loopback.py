"""A small OpenAI-compatible chat server on 127.0.0.1 for tests and benchmarks (no network, no model).

``with LoopbackServer(delay=0.2) as server: ... server.base_url ...`` answers
``POST /v1/chat/completions`` after ``delay`` seconds, with text from ``responder(body)`` (default:
``"echo: <last user message>"``). It is a minimal asyncio HTTP/1.1 server (keep-alive, Content-Length
bodies) running its own event loop in a thread: waiting costs no thread per request and very little
CPU, so a benchmark measures the client, not the server.

Faults are injected by markers in the last user message, counted per distinct message so a retried
request sees its own history: ``[[429xN]]`` / ``[[500xN]]`` / ``[[garbagexN]]`` / ``[[timeoutxN]]``
fail the first N attempts (429 with ``Retry-After: <retry_after>``; garbage = a 200 whose body is
not JSON; timeout = wait ``hang`` seconds before answering) and then answer normally; ``[[400]]``
always answers 400; ``[[401]]`` always 401. ``server.hits`` counts requests per message;
``server.total`` all requests; ``server.max_in_flight`` the most requests handled at once;
``server.authorizations`` the Authorization headers seen; ``server.bodies`` the JSON bodies.

``server.status_all = 500`` (or 401, 404 ...; settable while it runs, ``None`` = healthy) answers every
request with that status, a server that is down for good or misconfigured; ``GET /v1/models`` lists
one model unless ``models_endpoint=False`` (then 404, like servers without it). ``server.echo_auth``
puts the Authorization header into error bodies, like servers that quote what they were sent.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["LoopbackServer"]

_MARK = re.compile(r"\[\[(429|500|garbage|timeout)x(\d+)\]\]|\[\[(400|401)\]\]")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error"}


def _echo(body: dict[str, Any]) -> str:
    users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
    return "echo: " + (users[-1] if users else "")


class LoopbackServer:
    """Asyncio OpenAI-compatible server in a background thread (see the module docstring)."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        hang: float = 5.0,
        responder: Callable[[dict[str, Any]], str] = _echo,
        retry_after: str = "0",
        models_endpoint: bool = True,
        port: int = 0,
    ) -> None:
        self.models_endpoint = models_endpoint
        self.status_all: int | None = None
        self.echo_auth = False
        self.model_requests = 0
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._port = port  # 0: any free port

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> LoopbackServer:
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            server = self._server = loop.run_until_complete(
                asyncio.start_server(self._connection, "127.0.0.1", self._port, backlog=1024)
            )
            self._port = server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            server.close()
            pending = asyncio.all_tasks(loop)
            for task in pending:  # open keep-alive connections
                task.cancel()

            async def drain() -> None:
                await asyncio.gather(*pending, return_exceptions=True)

            loop.run_until_complete(drain())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="loopback-openai")
        self._thread.start()
        ready.wait(timeout=10)
        return self

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                if method == "GET" and path.rstrip("/") == "/v1/models" and self.models_endpoint:
                    self.model_requests += 1
                    if self.status_all is not None:
                        await self._send(writer, self.status_all, self._error_body(self.status_all, headers))
                    else:
                        await self._send(writer, 200, b'{"object": "list", "data": [{"id": "loopback", "object": "model"}]}')
                    continue
                if method != "POST" or path.rstrip("/") != "/v1/chat/completions":
                    await self._send(writer, 404, b'{"error": "not found"}')
                    continue
                self.authorizations.append(headers.get("authorization"))
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if self.status_all is not None:
                        self.total += 1
                        await self._send(writer, self.status_all, self._error_body(self.status_all, headers))
                        continue
                    await self._handle(writer, json.loads(body))
                finally:
                    self.in_flight -= 1
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def _error_body(self, status: int, headers: dict[str, str]) -> bytes:
        message = f"injected {status}"
        if self.echo_auth:
            message += f" (you sent Authorization: {headers.get('authorization')})"
        return json.dumps({"error": {"message": message}}).encode()

    async def _send(self, writer: asyncio.StreamWriter, status: int, data: bytes,
                    headers: dict[str, str] | None = None) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n{extra}\r\n")
        writer.write(head.encode("latin-1") + data)
        await writer.drain()

    async def _handle(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> None:
        users = [m["content"] for m in body.get("messages", []) if m.get("role") == "user"]
        last = users[-1] if users else ""
        self.total += 1
        self.hits[last] += 1
        attempt = self.hits[last]
        self.bodies.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        match = _MARK.search(last)
        if match and match.group(3):
            status = int(match.group(3))
            await self._send(writer, status, self._error_body(status, {"authorization": self.authorizations[-1] or ""}))
            return
        if match and attempt <= int(match.group(2)):
            kind = match.group(1)
            if kind == "429":
                await self._send(writer, 429, b'{"error": "rate limited"}', {"Retry-After": self.retry_after})
            elif kind == "500":
                await self._send(writer, 500, b'{"error": "boom"}')
            elif kind == "garbage":
                await self._send(writer, 200, b"<html>not json")
            else:
                await asyncio.sleep(self.hang)
                await self._send(writer, 200, b'{"choices": []}')
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
        await self._send(writer, 200, json.dumps(answer).encode())

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop = None
        self._server = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
