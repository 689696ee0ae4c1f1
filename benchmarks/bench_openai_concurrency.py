"""Scaling of the openai backend with --concurrency against a loopback server answering after 200 ms.

Runs the backend at concurrency 1, 8 and 64 and prints rows/s and the speed-ups over concurrency 1.
The ideal is linear (64x); the issue's goal is >= 40x at 64. The server runs in a child process by
default (it stands for a remote server: its CPU is not the client's); ``--same-process`` runs it in a
thread of this process instead.

    .venv/bin/python benchmarks/bench_openai_concurrency.py [--delay 0.2] [--rounds 10] [--same-process]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import time
from collections.abc import Iterator

from synthembed.llm import ChatRequest, SamplingParams
from synthembed.llm.loopback import LoopbackServer
from synthembed.llm.openai_compat import OpenAIBackend


def measure(base_url: str, concurrency: int, n_requests: int) -> tuple[float, float]:
    """(rows/s, client CPU ms per request) for `n_requests` distinct requests at `concurrency`."""
    backend = OpenAIBackend("bench-model", base_url=base_url, concurrency=concurrency, timeout=30, max_retries=0)
    requests = [ChatRequest(f"c{concurrency}-{i}", ({"role": "user", "content": f"sentence {i}"},),
                            SamplingParams(seed=i)) for i in range(n_requests)]
    started, cpu = time.perf_counter(), time.process_time()
    results = list(backend.generate(requests))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    failed = sum(not g.ok for g in results)
    if failed:
        raise SystemExit(f"{failed} requests failed at concurrency {concurrency}")
    return n_requests / elapsed, 1000 * cpu / n_requests


def _serve(delay: float, conn) -> None:
    with LoopbackServer(delay=delay) as server:
        conn.send(server.base_url)
        conn.recv()  # until the parent says stop


@contextlib.contextmanager
def server_url(delay: float, same_process: bool) -> Iterator[str]:
    if same_process:
        with LoopbackServer(delay=delay) as server:
            yield server.base_url
        return
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.Process(target=_serve, args=(delay, child), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="server answer delay in seconds")
    parser.add_argument("--rounds", type=int, default=10, help="requests per unit of concurrency")
    parser.add_argument("--levels", default="1,8,64")
    parser.add_argument("--same-process", action="store_true", help="run the server in this process")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with server_url(args.delay, args.same_process) as url:
        measure(url, 8, 16)  # warm-up: imports, first connections
        rates = {c: measure(url, c, args.rounds * c) for c in levels}
    base = rates[levels[0]][0]
    where = "same process" if args.same_process else "child process"
    print(f"loopback server ({where}), {args.delay * 1000:.0f} ms per answer; "
          f"{args.rounds} requests per unit of concurrency")
    print(f"{'concurrency':>11} {'rows/s':>9} {'speed-up':>9} {'ideal':>6} {'client CPU ms/request':>22}")
    for c in levels:
        rate, cpu_ms = rates[c]
        print(f"{c:>11} {rate:>9.1f} {rate / base:>8.1f}x {c / levels[0]:>5.0f}x {cpu_ms:>22.2f}")
    try:
        import os

        print(f"1-min load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    except OSError:
        pass


if __name__ == "__main__":
    main()
