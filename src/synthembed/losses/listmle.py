"""Ranking refinement loss (METHODS.md §2.3): ListMLE against rank-prior targets, plus two options.

One example is one chain ``s0..sK`` (the dataset's columns ``s0 … sK``, n = K + 1 sentences) and its
label is the frozen teacher's cosine matrix ``(n, n)`` (precomputed, see `synthembed.training.refine`).

- teacher scores ``A = cos(t_i, t_j) / τ2`` (``teacher_scale = 1/τ2``, τ2 = 0.05);
- targets ``Y = A + T`` with the rank prior ``T`` (`synthembed.losses.rank_prior`, ω = 0.5);
- student scores ``C = cos(z_i, z_j) / τ`` (``scale = 1/τ``, τ = 0.05);
- ListMLE per row i, π sorting row i of Y descending (ties broken at random):
  ``L = mean_i Σ_p [ log Σ_{q ≥ p} exp(C_{i,π(q)}) − C_{i,π(p)} ]``;
- optional InfoNCE on (s0, s1) pairs with in-batch negatives (weight ``infonce_weight``);
- optional distillation ``KL(softmax(A_i) ‖ softmax(C_i))`` per row (weight ``distill_weight``).

`ChainRankingLoss.forward` returns a dict of named, already weighted terms; sentence-transformers'
trainer sums them and logs each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthembed.losses.rank_prior import rank_prior_targets

__all__ = ["ChainRankingLoss", "listmle", "pairwise_cosine", "tie_broken_order"]


def pairwise_cosine(embeddings: Tensor) -> Tensor:
    """Cosine similarity of every pair inside each list: ``(b, n, d) -> (b, n, n)``."""
    normed = F.normalize(embeddings, p=2, dim=-1)  # (b, n, d)
    return normed @ normed.transpose(-1, -2)  # (b, n, n)


def tie_broken_order(targets: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Column order sorting each row of `targets` descending, equal values in random order; ``(..., n)``.

    A random column permutation followed by a stable sort: among ties, the permuted order wins.
    """
    n = targets.shape[-1]
    perm = torch.randperm(n, generator=generator).to(targets.device)  # (n,)
    order = torch.sort(targets[..., perm], dim=-1, descending=True, stable=True).indices  # (..., n)
    return perm[order]  # (..., n) original column indices


def listmle(scores: Tensor, order: Tensor) -> Tensor:
    """Mean over rows of the ListMLE negative log-likelihood of `order` under `scores`.

    Args:
        scores: student scores ``(..., n)`` (one ranked row per leading index).
        order: column indices, best first, ``(..., n)``.
    Returns: a scalar, ``mean_rows Σ_p [logsumexp_{q ≥ p} s_π(q) − s_π(p)]``.
    """
    ranked = scores.gather(-1, order)  # (..., n) scores in target order
    tails = torch.logcumsumexp(ranked.flip(-1), dim=-1).flip(-1)  # (..., n) log Σ_{q ≥ p} exp
    return (tails - ranked).sum(-1).mean()


class ChainRankingLoss(nn.Module):
    """ListMLE refinement on chains with rank-prior targets; optional InfoNCE and distillation terms."""

    def __init__(
        self,
        model: nn.Module,
        scale: float = 20.0,
        teacher_scale: float = 20.0,
        omega: float = 0.5,
        listmle_weight: float = 1.0,
        infonce_weight: float = 0.0,
        distill_weight: float = 0.0,
        seed: int | None = None,
    ) -> None:
        """`scale` = 1/τ for the student, `teacher_scale` = 1/τ2 for the teacher (both 20 = 1/0.05)."""
        super().__init__()
        if min(listmle_weight, infonce_weight, distill_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if listmle_weight == infonce_weight == distill_weight == 0:
            raise ValueError("at least one loss weight must be > 0")
        self.model = model
        self.scale = scale
        self.teacher_scale = teacher_scale
        self.omega = omega
        self.listmle_weight = listmle_weight
        self.infonce_weight = infonce_weight
        self.distill_weight = distill_weight
        self.seed = seed
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(seed)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> dict[str, Tensor]:
        from sentence_transformers.base.losses.merged_forward import embed_columns

        columns = embed_columns(self.model, sentence_features, separate_first=False)  # n x (b, d)
        return self.compute_loss_from_embeddings(columns, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        """`embeddings`: one ``(b, d)`` tensor per chain position; `labels`: teacher cosines ``(b, n, n)``."""
        stacked = torch.stack(embeddings, dim=1).float()  # (b, n, d)
        b, n, _ = stacked.shape
        teacher_cos = labels.to(stacked.device, torch.float32).reshape(b, n, n)  # (b, n, n)
        student = pairwise_cosine(stacked) * self.scale  # (b, n, n) C
        teacher = teacher_cos * self.teacher_scale  # (b, n, n) A
        terms: dict[str, Tensor] = {}
        if self.listmle_weight > 0:
            targets, _ = rank_prior_targets(teacher, self.omega)  # (b, n, n) Y
            order = tie_broken_order(targets, self._generator)  # (b, n, n)
            terms["listmle"] = self.listmle_weight * listmle(student, order)
        if self.infonce_weight > 0:
            anchors = F.normalize(stacked[:, 0], dim=-1)  # (b, d)
            positives = F.normalize(stacked[:, 1], dim=-1)  # (b, d)
            logits = anchors @ positives.T * self.scale  # (b, b) in-batch negatives off the diagonal
            target = torch.arange(b, device=logits.device)
            terms["infonce"] = self.infonce_weight * F.cross_entropy(logits, target)
        if self.distill_weight > 0:
            log_p_teacher = torch.log_softmax(teacher, dim=-1)  # (b, n, n)
            log_p_student = torch.log_softmax(student, dim=-1)  # (b, n, n)
            kl = F.kl_div(log_p_student, log_p_teacher, log_target=True, reduction="none").sum(-1)  # (b, n)
            terms["distill"] = self.distill_weight * kl.mean()
        return terms

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "teacher_scale": self.teacher_scale,
            "omega": self.omega,
            "listmle_weight": self.listmle_weight,
            "infonce_weight": self.infonce_weight,
            "distill_weight": self.distill_weight,
            "seed": self.seed,
        }
