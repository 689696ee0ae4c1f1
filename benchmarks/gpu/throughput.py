"""Training throughput at one shape: sentence-transformers' trainer + MNRL, ours (`fit` + InfoNCE), and the
model's own forward + backward + AdamW rate on a batch already on the device (no data path at all).

    python throughput.py MODEL_DIR TRIPLETS_TSV --batch-size 512 --max-length 32 --steps 20 --precision bf16

Every side trains the same random-weight model (fresh copies) on the same SNLI triplets; time runs from the
end of step `--warmup` to the end of the last step (warm-up and compilation excluded) and peak device memory
is read per side. Prints one ``RESULT {json}`` line per side (table.py collects them).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("data", type=Path)
p.add_argument("--batch-size", type=int, default=512)
p.add_argument("--max-length", type=int, default=32)
p.add_argument("--steps", type=int, default=20)
p.add_argument("--warmup", type=int, default=3)
p.add_argument("--precision", default="bf16")
p.add_argument("--workers", type=int, default=4, help="our loader workers for the second 'ours' row")
p.add_argument("--sides", default="reference,ours,ours-workers,model")
args = p.parse_args()
logging.basicConfig(level=logging.ERROR)
cuda = torch.cuda.is_available()
name = Path(args.model).name


def sync() -> None:
    if cuda:
        torch.cuda.synchronize()


def peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None


def reset_peak() -> None:
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


class Timer(TrainerCallback):
    def __init__(self) -> None:
        self.seconds, self.steps, self.start = 0.0, 0, None

    def on_step_end(self, a, state, control, **kw):
        if state.global_step == args.warmup:
            sync()
            self.start = time.perf_counter()

    def on_train_end(self, a, state, control, **kw):
        sync()
        self.seconds, self.steps = time.perf_counter() - self.start, state.global_step - args.warmup


def emit(side: str, steps_per_s: float, **extra) -> None:
    row = {"part": "throughput", "model": name, "side": side, "batch": args.batch_size, "max_length": args.max_length,
           "precision": args.precision, "steps_per_s": round(steps_per_s, 3),
           "triplets_per_s": round(steps_per_s * args.batch_size, 1), "peak_gb": peak_gb(), **extra}
    print("RESULT " + json.dumps(row), flush=True)


def reference(model, ds, tmp: Path) -> float:
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    t = Timer()
    a = SentenceTransformerTrainingArguments(
        output_dir=str(tmp / "ref"), per_device_train_batch_size=args.batch_size, learning_rate=5e-5,
        max_steps=args.steps, save_strategy="no", report_to="none", seed=42, disable_tqdm=True,
        bf16=args.precision == "bf16", fp16=args.precision == "fp16", logging_steps=1000, use_cpu=not cuda)
    SentenceTransformerTrainer(model=model, args=a, train_dataset=ds, loss=MultipleNegativesRankingLoss(model, scale=20.0),
                               callbacks=[t]).train()
    return t.steps / t.seconds


def ours(model, ds, tmp: Path, workers: int) -> float:
    from synthembed.losses.infonce import InfoNCELoss
    from synthembed.training.trainer import FitSettings, fit

    t = Timer()
    s = FitSettings(batch_size=args.batch_size, lr=5e-5, max_steps=args.steps, seed=42, precision=args.precision,
                    eval_on_start=False, resume=False, dataloader_workers=workers)
    fit(model, ds, InfoNCELoss(model, temperature=0.05), tmp / f"ours{workers}", settings=s, callbacks=[t])
    return t.steps / t.seconds


def model_rate(model, rows) -> tuple[float, dict]:
    """forward + InfoNCE + backward + fused AdamW on one tokenized batch that stays on the device."""
    from synthembed.losses.infonce import InfoNCELoss

    device = "cuda" if cuda else "cpu"
    model.to(device).train()
    texts = [rows.columns[c][: args.batch_size] for c in ("anchor", "positive", "negative_1")]
    t0 = time.perf_counter()
    tokenize = getattr(model, "preprocess", None) or model.tokenize  # sentence-transformers >= 6.1 / 6.0
    features = [{k: v.to(device) for k, v in tokenize(col).items() if isinstance(v, torch.Tensor)} for col in texts]
    tokenize_ms = (time.perf_counter() - t0) * 1000
    real = sum(int(f["attention_mask"].sum()) for f in features)
    padded = sum(f["attention_mask"].numel() for f in features)
    loss_fn = InfoNCELoss(model, temperature=0.05)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-5, fused=cuda)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    for i in range(args.steps):
        if i == args.warmup:
            sync()
            start = time.perf_counter()
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = loss_fn([dict(f) for f in features], None)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    sync()
    rate = (args.steps - args.warmup) / (time.perf_counter() - start)
    return rate, {"tokenize_ms": round(tokenize_ms, 1), "real_token_share": round(real / padded, 3)}


def main() -> None:
    from synthembed.models.encoder import load_encoder
    from synthembed.models.modality import pin_text_modality
    from synthembed.training.data import load_training_rows

    rows = load_training_rows(args.data, "premise", "entailment", "contradiction")
    ds = rows.to_dataset()
    base = load_encoder(args.model, max_length=args.max_length)
    pin_text_modality(base)
    params = sum(q.numel() for q in base.parameters())
    print(f"{name}: {params / 1e6:.1f}M parameters, {len(ds)} triplets", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides.split(","):
            reset_peak()
            try:
                if side == "reference":
                    emit("sentence-transformers trainer + MNRL", reference(copy.deepcopy(base), ds, Path(tmp)))
                elif side == "ours":
                    emit("synthembed fit + InfoNCE", ours(copy.deepcopy(base), ds, Path(tmp), 0), workers=0)
                elif side == "ours-workers":
                    emit(f"synthembed fit + InfoNCE, {args.workers} loader workers",
                         ours(copy.deepcopy(base), ds, Path(tmp), args.workers), workers=args.workers)
                elif side == "model":
                    rate, extra = model_rate(copy.deepcopy(base), rows)
                    emit("model fwd+bwd+AdamW on a ready batch", rate, **extra)
            except Exception as exc:  # one side failing must not hide the others
                print("RESULT " + json.dumps({"part": "throughput", "model": name, "side": side, "error": repr(exc)[:300]}),
                      flush=True)


if __name__ == "__main__":
    main()
