"""Listwise ranking for bi-encoders (METHODS.md §2.3): ListMLE over each list's cosine scores.

Two kinds of targets, one objective:

- ``targets="teacher"`` (ranking refinement): one example is one chain ``s0..sK`` (the dataset's
  columns ``s0 … sK``, n = K + 1 sentences) and its label is a frozen teacher's cosine matrix
  ``(n, n)`` (precomputed, see `synthembed.training.refine`):

  - teacher scores ``A = cos(t_i, t_j) / τ2`` (``teacher_scale = 1/τ2``, τ2 = 0.05);
  - targets ``Y = A + T`` with the rank prior ``T`` (`synthembed.losses.rank_prior`, ω = 0.5);
  - student scores ``C = cos(z_i, z_j) / τ`` (``scale = 1/τ``, τ = 0.05);
  - ListMLE per row i, π sorting row i of Y descending (ties broken at random):
    ``L = mean_i Σ_p [ log Σ_{q ≥ p} exp(C_{i,π(q)}) − C_{i,π(p)} ]``;
  - optional InfoNCE on (s0, s1) pairs with in-batch negatives (weight ``infonce_weight``);
  - optional distillation ``KL(softmax(A_i) ‖ softmax(C_i))`` per row (weight ``distill_weight``).

- ``targets="graded"`` (no teacher): one example is a query and n candidates (columns ``query,
  candidate_1 … candidate_n``) with a label of n graded relevances; ``C_j = cos(q, d_j) / τ`` and
  ListMLE ranks the candidates in the order of their relevance (ties broken at random).

`ListwiseRankingLoss.forward` returns a dict of named, already weighted terms; sentence-transformers'
trainer sums them and logs each. `ChainRankingLoss` is the teacher mode under the name ``refine`` records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthembed.losses.rank_prior import rank_prior_targets

__all__ = ["ChainRankingLoss", "ListwiseRankingLoss", "listmle", "pairwise_cosine", "tie_broken_order"]

TARGETS = ("teacher", "graded")


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


class ListwiseRankingLoss(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        targets: str = "teacher",
        scale: float = 20.0,
        teacher_scale: float = 20.0,
        omega: float = 0.5,
        listmle_weight: float = 1.0,
        infonce_weight: float = 0.0,
        distill_weight: float = 0.0,
        seed: int | None = None,
    ) -> None:
        """ListMLE for bi-encoders over lists of texts scored by cosine similarity.

        Args:
            model: the SentenceTransformer being trained.
            targets: ``"teacher"``: columns are one list ``s0 … s{n-1}`` whose label is a teacher's cosine
                matrix ``(n, n)``, and each row's targets are teacher scores plus the rank prior;
                ``"graded"``: columns are ``query, candidate_1 … candidate_n`` whose label holds n graded
                relevances (higher = more relevant; any real numbers); no teacher needed.
            scale: ``1/τ`` for the student's cosines (20 = 1/0.05).
            teacher_scale: ``1/τ2`` for the teacher's cosines (teacher mode).
            omega: rank-prior damping ω (teacher mode).
            listmle_weight: weight of the ListMLE term.
            infonce_weight: weight of InfoNCE on (s0, s1) with in-batch negatives (teacher mode).
            distill_weight: weight of the row-softmax KL to the teacher (teacher mode).
            seed: seeds the random order among tied targets (None: torch's global generator).

        References:
            - Ranking refinement of sentence embeddings with LLM-written ranked sentence chains
              (METHODS.md §2.3); ListMLE: Xia et al., *Listwise approach to learning to rank*, ICML 2008.

        Requirements:
            1. Lists of a fixed length n >= 2 per dataset (one text column per list position).
            2. Teacher mode: each row's label is the teacher's ``(n, n)`` cosine matrix of its list (see
               `synthembed.training.refine.teacher_cosines`); the list order is the intended ranking
               (s0 the anchor, similarity falling with position), which the rank prior enforces.
            3. Graded mode: each row's label is a list of n relevance grades, one per candidate column.

        Inputs:
            +-----------------------------------------------+---------------------------------------+---------+
            | Texts                                         | Labels                                | targets |
            +===============================================+=======================================+=========+
            | (s0, s1, ..., s{n-1}) a ranked list           | teacher cosine matrix, n x n floats   | teacher |
            +-----------------------------------------------+---------------------------------------+---------+
            | (query, candidate_1, ..., candidate_n)        | n graded relevances (floats or ints)  | graded  |
            +-----------------------------------------------+---------------------------------------+---------+

        Recommendations:
            - Teacher mode: precompute the teacher matrices once with the model as it is before training
              (what ``synthembed refine`` does) and use a small learning rate (3e-6) and 1 list per step.
            - Graded mode: several lists per batch; each list is ranked on its own (no in-batch candidates).

        Relations:
            - The bi-encoder counterpart of sentence-transformers' cross-encoder ``ListMLELoss``: candidates
              are scored by ``cos(query, candidate) * scale`` instead of a cross-encoder logit.
            - ``targets="graded"`` with n = 2 and grades (1, 0) is a pairwise logistic loss on cosines.
            - `ChainRankingLoss` is this loss with ``targets="teacher"`` (the class ``synthembed refine`` uses).

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from synthembed.losses import ListwiseRankingLoss

                model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
                train_dataset = Dataset.from_dict({
                    "query": ["A man plays a guitar."],
                    "candidate_1": ["Someone plays an instrument."],
                    "candidate_2": ["A man holds a guitar."],
                    "candidate_3": ["A woman is cooking."],
                    "label": [[3, 2, 0]],
                })
                loss = ListwiseRankingLoss(model, targets="graded")
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__()
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if min(listmle_weight, infonce_weight, distill_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if listmle_weight == infonce_weight == distill_weight == 0:
            raise ValueError("at least one loss weight must be > 0")
        if targets == "graded" and (infonce_weight or distill_weight):
            raise ValueError("graded targets have no teacher and no chain order: use listmle_weight only")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.model = model
        self.targets = targets
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
        """`embeddings`: one ``(b, d)`` tensor per column; `labels`: ``(b, n, n)`` teacher cosines (teacher
        mode, n = columns) or ``(b, n)`` relevances (graded mode, n = columns - 1)."""
        if labels is None:
            raise ValueError(f"{type(self).__name__} needs a label column (see the Inputs table)")
        if self.targets == "graded":
            return self._graded(embeddings, labels)
        return self._teacher(embeddings, labels)

    def _graded(self, embeddings: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        if len(embeddings) < 3:
            raise ValueError(f"graded targets need a query and at least 2 candidates, got {len(embeddings)} columns")
        query = F.normalize(embeddings[0].float(), dim=-1)  # (b, d)
        candidates = F.normalize(torch.stack(embeddings[1:], dim=1).float(), dim=-1)  # (b, n, d)
        b, n, _ = candidates.shape
        relevance = labels.to(candidates.device, torch.float32)
        if relevance.shape != (b, n):
            raise ValueError(f"graded targets: labels of shape {tuple(relevance.shape)}, expected (batch, {n}) "
                             f"= one relevance per candidate column")
        student = torch.einsum("bd,bnd->bn", query, candidates) * self.scale  # (b, n)
        order = tie_broken_order(relevance, self._generator)  # (b, n)
        return {"listmle": self.listmle_weight * listmle(student, order)}

    def _teacher(self, embeddings: list[Tensor], labels: Tensor) -> dict[str, Tensor]:
        stacked = torch.stack(embeddings, dim=1).float()  # (b, n, d)
        b, n, _ = stacked.shape
        if labels.numel() != b * n * n:
            raise ValueError(f"teacher targets: labels of shape {tuple(labels.shape)}, expected (batch, {n}, {n}) "
                             f"= the teacher's cosine matrix of each list")
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
        config: dict[str, Any] = {"targets": self.targets, "scale": self.scale, "listmle_weight": self.listmle_weight,
                                  "seed": self.seed}
        if self.targets == "teacher":
            config.update(teacher_scale=self.teacher_scale, omega=self.omega, infonce_weight=self.infonce_weight,
                          distill_weight=self.distill_weight)
        return config

    @property
    def citation(self) -> str:
        return """
@inproceedings{xia2008listwise,
    title = "Listwise Approach to Learning to Rank: Theory and Algorithm",
    author = "Xia, Fen and Liu, Tie-Yan and Wang, Jue and Zhang, Wensheng and Li, Hang",
    booktitle = "Proceedings of ICML 2008",
    year = "2008",
}
"""


class ChainRankingLoss(ListwiseRankingLoss):
    """`ListwiseRankingLoss` with teacher targets: ListMLE refinement on chains against teacher + rank prior."""

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
        super().__init__(model, "teacher", scale, teacher_scale, omega, listmle_weight, infonce_weight,
                         distill_weight, seed)
