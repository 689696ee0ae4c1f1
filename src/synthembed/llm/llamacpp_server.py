"""Start llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) on a GGUF file.

For users who have no server of their own (`synthembed serve-llm`), and for the end-to-end tests
that run the ``openai`` backend against a real server. The command line is built by
`server_command` (so it can be printed exactly as it runs): the model's own chat template from the
GGUF (``--chat_format chat_template.default``, never a guessed built-in format), a loopback host, a
context length, the CPU threads and a model alias (the name to pass as ``--model``; llama.cpp's
server answers any name with its one model). `LlamaServer` runs it as a child process, waits until
``GET /v1/models`` answers, and stops or kills it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from synthembed.llm.base import BackendError

__all__ = ["LlamaServer", "default_alias", "free_port", "server_command"]

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")
SERVER_INSTALL_HINT = "pip install 'synthembed[llamacpp]' (llama-cpp-python[server]; builds llama.cpp, a few minutes)"


def require_server_modules() -> None:
    """Raise a BackendError naming the install command when llama-cpp-python[server] is incomplete."""
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise BackendError(f"the llama.cpp server needs {', '.join(missing)}: {SERVER_INSTALL_HINT}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_alias(model: str | Path) -> str:
    """The model name the server reports: ``embedded-llm`` for the packaged model, else the file's stem."""
    from synthembed.models.embedded import EMBEDDED_ENCODER, EMBEDDED_LLM

    return EMBEDDED_LLM if str(model) in (EMBEDDED_ENCODER, EMBEDDED_LLM) else Path(str(model)).stem


def server_command(
    gguf: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    n_ctx: int = 4096,
    threads: int | None = None,
    alias: str = "embedded-llm",
    python: str | None = None,
) -> list[str]:
    """The ``python -m llama_cpp.server ...`` argv serving `gguf` (see the module docstring)."""
    command = [python or sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias,
               "--chat_format", "chat_template.default", "--host", host, "--port", str(port), "--n_ctx", str(n_ctx)]
    if threads is not None:
        command += ["--n_threads", str(threads), "--n_threads_batch", str(threads)]
    return command


class LlamaServer:
    """llama.cpp's server on one GGUF file as a child process: `start`, `base_url`, `stop`, `kill`.

    Use as a context manager. ``log`` (a path) receives the server's output; without it the output
    goes to this process's stdout/stderr.
    """

    def __init__(
        self,
        model: str | Path = "embedded-llm",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 4096,
        threads: int | str | None = "auto",
        alias: str | None = None,
        log: str | Path | None = None,
    ) -> None:
        from synthembed.llm.llamacpp_backend import resolve_gguf
        from synthembed.llm.transformers_local import choose_threads

        self.gguf, _ = resolve_gguf(model)
        self.host = host
        self.port = int(port) or free_port(host)
        self.alias = alias or default_alias(model)
        self.command = server_command(self.gguf, host=host, port=self.port, n_ctx=n_ctx,
                                      threads=choose_threads(threads), alias=self.alias)
        self.log = Path(log) if log is not None else None
        self.process: subprocess.Popen | None = None
        self._log_handle: IO[Any] | None = None

    @property
    def base_url(self) -> str:
        """What to pass to ``--base-url`` (the server's ``/v1`` root)."""
        return f"http://{self.host}:{self.port}/v1"

    def command_line(self) -> str:
        """The command as one shell-quoted line."""
        return shlex.join(self.command)

    def start(self, timeout: float = 120.0) -> LlamaServer:
        """Launch the server and return once it answers ``GET /v1/models`` (BackendError if it never does)."""
        require_server_modules()
        if self.process is not None and self.process.poll() is None:
            raise BackendError(f"the server on {self.base_url} is already running")
        output: Any = None
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = output = open(self.log, "ab")
        self.process = subprocess.Popen(self.command, stdout=output, stderr=subprocess.STDOUT if output else None,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise BackendError(f"the llama.cpp server exited with code {self.process.returncode} before it was "
                                   f"ready: {self.command_line()}{self._log_tail()}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.kill()
        raise BackendError(f"the llama.cpp server did not answer on {self.base_url} within {timeout:g} s{self._log_tail()}")

    def ready(self) -> bool:
        """True when ``GET /v1/models`` answers 200 with a model list."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return response.status == 200 and "data" in json.loads(response.read() or b"{}")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def wait(self) -> int:
        """Block until the server exits; its exit code."""
        if self.process is None:
            return 0
        try:
            return self.process.wait()
        finally:
            self._close_log()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop (SIGTERM), killing it if it has not exited after `timeout` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def _log_tail(self, limit: int = 2000) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        text = self.log.read_text(encoding="utf-8", errors="replace")[-limit:]
        return f"\n--- end of {self.log} ---\n{text}" if text.strip() else ""

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self.stop()

    def __repr__(self) -> str:
        return f"LlamaServer({self.base_url!r}, alias={self.alias!r}, pid={self.process.pid if self.process else None})"
