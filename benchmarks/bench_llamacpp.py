"""llama.cpp (in process, and its server at 1/4/8 requests in flight) vs our transformers backend, same model and prompts.

The requests are the demo's: SynCSE partial (5-shot positive and hard-negative prompts, about 500
prompt tokens each) on SNLI premises, seeded per request, at ``--max-new-tokens``. Every backend gets
the same list. The transformers backend runs at each ``--batch-sizes`` and its best is the reference;
the llama.cpp backend loads the GGUF as it is; the server is ``synthembed serve-llm``'s command on a
loopback port, driven by our ``openai`` backend at each ``--in-flight``. Prints load time, seconds,
rows/s (a row = one input sentence = 2 requests), completion tokens/s and all tokens/s (prompt +
completion), and each one's ratio of rows/s to the transformers best.

    .venv/bin/python benchmarks/bench_llamacpp.py [--rows 8] [--max-new-tokens 64] [--model embedded]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from synthembed.llm import ChatRequest, create_backend
from synthembed.llm.llamacpp_server import LlamaServer
from synthembed.synthesis.inputs import read_input_file
from synthembed.synthesis.runner import row_rng
from synthembed.synthesis.syncse import SynCSETask, load_pools

DEFAULT_INPUT = Path(__file__).resolve().parents[2] / "shared" / "data" / "nli" / "snli_devtest_triplets.tsv"


def build_requests(source: Path, rows: int, max_new_tokens: int) -> list[ChatRequest]:
    """The SynCSE partial requests of the first `rows` premises (2 per row), as the runner builds them."""
    task = SynCSETask(load_pools(), max_new_tokens=max_new_tokens)
    out = []
    for row in read_input_file(source, column="premise").rows[:rows]:
        for slot in task.slots:
            request = task.build_request(row, row_rng(42, task.name, row.id, slot), slot)
            out.append(ChatRequest(f"{row.id}/{slot}", request.messages, request.params))
    return out


def timed(backend, requests: list[ChatRequest]) -> tuple[float, int, int]:
    """(seconds, completion tokens, prompt tokens) of generating every request."""
    started = time.perf_counter()
    out = list(backend.generate(requests))
    elapsed = time.perf_counter() - started
    failed = [g.error for g in out if not g.ok]
    if failed:
        raise SystemExit(f"{len(failed)} requests failed, e.g. {failed[0]}")
    return elapsed, sum(g.completion_tokens for g in out), sum(g.prompt_tokens for g in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="input sentences (2 requests each)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--model", default="embedded", help="'embedded' (SmolLM2-135M) or a .gguf file")
    parser.add_argument("--batch-sizes", default="1,4,8", help="transformers batch sizes to try")
    parser.add_argument("--in-flight", default="1,4,8", help="server: requests in flight")
    parser.add_argument("--threads", default="auto", help="CPU threads of every backend (see --threads of synthesize)")
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    requests = build_requests(args.input, args.rows, args.max_new_tokens)
    rows = len(requests) / 2
    results: list[tuple[str, float, float, int, int]] = []  # (name, load s, seconds, completion, prompt tokens)

    if not args.skip_transformers:
        started = time.perf_counter()
        backend = create_backend("transformers", model=args.model, batch_size=1, threads=args.threads, device="cpu")
        load = time.perf_counter() - started
        list(backend.generate(requests[:1]))  # warm-up
        for size in [int(s) for s in args.batch_sizes.split(",")]:
            backend.batch_size = size
            results.append((f"transformers batch {size}", load, *timed(backend, requests)))
        backend.close()

    started = time.perf_counter()
    backend = create_backend("llamacpp", model=args.model, threads=args.threads)
    load = time.perf_counter() - started
    list(backend.generate(requests[:1]))
    results.append(("llamacpp in process", load, *timed(backend, requests)))
    backend.close()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        server = LlamaServer(args.model, threads=args.threads, log=Path(tmp) / "server.log").start()
        load = time.perf_counter() - started
        try:
            for n in [int(s) for s in args.in_flight.split(",")]:
                client = create_backend("openai", model=server.alias, base_url=server.base_url, concurrency=n,
                                        max_retries=0, timeout=600)
                list(client.generate(requests[:1]))
                results.append((f"llama.cpp server, {n} in flight", load, *timed(client, requests)))
        finally:
            server.stop()

    print(f"model {args.model}, {len(requests)} SynCSE requests ({rows:g} rows), max {args.max_new_tokens} new tokens, "
          f"threads {args.threads}, 1-min load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    reference = max((r for r in results if r[0].startswith("transformers")), key=lambda r: -r[2], default=None)
    print(f"{'backend':>32} {'load s':>7} {'seconds':>8} {'rows/s':>7} {'new tok/s':>9} {'all tok/s':>9} {'ratio':>6}")
    for name, load, seconds, completion, prompt in results:
        ratio = f"{reference[2] / seconds:.2f}x" if reference else "-"
        print(f"{name:>32} {load:>7.1f} {seconds:>8.1f} {rows / seconds:>7.3f} {completion / seconds:>9.1f} "
              f"{(completion + prompt) / seconds:>9.1f} {ratio:>6}")
    if reference:
        print(f"ratio = rows/s over the transformers backend's best ({reference[0]})")


if __name__ == "__main__":
    main()
