"""SynthEmbed: train and refine sentence-embedding models on LLM-synthesized data."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "load_encoder"]


def __getattr__(name: str):  # lazy: keep `import synthembed` (and the CLI's --help) fast
    if name == "load_encoder":
        from synthembed.models.encoder import load_encoder

        return load_encoder
    raise AttributeError(name)
