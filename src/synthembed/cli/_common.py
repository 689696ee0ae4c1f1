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
