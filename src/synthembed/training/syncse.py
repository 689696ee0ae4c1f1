"""SynCSE / supervised SimCSE training from a `TrainConfig`: data -> model -> InfoNCE -> `fit`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from synthembed.config import TrainConfig
from synthembed.errors import SynthEmbedError

logger = logging.getLogger(__name__)

METHOD = "SynCSE / supervised SimCSE: InfoNCE with in-batch and hard negatives (METHODS.md 1.4)"


def build_model(config: TrainConfig) -> Any:
    """The backbone from `load_encoder` with the configured pooling and max length.

    ``cls_mlp`` with ``mlp_train_only`` trains with the MLP and skips it at inference (SimCSE);
    without it the MLP is kept at inference too (SimCSE's supervised recipe).
    """
    from synthembed.models.encoder import load_encoder
    from synthembed.models.modality import pin_text_modality
    from synthembed.models.pooling import set_mlp_train_only
    from synthembed.training.max_length import set_training_length

    model_kwargs = {"dtype": config.model_dtype} if config.model_dtype else None  # e.g. a 7B base in bf16 under LoRA
    model = load_encoder(config.model, pooling=config.pooling, model_kwargs=model_kwargs)
    pin_text_modality(model)  # plain sentences, not chat messages (see synthembed.models.modality)
    if config.pooling == "cls_mlp" and config.mlp_train_only:
        model = set_mlp_train_only(model)  # the Dense becomes train-only; exports leave it out
    set_training_length(model, config.max_length)  # saved with the model's own limit (training/max_length.py)
    return model


def build_evaluator(config: TrainConfig) -> Any:
    """`DevSTSEvaluator` on the configured dev tasks (STS-B dev, SICK-R trial by default)."""
    from synthembed.evaluation.base import TaskUnavailable
    from synthembed.evaluation.dev import DevSTSEvaluator

    data_dir = Path(config.data_dir) if config.data_dir else None
    try:
        return DevSTSEvaluator(data_dir, tasks=config.dev_tasks, split="dev", batch_size=config.eval_batch_size)
    except (OSError, ValueError, ConnectionError, TaskUnavailable) as exc:
        raise SynthEmbedError(
            f"cannot load the dev sets {list(config.dev_tasks)} (give --data-dir with sts/stsb.dev.tsv and "
            f"sts/sickr.trial.tsv, or --no-dev): {exc}"
        ) from exc


def train_from_config(config: TrainConfig, *, dev: bool = True) -> Path:
    """Run one training as `config` describes; returns the output model folder."""
    from transformers import set_seed

    from synthembed.losses.cached_infonce import build_infonce_loss
    from synthembed.training.data import concatenate_rows, load_training_rows
    from synthembed.training.trainer import FitSettings, fit

    config.validate()
    rows = concatenate_rows([
        load_training_rows(
            source,
            config.anchor_column,
            config.positive_column,
            config.negative_column,
            split=config.dataset_split,
            limit=config.limit,
            max_bad_share=config.max_bad_rows,
        )
        for source in config.data_sources
    ])
    n_negatives = len(rows.columns) - 2
    logger.warning("training rows: %d from %s (%d negative(s) per row)", len(rows), rows.source, n_negatives)
    evaluator = build_evaluator(config) if dev else None
    set_seed(config.seed)  # the MLP of cls_mlp and anything else initialised at load time
    model = build_model(config)
    loss = build_infonce_loss(
        model,
        temperature=config.temperature,
        hard_negative_weight=config.hard_negative_weight,
        mlm_weight=config.mlm_weight,
        mlm_probability=config.mlm_probability,
        mini_batch_size=config.mini_batch_size,
    )
    record = {
        "config": config.to_dict(),
        "data_rows": len(rows),
        "negatives_per_row": n_negatives,
        "skipped_rows": dict(rows.skipped),
        "skipped_examples": rows.examples[:20],
    }
    return fit(
        model,
        rows.to_dataset(),
        loss,
        config.output,
        settings=FitSettings.from_config(config),
        evaluator=evaluator,
        record=record,
        method=METHOD,
        data_description=f"{rows.source} ({n_negatives} hard negative(s) per row)",
    )
