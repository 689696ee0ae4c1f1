"""`load_encoder`: one entry point that turns any model reference into a SentenceTransformer.

Accepted references:
- ``embedded``: the packaged all-MiniLM-L6-v2 (default encoder);
- ``embedded-llm``: the packaged SmolLM2-135M-Instruct GGUF as a decoder backbone (mean pooling);
- a sentence-transformers folder (has ``modules.json``), including SynthEmbed's own: ATA folders (their
  ``ata_pooling.py`` is SynthEmbed's code, checked by hash) and folders saved by older versions
  (``synthembed.models.pooling.*``, converted to sentence-transformers' modules on load);
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

from synthembed.errors import ModelLoadError, SynthEmbedError
from synthembed.models.ata import ATA_TYPE, AtaError, detach_ata, is_known_ata_code
from synthembed.models.embedded import EMBEDDED_ENCODER, EMBEDDED_LLM, embedded_encoder_path, embedded_llm_gguf_path
from synthembed.models.gguf import dequantized_folder
from synthembed.models.modality import pin_text_modality
from synthembed.models.pooling import (
    build_pooling,
    parse_pooling_spec,
    pooling_builder,
    pooling_span,
    rebuild,
    standard_modules,
)

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
            pooling_builder(pooling)
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


def _trust_for(folder: Path) -> bool:
    """Whether loading the local sentence-transformers `folder` may import the module classes it names.

    sentence-transformers 6 asks for ``trust_remote_code=True`` before importing any class outside its
    own namespace. SynthEmbed passes it, without asking, only for classes that are its own code: the
    installed ``synthembed.*`` classes of older folders, and ``ata_pooling.AtaPooling`` when the
    folder's ``ata_pooling.py`` is byte-identical to a file SynthEmbed shipped. Any other custom code
    (or a backbone with its own ``auto_map`` code) is the user's call: a clear error says so.
    """
    try:
        entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [str(e.get("type", "")) for e in entries]
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelLoadError(f"{folder / 'modules.json'} is not a valid modules list: {exc}") from None
    custom = [t for t in types if not t.startswith("sentence_transformers.")]
    if not custom:
        return False
    foreign = [t for t in custom if not t.startswith("synthembed.") and t != ATA_TYPE]
    if ATA_TYPE in custom and not is_known_ata_code(folder / "ata_pooling.py"):
        foreign.append(f"{ATA_TYPE} (its ata_pooling.py differs from SynthEmbed's)")
    if foreign:
        raise ModelLoadError(
            f"{folder} uses custom module code SynthEmbed did not write: {foreign}. If you trust it, load it "
            f"with SentenceTransformer({str(folder)!r}, trust_remote_code=True); a SynthEmbed model can be "
            f"rewritten with `synthembed export`"
        )
    if _has_auto_map(folder / "config.json"):
        raise ModelLoadError(
            f"{folder}: the backbone's config.json names its own modeling code (auto_map); load it with "
            f"SentenceTransformer(..., trust_remote_code=True) if you trust it"
        )
    return True


def _has_auto_map(config_file: Path) -> bool:
    try:
        return "auto_map" in json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _load_sentence_transformer(
    reference: str, device: str | None, model_kwargs: dict[str, Any] | None
) -> SentenceTransformer:
    folder = Path(reference)
    trusted = folder.is_dir() and (folder / "modules.json").is_file() and _trust_for(folder)
    try:
        model = SentenceTransformer(
            reference, device=device, model_kwargs=model_kwargs, trust_remote_code=trusted
        )
    except (OSError, ValueError, ImportError) as exc:
        raise ModelLoadError(f"could not load sentence-transformers model {reference!r}: {exc}") from exc
    return standard_modules(model)  # legacy SynthEmbed modules -> sentence-transformers' own


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
    try:
        model = SentenceTransformer(modules=[transformer, *build_pooling(pooling, dimension)], device=device)
    except AtaError as exc:  # e.g. a backbone without attention layers
        raise ModelLoadError(f"{reference}: {exc}") from None
    pin_text_modality(model)  # sentences are encoded as they are, not wrapped in the chat template
    return model


def replace_pooling(model: SentenceTransformer, pooling: str) -> SentenceTransformer:
    """Return `model` with its pooling modules replaced by the registry's `pooling` (other modules kept).

    A model whose pooling already is `pooling` (same name, no options given) is returned unchanged.
    """
    name, options = parse_pooling_spec(pooling)
    span = pooling_span(model)
    if span is not None and span[0] == name and not options:
        return model
    modules = list(model)
    new = build_pooling(pooling, modules[0].get_embedding_dimension())
    if span is None:
        modules[1:1] = new
    else:
        if span[0] == "ata":
            detach_ata(modules[0].model)  # the last layer goes back to the model's own attention
        modules[span[1] : span[2]] = new
    return rebuild(model, modules)
