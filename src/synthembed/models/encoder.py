"""`load_encoder`: one entry point that turns any model reference into a SentenceTransformer.

Accepted references:
- ``embedded``: the packaged all-MiniLM-L6-v2 (default encoder);
- ``embedded-llm``: the packaged SmolLM2-135M-Instruct GGUF as a decoder backbone (mean pooling);
- a sentence-transformers folder (has ``modules.json``);
- a plain Hugging Face model folder (has ``config.json``), encoder or decoder;
- a ``.gguf`` file (dequantized once, cached; see `synthembed.models.gguf`);
- a Hugging Face hub id (loaded from the hub; needs network or a warm HF cache).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.transformer import Transformer
from sentence_transformers.sentence_transformer.modules import Pooling as STPooling

from synthembed.errors import ModelLoadError, SynthEmbedError
from synthembed.models.embedded import EMBEDDED_ENCODER, EMBEDDED_LLM, embedded_encoder_path, embedded_llm_gguf_path
from synthembed.models.gguf import dequantized_folder
from synthembed.models.modality import pin_text_modality
from synthembed.models.pooling import build_pooling, pooling_class

logger = logging.getLogger(__name__)

DEFAULT_POOLING = "mean"


def load_encoder(
    name_or_path: str | Path,
    pooling: str | None = None,
    max_length: int | None = None,
    *,
    device: str | None = None,
    cache_dir: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> SentenceTransformer:
    """Load `name_or_path` as a SentenceTransformer, optionally replacing its pooling.

    Args:
        name_or_path: see the module docstring for the accepted forms.
        pooling: a name from the pooling registry; ``None`` keeps a saved model's pooling and uses
            ``mean`` for plain backbones.
        max_length: maximum tokens per input (truncation); ``None`` keeps the model's setting.
        device: torch device; ``None`` lets sentence-transformers choose.
        cache_dir: where dequantized GGUF copies are cached (default: `synthembed.models.gguf.cache_dir`).
        model_kwargs: passed to ``from_pretrained`` of the backbone (e.g. ``{"dtype": "bfloat16"}``).
    """
    if pooling is not None:
        try:
            pooling_class(pooling)
        except SynthEmbedError as exc:
            raise ModelLoadError(str(exc)) from None
    reference = str(name_or_path)
    gguf_cache = Path(cache_dir) / "gguf" if cache_dir is not None else None

    if reference == EMBEDDED_ENCODER:
        model = _load_sentence_transformer(str(embedded_encoder_path()), device, model_kwargs)
    elif reference == EMBEDDED_LLM:
        folder = dequantized_folder(embedded_llm_gguf_path(), gguf_cache)
        model = _from_backbone(str(folder), pooling or DEFAULT_POOLING, device, model_kwargs)
    else:
        path = Path(reference).expanduser()
        if path.exists():
            model = _load_local(path, pooling, device, gguf_cache, model_kwargs)
        elif _looks_like_path(reference):
            raise ModelLoadError(f"model path does not exist: {reference}")
        else:
            model = _load_hub(reference, pooling, device, model_kwargs)

    if pooling is not None:
        model = replace_pooling(model, pooling)
    if max_length is not None:
        model.max_seq_length = max_length
    return model


def _looks_like_path(reference: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else that does not exist is a missing path."""
    return (
        reference.startswith((".", "/", "~"))
        or reference.count("/") > 1
        or "\\" in reference
        or reference.endswith(".gguf")
    )


def _load_local(
    path: Path,
    pooling: str | None,
    device: str | None,
    gguf_cache: Path | None,
    model_kwargs: dict[str, Any] | None,
) -> SentenceTransformer:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf model; expected a model folder or a GGUF file")
        folder = dequantized_folder(path, gguf_cache)
        return _from_backbone(str(folder), pooling or DEFAULT_POOLING, device, model_kwargs)
    if (path / "modules.json").is_file():
        return _load_sentence_transformer(str(path), device, model_kwargs)
    if (path / "config.json").is_file():
        return _from_backbone(str(path), pooling or DEFAULT_POOLING, device, model_kwargs)
    raise ModelLoadError(
        f"{path} holds no model: expected modules.json (sentence-transformers) or config.json (Hugging Face)"
    )


def _load_hub(
    model_id: str, pooling: str | None, device: str | None, model_kwargs: dict[str, Any] | None
) -> SentenceTransformer:
    try:
        if pooling is None:
            return _load_sentence_transformer(model_id, device, model_kwargs)
        return _from_backbone(model_id, pooling, device, model_kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load {model_id!r} from the Hugging Face hub (no such local path either): {exc}"
        ) from exc


def _only_known_modules(folder: Path) -> bool:
    """True when every module type in a local modules.json belongs to sentence-transformers or SynthEmbed.

    sentence-transformers 6 asks for ``trust_remote_code=True`` before importing any class outside its
    own namespace; SynthEmbed's own pooling classes are installed code, not remote code, so folders that
    use only them (and sentence-transformers' modules) load without that flag.
    """
    try:
        entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(str(e.get("type", "")).startswith(("sentence_transformers.", "synthembed.")) for e in entries)


def _load_sentence_transformer(
    reference: str, device: str | None, model_kwargs: dict[str, Any] | None
) -> SentenceTransformer:
    folder = Path(reference)
    trusted = folder.is_dir() and _only_known_modules(folder)
    try:
        return SentenceTransformer(
            reference, device=device, model_kwargs=model_kwargs, trust_remote_code=trusted
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load sentence-transformers model {reference!r}: {exc}") from exc


def _from_backbone(
    reference: str, pooling: str, device: str | None, model_kwargs: dict[str, Any] | None
) -> SentenceTransformer:
    """A plain Hugging Face backbone (encoder or decoder) followed by a registry pooling."""
    transformer = Transformer(reference, model_kwargs=model_kwargs or {})
    tokenizer = transformer.tokenizer
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token  # decoders often lack a pad token
    tokenizer.padding_side = "right"
    dimension = transformer.get_embedding_dimension()
    model = SentenceTransformer(modules=[transformer, build_pooling(pooling, dimension)], device=device)
    pin_text_modality(model)  # sentences are encoded as they are, not wrapped in the chat template
    return model


def replace_pooling(model: SentenceTransformer, pooling: str) -> SentenceTransformer:
    """Return `model` with its pooling module replaced by the registry's `pooling` (other modules kept)."""
    modules = list(model)
    for index, module in enumerate(modules):
        if isinstance(module, STPooling) or getattr(module, "pooling_name", None) is not None:
            if getattr(module, "pooling_name", None) == pooling:
                return model
            dimension = modules[0].get_embedding_dimension()
            modules[index] = build_pooling(pooling, dimension)
            break
    else:
        dimension = modules[0].get_embedding_dimension()
        modules.insert(1, build_pooling(pooling, dimension))
    return SentenceTransformer(modules=modules, device=str(model.device))
