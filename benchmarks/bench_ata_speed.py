"""Encode speed of ATA pooling vs mean (and last-token) pooling on the packaged SmolLM2 backbone.

ATA switches only the last layer to an explicit attention path; this measures what that costs.
Run on purpose (not in CI):

    nice -n 5 .venv/bin/python benchmarks/bench_ata_speed.py --sentences 256 --batch-size 32 --repeats 3

Prints sentences/second per pooling and the ratio to mean pooling (the target is ATA >= 0.7x).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import synthembed.models.ata  # noqa: F401  (registers "ata")
from synthembed.models.encoder import load_encoder
from synthembed.models.modality import pin_text_modality

DATA = Path(os.environ.get("SYNTHEMBED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def sentences(n: int) -> list[str]:
    path = DATA / "unlabeled" / "wiki1m_sample.txt"
    if path.is_file():
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return lines[:n]
    return [f"Sentence number {i} describes a small town near the river and its {i % 7} bridges." for i in range(n)]


def throughput(model, texts: list[str], batch_size: int, repeats: int) -> float:
    """Best-of-`repeats` sentences per second (one warm-up pass first)."""
    model.encode(texts[:batch_size], batch_size=batch_size)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.encode(texts, batch_size=batch_size)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded-llm")
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--chat-template", action="store_true",
                        help="let sentence-transformers wrap inputs in the chat template (longer inputs)")
    args = parser.parse_args()
    texts = sentences(args.sentences)
    rates: dict[str, float] = {}
    with torch.inference_mode():
        for pooling in ("mean", "ata", "last_token"):
            model = load_encoder(args.model, pooling=pooling, max_length=args.max_length, device=args.device).eval()
            if not args.chat_template:
                pin_text_modality(model)  # plain sentences, as training and evaluation encode them
            rates[pooling] = throughput(model, texts, args.batch_size, args.repeats)
            del model
    print(f"model={args.model} sentences={len(texts)} batch={args.batch_size} max_length={args.max_length} "
          f"device={args.device or 'auto'} threads={torch.get_num_threads()}")
    print(f"{'pooling':<12}{'sent/s':>10}{'vs mean':>10}")
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>10.1f}{rate / rates['mean']:>9.2f}x")


if __name__ == "__main__":
    main()
