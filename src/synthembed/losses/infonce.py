"""InfoNCE with hard negatives: the supervised SimCSE / SynCSE objective (METHODS.md §1.4).

For a batch of N rows (anchor x_i, positive x_i+, negatives x_i-^1..x_i-^k) and
``s(a, b) = cos(e(a), e(b)) / τ``::

    L_i = -log exp(s(x_i, x_i+)) / Σ_j [ exp(s(x_i, x_j+)) + Σ_m exp(s(x_i, x_j-^m) + b·1[j = i]) ]

Every in-batch positive and every in-batch hard negative is a negative for every anchor; ``b`` (the
hard-negative log-weight of SimCSE) is added only to the logits of the anchor's *own* negatives.
With ``b = 0``, one negative column and ``scale = 1/τ`` this equals sentence-transformers'
``MultipleNegativesRankingLoss``. Under data parallelism (``torch.distributed`` initialised) the
candidate embeddings are gathered from all processes, with gradients flowing through the local part,
so every process scores its anchors against the global batch's candidates.

An optional masked-language-model auxiliary term (SimCSE's ``do_mlm``: weight 0.1, 15% masking) is
available for encoder backbones that have an MLM head in their checkpoint; the loss then returns a
dict of named terms (``infonce``, ``mlm``), which the trainer sums and logs separately.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def _gather_with_grad(tensor: Tensor) -> tuple[Tensor, int]:
    """All processes' rows concatenated (gradients through the local part) and this rank's row offset."""
    from sentence_transformers.util import all_gather_with_grad, get_rank

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return tensor, 0
    return all_gather_with_grad(tensor), get_rank() * tensor.shape[0]


class InfoNCELoss(nn.Module):
    """Supervised SimCSE InfoNCE over (anchor, positive, negative_1..negative_k) columns.

    Args:
        model: the SentenceTransformer being trained.
        temperature: τ; logits are ``cos / τ`` (so ``scale = 1 / temperature``). Default 0.05.
        hard_negative_weight: ``b``, added to the logit of each row's own hard negative(s). Default 0.
        gather_across_devices: gather candidates across processes when distributed (default True:
            the method needs the global batch's negatives; it is a no-op in a single process).
        mlm_weight: weight of the auxiliary MLM term (0 disables it).
        mlm_probability: share of tokens masked for the MLM term.

    Requirements:
        1. (anchor, positive) pairs, (anchor, positive, negative) triplets or (anchor, positive,
           negative_1, ..., negative_k) n-tuples; every row the same number of negatives.

    Inputs:
        +-------------------------------------------------+--------+
        | Texts                                           | Labels |
        +=================================================+========+
        | (anchor, positive) pairs                        | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative) triplets           | none   |
        +-------------------------------------------------+--------+
        | (anchor, positive, negative_1, ..., negative_k) | none   |
        +-------------------------------------------------+--------+

    Recommendations:
        - ``batch_sampler=BatchSamplers.NO_DUPLICATES`` (or `synthembed.training.curriculum.CurriculumSampler`
          for graded negatives) so no in-batch negative repeats an anchor or positive.

    Relations:
        - With ``hard_negative_weight=0`` it equals ``MultipleNegativesRankingLoss(model, scale=1/temperature)``
          (one direction, cosine similarity); ``b > 0`` is SimCSE's hard-negative weighting, which MNRL lacks.
        - `synthembed.losses.GradedNegativesLoss` is this loss with one weight per graded negative column.

    Example:
        ::

            from datasets import Dataset
            from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
            from synthembed.losses import InfoNCELoss

            model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
            train_dataset = Dataset.from_dict({
                "anchor": ["A man plays a guitar.", "Two dogs run in a field."],
                "positive": ["Someone plays an instrument.", "Dogs are running outside."],
                "negative": ["A man is sleeping.", "Two cats sleep indoors."],
            })
            loss = InfoNCELoss(model, temperature=0.05, hard_negative_weight=0.0)
            trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
            trainer.train()
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.05,
        hard_negative_weight: float = 0.0,
        gather_across_devices: bool = True,
        mlm_weight: float = 0.0,
        mlm_probability: float = 0.15,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if mlm_weight < 0 or not 0 < mlm_probability < 1:
            raise ValueError("mlm_weight must be >= 0 and mlm_probability in (0, 1)")
        self.model = model
        self.temperature = temperature
        self.hard_negative_weight = hard_negative_weight
        self.gather_across_devices = gather_across_devices
        self.mlm_weight = mlm_weight
        self.mlm_probability = mlm_probability
        self.mlm_head: nn.Module | None = None
        if mlm_weight > 0:
            from synthembed.losses.mlm import build_mlm_head

            self.mlm_head = build_mlm_head(model)

    @property
    def scale(self) -> float:
        """``1 / temperature``: the factor cosine similarities are multiplied by."""
        return 1.0 / self.temperature

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor | dict[str, Tensor]:
        sentence_features = list(sentence_features)
        embeddings = embed_columns(self.model, sentence_features)
        loss = self.compute_loss_from_embeddings(embeddings, labels)
        if self.mlm_head is None or not self.training:
            return loss
        from synthembed.losses.mlm import mlm_loss

        mlm = mlm_loss(self.model, self.mlm_head, sentence_features[0], self.mlm_probability)
        return {"infonce": loss, "mlm": self.mlm_weight * mlm}

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """The InfoNCE value from per-column embeddings ``[anchor, positive, negative_1, ...]``, each (batch, dim)."""
        if len(embeddings) < 2:
            raise ValueError(f"InfoNCELoss needs at least 2 columns (anchor, positive), got {len(embeddings)}")
        anchors = embeddings[0]  # (batch, dim)
        batch = anchors.shape[0]
        candidates = torch.cat(embeddings[1:], dim=0)  # ((1 + n_neg) * batch, dim), column-major
        offset = 0
        if self.gather_across_devices:
            gathered = [_gather_with_grad(column) for column in embeddings[1:]]
            offset = gathered[0][1]
            candidates = torch.cat([column for column, _ in gathered], dim=0)  # ((1 + n_neg) * world, dim)
        world = candidates.shape[0] // len(embeddings[1:])  # rows in the global batch

        anchors_n = nn.functional.normalize(anchors, dim=-1)
        candidates_n = nn.functional.normalize(candidates, dim=-1)
        logits = anchors_n @ candidates_n.T * self.scale  # (batch, (1 + n_neg) * world)

        rows = torch.arange(batch, device=anchors.device)  # (batch,)
        own = rows + offset  # (batch,) index of each row's own positive among the candidates
        biases = self.negative_column_weights(len(embeddings) - 2)  # one log-weight per negative column
        if any(b != 0 for b in biases):
            weight = torch.zeros_like(logits)  # (batch, (1 + n_neg) * world)
            for column, bias in enumerate(biases, start=1):
                weight[rows, column * world + own] = bias
            logits = logits + weight
        return nn.functional.cross_entropy(logits, own)

    def negative_column_weights(self, n_negative_columns: int) -> list[float]:
        """The log-weight ``b`` added to each row's own negative, per negative column (all equal here)."""
        return [self.hard_negative_weight] * n_negative_columns

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "hard_negative_weight": self.hard_negative_weight,
            "gather_across_devices": self.gather_across_devices,
            "mlm_weight": self.mlm_weight,
            "mlm_probability": self.mlm_probability,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{zhang2023contrastive,
    title = "Contrastive Learning of Sentence Embeddings from Scratch",
    author = "Zhang, Junlei and Lan, Zhenzhong and He, Junxian",
    booktitle = "Proceedings of EMNLP 2023",
    year = "2023",
}
@inproceedings{gao2021simcse,
    title = "{S}im{CSE}: Simple Contrastive Learning of Sentence Embeddings",
    author = "Gao, Tianyu and Yao, Xingcheng and Chen, Danqi",
    booktitle = "Proceedings of EMNLP 2021",
    year = "2021",
}
"""
