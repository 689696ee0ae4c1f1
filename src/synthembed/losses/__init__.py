"""Training losses as sentence-transformers losses (one per file; the math in `compute_loss_from_embeddings`).

Each takes the model first and the columns of a `datasets.Dataset` in order, so it plugs into a plain
``SentenceTransformerTrainer(model=..., train_dataset=..., loss=...)`` (see docs/ecosystem.md):

- `InfoNCELoss`: supervised SimCSE / SynCSE InfoNCE with the hard-negative weight and all-gather;
- `GradedNegativesLoss`: InfoNCE over graded (multi-level) hard negatives, one weight per level;
- `ListwiseRankingLoss`: ListMLE for bi-encoders, teacher + rank-prior targets or graded relevances.
"""

from typing import Any

__all__ = ["ChainRankingLoss", "GradedNegativesLoss", "InfoNCELoss", "ListwiseRankingLoss"]

_MODULES = {"ChainRankingLoss": "listmle", "GradedNegativesLoss": "graded", "InfoNCELoss": "infonce",
            "ListwiseRankingLoss": "listmle"}


def __getattr__(name: str) -> Any:
    """Import a loss on first use (importing `synthembed.losses.rank_prior` must not load sentence-transformers)."""
    if name not in _MODULES:
        raise AttributeError(f"module 'synthembed.losses' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"synthembed.losses.{_MODULES[name]}"), name)
