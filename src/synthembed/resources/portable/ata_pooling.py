"""Anchor-token-aware (ATA) pooling as a self-contained sentence-transformers custom module.

This file travels inside every model folder that uses ATA (``<model>/ata_pooling.py``, named by
``modules.json`` as ``ata_pooling.AtaPooling``), so the model loads with
``SentenceTransformer(path, trust_remote_code=True)`` where only torch, transformers and
sentence-transformers are installed. It imports nothing else on purpose. SynthEmbed loads this same
file for its own use (``synthembed.models.ata``).

Method (METHODS.md 3.3): ``w_j ∝ (1/H) Σ_h (1/n) Σ_i A^h_ij`` over real query positions ``i`` and
heads ``h`` of the *last* attention layer, normalised over real keys ``j``; ``e = Σ_j w_j h_j``.

How the attention reaches the pooling:
1. ``capture_attention`` is registered in transformers' ``AttentionInterface`` as ``"synthembed_ata"``:
   eager attention that also stashes its probabilities, and accepts every mask format the model-level
   implementation builds (SDPA's boolean mask, ``None`` for "causal"/"full", additive floats).
2. ``attach_ata`` gives only the last attention layer its own config copy naming that implementation;
   the other layers keep SDPA/flash, and the saved ``config.json`` stays the model's own.
3. ``AtaPooling.on_model_ready`` (sentence-transformers' hook, fired on build and load) attaches it.

Options (saved in the module config): ``head_reduction`` (mean | max over heads), ``query_reduction``
(mean over real queries | last real query), ``mean_mix`` (``w = (1-α)·w_ata + α·uniform``),
``skip_first`` (exclude the first real token, the attention sink of causal models).
"""

from __future__ import annotations

import copy
import inspect
import os
import shutil
import threading
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module
from torch import Tensor
from transformers import AttentionInterface, PretrainedConfig, PreTrainedModel

ATA_ATTENTION = "synthembed_ata"
CODE_FILE = "ata_pooling.py"
_CAPTURE_ATTR = "_synthembed_ata_capture"
_ORIGINAL_CONFIG_ATTR = "_synthembed_ata_original_config"


class AtaError(ValueError):
    """ATA cannot run on this model or input; the message says why."""


class AttentionCapture:
    """Holds the last attention probabilities (batch, heads, q, k) one layer produced, per thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def store(self, probs: Tensor) -> None:
        self._local.probs = probs

    def take(self) -> Tensor | None:
        """Return and forget the stored probabilities (so a stale batch is never reused)."""
        probs = getattr(self._local, "probs", None)
        self._local.probs = None
        return probs


def _additive_mask(
    module: torch.nn.Module, attention_mask: Tensor | None, q_len: int, k_len: int, dtype: torch.dtype, device: torch.device
) -> Tensor | None:
    """Any mask format the model built -> an additive float mask (batch|1, 1|heads, q, k), or None."""
    min_value = torch.finfo(dtype).min
    if attention_mask is None:
        if getattr(module, "is_causal", False) and q_len > 1:
            # SDPA skipped materialising a causal mask: rebuild it (queries are the last q_len keys).
            q_pos = torch.arange(q_len, device=device).unsqueeze(1) + (k_len - q_len)  # (q, 1)
            k_pos = torch.arange(k_len, device=device).unsqueeze(0)  # (1, k)
            return torch.where(k_pos <= q_pos, 0.0, min_value).to(dtype)[None, None]  # (1, 1, q, k)
        return None
    mask = attention_mask[..., :k_len]
    if mask.dtype == torch.bool:
        return torch.where(mask, 0.0, min_value).to(dtype)  # (batch, 1, q, k)
    return mask.to(dtype)


def capture_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """Eager attention that stashes its probabilities in the module's `AttentionCapture`.

    query (batch, heads, q, d); key/value (batch, kv_heads, k, d) with kv_heads dividing heads (GQA).
    Returns (attn_output (batch, q, heads, d), probs (batch, heads, q, k)) like transformers' eager.
    """
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:
        key = key.repeat_interleave(n_rep, dim=1)  # (batch, heads, k, d)
        value = value.repeat_interleave(n_rep, dim=1)  # (batch, heads, k, d)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, q, k)
    mask = _additive_mask(module, attention_mask, query.shape[2], key.shape[2], scores.dtype, scores.device)
    if mask is not None:
        scores = scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)  # (batch, heads, q, k)
    capture = getattr(module, _CAPTURE_ATTR, None)
    if capture is not None:
        capture.store(probs)
    dropped = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    attn_output = torch.matmul(dropped, value).transpose(1, 2).contiguous()  # (batch, q, heads, d)
    return attn_output, probs


AttentionInterface.register(ATA_ATTENTION, capture_attention)


# --- Finding the attention layer: every use of transformers' model declarations lives here. -------------


def declared_attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Attention modules of `model` as transformers itself declares them, in registration order.

    Reads ``PreTrainedModel.can_record_outputs["attentions"]`` (the classes transformers records
    ``output_attentions`` from; ``_can_record_outputs`` on releases without the property) of each
    pretrained (sub)model, resolving a class, a class name, an ``OutputRecorder`` or a list of them.
    Empty when the model declares nothing.
    """
    found: list[torch.nn.Module] = []
    for prefix, sub in model.named_modules():
        if not isinstance(sub, PreTrainedModel):
            continue
        declared = getattr(sub, "can_record_outputs", None)
        if declared is None:
            declared = getattr(type(sub), "_can_record_outputs", None)
        specs = (declared or {}).get("attentions")
        if specs is None:
            continue
        for spec in specs if isinstance(specs, list) else [specs]:
            target = getattr(spec, "target_class", spec if isinstance(spec, type) else None)
            class_name = getattr(spec, "class_name", spec if isinstance(spec, str) else None)
            layer_name = getattr(spec, "layer_name", None)
            for name, module in sub.named_modules(prefix=prefix):
                hit = (target is not None and isinstance(module, target)) or (
                    class_name is not None and (name.endswith(class_name) or type(module).__name__ == class_name)
                )
                if hit and (layer_name is None or f".{layer_name.strip('.')}." in f".{name}."):
                    if all(module is not other for other in found):
                        found.append(module)
    return [m for m in found if isinstance(getattr(m, "config", None), PretrainedConfig)]


