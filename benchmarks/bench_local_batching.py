"""Batched vs one-at-a-time local generation with the transformers backend on the packaged SmolLM2.

The same chat requests (sampled, seeded per request, so both runs produce the same tokens) are
generated once at ``--batch-size`` and once one request at a time; prints rows/s and tokens/s of
both and the ratio. ``--dtype`` compares float32 and bfloat16; ``--threads`` sets torch threads.

    .venv/bin/python benchmarks/bench_local_batching.py [--requests 8] [--batch-size 8] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import time

from synthembed.io.tables import read_text_lines
from synthembed.llm import ChatRequest, SamplingParams
from synthembed.llm.transformers_local import TransformersBackend

DEFAULT_INPUT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "unlabeled", "wiki1m_sample.txt")


def requests(n: int, max_new_tokens: int, source: str) -> list[ChatRequest]:
    lines = [text for _, text in read_text_lines(source) if 8 <= len(text.split()) <= 30][:n]
    return [
        ChatRequest(f"r{i}", ({"role": "user", "content": "Rewrite this sentence with different words, keeping its "
                               f"meaning. Answer with the sentence only.\n\nSentence: {line}"},),
                    SamplingParams(temperature=1.0, top_p=0.9, max_new_tokens=max_new_tokens, seed=i))
        for i, line in enumerate(lines)
    ]


def run(backend: TransformersBackend, reqs: list[ChatRequest], batch_size: int) -> tuple[float, int, dict[str, str]]:
    backend.batch_size = batch_size
    started = time.perf_counter()
    out = list(backend.generate(reqs))
    elapsed = time.perf_counter() - started
    return elapsed, sum(g.completion_tokens for g in out), {g.request_id: g.text for g in out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--input", default=DEFAULT_INPUT)
    args = parser.parse_args()
    backend = TransformersBackend("embedded", dtype=args.dtype, threads=args.threads, device="cpu")
    reqs = requests(args.requests, args.max_new_tokens, args.input)
    run(backend, reqs[:2], 2)  # warm-up
    t_batch, tok_batch, text_batch = run(backend, reqs, args.batch_size)
    t_single, tok_single, text_single = run(backend, reqs, 1)
    same = sum(text_batch[k] == text_single[k] for k in text_batch)
    print(f"SmolLM2-135M-Instruct, {len(reqs)} requests, max {args.max_new_tokens} new tokens, dtype {backend.dtype}, "
          f"torch threads {backend.threads or 'default'}, 1-min load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'mode':>14} {'seconds':>8} {'rows/s':>7} {'tokens/s':>9}")
    print(f"{'batch ' + str(args.batch_size):>14} {t_batch:>8.1f} {len(reqs) / t_batch:>7.2f} {tok_batch / t_batch:>9.1f}")
    print(f"{'one at a time':>14} {t_single:>8.1f} {len(reqs) / t_single:>7.2f} {tok_single / t_single:>9.1f}")
    print(f"ratio (rows/s, batched / one at a time): {t_single / t_batch:.2f}x; identical outputs: {same}/{len(reqs)}")


if __name__ == "__main__":
    main()
