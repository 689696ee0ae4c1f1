"""Training length vs inference length of a model (issue 15, item 9).

Training truncates inputs to ``max_length`` tokens (short is fast, and the papers trained at 32), but a
saved model must not keep that limit: a user who loads it with plain ``SentenceTransformer(path)``
would silently truncate every input at inference. `set_training_length` remembers the loaded
model's own (inference) limit before lowering it; `fit` saves the model with that limit restored and
records the training length in ``train_config.yaml`` and the model card.
"""

from __future__ import annotations

from typing import Any

__all__ = ["inference_length", "set_training_length"]

_ATTR = "_synthembed_inference_max_length"


def set_training_length(model: Any, max_length: int | None) -> Any:
    """Set ``model.max_seq_length`` for training, remembering the model's own limit; returns `model`."""
    if not hasattr(model, _ATTR):
        object.__setattr__(model, _ATTR, getattr(model, "max_seq_length", None))
    if max_length is not None:
        model.max_seq_length = max_length
    return model


def inference_length(model: Any) -> int | None:
    """The limit the model had before training lowered it (its current one if never lowered)."""
    return getattr(model, _ATTR, getattr(model, "max_seq_length", None))
