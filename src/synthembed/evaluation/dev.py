"""A sentence-transformers evaluator on the STS dev sets, for checkpoint selection during training.

It reads only dev splits (STS-B dev, SICK-R trial): model selection must never see a test set, so
the split is fixed at construction and ``test`` is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from synthembed.evaluation.encoding import encode_texts
from synthembed.evaluation.metrics import spearman
from synthembed.evaluation.sts import STSTask, load_sts_task

logger = logging.getLogger(__name__)


class DevSTSEvaluator(BaseEvaluator):
    """Spearman x100 of cosine on each dev task and their mean (the primary metric).

    Returns ``{"dev_stsb_spearman", "dev_sickr_spearman", "dev_mean_spearman"}``; the trainer adds
    its ``eval_`` prefix, so select checkpoints with ``metric_for_best_model="eval_dev_mean_spearman"``.
    """

    def __init__(
        self,
        data_dir: Path | str | None,
        tasks: Sequence[str] = ("stsb", "sickr"),
        split: str = "dev",
        *,
        batch_size: int = 64,
        name: str = "dev",
    ) -> None:
        super().__init__()
        if split == "test":
            raise ValueError("DevSTSEvaluator selects models and must never read test sets; use split='dev'")
        if not tasks:
            raise ValueError("DevSTSEvaluator needs at least one task")
        self.split = split
        self.batch_size = batch_size
        self.name = name
        data_path = Path(data_dir) if data_dir is not None else None
        self.tasks: list[STSTask] = [load_sts_task(t, split, data_path) for t in tasks]
        self.greater_is_better = True
        self.primary_metric = f"{name}_mean_spearman"

    def __call__(
        self, model: Any, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        table = encode_texts(
            model,
            (text for task in self.tasks for text in task.texts()),
            batch_size=self.batch_size,
        )
        metrics: dict[str, float] = {}
        for task in self.tasks:
            metrics[f"{self.name}_{task.name}_spearman"] = 100.0 * spearman(task.scores, task.cosine_scores(table))
        metrics[self.primary_metric] = float(np.mean(list(metrics.values())))
        logger.info("dev STS (epoch %s, step %s): %s", epoch, steps, {k: round(v, 2) for k, v in metrics.items()})
        if hasattr(model, "model_card_data"):  # a SentenceTransformer (not a bare test encoder)
            self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    @property
    def description(self) -> str:
        return "STS dev (Spearman x100)"

    def get_config_dict(self) -> dict[str, Any]:
        return {"tasks": [t.name for t in self.tasks], "split": self.split}
