"""Portable model folders: what SynthEmbed writes is an ordinary sentence-transformers model.

`save_portable` is how a trained model is saved: its train-only modules left out (they are identities
at inference) and legacy SynthEmbed modules replaced by sentence-transformers' own, so the folder
loads with plain ``SentenceTransformer(path)`` (``trust_remote_code=True`` for ATA, whose code is in
the folder). `export_model` rewrites any folder `load_encoder` reads (including ones saved by earlier
SynthEmbed versions) into that form, with a completed model card (`synthembed.models.card`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from synthembed.errors import SynthEmbedError
from synthembed.models.card import write_model_card
from synthembed.models.pooling import inference_modules

# Files of a SynthEmbed training folder that describe the model and travel with an export.
RECORD_FILES = ("train_config.yaml", "dev_curve.tsv")


def save_portable(model: Any, folder: str | Path) -> None:
    """Save `model` (a SentenceTransformer) to `folder` in the portable form."""
    inference_modules(model).save_pretrained(str(folder))


def export_model(
    source: str | Path,
    output: str | Path,
    *,
    license: str | None = None,
    model_id: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Load `source` with `load_encoder` and write it to `output` in the portable form, with its card.

    The folder is built beside `output` and renamed into place, so `output` is either absent or complete.
    """
    from synthembed.models.encoder import load_encoder

    output = Path(output)
    source_path = Path(source).expanduser()
    if output.exists():
        if not overwrite:
            raise SynthEmbedError(f"{output} exists; choose another OUT or pass --overwrite")
        if source_path.exists() and output.resolve() == source_path.resolve():
            raise SynthEmbedError("OUT must differ from MODEL (the export is built from it)")
    model = load_encoder(source)
    staging = output.with_name(f".{output.name}.exporting")
    shutil.rmtree(staging, ignore_errors=True)
    save_portable(model, staging)
    if source_path.is_dir():
        for name in RECORD_FILES:
            if (source_path / name).is_file():
                shutil.copyfile(source_path / name, staging / name)
    write_model_card(staging, license=license, model_id=model_id)
    if output.exists():
        shutil.rmtree(output)
    os.replace(staging, output)
    return output
