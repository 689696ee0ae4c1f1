"""Dequantize a GGUF checkpoint once and cache it as a plain Hugging Face folder.

transformers can read GGUF directly but dequantizes on every load (about 16 s for SmolLM2-135M);
the cached folder loads in well under a second.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from synthembed.errors import ModelLoadError

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Root of SynthEmbed's cache: $SYNTHEMBED_CACHE, else $XDG_CACHE_HOME/synthembed, else ~/.cache/synthembed."""
    explicit = os.environ.get("SYNTHEMBED_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "synthembed"


def _file_key(path: Path) -> str:
    stat = path.stat()
    digest = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()
    return f"{path.stem}-{digest[:12]}"


def dequantized_folder(gguf_path: str | Path, cache_root: str | Path | None = None) -> Path:
    """Return a Hugging Face folder (config, fp32 safetensors, tokenizer) for a GGUF file, converting once.

    The conversion is written to a temporary folder and renamed into place, so an interrupted
    conversion never leaves a half-written cache entry.
    """
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_path}")
    root = Path(cache_root) if cache_root is not None else cache_dir() / "gguf"
    target = root / _file_key(gguf_path)
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.info("dequantizing %s once into %s", gguf_path, target)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        # Saving fails while the config still claims GGUF quantization; the weights are dense now.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None  # dequantized on load: plain fp32 tensors, safe to save
        model.config.name_or_path = str(gguf_path)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; use its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
