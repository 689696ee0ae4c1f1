"""`synthembed synthesize METHOD ...`: write training data with an LLM.

Method subcommands are discovered from the package `synthembed.cli.synthesize_methods`: each module
there (not starting with ``_``) defines ``register(method_subparsers)``, exactly like the top-level
discovery in `synthembed.cli`. The ``add_*_arguments`` helpers and their ``*_from_args`` partners are
shared by all methods, so every method takes the same backend, run and input options.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path
from typing import Any

__all__ = [
    "add_backend_arguments",
    "add_input_arguments",
    "add_run_arguments",
    "add_sampling_arguments",
    "backend_from_args",
    "backend_options_from_args",
    "finish_run",
    "resume_command",
    "input_rows_from_args",
    "register",
    "run_options_from_args",
    "sampling_from_args",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    from synthembed.cli import synthesize_methods

    parser = subparsers.add_parser(
        "synthesize",
        help="write training data with an LLM (SynCSE triplets, ranked chains, graded negatives)",
        description=__doc__.splitlines()[0],
    )
    methods = parser.add_subparsers(dest="method", required=True, metavar="METHOD")
    for info in sorted(pkgutil.iter_modules(synthesize_methods.__path__), key=lambda i: i.name):
        if info.name.startswith("_") or info.ispkg:
            continue
        module = importlib.import_module(f"{synthesize_methods.__name__}.{info.name}")
        module.register(methods)


# ---------------------------------------------------------------- backend options
def add_backend_arguments(parser: argparse.ArgumentParser, *, default_backend: str = "transformers") -> None:
    """--backend, --model, --base-url, --api-key-env, --concurrency, --timeout, --max-retries, --batch-size, --dtype, --device, --threads, --n-ctx."""
    group = parser.add_argument_group("LLM backend")
    group.add_argument("--backend", default=default_backend, choices=["openai", "transformers", "llamacpp", "fake"])
    group.add_argument(
        "--model",
        default="embedded",
        help="model: server model name (openai), folder / hub id / .gguf / 'embedded' = packaged SmolLM2 (transformers), "
        ".gguf / 'embedded' (llamacpp)",
    )
    group.add_argument("--base-url", nargs="+", default=["http://127.0.0.1:8000/v1"], metavar="URL",
                       help="OpenAI-compatible server URL(s) (openai); several spread the requests, "
                       "--concurrency each, skipping a server that keeps failing")
    group.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="name of the environment variable holding the API key (openai; the key is never logged)",
    )
    group.add_argument("--concurrency", type=int, default=16, help="requests in flight per server (openai)")
    group.add_argument("--timeout", type=float, default=120.0, help="seconds per HTTP request (openai)")
    group.add_argument("--max-retries", type=int, default=6, help="retries on timeouts, 429 and 5xx (openai)")
    group.add_argument("--batch-size", type=int, default=8, help="requests per forward batch (transformers)")
    group.add_argument("--dtype", default="auto",
                       help="auto (float32 on CPU), float32 or bfloat16 (transformers; bfloat16: ~3x faster prompts on CPUs "
                       "with avx512_bf16, but outputs then depend slightly on batch composition)")
    group.add_argument("--device", default=None, help="torch device (transformers; default cpu, or cuda if present)")
    group.add_argument("--threads", default="auto",
                       help="CPU threads (transformers, llamacpp): a number, 'default', or 'auto' = 1 when the machine is oversubscribed")
    group.add_argument("--n-ctx", type=int, default=4096, help="context length in tokens, prompt + answer (llamacpp)")


def backend_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword options of `synthembed.llm.create_backend` for the chosen backend."""
    if args.backend == "openai":
        return {
            "model": args.model,
            "base_url": args.base_url,
            "api_key_env": args.api_key_env,
            "concurrency": args.concurrency,
            "timeout": args.timeout,
            "max_retries": args.max_retries,
        }
    if args.backend == "transformers":
        return {"model": args.model, "batch_size": args.batch_size, "dtype": args.dtype, "device": args.device,
                "threads": args.threads}
    if args.backend == "llamacpp":
        return {"model": args.model, "threads": args.threads, "n_ctx": args.n_ctx}
    return {"model": args.model if args.model != "embedded" else "fake-model"}


def backend_from_args(args: argparse.Namespace):
    """Create the backend the arguments ask for."""
    from synthembed.llm import create_backend

    return create_backend(args.backend, **backend_options_from_args(args))


# ---------------------------------------------------------------- sampling options
def add_sampling_arguments(
    parser: argparse.ArgumentParser, *, temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 128
) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("--temperature", type=float, default=temperature)
    group.add_argument("--top-p", type=float, default=top_p)
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens)


def sampling_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """temperature/top_p/max_new_tokens as keyword arguments of `SamplingParams`."""
    return {"temperature": args.temperature, "top_p": args.top_p, "max_new_tokens": args.max_new_tokens}


