"""Where `synthembed train`'s time goes, against a bare training loop on the same shape (issue 20, item 4).

Runs, in one process, on the same model, data, batch, length and step count:

- ``loop``: `fit` with no evaluator and no checkpoints (what bench_train_throughput.py times);
- ``cli``: `synthembed train` as a user runs it (``--no-dev`` unless ``--dev``), timed from the command to
  its exit, with a callback splitting the trainer's time into steps, evaluations, checkpoint saves and
  the rest, and the time outside the trainer (data, model load, final save).

Prints each phase and the ratio of the CLI's steps/s (steps / whole-command seconds) to the loop's.

    OMP_NUM_THREADS=1 python benchmarks/bench_cli_overhead.py --steps 20 --batch-size 32
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def phase_callback():
    from transformers import TrainerCallback

    class Phases(TrainerCallback):
        """Wall time per phase: steps (step begin -> end), evaluate, save; train = begin -> end."""

        def __init__(self) -> None:
            self.t = {"steps": 0.0, "evaluate": 0.0, "save": 0.0, "train": 0.0}
            self.steps = 0
            self._mark = time.perf_counter()

        def on_train_begin(self, args, state, control, **kw):
            self._begin = self._mark = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            self._mark = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.t["steps"] += now - self._mark
            self.steps = state.global_step
            self._mark = now

        def on_evaluate(self, args, state, control, **kw):
            now = time.perf_counter()
            self.t["evaluate"] += now - self._mark
            self._mark = now

        def on_save(self, args, state, control, **kw):
            now = time.perf_counter()
            self.t["save"] += now - self._mark
            self._mark = now

        def on_train_end(self, args, state, control, **kw):
            self.t["train"] = time.perf_counter() - self._begin

    return Phases()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "nli" / "snli_devtest_triplets.tsv"))
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--dev", action="store_true", help="the CLI run evaluates on the dev sets (default --no-dev)")
    parser.add_argument("--extra", default="", help="more `synthembed train` flags for the CLI run, e.g. '--save-steps 100'")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from synthembed.cli import main as cli
    from synthembed.losses.infonce import InfoNCELoss
    from synthembed.models.encoder import load_encoder
    from synthembed.models.modality import pin_text_modality
    from synthembed.training import trainer as trainer_module
    from synthembed.training.data import load_training_rows
    from synthembed.training.trainer import FitSettings, fit

    limit = args.steps * args.batch_size
    rows = load_training_rows(args.data, "premise", "entailment", "contradiction", limit=limit)
    with tempfile.TemporaryDirectory() as tmp:
        model = load_encoder(args.model, max_length=args.max_length)
        pin_text_modality(model)
        loop = phase_callback()
        settings = FitSettings(batch_size=args.batch_size, lr=5e-5, max_steps=args.steps, precision=args.precision,
                               eval_on_start=False, resume=False)
        fit(model, rows.to_dataset(), InfoNCELoss(model), Path(tmp) / "loop", settings=settings, callbacks=[loop],
            training_args={"save_strategy": "no"})
        loop_rate = loop.steps / loop.t["train"]

        phases = phase_callback()
        real_fit = trainer_module.fit
        trainer_module.fit = lambda *a, **k: real_fit(*a, **{**k, "callbacks": [*k.get("callbacks", ()), phases]})
        flags = ["train", "--data", args.data, "--anchor-column", "premise", "--positive-column", "entailment",
                 "--negative-column", "contradiction", "--model", args.model, "--limit", str(limit),
                 "--max-steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                 "--precision", args.precision, "--output", str(Path(tmp) / "cli"), "--no-resume",
                 *(["--data-dir", args.data_dir] if args.dev else ["--no-dev"]), *args.extra.split()]
        start = time.perf_counter()
        code = cli(flags)
        wall = time.perf_counter() - start
        trainer_module.fit = real_fit
    if code != 0:
        raise SystemExit(f"synthembed train exited {code}")
    t = phases.t
    other = t["train"] - t["steps"] - t["evaluate"] - t["save"]
    print(f"shape: model={args.model} batch={args.batch_size} max_length={args.max_length} steps={args.steps} "
          f"precision={args.precision} dev={args.dev} extra='{args.extra}'")
    print(f"loop: {loop.steps} steps in {loop.t['train']:.2f} s = {loop_rate:.3f} steps/s "
          f"(steps themselves {loop.t['steps']:.2f} s)")
    print(f"cli:  {phases.steps} steps, whole command {wall:.2f} s = {phases.steps / wall:.3f} steps/s; "
          f"trainer loop {t['train']:.2f} s = {phases.steps / t['train']:.3f} steps/s")
    print(f"  steps {t['steps']:.2f} s | evaluations {t['evaluate']:.2f} s | checkpoint saves {t['save']:.2f} s | "
          f"other in loop {other:.2f} s | outside the trainer (data, model load, final save) {wall - t['train']:.2f} s")
    print(f"ratio cli/loop steps/s: whole command {phases.steps / wall / loop_rate:.3f}; "
          f"trainer loop {phases.steps / t['train'] / loop_rate:.3f} (goal >= 0.90)")


if __name__ == "__main__":
    main()
