"""`synthembed run CONFIG.yaml`: run (or --dry-run plan) a whole experiment described in one file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the stages of a pipeline config (synthesize, train, evaluate …)")
    parser.add_argument("config", type=Path, help="pipeline YAML (see configs/)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, LLM calls and token estimate; run nothing")
    parser.add_argument("--only", nargs="+", default=None, metavar="STAGE", help="run only these stages")
    parser.add_argument("--output-dir", type=Path, default=None, help="override the config's output_dir")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html at the end")
    parser.add_argument("--retry-errors", action="store_true",
                        help="synthesis stages re-send the rows an earlier try dropped as backend_error")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import time

    from synthembed.io.outputs import claim_output
    from synthembed.pipeline.config import load_pipeline_config
    from synthembed.pipeline.estimate import print_plan
    from synthembed.cli.synthesize import resume_command
    from synthembed.pipeline.execute import StageFailed, run_pipeline
    from synthembed.pipeline.plan import build_plan, validate_plan

    overrides = {"output_dir": str(args.output_dir)} if args.output_dir else None
    config = load_pipeline_config(args.config, overrides)
    validate_plan(build_plan(config))
    if args.dry_run:
        print_plan(config, build_plan(config))
        return 0
    started = time.perf_counter()
    with claim_output(config.output_dir, "run"):  # checked and locked before any stage runs
        try:
            summary = run_pipeline(config, only=set(args.only) if args.only else None,
                                   retry_errors=args.retry_errors)
        except StageFailed as exc:
            raise StageFailed(f"{exc}; stages before it are kept, rerun: "
                              f"{resume_command(args, retry_errors=True)}") from None
        if not args.no_report:
            from synthembed.reporting.report import write_report

            path = write_report(config.output_dir)
            print(f"report: {path}")
    ran = sum(1 for s in summary["stages"] if s.get("status") == "ran")
    print(f"done in {time.perf_counter() - started:.1f} s ({ran} stage(s) ran, the rest cached) -> {config.output_dir}")
    return 0
