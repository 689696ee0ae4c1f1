"""Argument helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DATA_DIR_ENV = "SYNTHEMBED_DATA"


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"benchmark data folder (layout of shared/data); default: ${DATA_DIR_ENV}, else the Hugging Face hub",
    )


def resolve_data_dir(value: Path | None) -> Path | None:
    """The --data-dir value, else $SYNTHEMBED_DATA, else None (meaning: load from the hub)."""
    if value is not None:
        return value
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def check_encoder_reference(reference: str, flag: str) -> None:
    """Fail early (exit 2) on an encoder reference that cannot load, before any other model is loaded.

    Cheap checks only: the packaged names, an existing folder or ``.gguf`` file, a missing path; a hub
    id is checked against the local Hugging Face cache when the hub is offline, else left to the loader.
    """
    from synthembed.errors import SynthEmbedError
    from synthembed.models.embedded import EMBEDDED_ENCODER, EMBEDDED_LLM

    if reference in (EMBEDDED_ENCODER, EMBEDDED_LLM):
        return
    path = Path(reference).expanduser()
    if path.exists():
        if path.is_dir() and not any((path / name).is_file() for name in ("modules.json", "config.json")):
            raise SynthEmbedError(f"{flag} {reference}: the folder holds no model (no modules.json or config.json)")
        return
    looks_like_path = (reference.startswith((".", "/", "~")) or reference.count("/") > 1 or "\\" in reference
                       or reference.endswith(".gguf"))
    if looks_like_path:
        raise SynthEmbedError(f"{flag} {reference}: no such file or folder")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(reference, "config.json"), str):
            raise SynthEmbedError(f"{flag} {reference}: not in the local Hugging Face cache and the hub is offline "
                                  "(HF_HUB_OFFLINE=1)")
