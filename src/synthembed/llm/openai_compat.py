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
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator
from typing import Any

from synthembed.llm.base import BackendError, ChatRequest, Generation, truncate_at_stop

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
    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class OpenAIBackend:
    """Chat completions against ``{base_url}/chat/completions`` (see the module docstring)."""

    name = "openai"
    POOL_SIZE = 4  # connections per httpx client; concurrency above this uses several clients

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        **_ignored: object,
    ) -> None:
        try:
            import httpx  # noqa: F401
        except ModuleNotFoundError:
            raise BackendError("the openai backend needs httpx: pip install 'synthembed[openai]'") from None
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None  # optional: local servers need none
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.retries = 0  # total retries done, for tests and summaries
        self.sleep = asyncio.sleep  # replaceable in tests to observe the delays

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, concurrency={self.concurrency})"

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
        n_pools = -(-self.concurrency // self.POOL_SIZE)
        try:
            async with contextlib.AsyncExitStack() as stack:
                clients = []
                for i in range(n_pools):
                    size = min(self.POOL_SIZE, self.concurrency - i * self.POOL_SIZE)
                    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
                    clients.append(await stack.enter_async_context(
                        httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=self.timeout, limits=limits)
                    ))

                async def worker(client: Any) -> None:
                    # the source is a plain iterator pulled in this one thread: no lock needed
                    while (request := next(source, None)) is not None:
                        await results.put(await self._complete(client, request))

                workers = [asyncio.create_task(worker(clients[i // self.POOL_SIZE])) for i in range(self.concurrency)]
                try:
                    await asyncio.gather(*workers)
                except BaseException:
                    for task in workers:
                        task.cancel()
                    await asyncio.gather(*workers, return_exceptions=True)
                    raise
        finally:
            await results.put(_DONE)

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
            body["response_format"] = params.response_format
        body.update(self.extra_body)
        return body

    def backoff(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (0-based): exponential, capped, jittered."""
        return min(self.backoff_max, self.backoff_base * 2**attempt) * random.uniform(0.5, 1.5)

    async def _complete(self, client: Any, request: ChatRequest) -> Generation:
        import httpx

        body = self.payload(request)
        last_error = ""
        for attempt in range(self.max_retries + 1):
            try:
                response = await client.post("/chat/completions", json=body)
                return self._parse_response(request, response)
            except _Retryable as exc:
                last_error, wait = str(exc), exc.wait
            except httpx.TimeoutException as exc:
                last_error, wait = f"timeout after {self.timeout:g} s ({type(exc).__name__})", None
            except httpx.TransportError as exc:
                last_error, wait = f"connection error ({type(exc).__name__}: {exc})", None
            if attempt == self.max_retries:
                break
            delay = wait if wait is not None else self.backoff(attempt)
            self.retries += 1
            logger.debug("request %s: %s; retry %d in %.2f s", request.id, last_error, attempt + 1, delay)
            await self.sleep(delay)
        return Generation(request.id, None, f"request {request.id}: {last_error} (gave up after "
                          f"{self.max_retries} retries)", finish_reason="error")

    def _parse_response(self, request: ChatRequest, response: Any) -> Generation:
        status = response.status_code
        if status == 429:
            raise _Retryable("HTTP 429 rate limited", retry_after_seconds(response.headers.get("retry-after")))
        if status >= 500:
            raise _Retryable(f"HTTP {status} server error", retry_after_seconds(response.headers.get("retry-after")))
        if status in _FATAL_STATUS:
            raise BackendError(
                f"request {request.id}: HTTP {status} from {self.base_url}/chat/completions for model "
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

    def close(self) -> None:
        pass


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
