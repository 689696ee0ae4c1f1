"""Scaling of the openai backend with --concurrency against a loopback server answering after 200 ms.

Runs the backend at concurrency 1, 8 and 64 (same process as the server) and prints rows/s and the
speed-ups over concurrency 1. The ideal is linear (64x); the issue's goal is >= 40x at 64.

    .venv/bin/python benchmarks/bench_openai_concurrency.py [--delay 0.2] [--rounds 10]
"""

from __future__ import annotations

import argparse
import time

from synthembed.llm import ChatRequest, SamplingParams
from synthembed.llm.loopback import LoopbackServer
from synthembed.llm.openai_compat import OpenAIBackend


def measure(base_url: str, concurrency: int, n_requests: int) -> float:
    """Rows/s for `n_requests` distinct requests at `concurrency` (after a short warm-up)."""
    backend = OpenAIBackend("bench-model", base_url=base_url, concurrency=concurrency, timeout=30, max_retries=0)
    requests = [ChatRequest(f"c{concurrency}-{i}", ({"role": "user", "content": f"sentence {i}"},),
                            SamplingParams(seed=i)) for i in range(n_requests)]
    started = time.perf_counter()
    results = list(backend.generate(requests))
    elapsed = time.perf_counter() - started
    failed = sum(not g.ok for g in results)
    if failed:
        raise SystemExit(f"{failed} requests failed at concurrency {concurrency}")
    return n_requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.2, help="server answer delay in seconds")
    parser.add_argument("--rounds", type=int, default=10, help="requests per unit of concurrency")
    parser.add_argument("--levels", default="1,8,64")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    with LoopbackServer(delay=args.delay) as server:
        measure(server.base_url, 8, 16)  # warm-up: imports, first connections
        rates = {c: measure(server.base_url, c, args.rounds * c) for c in levels}
    base = rates[levels[0]]
    print(f"loopback server, {args.delay * 1000:.0f} ms per answer; {args.rounds} requests per unit of concurrency")
    print(f"{'concurrency':>11} {'rows/s':>9} {'speed-up':>9} {'ideal':>6}")
    for c in levels:
        print(f"{c:>11} {rates[c]:>9.1f} {rates[c] / base:>8.1f}x {c / levels[0]:>5.0f}x")


if __name__ == "__main__":
    main()
