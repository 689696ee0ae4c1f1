"""`synthembed report RUN [RUN ...]`: write report.html and report.md for one run, or several side by side."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write report.html and report.md for one or several run directories",
        description=(
            "Write one self-contained report.html (and report.md) for a run: every model's score per task with "
            "the change from the base model and its paired bootstrap 95%% interval, audits of the data and the "
            "training, plots, and what each stage cost. Several runs go side by side in one page."
        ),
    )
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN", help="run directory (the pipeline's output_dir)")
    parser.add_argument(
        "-o", "--output", type=Path, default=None,
        help="where to write the HTML (report.md goes beside it); default RUN/report.html for one run, "
        "./report.html for several",
    )
    parser.add_argument("--no-model-plots", action="store_true", help="skip the plots and audits that need a model")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.errors import SynthEmbedError
    from synthembed.reporting.report import write_report

    for run_dir in args.run_dirs:
        if not run_dir.is_dir():
            raise SynthEmbedError(f"{run_dir}: not a run directory")
    output = args.output
    if output is None and len(args.run_dirs) > 1:
        output = Path("report.html")
    if output is not None and output.suffix != ".html":
        raise SynthEmbedError(f"--output {output}: the report's file name must end in .html")
    path = write_report(args.run_dirs, output=output, with_model_plots=not args.no_model_plots)
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0
