"""Cached (GradCache) InfoNCE: the loss of `InfoNCELoss` for a large batch in memory bounded by a mini-batch.

The InfoNCE of METHODS.md §1.4 needs every embedding of the batch at once (every anchor meets every
candidate), so activation memory grows with the batch: SynCSE's 512 triplets are 1,536 sequences in
one forward. GradCache (Gao et al., 2021; sentence-transformers' ``CachedMultipleNegativesRankingLoss``
uses the same technique) splits the work in three steps:

1. embed every column in chunks of ``mini_batch_size`` sequences **without** an autograd graph, keeping
   each chunk's RNG state (so dropout can be replayed);
2. compute the InfoNCE (hard-negative weight and cross-process gather included: it is
   `InfoNCELoss.compute_loss_from_embeddings`) on those embeddings as leaves, and take its gradient
   with respect to every embedding;
3. when the trainer calls ``loss.backward()``, a hook re-embeds each chunk **with** a graph (same RNG
   state, so the same dropout masks) and back-propagates the cached embedding gradients through it.

Only one chunk's activations are alive at a time; the price is a second forward pass (about +1/3 of a
step's compute). Loss and gradients equal the uncached loss's (tests/test_cached_infonce.py), except that
dropout masks are drawn per chunk rather than per batch (same distribution, different draws).
Under DDP the re-embedding of every chunk but the last runs inside ``no_sync`` so gradients are
all-reduced once per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from synthembed.losses.infonce import InfoNCELoss


class _RngSnapshot:
    """The CPU (and, for CUDA inputs, that device's) RNG state now; `replay` restores it in a forked RNG."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def _chunk(features: dict[str, Any], begin: int, end: int) -> dict[str, Any]:
    """Rows begin:end of a tokenized column; trailing columns that are padding in every row are dropped."""
    size = features["input_ids"].shape[0] if "input_ids" in features else features["attention_mask"].shape[0]
    out = {k: (v[begin:end] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == size else v) for k, v in features.items()}
    mask = out.get("attention_mask")
    if isinstance(mask, Tensor) and mask.dim() == 2 and mask.shape[1] > 0:
        used = mask.any(dim=0).nonzero()  # (n_used, 1) positions that hold a real token in some row
        width = int(used.max()) + 1 if used.numel() else mask.shape[1]
        if width < mask.shape[1]:
            out = {k: (v[:, :width] if isinstance(v, Tensor) and v.dim() == 2 and v.shape == mask.shape else v)
                   for k, v in out.items()}
    return out


def _rows(features: dict[str, Any]) -> int:
    key = "input_ids" if "input_ids" in features else "attention_mask"
    return int(features[key].shape[0])


class CachedInfoNCELoss(InfoNCELoss):
    """`InfoNCELoss` computed GradCache-style: activation memory bounded by ``mini_batch_size`` sequences.

    Args:
        model, temperature, hard_negative_weight, gather_across_devices: as `InfoNCELoss`.
        mini_batch_size: sequences per forward chunk (per column). Smaller: less memory, same result.

    The MLM auxiliary term is not available here (it needs a graph over the whole batch's tokens).
    In evaluation (no gradient) it computes the plain loss.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        gather_across_devices: bool = True,
        mini_batch_size: int = 32,
    ) -> None:
        super().__init__(model, temperature=temperature, hard_negative_weight=hard_negative_weight,
                         gather_across_devices=gather_across_devices)
        if mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1, got {mini_batch_size}")
        self.mini_batch_size = mini_batch_size

    def _embed(self, features: dict[str, Any]) -> Tensor:
        return self.model(features)["sentence_embedding"]  # (rows, dim)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        columns = list(sentence_features)
        if not torch.is_grad_enabled():
            return super().forward(columns, labels)  # evaluation: nothing to cache
        chunks: list[list[dict[str, Any]]] = []
        states: list[list[_RngSnapshot]] = []
        reps: list[Tensor] = []
        with torch.no_grad():
            for column in columns:
                n = _rows(column)
                parts = [_chunk(column, b, min(b + self.mini_batch_size, n)) for b in range(0, n, self.mini_batch_size)]
                snaps, embedded = [], []
                for part in parts:
                    snaps.append(_RngSnapshot(part["input_ids"].device if "input_ids" in part else torch.device("cpu")))
                    embedded.append(self._embed(part))  # (chunk, dim)
                chunks.append(parts)
                states.append(snaps)
                reps.append(torch.cat(embedded).detach())  # (rows, dim)
        leaves = [r.requires_grad_() for r in reps]
        with torch.enable_grad():
            loss = self.compute_loss_from_embeddings(leaves, labels)
            grads = torch.autograd.grad(loss, leaves)  # per column (rows, dim)
        out = loss.detach().requires_grad_()
        out.register_hook(lambda grad_output: self._backward_chunks(chunks, states, grads, grad_output))
        return out

    def _backward_chunks(
        self,
        chunks: list[list[dict[str, Any]]],
        states: list[list[_RngSnapshot]],
        grads: tuple[Tensor, ...],
        grad_output: Tensor,
    ) -> None:
        """Step 3: re-embed every chunk with a graph (replaying its RNG) and push the cached gradients through."""
        total = sum(len(parts) for parts in chunks)
        sync = getattr(self.model, "no_sync", None)  # DDP: all-reduce once, on the last chunk
        done = 0
        with torch.enable_grad():
            for parts, snaps, grad in zip(chunks, states, grads):
                begin = 0
                for part, snap in zip(parts, snaps):
                    rows = _rows(part)
                    done += 1
                    context = sync() if sync is not None and done < total else contextlib.nullcontext()
                    with context, snap.replay():
                        embedded = self._embed(part)  # (chunk, dim)
                        chunk_grad = grad[begin:begin + rows] * grad_output.to(grad.dtype)
                        torch.autograd.backward(embedded, chunk_grad.to(embedded.dtype))
                    begin += rows

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "mini_batch_size": self.mini_batch_size}


def build_infonce_loss(
    model: nn.Module,
    *,
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    mlm_weight: float = 0.0,
    mlm_probability: float = 0.15,
    mini_batch_size: int | None = None,
) -> InfoNCELoss:
    """`CachedInfoNCELoss` when `mini_batch_size` is set, else the plain `InfoNCELoss`."""
    if mini_batch_size:
        if mlm_weight:
            raise ValueError("the cached loss (mini_batch_size) does not combine with the MLM term (mlm_weight)")
        return CachedInfoNCELoss(model, temperature=temperature, hard_negative_weight=hard_negative_weight,
                                 mini_batch_size=mini_batch_size)
    return InfoNCELoss(model, temperature=temperature, hard_negative_weight=hard_negative_weight,
                       mlm_weight=mlm_weight, mlm_probability=mlm_probability)
