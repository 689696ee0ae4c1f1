"""`synthembed train`: SynCSE / supervised-SimCSE contrastive training (METHODS.md §1.4).

Flags override the keys of an optional YAML ``--config`` (same names, ``-`` or ``_``); unknown
config keys are rejected. The work is done by `synthembed.training.syncse.train_from_config`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthembed.cli._common import add_data_dir_argument, resolve_data_dir

SCALE_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_merge", "gradient_checkpointing",
              "mini_batch_size", "dataloader_workers")  # shared with refine
TRAIN_ONLY_KEYS = ("model_dtype",)


def add_scale_arguments(parser: argparse.ArgumentParser, *, cached_loss: bool = True) -> None:
    """LoRA, activation checkpointing, the cached loss and loader workers (docs/gpu.md); shared with refine."""
    group = parser.add_argument_group("scale (docs/gpu.md)")
    group.add_argument("--lora-r", type=int, default=None, help="train a LoRA adapter of this rank (needs peft; 0: off)")
    group.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default 2 x rank)")
    group.add_argument("--lora-dropout", type=float, default=None, help="LoRA dropout (default 0.05)")
    group.add_argument("--lora-target-modules", default=None,
                       help="comma-separated module names (e.g. q_proj,v_proj) or all-linear (default)")
    group.add_argument("--lora-merge", action="store_true", default=None,
                       help="write the adapter merged into the weights (a standalone model) instead of the adapter")
    group.add_argument("--gradient-checkpointing", action="store_true", default=None,
                       help="recompute activations in the backward pass: less memory, more time")
    if cached_loss:
        group.add_argument("--mini-batch-size", type=int, default=None,
                           help="cached (GradCache) InfoNCE: encode the batch in chunks of N; memory bounded by N")
    group.add_argument("--dataloader-workers", type=int, default=None,
                       help="tokenize batches in N loader processes, prefetched (default: 4 on CUDA, 0 on CPU)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="contrastive training (InfoNCE with in-batch and hard negatives) on triplets or pairs",
        description="Train a sentence-embedding model with the supervised SimCSE / SynCSE objective.",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML file with any of the keys below")
    parser.add_argument("--data", nargs="+", default=None,
                        help="JSONL records, a synthesis output folder, TSV/CSV/JSONL with named columns, a HF dataset "
                        "folder, or hf:OWNER/NAME[@REV][?split=..&streaming=true] (e.g. hf:sjtu-lit/SynCSE-partial-NLI; "
                        "needs the network); several sources are concatenated")
    parser.add_argument("--output", default=None, help="model folder to write (resumes if it holds checkpoints)")
    parser.add_argument("--model", default=None, help="backbone for load_encoder (default: embedded)")
    parser.add_argument("--pooling", default=None, help="pooling registry name (e.g. cls_mlp, mean, ata), options after a colon: ata:skip_first=true")
    parser.add_argument("--mlp-train-only", action="store_true", default=None, help="cls_mlp: drop the MLP at inference")
    parser.add_argument("--anchor-column", default=None)
    parser.add_argument("--positive-column", default=None)
    parser.add_argument("--negative-column", default=None, help="'none' for pairs without hard negatives")
    parser.add_argument("--columns", default=None, metavar="MAP",
                        help="column mapping, e.g. anchor=sent0,positive=sent1,negative=hard_neg (negative=none: pairs); "
                        "known hf: datasets need none (see docs/ecosystem.md)")
    parser.add_argument("--dataset-split", default=None, help="split of a Hugging Face dataset (default: train)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N usable rows")
    parser.add_argument("--max-bad-rows", type=float, default=None,
                        help="fail when more than this share of the rows is unusable (malformed or empty; default 0.5)")
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="per process")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--warmup-ratio", type=float, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--hard-negative-weight", type=float, default=None, help="SimCSE log-weight b (default 0)")
    parser.add_argument("--mlm-weight", type=float, default=None, help="auxiliary MLM weight (encoders; 0 = off)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--curriculum", default=None, metavar="ORDER",
                        help="graded (MGH) records: train in stages by negative level: curriculum (4->1), reverse, "
                        "random (levels mixed) or single:N")
    parser.add_argument("--stage-fractions", default=None, help="curriculum stage lengths, e.g. 1,1,1,2 (default equal)")
    parser.add_argument("--eval-steps", type=int, default=None, help="dev evaluation every N steps")
    parser.add_argument("--no-dev", action="store_true", help="train without dev evaluation / model selection")
    parser.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints in the output folder")
    parser.add_argument("--save-steps", type=int, default=None,
                        help="resumption checkpoint (with optimizer state) every N steps (default: by time, see next)")
    parser.add_argument("--checkpoint-minutes", type=float, default=None,
                        help="resumption checkpoint after this many minutes of training (default 30; 0: none)")
    add_scale_arguments(parser)
    parser.add_argument("--model-dtype", choices=["float32", "bfloat16", "float16"], default=None,
                        help="load the backbone's weights in this dtype (half precision only with --lora-r: the frozen "
                        "base; a 7B model takes ~14.5 GB in bfloat16)")
    add_data_dir_argument(parser)
    parser.set_defaults(handler=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, object]:
    """The config keys given on the command line (None = not given)."""
    keys = (
        "data", "output", "model", "pooling", "mlp_train_only", "anchor_column", "positive_column",
        "dataset_split", "limit", "max_bad_rows", "epochs", "max_steps", "batch_size", "lr", "warmup_ratio", "max_length",
        "temperature", "hard_negative_weight", "mlm_weight", "precision", "seed", "eval_steps",
        "curriculum", "stage_fractions", "save_steps", "checkpoint_minutes", *SCALE_KEYS, *TRAIN_ONLY_KEYS,
    )
    values: dict[str, object] = {key: getattr(args, key) for key in keys}
    if isinstance(values["data"], list):
        values["data"] = values["data"][0] if len(values["data"]) == 1 else tuple(values["data"])
    if args.columns is not None:
        from synthembed.io.hf_datasets import parse_columns

        for ours, theirs in parse_columns(args.columns).items():
            values[f"{ours}_column"] = theirs
            if theirs is None:
                args.negative_column = "none"
    if args.negative_column is not None:
        values["negative_column"] = None if args.negative_column.lower() in ("none", "null", "") else args.negative_column
    if args.no_resume:
        values["resume"] = False
    if isinstance(values.get("lora_target_modules"), str):
        values["lora_target_modules"] = tuple(m.strip() for m in str(values["lora_target_modules"]).split(",") if m.strip())
    data_dir = resolve_data_dir(args.data_dir)
    if data_dir is not None:
        values["data_dir"] = str(data_dir)
    return values


def run(args: argparse.Namespace) -> int:
    from synthembed.config import TrainConfig, build_config, load_config
    from synthembed.io.outputs import claim_output
    from synthembed.training.syncse import train_from_config
    from synthembed.training.trainer import is_main_process

    overrides = overrides_from_args(args)
    negative_given = "negative_column" in overrides
    config = load_config(TrainConfig, args.config, {k: v for k, v in overrides.items() if v is not None})
    if negative_given and overrides["negative_column"] is None:
        config = build_config(TrainConfig, {**config.to_dict(), "negative_column": None}, "command line")
    config.validate()
    with claim_output(config.output, "train", lock=is_main_process()):  # checked and locked before any work
        if config.curriculum is not None:
            from synthembed.training.curriculum import CurriculumSpec, train_graded

            spec = CurriculumSpec(order=config.curriculum, stage_fractions=config.stage_fractions, seed=config.seed)
            output = train_graded(config, spec, dev=not args.no_dev)
        else:
            output = train_from_config(config, dev=not args.no_dev)
    if is_main_process():  # under torchrun only the main process saves
        print(f"wrote {output}")
    return 0
