"""Any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp, Ollama, OpenAI) as a backend.

Asynchronous (httpx) with at most ``concurrency`` requests in flight. `generate` is an ordinary
iterator that drives the event loop in the caller's thread, yields generations as they complete and
pulls new requests lazily (a caller's token budget can stop it).

Retries, with exponential backoff and full jitter (``base * 2**attempt``, capped, times a random factor
in [0.5, 1.5]): timeouts, connection errors, HTTP 429 (the ``Retry-After`` header, seconds or an HTTP
date, is honoured when present), 5xx, and 200 answers whose body is not a valid chat completion.
Other 4xx are not retried: 400/413/422 fail that request with an error naming it; 401, 403 and 404
(bad key, no such model or endpoint) would fail every request, so they raise `BackendError` and stop
the run. The API key is read from the environment variable named by ``api_key_env`` and never
appears in logs, errors or ``repr``.

A fleet: ``base_url`` may be a list of servers (e.g. several vLLM replicas). ``concurrency`` then
applies to each server; every attempt goes to the healthy server with the most free slots, so load
spreads by speed. A server that fails ``down_after`` attempts in a row (timeouts, connection errors,
5xx) is skipped for ``cooldown`` seconds and its requests move to the others without waiting; a 429
with ``Retry-After`` rests only that server. With one server this is the plain single-server client.

A server that refuses ``response_format: json_schema`` (llama-cpp-python's server answers HTTP 500 with a
validation error) gets the same schema as ``{"type": "json_object", "schema": ...}``, the form it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from synthembed.llm.base import BackendError, ChatRequest, Generation, json_object_form, truncate_at_stop
from synthembed.llm.redact import redact, register_secret

__all__ = ["OpenAIBackend", "retry_after_seconds"]

logger = logging.getLogger(__name__)

_FATAL_STATUS = (401, 403, 404)
_DONE = object()


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Retryable(Exception):
    def __init__(self, message: str, wait: float | None = None, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.rate_limited = rate_limited


class _Server:
    """One server of the fleet: its URL, its in-flight limit and its health."""

    def __init__(self, url: str, concurrency: int) -> None:
        self.url = url.rstrip("/")
        self.concurrency = concurrency
        self.in_flight = 0
        self.failures = 0  # consecutive failed attempts
        self.down_until = 0.0  # monotonic time before which the server is skipped
        self.clients: list[Any] = []
        self.next_client = 0

    def free(self) -> int:
        return self.concurrency - self.in_flight

    def client(self) -> Any:
        self.next_client = (self.next_client + 1) % len(self.clients)
        return self.clients[self.next_client]


class OpenAIBackend:
    """Chat completions against ``{base_url}/chat/completions`` (see the module docstring)."""

    name = "openai"
    POOL_SIZE = 4  # connections per httpx client; concurrency above this uses several clients

    def __init__(
        self,
        model: str,
        *,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        down_after: int = 3,
        cooldown: float = 30.0,
        **_ignored: object,
    ) -> None:
        try:
            import httpx  # noqa: F401
        except ModuleNotFoundError:
            raise BackendError("the openai backend needs httpx: pip install 'synthembed[openai]'") from None
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url: give at least one server")
        for url in urls:
            check_url(url)
        self.model = model
        self.base_urls = [u.rstrip("/") for u in urls]
        self.base_url = ", ".join(self.base_urls)
        self.down_after = down_after
        self.cooldown = cooldown
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None  # optional: local servers need none
        register_secret(self._api_key)  # never stored or printed, even when a server echoes it
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.retries = 0  # total retries done, for tests and summaries
        self._server_stats: dict[str, dict[str, int]] = {u: {"answered": 0, "failed_attempts": 0} for u in self.base_urls}
        self.sleep = asyncio.sleep  # replaceable in tests to observe the delays
        self.json_object_schema = False  # set once a server rejects response_format json_schema (llama.cpp's)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-server counts of answered requests (for summaries and tests)."""
        return {url: dict(counts) for url, counts in self._server_stats.items()}

    # ---------------------------------------------------------------- sync facade
    def generate(self, requests: Iterable[ChatRequest]) -> Iterator[Generation]:
        """Drive an event loop in the calling thread: run it until the next answer, yield it, repeat.

        One thread, no locks and no GIL hand-offs per request (which cost tens of ms each on an
        oversubscribed CPU); while the caller handles a yielded answer the loop is paused, and
        in-flight requests simply wait in their sockets.
        """
        loop = asyncio.new_event_loop()
        results: asyncio.Queue = asyncio.Queue()
        source = iter(requests)
        main = loop.create_task(self._run(source, results))
        try:
            done = False
            while not done:
                ready = [loop.run_until_complete(results.get())]
                while not results.empty():  # take everything that is ready: one loop run per burst
                    ready.append(results.get_nowait())
                for item in ready:
                    if item is _DONE:
                        done = True
                        break
                    yield item
            loop.run_until_complete(main)  # re-raises a BackendError from a worker
        finally:
            if not main.done():
                main.cancel()
                loop.run_until_complete(asyncio.gather(main, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # ---------------------------------------------------------------- async core
    async def _run(self, source: Iterator[ChatRequest], results: asyncio.Queue) -> None:
        import httpx

        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # httpcore's pool scans all its connections and waiting requests on every event, so one pool
        # of 64 costs ~4x more CPU per request than several small ones. Measured at concurrency 64
        # against the 200 ms loopback server (load ~12 on 2 CPUs): pools of 1/2/4/8/16 connections gave
        # 114-121/153-157/165-171/139-159/102 rows/s, one pool of 64 about 34 rows/s.
        servers = [_Server(url, self.concurrency) for url in self.base_urls]
        self._slot_freed = asyncio.Condition()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for server in servers:
                    for i in range(-(-self.concurrency // self.POOL_SIZE)):
                        size = min(self.POOL_SIZE, self.concurrency - i * self.POOL_SIZE)
                        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
                        server.clients.append(await stack.enter_async_context(
                            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=self.timeout, limits=limits)
                        ))

                async def worker() -> None:
                    # the source is a plain iterator pulled in this one thread: no lock needed
                    while (request := next(source, None)) is not None:
                        await results.put(await self._complete(servers, request))

                workers = [asyncio.create_task(worker()) for _ in range(self.concurrency * len(servers))]
                try:
                    await asyncio.gather(*workers)
                except BaseException:
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    raise
        finally:
            await results.put(_DONE)

    async def _acquire(self, servers: list[_Server]) -> _Server:
        """Take a slot on the healthy server with the most free slots (waiting for one if all are busy)."""
        async with self._slot_freed:
            while True:
                now = time.monotonic()
                healthy = [s for s in servers if s.down_until <= now and s.free() > 0]
                if healthy:
                    server = max(healthy, key=_Server.free)
                    server.in_flight += 1
                    return server
                if all(s.down_until > now for s in servers):  # all resting: wait for the first to come back
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), min(s.down_until for s in servers) - now)
                else:
                    await self._slot_freed.wait()

    async def _release(self, server: _Server, *, failed: bool, rest: float | None = None) -> None:
        """Give the slot back and update the server's health."""
        async with self._slot_freed:
            server.in_flight -= 1
            if failed:
                server.failures += 1
                self._server_stats[server.url]["failed_attempts"] += 1
                if server.failures >= self.down_after and len(self.base_urls) > 1:
                    server.down_until = time.monotonic() + self.cooldown
                    logger.warning("server %s failed %d times in a row; skipped for %.0f s",
                                   server.url, server.failures, self.cooldown)
            else:
                server.failures = 0
                self._server_stats[server.url]["answered"] += 1
            if rest:
                server.down_until = max(server.down_until, time.monotonic() + rest)
            self._slot_freed.notify_all()

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The JSON body sent for a request."""
        params = request.params
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if params.response_format is not None:
            body["response_format"] = (json_object_form(params.response_format) if self.json_object_schema
                                       else params.response_format)
        body.update(self.extra_body)
        return body

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (0-based): exponential, capped, jittered."""
        return min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.5)

    async def _complete(self, servers: list[_Server], request: ChatRequest) -> Generation:
        import httpx

        last_error = ""
        for attempt in range(self.max_retries + 1):
            body = self.payload(request)
            server = await self._acquire(servers)
            try:
                response = await server.client().post("/chat/completions", json=body)
                generation = self._parse_response(request, response, server.url)
            except _Retryable as exc:
                last_error, wait = f"{exc} from {server.url}", exc.wait
                await self._release(server, failed=not exc.rate_limited, rest=wait if exc.rate_limited else None)
            except httpx.TimeoutException as exc:
                last_error, wait = f"timeout after {self.timeout:g} s from {server.url} ({type(exc).__name__})", None
                await self._release(server, failed=True)
            except httpx.TransportError as exc:
                last_error, wait = f"connection error to {server.url} ({type(exc).__name__}: {exc})", None
                await self._release(server, failed=True)
            except BaseException:
                await self._release(server, failed=False)
                raise
            else:
                await self._release(server, failed=False)
                return generation
            if attempt == self.max_retries:
                break
            self.retries += 1
            now = time.monotonic()
            if any(s is not server and s.down_until <= now for s in servers):
                delay = 0.0  # another server can take it at once
            else:
                delay = wait if wait is not None else self.backoff(attempt)
            logger.debug("request %s: %s; retry %d in %.2f s", request.id, last_error, attempt + 1, delay)
            if delay:
                await self.sleep(delay)
        return Generation(request.id, None, redact(f"request {request.id}: {last_error} (gave up after "
                          f"{self.max_retries} retries)"), finish_reason="error", transient=True)

    def _parse_response(self, request: ChatRequest, response: Any, url: str) -> Generation:
        status = response.status_code
        if status >= 400 and self._rejects_json_schema(request, response.text):
            raise _Retryable("server rejected response_format json_schema; resent as json_object with the schema", 0.0)
        if status == 429:
            raise _Retryable("HTTP 429 rate limited", retry_after_seconds(response.headers.get("retry-after")),
                             rate_limited=True)
        if status >= 500:
            raise _Retryable(f"HTTP {status} server error", retry_after_seconds(response.headers.get("retry-after")))
        if status in _FATAL_STATUS:
            raise BackendError(
                f"request {request.id}: HTTP {status} from {url}/chat/completions for model "
                f"{self.model!r}: {_snippet(response.text)} (check --base-url, --model and ${self.api_key_env})"
            )
        if status >= 400:
            return Generation(request.id, None, f"request {request.id}: HTTP {status} (not retried): "
                              f"{_snippet(response.text)}", finish_reason="error")
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed response ({type(exc).__name__}): {_snippet(response.text)}") from None
        usage = data.get("usage") or {}
        finish = choice.get("finish_reason") or "stop"
        text, _ = truncate_at_stop(text, request.params.stop)  # servers that ignore "stop"
        return Generation(request.id, text.strip(), None, int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or 0), "length" if finish == "length" else "stop")

    # ---------------------------------------------------------------- pre-flight
    def preflight(self) -> None:
        """One cheap request per server before a run: ``GET /models``, else a 1-token chat completion.

        A refused connection, an unknown host, a timeout, or HTTP 401/403/404 raise `BackendError`
        naming the URL and the cause (exit 2), instead of a run whose every row fails. With several
        servers, the ones that fail are dropped with a warning as long as one is left. 5xx and 429
        are not judged here: the run's retries and circuit breaker handle a server that is busy.
        """
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        problems: dict[str, str] = {}
        with httpx.Client(headers=headers, timeout=min(self.timeout, 30.0)) as client:
            for url in self.base_urls:
                problem = self._check_server(client, url)
                if problem is not None:
                    problems[url] = redact(problem)
        if problems and len(problems) == len(self.base_urls):
            raise BackendError("; ".join(problems.values()))
        for url, problem in problems.items():
            logger.warning("skipping %s: %s", url, problem)
            self.base_urls.remove(url)
        self.base_url = ", ".join(self.base_urls)

    def _check_server(self, client: Any, url: str) -> str | None:
        import httpx

        hint = f"check --base-url, --model and ${self.api_key_env}"
        try:
            response = client.get(f"{url}/models")
            if response.status_code in (404, 405):  # servers without a models endpoint: a 1-token call
                body = {**self.payload(ChatRequest("preflight", ({"role": "user", "content": "Hi"},))),
                        "max_tokens": 1}
                response = client.post(f"{url}/chat/completions", json=body)
                where = f"{url}/chat/completions"
            else:
                where = f"{url}/models"
        except httpx.TimeoutException:
            return f"no answer from {url} within {min(self.timeout, 30.0):g} s (is the server up? {hint})"
        except httpx.TransportError as exc:
            return f"cannot connect to {url}: {exc or type(exc).__name__} (is the server running? {hint})"
        if response.status_code in _FATAL_STATUS:
            return (f"HTTP {response.status_code} from {where} for model {self.model!r}: "
                    f"{_snippet(response.text)} ({hint})")
        return None

    def _rejects_json_schema(self, request: ChatRequest, text: str) -> bool:
        """True (once) when a server refuses ``response_format: json_schema`` (llama-cpp-python's answers HTTP
        500 with a validation error) but takes the schema as ``json_object``; later requests use that form."""
        response_format = request.params.response_format or {}
        if self.json_object_schema or response_format.get("type") != "json_schema" or "json_schema" not in text:
            return False
        self.json_object_schema = True
        logger.warning("the server rejects response_format json_schema; sending the schema as json_object instead")
        return True

    def close(self) -> None:
        pass


def check_url(url: str) -> None:
    """Raise `BackendError` for a base URL that cannot work (no http:// or https://, no host)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        guess = url if "://" in url else f"http://{url}"
        raise BackendError(f"--base-url {url!r} is not an http(s) URL (did you mean {guess!r}?)")


def _snippet(text: str, limit: int = 300) -> str:
    text = redact(" ".join(text.split())) or ""
    return text if len(text) <= limit else text[:limit] + "..."