def _dispatches_through_interface(module: torch.nn.Module) -> bool:
    """Fallback test: the (unwrapped) forward names transformers' attention-function registry."""
    forward = getattr(type(module), "forward", None)
    if forward is None:
        return False
    code = getattr(inspect.unwrap(forward), "__code__", None)
    return (
        code is not None
        and "ALL_ATTENTION_FUNCTIONS" in code.co_names
        and isinstance(getattr(module, "config", None), PretrainedConfig)
    )


def attention_modules(model: torch.nn.Module, *, allow_fallback: bool = True) -> list[torch.nn.Module]:
    """The attention modules of `model`: declared ones first, else (fallback) a scan of forward code."""
    declared = declared_attention_modules(model)
    if declared or not allow_fallback:
        return declared
    return [m for m in model.modules() if _dispatches_through_interface(m)]


def last_attention_module(model: torch.nn.Module) -> torch.nn.Module:
    """The last attention module (the last layer) of a transformers model; a clear error naming it if none."""
    found = attention_modules(model)
    if not found:
        raise AtaError(
            f"ATA pooling found no attention layer in {type(model).__name__}: it declares none in "
            f"can_record_outputs['attentions'] and none of its modules dispatches through transformers' "
            f"AttentionInterface"
        )
    return found[-1]


def _set_layer_attention(module: torch.nn.Module, implementation: str | None) -> None:
    """Give one attention layer its own config copy naming `implementation` (None: restore the shared one).

    transformers has no public per-layer switch (``set_attn_implementation`` acts on the whole model); the
    layer reads ``self.config._attn_implementation`` when it dispatches, so a private copy is the hook.
    """
    if implementation is None:
        original = module.__dict__.pop(_ORIGINAL_CONFIG_ATTR, None)
        if original is not None:
            module.config = original
        return
    if not hasattr(module, _ORIGINAL_CONFIG_ATTR):
        setattr(module, _ORIGINAL_CONFIG_ATTR, module.config)
        layer_config = copy.deepcopy(module.config)
        layer_config._attn_implementation = implementation
        module.config = layer_config


def attach_ata(hf_model: torch.nn.Module, capture: AttentionCapture) -> torch.nn.Module:
    """Switch only the last attention layer of `hf_model` to the capturing path; return that module.

    Idempotent: attaching twice reuses the layer's config copy and replaces the capture.
    """
    module = last_attention_module(hf_model)
    _set_layer_attention(module, ATA_ATTENTION)
    setattr(module, _CAPTURE_ATTR, capture)
    return module


def detach_ata(hf_model: torch.nn.Module) -> None:
    """Undo `attach_ata`: the last layer goes back to the model's own attention implementation."""
    module = last_attention_module(hf_model)
    _set_layer_attention(module, None)
    module.__dict__.pop(_CAPTURE_ATTR, None)


