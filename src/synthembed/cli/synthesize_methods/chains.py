"""`synthembed synthesize chains`: ranked sentence chains by classifier-free guidance (METHODS §2.2)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(methods: argparse._SubParsersAction) -> None:
    from synthembed.cli.synthesize import add_input_arguments

    parser = methods.add_parser(
        "chains",
        help="ranked sentence chains s0 > s1 > ... > sK steered by classifier-free guidance (local model)",
        description=(
            "Round 1 rewrites the seed plainly; round k uses P(s_{k-1}) as conditional and P(s_{k-2}) as "
            "negative prompt with guidance scale gamma, greedy by default. Needs a local causal LM."
        ),
    )
    add_input_arguments(parser)
    gen = parser.add_argument_group("chains")
    gen.add_argument("--model", default="embedded", help="'embedded' (packaged SmolLM2), a HF folder, a .gguf file or a hub id")
    gen.add_argument("--rounds", type=int, default=32, help="K: sentences generated per chain (default 32)")
    gen.add_argument("--guidance-scale", type=float, default=1.5, help="gamma (default 1.5)")
    gen.add_argument("--max-new-tokens", type=int, default=100, help="per sentence, at most 100 (default 100)")
    gen.add_argument("--batch-size", type=int, default=16, help="chains advanced together (default 16)")
    gen.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    gen.add_argument("--temperature", type=float, default=1.0, help="with --sample")
    gen.add_argument("--top-p", type=float, default=1.0, help="with --sample")
    gen.add_argument("--prompt-file", type=Path, default=None, help="replace the published prompt (a text file with {x} once)")
    gen.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model dtype (default float32)")
    gen.add_argument("--device", default=None, help="torch device (default cpu)")
    gen.add_argument("--teacher", default=None, help="encoder for the Kendall-tau order check (load_encoder reference)")
    gen.add_argument("--min-tau", type=float, default=None, help="drop chains whose teacher tau is below this (needs --teacher)")
    run = parser.add_argument_group("run")
    run.add_argument("--output", type=Path, required=True, help="output folder (resumed if it exists)")
    run.add_argument("--limit", type=int, default=None, help="use at most this many seed rows")
    run.add_argument("--seed", type=int, default=0, help="run seed (sampling seeds derive from it and the row id)")
    run.add_argument("--token-budget", type=int, default=None, help="stop starting new batches after this many new tokens")
    run.add_argument("--shard-size", type=int, default=16, help="chains per output shard")
    run.add_argument("--overwrite", action="store_true", help="delete OUTPUT first instead of resuming it")
    run.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from synthembed.io.outputs import claim_output

    with claim_output(args.output, 'synthesize chains', "dir"):  # checked and locked before any work
        return _run_locked(args)


def _run_locked(args: argparse.Namespace) -> int:
    import json

    from synthembed.cli.synthesize import input_rows_from_args
    from synthembed.errors import SynthEmbedError
    from synthembed.synthesis.chains import ChainConfig, run_chains

    if args.min_tau is not None and args.teacher is None:
        raise SynthEmbedError("--min-tau needs --teacher (the encoder that scores the chain order)")
    if args.teacher is not None:  # before the LLM is loaded, not after
        from synthembed.cli._common import check_encoder_reference

        check_encoder_reference(args.teacher, "--teacher")
    try:
        config = ChainConfig(
            rounds=args.rounds,
            guidance_scale=args.guidance_scale,
            max_new_tokens=args.max_new_tokens,
            do_sample=args.sample,
            temperature=args.temperature,
            top_p=args.top_p,
            batch_size=args.batch_size,
            seed=args.seed,
            min_tau=args.min_tau,
        )
    except ValueError as exc:
        raise SynthEmbedError(str(exc)) from None
    rows = input_rows_from_args(args).head(args.limit)
    manifest = run_chains(
        rows,
        config,
        args.output,
        model=args.model,
        prompt_file=args.prompt_file,
        teacher=args.teacher,
        dtype=args.dtype,
        device=args.device,
        shard_size=args.shard_size,
        overwrite=args.overwrite,
        token_budget=args.token_budget,
        progress=not args.no_progress,
    )
    summary = {k: manifest[k] for k in ("complete", "counts", "elapsed_s", "teacher_tau") if k in manifest}
    print(json.dumps(summary, indent=2))
    return 0
