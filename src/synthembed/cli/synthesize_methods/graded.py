"""`synthembed synthesize graded`: MGH records (query, positive, four graded negatives), full or partial."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from synthembed.synthesis.inputs import InputSet
    from synthembed.synthesis.runner import RunSummary


def register(method_subparsers: argparse._SubParsersAction) -> None:
    from synthembed.cli.synthesize import (
        add_backend_arguments,
        add_input_arguments,
        add_run_arguments,
        add_sampling_arguments,
    )

    parser = method_subparsers.add_parser(
        "graded",
        help="MGH: query, positive and four negatives at graded similarity (level 1 hardest)",
        description="MGH (METHODS.md 3.1). full: brainstorm task descriptions, then one JSON record per task; "
        "partial: positive and graded negatives for given queries (--input/--dataset), one JSON answer each; "
        "levels: the same records for given queries, one short few-shot request per text (for small models "
        "that cannot write the JSON record). --limit counts records.",
    )
    parser.add_argument("--mode", choices=["full", "partial", "levels"], default="full")
    add_input_arguments(parser, required=False)
    prompts = parser.add_argument_group("prompts (default: the packaged ones)")
    prompts.add_argument("--brainstorm-prompt", type=Path, default=None, help="template with {n} and {brainstorm}")
    prompts.add_argument("--graded-prompt", type=Path, default=None, help="template with {task}, {query}, {document}")
    prompts.add_argument("--partial-prompt", type=Path, default=None, help="template with {query}")
    prompts.add_argument("--families", type=Path, default=None, help="JSON of task families")
    prompts.add_argument("--example", type=Path, default=None, help="JSON demonstration {task, family, answer}")
    prompts.add_argument("--no-example", action="store_true", help="show no demonstration (shorter prompts)")
    prompts.add_argument("--family", action="append", default=None,
                         help="task family to brainstorm (repeatable; default all five)")
    prompts.add_argument("--tasks-per-request", type=int, default=10, help="task descriptions per brainstorm request")
    prompts.add_argument("--levels-instructions", type=Path, default=None,
                         help="levels mode: JSON object with one instruction per slot (positive, level1..level4)")
    prompts.add_argument("--levels-examples", type=Path, default=None,
                         help="levels mode: JSONL demonstrations {query, positive, negatives: [4 texts]}")
    prompts.add_argument("--few-shot", type=int, default=3, help="levels mode: demonstrations shown per request")
    add_sampling_arguments(parser, temperature=1.0, top_p=0.95, max_new_tokens=700)
    add_backend_arguments(parser)
    add_run_arguments(parser)
    parser.add_argument("--no-guided-json", action="store_true",
                        help="transformers backend: do not constrain decoding to the JSON schema (xgrammar)")
    parser.add_argument("--check-levels", default=None, metavar="MODEL",
                        help="after synthesis, report with this embedding model (e.g. 'embedded') how often the "
                        "levels come out in order of similarity; written to OUTPUT/level_check.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.io.outputs import claim_output

    with claim_output(args.output, 'synthesize graded', "dir"):  # checked and locked before any work
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from synthembed.cli.synthesize import input_rows_from_args, run_options_from_args
    from synthembed.errors import SynthEmbedError
    from synthembed.synthesis.graded import FAMILIES, BrainstormTask, GradedTask, load_prompts, run_graded
    from synthembed.synthesis.runner import RunOptions

    if args.check_levels:  # before any synthesis, not after
        from synthembed.cli._common import check_encoder_reference

        check_encoder_reference(args.check_levels, "--check-levels")
    rows = input_rows_from_args(args)
    if args.mode in ("partial", "levels") and not rows:
        raise SynthEmbedError(f"--mode {args.mode} needs queries: --input FILE or --dataset NAME --column COL")
    if args.mode == "levels":
        return run_levels(args, rows)
    prompts = load_prompts(args.brainstorm_prompt, args.graded_prompt, args.partial_prompt, args.families,
                           args.example, use_example=not args.no_example)
    task = GradedTask(prompts, partial=args.mode == "partial", temperature=args.temperature, top_p=args.top_p,
                      max_new_tokens=args.max_new_tokens)
    if args.mode == "full" and rows:
        raise SynthEmbedError("--mode full brainstorms its own tasks; drop --input/--dataset (or use --mode partial)")
    options = RunOptions(**run_options_from_args(args))
    backend = _backend(args)
    try:
        if args.mode == "partial":
            summary = run_graded(task, backend, options, rows=rows)
        else:
            brainstorm = BrainstormTask(prompts, per_request=args.tasks_per_request,
                                        families=tuple(args.family or FAMILIES), temperature=args.temperature,
                                        top_p=args.top_p)
            summary = run_graded(task, backend, options, brainstorm=brainstorm)
    finally:
        backend.close()
    return _finish(args, summary)


def run_levels(args: argparse.Namespace, rows: InputSet) -> int:
    """``--mode levels``: five few-shot single-sentence requests per query (`LevelsTask`), plain decoding."""
    from synthembed.cli.synthesize import backend_from_args, backend_options_from_args, run_options_from_args
    from synthembed.synthesis.graded_levels import LevelsTask, load_levels_prompts
    from synthembed.synthesis.runner import RunOptions, run_task

    prompts = load_levels_prompts(args.levels_instructions, args.levels_examples)
    task = LevelsTask(prompts, n_examples=0 if args.no_example else args.few_shot, temperature=args.temperature,
                      top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    backend = backend_from_args(args)
    try:
        summary = run_task(task, rows, backend, RunOptions(**run_options_from_args(args)),
                           config={"backend_options": backend_options_from_args(args)})
    finally:
        backend.close()
    return _finish(args, summary)


def _finish(args: argparse.Namespace, summary: RunSummary) -> int:
    """Print the run summary, the records path and (if asked) the level check; the exit code."""
    from synthembed.cli.synthesize import finish_run

    code = finish_run(args, summary)
    if args.check_levels and code == 0:
        check_levels(args.output, args.check_levels)
    return code


def _backend(args: argparse.Namespace):
    """The chosen backend; on transformers, the guided-JSON variant when xgrammar is installed."""
    from synthembed.cli.synthesize import backend_from_args, backend_options_from_args
    from synthembed.synthesis.guided_json import guided_transformers_backend, xgrammar_available

    if args.backend == "transformers" and not args.no_guided_json:
        if xgrammar_available():
            return guided_transformers_backend(**backend_options_from_args(args))
        print("note: xgrammar is not installed; JSON is repaired and validated but not guided (pip install xgrammar)")
    return backend_from_args(args)


def check_levels(output: Path, model_name: str) -> None:
    """Write and print the level-order report of the records in `output`."""
    import json

    from synthembed.io.atomic import atomic_write_json
    from synthembed.models.encoder import load_encoder
    from synthembed.synthesis.graded import level_order_report
    from synthembed.synthesis.records import iter_records

    report = level_order_report(list(iter_records(output)), load_encoder(model_name))
    report["model"] = model_name
    atomic_write_json(output / "level_check.json", report)
    print("level check:", json.dumps(report, indent=1))
