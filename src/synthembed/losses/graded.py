"""InfoNCE over graded hard negatives (METHODS.md 3.1): every level of an MGH record as a negative column.

A graded record ``{query, positive, negatives: [level 1 … level L]}`` (level 1 the hardest) becomes the
row ``(anchor, positive, negative_1 … negative_L)``; the loss is `InfoNCELoss` over that row with the
in-batch candidates, where the own negative of level ``l`` gets its own log-weight ``b_l`` (SimCSE's
hard-negative weight, one per level). With all weights 0 it is what ``synthembed train`` optimises on
graded records without ``--curriculum``. The math is `InfoNCELoss.compute_loss_from_embeddings`; this
class only supplies the per-level weights and checks the column count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from synthembed.losses.infonce import InfoNCELoss

__all__ = ["GradedNegativesLoss"]


class GradedNegativesLoss(InfoNCELoss):
    def __init__(
        self,
        model: nn.Module,
        level_weights: Sequence[float] | None = None,
        temperature: float = 0.05,
        gather_across_devices: bool = True,
    ) -> None:
        """InfoNCE with several graded hard negatives per row, each level with its own log-weight.

        Args:
            model: the SentenceTransformer being trained.
            level_weights: ``b_l`` for the negative columns in order (level 1 first); its length fixes how
                many negative columns a batch must have. None: any number of negative columns, all b = 0.
            temperature: τ; logits are ``cos / τ``.
            gather_across_devices: gather candidates across processes when distributed.

        References:
            - Pan et al., *Negative Matters: Multi-Granularity Hard-Negative Synthesis and Anchor-Token-Aware
              Pooling for Enhanced Text Embeddings*, ACL 2025 (METHODS.md §3).

        Requirements:
            1. (anchor, positive, negative_1, ..., negative_L) n-tuples, negative_l the level-l negative
               (level 1 the most similar to the anchor), the same L in every row.

        Inputs:
            +-------------------------------------------------------+--------+
            | Texts                                                 | Labels |
            +=======================================================+========+
            | (anchor, positive, negative_1, ..., negative_L)       | none   |
            +-------------------------------------------------------+--------+

        Recommendations:
            - Build the columns with `synthembed.training.data.load_training_rows` (graded records sort their
              negatives by level) or `synthembed.io.hf_datasets`; to show one level at a time instead, in a
              curriculum, use `InfoNCELoss` with `synthembed.training.curriculum.CurriculumSampler`.

        Relations:
            - `InfoNCELoss` with one weight for every negative column is the special case of equal weights.
            - With all weights 0 and scale ``1/temperature`` it equals sentence-transformers'
              ``MultipleNegativesRankingLoss`` on the same n-tuples.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from synthembed.losses import GradedNegativesLoss

                model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
                train_dataset = Dataset.from_dict({
                    "anchor": ["how do plants make food"],
                    "positive": ["Plants turn light into sugar by photosynthesis."],
                    "negative_1": ["Plants take up water through their roots."],
                    "negative_2": ["Fungi feed on decaying matter."],
                })
                loss = GradedNegativesLoss(model, level_weights=[0.5, 0.0])
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__(model, temperature=temperature, gather_across_devices=gather_across_devices)
        self.level_weights = None if level_weights is None else [float(w) for w in level_weights]
        if self.level_weights is not None and not self.level_weights:
            raise ValueError("level_weights must name at least one level")

    def negative_column_weights(self, n_negative_columns: int) -> list[float]:
        """``b_l`` per negative column; the batch must have exactly one column per level."""
        if self.level_weights is None:
            return [0.0] * n_negative_columns
        if n_negative_columns != len(self.level_weights):
            raise ValueError(
                f"GradedNegativesLoss has {len(self.level_weights)} level weights but the batch has "
                f"{n_negative_columns} negative column(s); give one column per level (anchor, positive, negative_1, ...)"
            )
        return list(self.level_weights)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """As `InfoNCELoss`, requiring at least one negative column."""
        if len(embeddings) < 3:
            raise ValueError(f"GradedNegativesLoss needs (anchor, positive, negative_1, ...), got {len(embeddings)} columns")
        return super().compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "level_weights": self.level_weights,
                "gather_across_devices": self.gather_across_devices}

    @property
    def citation(self) -> str:
        return """
@inproceedings{pan2025negative,
    title = "Negative Matters: Multi-Granularity Hard-Negative Synthesis and Anchor-Token-Aware Pooling for Enhanced Text Embeddings",
    author = "Pan, Tengyu and others",
    booktitle = "Proceedings of ACL 2025",
    year = "2025",
}
"""