def hf_model_of(st_model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a SentenceTransformer (the first module whose ``.model`` has attention)."""
    for module in st_model.children():
        inner = getattr(module, "model", None)
        if isinstance(inner, torch.nn.Module) and attention_modules(inner):
            return inner
    names = [type(getattr(m, "model", m)).__name__ for m in st_model.children()]
    raise AtaError(f"ATA pooling found no transformers backbone with attention layers among {names}")


def ata_weights(
    probs: Tensor,
    mask: Tensor,
    head_reduction: str = "mean",
    query_reduction: str = "mean",
    mean_mix: float = 0.0,
    skip_first: bool = False,
) -> Tensor:
    """Token weights (batch, seq) from attention probs (batch, heads, q, k) and the padding mask (batch, seq).

    Weights are zero on padding and sum to one over the real tokens of each row.
    """
    mask = mask.to(torch.float32)
    probs = probs.to(torch.float32)
    per_query = probs.mean(dim=1) if head_reduction == "mean" else probs.amax(dim=1)  # (batch, q, k)
    if query_reduction == "mean":
        received = (per_query * mask.unsqueeze(-1)).sum(dim=1)  # (batch, k)
        received = received / mask.sum(dim=1, keepdim=True).clamp(min=1.0)  # (batch, k)
    else:  # "last": the attention the last real token pays to each token
        positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)  # (1, seq)
        last = torch.where(mask > 0, positions, -1).max(dim=1).values.clamp(min=0)  # (batch,)
        received = per_query[torch.arange(mask.shape[0], device=mask.device), last]  # (batch, k)
    keep = mask.clone()  # (batch, seq)
    if skip_first:
        first = mask.argmax(dim=1)  # (batch,) first real token
        many = mask.sum(dim=1) > 1  # (batch,) only skip when another real token remains
        keep[torch.arange(mask.shape[0], device=mask.device)[many], first[many]] = 0.0
    received = received * keep  # (batch, seq)
    weights = received / received.sum(dim=1, keepdim=True).clamp(min=1e-12)  # (batch, seq)
    if mean_mix > 0.0:
        uniform = keep / keep.sum(dim=1, keepdim=True).clamp(min=1.0)  # (batch, seq)
        weights = (1.0 - mean_mix) * weights + mean_mix * uniform
    return weights


class AtaPooling(Module):
    """Hidden states weighted by the attention each token receives in the last layer (see module doc)."""

    config_keys = ["embedding_dimension", "head_reduction", "query_reduction", "mean_mix", "skip_first"]

    def __init__(
        self,
        embedding_dimension: int,
        head_reduction: str = "mean",
        query_reduction: str = "mean",
        mean_mix: float = 0.0,
        skip_first: bool = False,
    ) -> None:
        super().__init__()
        if head_reduction not in ("mean", "max"):
            raise AtaError(f"ATA head_reduction must be 'mean' or 'max', got {head_reduction!r}")
        if query_reduction not in ("mean", "last"):
            raise AtaError(f"ATA query_reduction must be 'mean' or 'last', got {query_reduction!r}")
        if not 0.0 <= float(mean_mix) <= 1.0:
            raise AtaError(f"ATA mean_mix must lie in [0, 1], got {mean_mix!r}")
        self.embedding_dimension = embedding_dimension
        self.head_reduction = head_reduction
        self.query_reduction = query_reduction
        self.mean_mix = float(mean_mix)
        self.skip_first = bool(skip_first)
        self.capture = AttentionCapture()  # plain object: not a submodule, not saved

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    get_sentence_embedding_dimension = get_embedding_dimension  # the pre-6.0 name

    def on_model_ready(self, model: Any) -> None:
        """sentence-transformers hook (build and load): switch the backbone's last layer to capturing."""
        attach_ata(hf_model_of(model), self.capture)

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        token_embeddings = features["token_embeddings"]  # (batch, seq, dim)
        mask = features.get("attention_mask")
        if mask is None or mask.shape[-1] != token_embeddings.shape[1]:
            mask = torch.ones(token_embeddings.shape[:2], device=token_embeddings.device)
        mask = mask.to(token_embeddings.dtype)  # (batch, seq)
        batch, seq = mask.shape
        probs = self.capture.take()  # (batch, heads, seq, seq)
        if probs is None:
            raise AtaError(
                "ATA pooling found no captured attention: the backbone was not prepared. Build the model "
                "through SentenceTransformer(modules=[...]) or load it, or call "
                "attach_ata(transformer.model, pooling.capture)"
            )
        if probs.shape[0] != batch or probs.shape[-1] != seq:
            raise AtaError(f"ATA captured attention {tuple(probs.shape)} does not match tokens ({batch}, {seq})")
        weights = ata_weights(
            probs, mask, self.head_reduction, self.query_reduction, self.mean_mix, self.skip_first
        )  # (batch, seq)
        pooled = (token_embeddings.to(torch.float32) * weights.unsqueeze(-1)).sum(dim=1)  # (batch, dim)
        features["sentence_embedding"] = pooled.to(token_embeddings.dtype)
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Config into the module folder; this file into the model folder, where ``modules.json``'s
        ``ata_pooling.AtaPooling`` is resolved from (transformers' dynamic-module loading)."""
        self.save_config(output_path)
        source = inspect.getsourcefile(type(self))
        model_folder = os.path.dirname(os.path.normpath(output_path)) or "."
        if source and os.path.abspath(source) != os.path.abspath(os.path.join(model_folder, CODE_FILE)):
            shutil.copyfile(source, os.path.join(model_folder, CODE_FILE))
