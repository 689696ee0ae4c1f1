"""Anchor-token-aware (ATA) pooling: weight each token by the attention it *receives* in the last layer.

METHODS.md section 3.3: ``w_j ∝ (1/H) Σ_h (1/n) Σ_i A^h_ij`` over non-padding query positions ``i`` and
heads ``h``, normalised over non-padding ``j``; ``e = Σ_j w_j h_j``. No new parameters.

How the attention reaches the pooling (the design, in three pieces):

1. ``capture_attention`` is an attention function registered in transformers' ``AttentionInterface``
   under ``"synthembed_ata"``. It is eager attention (explicit ``softmax(QK^T)·V``) that also stashes the
   probabilities. Unlike transformers' own eager function it accepts every mask format the model-level
   implementation builds (SDPA's boolean mask, ``None`` meaning "causal" or "full", additive floats),
   because only the last layer switches: the mask is still built for the fast path.
2. ``attach_ata(transformer)`` gives the *last* attention module its own copy of the config with
   ``_attn_implementation = "synthembed_ata"``, so only that layer runs the explicit path and the rest
   keep SDPA/flash. The saved ``config.json`` is the model's own (untouched), so a saved model is an
   ordinary one; ATA is re-attached on load.
3. ``AtaPooling`` (registry name ``ata``) calls ``attach_ata`` from sentence-transformers'
   ``Module.on_model_ready`` hook, which fires whenever a SentenceTransformer is built or loaded, and
   reads the stashed probabilities from a shared ``AttentionCapture`` (thread-local, so DataParallel
   replicas do not mix) in its forward.

Options (all saved in the pooling's config): ``head_reduction`` (``mean`` | ``max`` over heads),
``query_reduction`` (``mean`` over real queries | ``last`` real query only), ``mean_mix`` (mix weight
of plain mean pooling: ``w = (1-α)·w_ata + α·uniform``), ``skip_first`` (exclude the first real token,
the attention sink of causal models, from the weights).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import torch
from torch import Tensor
from transformers import AttentionInterface, PretrainedConfig

from synthembed.errors import ModelLoadError, SynthEmbedError
from synthembed.models.pooling import _PoolingBase, register_pooling

ATA_ATTENTION = "synthembed_ata"
_CAPTURE_ATTR = "_synthembed_ata_capture"
_ORIGINAL_CONFIG_ATTR = "_synthembed_ata_original_config"


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
            allowed = k_pos <= q_pos  # (q, k)
            return torch.where(allowed, 0.0, min_value).to(dtype)[None, None]  # (1, 1, q, k)
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


def _is_attention_module(module: torch.nn.Module) -> bool:
    """A transformers attention module that dispatches through the attention interface."""
    forward = getattr(type(module), "forward", None)
    code = getattr(forward, "__code__", None)
    return (
        code is not None
        and "ALL_ATTENTION_FUNCTIONS" in code.co_names
        and isinstance(getattr(module, "config", None), PretrainedConfig)
    )


def last_attention_module(model: torch.nn.Module) -> torch.nn.Module:
    """The last attention module (in registration order, i.e. the last layer) of a transformers model."""
    found = [m for m in model.modules() if _is_attention_module(m)]
    if not found:
        raise ModelLoadError(
            f"ATA pooling needs a transformers model whose attention dispatches through "
            f"AttentionInterface; found none in {type(model).__name__}"
        )
    return found[-1]


def attach_ata(hf_model: torch.nn.Module, capture: AttentionCapture) -> torch.nn.Module:
    """Switch only the last attention layer of `hf_model` to the capturing path; return that module.

    Idempotent: attaching twice reuses the layer's config copy and replaces the capture.
    """
    module = last_attention_module(hf_model)
    if not hasattr(module, _ORIGINAL_CONFIG_ATTR):
        setattr(module, _ORIGINAL_CONFIG_ATTR, module.config)
        layer_config = copy.deepcopy(module.config)
        layer_config._attn_implementation = ATA_ATTENTION
        module.config = layer_config
    setattr(module, _CAPTURE_ATTR, capture)
    return module


def detach_ata(hf_model: torch.nn.Module) -> None:
    """Undo `attach_ata`: the last layer goes back to the model's own attention implementation."""
    module = last_attention_module(hf_model)
    original = module.__dict__.pop(_ORIGINAL_CONFIG_ATTR, None)
    if original is not None:
        module.config = original
    module.__dict__.pop(_CAPTURE_ATTR, None)


def _hf_model_of(st_model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a SentenceTransformer (its first module's ``.model``)."""
    for module in st_model.children():
        inner = getattr(module, "model", None)
        if isinstance(inner, torch.nn.Module) and any(_is_attention_module(m) for m in inner.modules()):
            return inner
    raise ModelLoadError("ATA pooling found no transformers backbone in this SentenceTransformer")


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
    if head_reduction == "mean":
        per_query = probs.mean(dim=1)  # (batch, q, k)
    else:
        per_query = probs.amax(dim=1)  # (batch, q, k)
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


@register_pooling("ata")
class AtaPooling(_PoolingBase):
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
        super().__init__(embedding_dimension)
        if head_reduction not in ("mean", "max"):
            raise SynthEmbedError(f"ATA head_reduction must be 'mean' or 'max', got {head_reduction!r}")
        if query_reduction not in ("mean", "last"):
            raise SynthEmbedError(f"ATA query_reduction must be 'mean' or 'last', got {query_reduction!r}")
        if not 0.0 <= float(mean_mix) <= 1.0:
            raise SynthEmbedError(f"ATA mean_mix must lie in [0, 1], got {mean_mix!r}")
        self.head_reduction = head_reduction
        self.query_reduction = query_reduction
        self.mean_mix = float(mean_mix)
        self.skip_first = bool(skip_first)
        self.capture = AttentionCapture()  # plain object: not a submodule, not saved

    def on_model_ready(self, model: Any) -> None:
        """sentence-transformers hook (build and load): switch the backbone's last layer to capturing."""
        attach_ata(_hf_model_of(model), self.capture)

    def pool(self, token_embeddings: Tensor, mask: Tensor, features: dict[str, Any]) -> Tensor:
        probs = self.capture.take()  # (batch, heads, seq, seq)
        batch, seq = mask.shape
        if probs is None:
            raise SynthEmbedError(
                "ATA pooling found no captured attention: the backbone was not prepared. Build the model "
                "through SentenceTransformer(modules=[...]) / load_encoder, or call "
                "synthembed.models.ata.attach_ata(transformer.model, pooling.capture)"
            )
        if probs.shape[0] != batch or probs.shape[-1] != seq:
            raise SynthEmbedError(f"ATA captured attention {tuple(probs.shape)} does not match tokens ({batch}, {seq})")
        weights = ata_weights(
            probs, mask, self.head_reduction, self.query_reduction, self.mean_mix, self.skip_first
        )  # (batch, seq)
        pooled = (token_embeddings.to(torch.float32) * weights.unsqueeze(-1)).sum(dim=1)  # (batch, dim)
        return pooled.to(token_embeddings.dtype)
