"""`synthembed refine`: ranking refinement of an encoder on chain records (METHODS.md §2.3)."""

from __future__ import annotations

import argparse
from pathlib import Path

from synthembed.cli._common import add_data_dir_argument
from synthembed.cli.train import add_scale_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="refine an encoder on ranked chains (ListMLE against teacher + rank prior)",
        description=(
            "Refine any encoder load_encoder accepts on chain records from `synthembed synthesize chains`. "
            "The teacher is a frozen copy of the starting model unless --teacher names another; the best "
            "checkpoint on STS dev (STS-B dev + SICK-R trial) is saved to --output."
        ),
    )
    parser.add_argument("--data", required=True, help="chain records: records.jsonl, a synthesis output folder, or "
                        "hf:OWNER/NAME[@REV][?split=..] (e.g. hf:leoner24/RankingSentences-NLI-LLaMA3-8B-32; needs the network)")
    parser.add_argument("--columns", default=None, metavar="MAP", help="hf: data: sentences=COLUMN for an undeclared dataset")
    parser.add_argument("--model", default="embedded", help="starting encoder (load_encoder reference)")
    parser.add_argument("--output", type=Path, required=True, help="output folder (resumed from its checkpoints)")
    parser.add_argument("--teacher", default=None, help="teacher encoder (default: frozen copy of --model)")
    parser.add_argument("--pooling", default=None, help="replace the model's pooling (registry name, options after a colon: ata:skip_first=true; default keep)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--list-size", type=int, default=None, help="sentences per list (default: most common chain length)")
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=1, help="lists per step (default 1)")
    parser.add_argument("--warmup-ratio", type=float, default=0.0)
    parser.add_argument("--tau", type=float, default=0.05, help="student temperature (scale = 1/tau)")
    parser.add_argument("--tau2", type=float, default=0.05, help="teacher temperature")
    parser.add_argument("--omega", type=float, default=0.5, help="rank-prior damping")
    parser.add_argument("--listmle-weight", type=float, default=1.0)
    parser.add_argument("--infonce-weight", type=float, default=0.0, help="InfoNCE on (s0, s1), in-batch negatives")
    parser.add_argument("--distill-weight", type=float, default=0.0, help="KL to the teacher's row-softmaxes")
    parser.add_argument("--eval-steps", type=int, default=None, help="evaluate/save every N steps (default: 4 times a run)")
    parser.add_argument("--dev-tasks", default="stsb,sickr", help="comma-separated dev tasks for model selection")
    parser.add_argument("--limit", type=int, default=None, help="use at most this many chains")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--device", default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help="as train")
    add_scale_arguments(parser, cached_loss=False)
    add_data_dir_argument(parser)
    parser.set_defaults(handler=_run)


def _scale_values(args: argparse.Namespace) -> dict[str, object]:
    """The LoRA / checkpointing / worker flags given (None = keep RefineConfig's default)."""
    from synthembed.cli.train import SCALE_KEYS

    values = {key: getattr(args, key, None) for key in SCALE_KEYS if key != "mini_batch_size"}
    if isinstance(values.get("lora_target_modules"), str):
        values["lora_target_modules"] = tuple(m.strip() for m in str(values["lora_target_modules"]).split(",") if m.strip())
    return {key: value for key, value in values.items() if value is not None}


def _run(args: argparse.Namespace) -> int:
    from synthembed.io.outputs import claim_output

    with claim_output(args.output, 'refine', "dir"):  # checked and locked before any work
        return _run_locked(args)


def _run_locked(args: argparse.Namespace) -> int:
    import json

    from synthembed.errors import SynthEmbedError
    from synthembed.training.refine import RefineConfig, refine

    if args.tau <= 0 or args.tau2 <= 0:
        raise SynthEmbedError("--tau and --tau2 must be > 0")
    columns = None
    if args.columns is not None:
        from synthembed.io.hf_datasets import CHAIN_KEYS, parse_columns

        columns = parse_columns(args.columns, CHAIN_KEYS)
    config = RefineConfig(
        columns=columns,
        data=str(args.data),
        model=args.model,
        output=str(args.output),
        teacher=args.teacher,
        pooling=args.pooling,
        max_length=args.max_length,
        list_size=args.list_size,
        learning_rate=args.lr,
        epochs=args.epochs,
        lists_per_step=args.batch_size,
        warmup_ratio=args.warmup_ratio,
        scale=1.0 / args.tau,
        teacher_scale=1.0 / args.tau2,
        omega=args.omega,
        listmle_weight=args.listmle_weight,
        infonce_weight=args.infonce_weight,
        distill_weight=args.distill_weight,
        eval_steps=args.eval_steps,
        data_dir=str(args.data_dir) if args.data_dir else None,
        dev_tasks=[t for t in args.dev_tasks.split(",") if t],
        limit=args.limit,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        **_scale_values(args),
    )
    try:
        results = refine(config)
    except ValueError as exc:
        raise SynthEmbedError(str(exc)) from None
    summary = {k: results[k] for k in ("chains", "list_size", "skipped", "dev_before", "dev_after_best_checkpoint", "wall_s")}
    print(json.dumps(summary, indent=2))
    return 0
