"""`synthembed evaluate MODEL`: STS / retrieval / reranking / MTEB scores as a table and results.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthembed.cli._common import add_data_dir_argument, resolve_data_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate an embedding model (STS, retrieval, reranking, MTEB)",
        description=(
            "Evaluate MODEL on the STS suite (Spearman x100 of cosine), BEIR retrieval (nDCG@10, "
            "Recall@100, MRR@10), reranking JSONL (MAP, MRR@10) or MTEB tasks. Tasks whose data is "
            "missing are skipped with a note."
        ),
    )
    parser.add_argument("model", help="model reference accepted by load_encoder (e.g. embedded, a folder, a hub id)")
    parser.add_argument(
        "--tasks",
        default="sts7",
        help="comma-separated tasks: sts12..sts16, stsb, sickr, sts7 (all seven STS), scifact or "
        "retrieval:DIR, rerank:NAME_OR_FILE.jsonl, mteb:TASK, mteb-sts (MTEB(eng, v2)'s STS tasks; hub data), "
        "mteb-local:STS_NAME (a local STS file through mteb's protocol) (default: sts7)",
    )
    parser.add_argument(
        "--split",
        choices=("test", "dev", "train"),
        default="test",
        help="test (default) or dev (= STS-B dev and SICK-R trial; for model selection)",
    )
    add_data_dir_argument(parser)
    parser.add_argument("--output", type=Path, default=None, help="write results.json here (atomic)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pooling", default=None, help="replace the model's pooling (registry name, options after a colon: ata:skip_first=true,mean_mix=0.5)")
    parser.add_argument("--max-length", type=int, default=None, help="truncate inputs to this many tokens")
    parser.add_argument("--no-progress", action="store_true", help="hide the encoding progress bar")
    parser.add_argument(
        "--compare",
        metavar="BASE",
        default=None,
        help="also show the change from BASE per task with a paired bootstrap 95%% interval: BASE is a "
        "results.json written by --output, or a model reference evaluated here with the same settings",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import contextlib

    from synthembed.evaluation.suite import expand_task_names
    from synthembed.io.outputs import claim_output

    if args.batch_size < 1:
        raise SystemExit("synthembed evaluate: --batch-size must be at least 1")
    try:
        tasks = expand_task_names(args.tasks)
    except ValueError as exc:
        raise SystemExit(f"synthembed evaluate: {exc}") from None
    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is not None and not data_dir.is_dir():
        raise SystemExit(f"synthembed evaluate: data folder not found: {data_dir}")
    if args.compare is not None and args.compare.endswith(".json") and not Path(args.compare).is_file():
        from synthembed.errors import SynthEmbedError

        raise SynthEmbedError(f"--compare: results file not found: {args.compare}")
    with contextlib.ExitStack() as stack:
        if args.output is not None:  # checked and locked before the evaluation work, not after it
            stack.enter_context(claim_output(args.output, "evaluate", "file"))
        return _evaluate(args, tasks, data_dir)


def _evaluate(args: argparse.Namespace, tasks: list[str], data_dir: Path | None) -> int:
    from synthembed.evaluation.report import format_table
    from synthembed.evaluation.suite import evaluate_model, json_safe
    from synthembed.io.atomic import atomic_write_json
    from synthembed.models.encoder import load_encoder

    model = load_encoder(args.model, pooling=args.pooling, max_length=args.max_length)
    try:
        results = evaluate_model(
            model,
            tasks,
            split=args.split,
            data_dir=data_dir,
            batch_size=args.batch_size,
            show_progress=not args.no_progress,
            model_name=args.model,
        )
    except ValueError as exc:  # unknown task name
        raise SystemExit(f"synthembed evaluate: {exc}") from None
    results["config"].update({"pooling": args.pooling, "max_length_arg": args.max_length})
    print(format_table(results))
    if args.compare is not None:
        results["compare"] = _compare(args, results, tasks, data_dir)
    if args.output is not None:
        atomic_write_json(args.output, json_safe(results))
        print(f"wrote {args.output}")
    return 0 if results["tasks"] else 1


def _compare(args: argparse.Namespace, results: dict, tasks: list[str], data_dir: Path | None) -> dict:
    """Evaluate (or read) BASE, print the per-task change with its interval, return it for results.json."""
    import json

    from synthembed.errors import SynthEmbedError
    from synthembed.evaluation.compare import compare_results, format_changes
    from synthembed.evaluation.suite import evaluate_model
    from synthembed.models.encoder import load_encoder

    path = Path(args.compare)
    if path.suffix == ".json":
        if not path.is_file():
            raise SynthEmbedError(f"--compare: results file not found: {path}")
        try:
            base = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise SynthEmbedError(f"--compare: {path} is not JSON ({exc})") from None
        if not isinstance(base, dict) or not isinstance(base.get("tasks"), dict):
            raise SynthEmbedError(f"--compare: {path} is not a results.json (no 'tasks')")
    else:
        base_model = load_encoder(args.compare, pooling=args.pooling, max_length=args.max_length)
        base = evaluate_model(
            base_model, tasks, split=args.split, data_dir=data_dir, batch_size=args.batch_size,
            show_progress=not args.no_progress, model_name=args.compare,
        )
    try:
        changes = compare_results(base, results)
    except ValueError as exc:  # the two results scored different items
        raise SynthEmbedError(f"--compare: {exc}") from None
    if not changes:
        raise SynthEmbedError(f"--compare: {args.compare} shares no task with this evaluation")
    print()
    print(format_changes(changes, str(base.get("model", args.compare)), args.model))
    return {"base": str(base.get("model", args.compare)), "changes": [c.as_dict() for c in changes]}
