"""`synthembed synthesize syncse`: SynCSE triplets (anchor, positive, hard negative), partial or scratch."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(method_subparsers: argparse._SubParsersAction) -> None:
    from synthembed.cli.synthesize import (
        add_backend_arguments,
        add_input_arguments,
        add_run_arguments,
        add_sampling_arguments,
    )

    parser = method_subparsers.add_parser(
        "syncse",
        help="SynCSE triplets: an LLM writes a positive and a hard negative per anchor",
        description="SynCSE (METHODS.md 1). partial: anchors from --input/--dataset; scratch: anchors written "
        "by the LLM from genre x topics lists first. --limit counts anchors.",
    )
    parser.add_argument("--mode", choices=["partial", "scratch"], default="partial")
    add_input_arguments(parser, required=False)
    pools = parser.add_argument_group("prompt and example pools (default: the packaged ones)")
    pools.add_argument("--positive-prompts", type=Path, default=None, help="text file, one positive instruction a line")
    pools.add_argument("--negative-prompts", type=Path, default=None, help="text file, one hard-negative instruction a line")
    pools.add_argument("--examples", type=Path, default=None, help="JSONL of {anchor, positive, negative} demonstrations")
    pools.add_argument("--genres", type=Path, default=None, help="text file of genres (scratch)")
    pools.add_argument("--topics", type=Path, default=None, help="text file of topics (scratch)")
    pools.add_argument("--few-shot", type=int, default=5, help="demonstrations per request")
    pools.add_argument("--anchors-per-request", type=int, default=8, help="sentences asked per scratch request")
    add_sampling_arguments(parser, temperature=1.0, top_p=0.9, max_new_tokens=96)
    add_backend_arguments(parser)
    add_run_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from synthembed.io.outputs import claim_output

    with claim_output(args.output, 'synthesize syncse', "dir"):  # checked and locked before any work
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from synthembed.cli.synthesize import (
        backend_from_args,
        backend_options_from_args,
        finish_run,
        input_rows_from_args,
        run_options_from_args,
    )
    from synthembed.errors import SynthEmbedError
    from synthembed.synthesis.runner import RunOptions
    from synthembed.synthesis.syncse import AnchorTask, SynCSETask, load_pools, run_syncse

    pools = load_pools(args.positive_prompts, args.negative_prompts, args.examples, args.genres, args.topics)
    task = SynCSETask(pools, n_examples=args.few_shot, temperature=args.temperature, top_p=args.top_p,
                      max_new_tokens=args.max_new_tokens, mode=args.mode)
    rows = input_rows_from_args(args)
    if args.mode == "partial" and not rows:
        raise SynthEmbedError("--mode partial needs anchors: --input FILE or --dataset NAME --column COL")
    if args.mode == "scratch" and rows:
        raise SynthEmbedError("--mode scratch writes its own anchors; drop --input/--dataset (or use --mode partial)")
    options = RunOptions(**run_options_from_args(args))
    backend = backend_from_args(args)
    config = {"backend_options": backend_options_from_args(args)}
    try:
        if args.mode == "partial":
            summary = run_syncse(task, backend, options, rows=rows, config=config)
        else:
            anchor_task = AnchorTask(pools, per_request=args.anchors_per_request, temperature=args.temperature,
                                     top_p=args.top_p)
            summary = run_syncse(task, backend, options, anchor_task=anchor_task, config=config)
    finally:
        backend.close()
    return finish_run(args, summary)
