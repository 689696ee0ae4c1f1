"""Ranking refinement of the packaged all-MiniLM-L6-v2 on generated chains: STS dev before and after.

Reads a `synthembed synthesize chains` output folder (its manifest gives the chain count, the
generation wall time and the teacher-tau distribution), refines with the paper's defaults (lr 3e-6,
1 epoch, 1 list per step, ListMLE only, teacher = frozen start) unless told otherwise, and prints
STS-B dev / SICK-R trial Spearman x100 before and after, with wall times. The issue's bar: STS-B dev
must not fall by more than 0.3 points.

    nice -n 5 .venv/bin/python benchmarks/bench_refine.py --chains-dir /tmp/chains --output /tmp/refined
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from synthembed.training.refine import RefineConfig, refine

DATA = Path(os.environ.get("SYNTHEMBED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains-dir", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--eval-steps", type=int, default=None)
    parser.add_argument("--infonce-weight", type=float, default=0.0)
    parser.add_argument("--distill-weight", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    manifest_path = args.chains_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    results = refine(
        RefineConfig(
            data=str(args.chains_dir),
            model=args.model,
            output=str(args.output),
            learning_rate=args.lr,
            epochs=args.epochs,
            eval_steps=args.eval_steps,
            infonce_weight=args.infonce_weight,
            distill_weight=args.distill_weight,
            data_dir=str(DATA),
            seed=args.seed,
        )
    )
    before, after = results["dev_before"], results["dev_after_best_checkpoint"]
    summary = {
        "chains_used": results["chains"],
        "list_size": results["list_size"],
        "generation": {
            "counts": manifest.get("counts"),
            "elapsed_s": manifest.get("elapsed_s"),
            "teacher_tau": manifest.get("teacher_tau"),
        },
        "dev_before": {k: round(v, 2) for k, v in before.items()},
        "dev_after": {k: round(v, 2) for k, v in after.items()},
        "stsb_dev_delta": round(after["dev_stsb_spearman"] - before["dev_stsb_spearman"], 2),
        "wall_s": results["wall_s"],
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