# ---------------------------------------------------------------- run options
def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--output, --limit, --seed, --token-budget, --shard-size, --cache, --no-cache, --retry-errors, --overwrite, --no-progress."""
    group = parser.add_argument_group("run")
    group.add_argument("--output", type=Path, required=True, help="output folder (resumed if it exists)")
    group.add_argument("--limit", type=int, default=None, help="process at most this many input rows")
    group.add_argument("--seed", type=int, default=0, help="run seed; each request's seed derives from it and the row id")
    group.add_argument("--token-budget", type=int, default=None, help="stop sending requests after this many tokens")
    group.add_argument("--shard-size", type=int, default=100, help="rows per output shard")
    group.add_argument("--flush-seconds", type=float, default=30.0, help="write a partial shard at least this often")
    group.add_argument("--cache", type=Path, default=None, help="request cache file (default OUTPUT/cache.sqlite)")
    group.add_argument("--no-cache", action="store_true", help="do not read or write the request cache")
    group.add_argument("--retry-errors", action="store_true",
                       help="try again, in the same OUTPUT, the rows dropped as backend_error (and requests whose cached "
                       "answer is an error); content drops (meta text, copies, ...) stay as they are")
    group.add_argument("--max-error-rate", type=float, default=0.5,
                       help="circuit breaker: stop (exit 4, resumable) when more than this share of the last "
                       "--error-window requests failed (default 0.5)")
    group.add_argument("--error-window", type=int, default=20, help="circuit breaker window in requests (default 20)")
    group.add_argument("--overwrite", action="store_true", help="delete OUTPUT first instead of resuming it")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of `synthembed.synthesis.runner.RunOptions`."""
    from synthembed.errors import SynthEmbedError

    if not 0 < args.max_error_rate <= 1 or args.error_window < 1:
        raise SynthEmbedError("--max-error-rate must be in (0, 1] and --error-window at least 1")
    return {
        "output": args.output,
        "limit": args.limit,
        "seed": args.seed,
        "token_budget": args.token_budget,
        "shard_size": args.shard_size,
        "flush_seconds": args.flush_seconds,
        "cache_path": None if args.no_cache else (args.cache or args.output / "cache.sqlite"),
        "retry_errors": args.retry_errors,
        "overwrite": args.overwrite,
        "progress": not args.no_progress,
        "max_error_rate": args.max_error_rate,
        "error_window": args.error_window,
    }


EXIT_INCOMPLETE = 3  # stopped early (token budget): the same command resumes
EXIT_BACKEND_ERRORS = 4  # rows dropped as backend_error or the circuit breaker stopped the run: rerun with --retry-errors


def resume_command(args: argparse.Namespace, *, retry_errors: bool) -> str:
    """The exact command line that continues this run (with --retry-errors when asked), without --overwrite."""
    import shlex

    argv = [a for a in getattr(args, "argv", []) if a != "--overwrite"]
    if retry_errors and "--retry-errors" not in argv:
        argv.append("--retry-errors")
    return shlex.join(["synthembed", *argv])


def finish_run(args: argparse.Namespace, summary: Any) -> int:
    """Print a run's summary and what to do next; the exit code (0 complete, 3 incomplete, 4 backend errors)."""
    import sys

    print(summary.text())
    errors = summary.backend_errors
    if summary.stopped.startswith("circuit breaker"):
        print(f"synthembed: stopped by the {summary.stopped}", file=sys.stderr)
        print(f"everything written is kept; when the server works again, continue with:\n  "
              f"{resume_command(args, retry_errors=True)}", file=sys.stderr)
        return EXIT_BACKEND_ERRORS
    if not summary.complete:
        return EXIT_INCOMPLETE
    if errors:
        print(f"synthembed: {errors} row(s) dropped because the backend failed (backend_error); retry them "
              f"in place with:\n  {resume_command(args, retry_errors=True)}", file=sys.stderr)
        return EXIT_BACKEND_ERRORS
    print(f"records: {args.output / 'records.jsonl'}")
    return 0


# ---------------------------------------------------------------- input options
def add_input_arguments(parser: argparse.ArgumentParser, *, required: bool = True, default_column: str = "text") -> None:
    """--input (text/TSV/CSV/JSONL file) or --dataset (Hugging Face dataset), --column, --split, --dataset-config."""
    group = parser.add_argument_group("input")
    group.add_argument("--input", type=Path, default=None, help="text file (one item a line), or .tsv/.csv/.jsonl with --column")
    group.add_argument("--dataset", default=None, help="Hugging Face dataset name or local folder (with --column)")
    group.add_argument("--dataset-config", default=None)
    group.add_argument("--split", default="train")
    group.add_argument("--column", default=None, help=f"column holding the text (tables, datasets; default {default_column!r})")
    group.add_argument("--keep-duplicates", action="store_true", help="keep repeated input texts (default: skip, counted)")
    parser.set_defaults(_input_required=required, _default_column=default_column)


def input_rows_from_args(args: argparse.Namespace):
    """The input rows (`synthembed.synthesis.inputs.InputRow`) the arguments name, or [] if none and optional."""
    from synthembed.errors import SynthEmbedError
    from synthembed.synthesis.inputs import read_dataset_column, read_input_file

    if args.input is not None and args.dataset is not None:
        raise SynthEmbedError("give --input or --dataset, not both")
    column = args.column or args._default_column
    if args.input is not None:
        return read_input_file(args.input, column=args.column, dedupe=not args.keep_duplicates)
    if args.dataset is not None:
        return read_dataset_column(
            args.dataset, column, split=args.split, config=args.dataset_config, dedupe=not args.keep_duplicates
        )
    if args._input_required:
        raise SynthEmbedError("an input is required: --input FILE or --dataset NAME --column COL")
    return []
