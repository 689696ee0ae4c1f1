"""`synthembed report RUN_DIR`: write report.html (plots) and report.md (tables) for a pipeline run."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="write report.html and report.md for a run directory")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--no-model-plots", action="store_true", help="skip plots that need the final model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.errors import SynthEmbedError
    from synthembed.reporting.report import write_report

    if not args.run_dir.is_dir():
        raise SynthEmbedError(f"{args.run_dir}: not a run directory")
    path = write_report(args.run_dir, with_model_plots=not args.no_model_plots)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0
