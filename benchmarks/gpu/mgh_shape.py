"""The MGH paper's training shape on one device: a Mistral-7B-shaped decoder (random weights, the MiniLM
vocabulary to keep the embedding small) trained through `fit` with LoRA r 16, activation checkpointing and
the cached InfoNCE, 512 triplets a step, length 128, bf16. Reports whether it fits, its triplets/s and peak memory.

    python mgh_shape.py SMALL_LLAMA_DIR TRIPLETS_TSV [--scale full|tiny] [--steps 3] [--mini-batch-size 128]

The 7B weights are built in device memory (bf16, ~14 GB) and put in place of a small saved Llama's backbone,
so nothing large is written to disk. Texts are 8 SNLI sentences joined, so most sequences reach 128 tokens.
Prints one ``RESULT {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from transformers import MistralConfig, MistralModel, TrainerCallback

p = argparse.ArgumentParser()
p.add_argument("small_model")
p.add_argument("data", type=Path)
p.add_argument("--scale", choices=["full", "tiny"], default="full")
p.add_argument("--steps", type=int, default=3)
p.add_argument("--warmup", type=int, default=1)
p.add_argument("--batch-size", type=int, default=512)
p.add_argument("--max-length", type=int, default=128)
p.add_argument("--mini-batch-size", type=int, default=128)
p.add_argument("--lora-r", type=int, default=16)
p.add_argument("--pooling", default="mean")
args = p.parse_args()
logging.basicConfig(level=logging.ERROR)
cuda = torch.cuda.is_available()
device = "cuda" if cuda else "cpu"
ROW: dict = {}  # the result row, filled as the run goes (partial results print it after every timed step)


class Timer(TrainerCallback):
    seconds, steps, start = 0.0, 0, None

    def on_step_end(self, a, state, control, **kw):
        if cuda:
            torch.cuda.synchronize()
        if state.global_step == args.warmup:
            self.start = time.perf_counter()
        self.steps = state.global_step - args.warmup
        if self.start is not None:
            self.seconds = time.perf_counter() - self.start
        print(f"step {state.global_step} done at {time.perf_counter():.1f}", flush=True)
        if self.steps > 0:  # a partial result after every timed step: a time limit cannot hide the rate
            rate = self.steps / self.seconds
            partial = {**ROW, "fits": True, "partial": True, "steps_timed": self.steps, "steps_per_s": round(rate, 4),
                       "triplets_per_s": round(rate * args.batch_size, 1), "s_per_step": round(1 / rate, 2),
                       "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None}
            print("RESULT " + json.dumps(partial), flush=True)


def long_rows(n: int) -> dict[str, list[str]]:
    lines = [line.rstrip("\n").split("\t") for line in args.data.open(encoding="utf-8")][1:]
    cols = {"anchor": [], "positive": [], "negative_1": []}
    for i in range(n):
        block = [lines[(i * 8 + k) % len(lines)] for k in range(8)]
        cols["anchor"].append(" ".join(r[0] for r in block))
        cols["positive"].append(" ".join(r[1] for r in block))
        cols["negative_1"].append(" ".join(r[2] for r in block))
    return cols


def main() -> None:
    from datasets import Dataset

    from synthembed.losses.cached_infonce import CachedInfoNCELoss
    from synthembed.models.encoder import load_encoder
    from synthembed.models.lora import trainable_parameters
    from synthembed.training.trainer import FitSettings, fit

    model = load_encoder(args.small_model, pooling=args.pooling, max_length=args.max_length)
    tok = model[0].tokenizer
    full = args.scale == "full"
    cfg = MistralConfig(
        vocab_size=len(tok), hidden_size=4096 if full else 64, intermediate_size=14336 if full else 128,
        num_hidden_layers=32 if full else 2, num_attention_heads=32 if full else 4, num_key_value_heads=8 if full else 2,
        max_position_embeddings=4096, pad_token_id=tok.pad_token_id, use_cache=False,
    )
    cfg._attn_implementation = "sdpa"
    row = ROW
    row.update({"part": "mgh-shape", "shape": "Mistral-7B" if full else "tiny stand-in", "batch": args.batch_size,
           "max_length": args.max_length, "lora_r": args.lora_r, "mini_batch": args.mini_batch_size,
           "gradient_checkpointing": True, "precision": "bf16", "pooling": args.pooling})
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            big = MistralModel(cfg)
        finally:
            torch.set_default_dtype(default)
    model[0].model = big  # the saved small Llama's backbone is replaced by the 7B shape
    model.to(device)
    row["params_b"] = round(sum(q.numel() for q in big.parameters()) / 1e9, 3)
    row["build_s"] = round(time.perf_counter() - t0, 1)
    print(f"built {row['params_b']}B parameters in {row['build_s']} s", flush=True)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ds = Dataset.from_dict(long_rows(args.batch_size * args.steps))
    settings = FitSettings(batch_size=args.batch_size, lr=1e-4, max_steps=args.steps, precision="bf16", eval_on_start=False,
                           resume=False, lora_r=args.lora_r, lora_dropout=0.0, gradient_checkpointing=True,
                           checkpoint_minutes=0)
    timer = Timer()
    loss = CachedInfoNCELoss(model, temperature=0.05, mini_batch_size=args.mini_batch_size)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit(model, ds, loss, Path(tmp) / "mgh", settings=settings, callbacks=[timer])
        row["fits"] = True
        trainable, total = trainable_parameters(model)
        row["trainable_m"] = round(trainable / 1e6, 1)
        rate = timer.steps / timer.seconds if timer.seconds else None
        row["steps_timed"] = timer.steps
        row["steps_per_s"] = round(rate, 4) if rate else None
        row["triplets_per_s"] = round(rate * args.batch_size, 1) if rate else None
        row["s_per_step"] = round(1 / rate, 2) if rate else None
    except torch.cuda.OutOfMemoryError as exc:
        row["fits"] = False
        row["error"] = str(exc)[:200]
    row["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None
    print("RESULT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
