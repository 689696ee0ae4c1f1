"""Anchor-token-aware (ATA) pooling, registered as ``ata`` in the pooling registry.

The implementation is one self-contained file, ``synthembed/resources/portable/ata_pooling.py``
(see its docstring for the method and the design), because it travels: a saved ATA model carries a
copy as ``<model>/ata_pooling.py`` and names the class ``ata_pooling.AtaPooling`` in ``modules.json``,
sentence-transformers' custom-module convention, so the model loads with
``SentenceTransformer(path, trust_remote_code=True)`` without SynthEmbed installed.

SynthEmbed imports that same file under the module name ``ata_pooling`` so that the class it builds
saves under exactly that name (sentence-transformers writes ``type(module).__module__``) and its own
checkpoints map back to it. This module re-exports the names and decides which folder copies of the
file SynthEmbed may run without asking (`is_known_ata_code`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from synthembed.errors import ModelLoadError

PORTABLE_ATA_FILE = Path(__file__).resolve().parent.parent / "resources" / "portable" / "ata_pooling.py"
ATA_MODULE_NAME = "ata_pooling"
ATA_TYPE = f"{ATA_MODULE_NAME}.AtaPooling"  # the modules.json type of a saved ATA pooling
LEGACY_ATA_TYPE = "synthembed.models.ata.AtaPooling"  # what SynthEmbed saved before the portable file

# sha256 of every released ata_pooling.py; the current file is added at import. A folder whose copy
# matches one of these runs SynthEmbed's own code, so `load_encoder` trusts it without a flag.
RELEASED_ATA_CODE_SHA256: frozenset[str] = frozenset()


def _load_portable() -> ModuleType:
    """Import the portable file as the top-level module ``ata_pooling`` (once per process)."""
    existing = sys.modules.get(ATA_MODULE_NAME)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() != PORTABLE_ATA_FILE:
            raise ModelLoadError(
                f"another module named {ATA_MODULE_NAME!r} is already imported ({existing.__file__}); "
                f"SynthEmbed's ATA pooling needs that name"
            )
        return existing
    spec = importlib.util.spec_from_file_location(ATA_MODULE_NAME, PORTABLE_ATA_FILE)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {PORTABLE_ATA_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[ATA_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[ATA_MODULE_NAME]
        raise
    return module


_portable = _load_portable()

ATA_ATTENTION: str = _portable.ATA_ATTENTION
AtaError: type[Exception] = _portable.AtaError
AtaPooling: Any = _portable.AtaPooling
AttentionCapture: Any = _portable.AttentionCapture
ata_weights = _portable.ata_weights
attach_ata = _portable.attach_ata
detach_ata = _portable.detach_ata
attention_modules = _portable.attention_modules
declared_attention_modules = _portable.declared_attention_modules
last_attention_module = _portable.last_attention_module
capture_attention = _portable.capture_attention

CURRENT_ATA_CODE_SHA256 = hashlib.sha256(PORTABLE_ATA_FILE.read_bytes()).hexdigest()


def is_known_ata_code(path: Path) -> bool:
    """True when `path` is byte-identical to an ATA file SynthEmbed shipped (so running it runs our code)."""
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return False
    return digest == CURRENT_ATA_CODE_SHA256 or digest in RELEASED_ATA_CODE_SHA256


def is_ata_pooling(module: Any) -> bool:
    """An ATA pooling module, whichever copy of the class built it (ours or a model folder's)."""
    return type(module).__name__ == "AtaPooling" and hasattr(module, "capture") and hasattr(module, "mean_mix")
