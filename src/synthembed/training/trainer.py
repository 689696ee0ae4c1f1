"""`fit`: the one training entry point every SynthEmbed method calls (SynCSE, ranking refinement, MGH).

It runs sentence-transformers' `SentenceTransformerTrainer` (the Hugging Face Trainer underneath, so
DDP under ``torchrun`` / ``accelerate launch`` works unchanged) and adds, at the trainer's documented
hooks only (training arguments, callbacks, a batch-sampler factory):

- dev evaluation every ``eval_steps`` (and once before training) with any sentence-transformers
  evaluator, normally `synthembed.evaluation.dev.DevSTSEvaluator`; the best model by the
  evaluator's primary metric (STS-B dev + SICK-R dev mean) is kept in memory and loaded at the end
  (`synthembed.training.save_policy.BestModelKeeper`: no checkpoint write per evaluation);
- resumption: checkpoints go to ``<output>/checkpoints`` every ``checkpoint_minutes`` of training (or
  every ``save_steps``); calling `fit` again with the same output continues from the last one
  (optimizer, scheduler, RNG, sampler state and the best model so far included);
- the output folder: a sentence-transformers model (loadable with `load_encoder(<output>)`), plus
  ``train_config.yaml`` (everything that made the run), ``dev_curve.tsv`` (step, epoch, metrics),
  and a hub-ready model card (README.md, `synthembed.models.card`: recipe, data provenance, dev scores).

Example (what `synthembed train` does)::

    from synthembed.training.trainer import FitSettings, fit
    from synthembed.losses.infonce import InfoNCELoss
    from synthembed.evaluation.dev import DevSTSEvaluator

    model = load_encoder("embedded", max_length=32)
    loss = InfoNCELoss(model, temperature=0.05)
    fit(model, dataset, loss, "runs/m1",
        settings=FitSettings(batch_size=64, lr=5e-5, epochs=1, eval_steps=100),
        evaluator=DevSTSEvaluator("../shared/data"),
        record={"method": "syncse", "data": "train.jsonl"})

Other methods pass their own loss (it may return a dict of named terms: the trainer sums and logs
each), ``callbacks`` (e.g. a curriculum stage callback) and ``batch_sampler`` (a callable
``(dataset, batch_size, drop_last, valid_label_columns, generator, seed) -> BatchSampler``, e.g. a
curriculum sampler; give it ``set_epoch`` if it reshuffles per epoch).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from synthembed.compat import enable_activation_checkpointing, full_precision_forward
from synthembed.errors import SynthEmbedError
from synthembed.io.atomic import atomic_write_text
from synthembed.models.card import write_model_card
from synthembed.models.export import save_portable

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
CONFIG_FILE = "train_config.yaml"
DEV_CURVE_FILE = "dev_curve.tsv"


@dataclasses.dataclass
class FitSettings:
    """The training-loop hyper-parameters `fit` needs (the rest of a method's config is just recorded)."""

    batch_size: int = 64  # per process
    lr: float = 5e-5
    epochs: float = 1.0
    max_steps: int | None = None  # overrides epochs when set
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 42
    eval_steps: int | None = None  # None: about 4 evaluations per run
    eval_on_start: bool = True  # score the untrained model first (the dev curve's step 0)
    logging_steps: int = 10
    keep_checkpoints: bool = False
    resume: bool = True
    gradient_accumulation_steps: int = 1
    save_steps: int | None = None  # resumption checkpoint every N steps; None: every checkpoint_minutes
    checkpoint_minutes: float = 30.0  # resumption checkpoint after this much training time (0: none)
    # memory and speed (docs/gpu.md): LoRA adapters, activation checkpointing, data-loader workers
    lora_r: int | None = None  # LoRA rank; None or 0 trains every weight
    lora_alpha: float | None = None  # None: 2 * lora_r
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    lora_merge: bool = False  # write the adapter merged into the weights (a standalone model) instead of the adapter
    gradient_checkpointing: bool = False
    dataloader_workers: int | None = None  # >0: batches tokenized in loader processes; None: 4 on CUDA, 0 on CPU

    @classmethod
    def from_config(cls, config: Any) -> FitSettings:
        """Pick the fields of a stage config (e.g. `TrainConfig`) that have the same names."""
        values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


def resolve_precision(precision: str) -> str:
    """``auto`` -> bf16 (or fp16) on a CUDA device that supports it, bf16 on a CPU with native bf16
    instructions (AVX512-BF16 / AMX), fp32 elsewhere.

    Measured on this project's CPU (avx512_bf16, SmolLM2-135M forward+backward, 16 x 16 tokens, 1 thread):
    bf16 autocast 4.9-5.6 s vs fp32 7.9-8.7 s per step (runs/bf16.py in the closing note of issue 5).
    Evaluation (``encode``) is not autocast, so dev scores are fp32 either way.
    """
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def resolve_workers(workers: int | None) -> int:
    """Loader processes that tokenize batches off the training loop: ``None`` -> 4 on CUDA (at most half the
    CPUs), 0 on CPU (there the training loop and the workers would share the same cores)."""
    if workers is not None:
        return workers
    if not torch.cuda.is_available():
        return 0
    return max(0, min(4, (os.cpu_count() or 2) // 2))


def cpu_has_native_bf16() -> bool:
    """True when /proc/cpuinfo lists avx512_bf16 or amx_bf16 (Linux; False where it cannot be read)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def steps_per_epoch(n_rows: int, batch_size: int, world_size: int, drop_last: bool, accumulation: int = 1) -> int:
    """Optimizer steps in one epoch for `n_rows` rows split over `world_size` processes."""
    per_step = batch_size * world_size * accumulation
    return max(1, n_rows // per_step if drop_last else math.ceil(n_rows / per_step))


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on rank 0 of a torchrun/accelerate launch (and in a single process)."""
    return int(os.environ.get("RANK", "0")) == 0


def _trainer_class() -> type:
    """`SentenceTransformerTrainer` whose evaluations run in full precision.

    Under bf16/fp16 accelerate patches the model's ``forward`` with autocast (keeping the original as
    ``_original_forward``, see `synthembed.compat.full_precision_forward`); the evaluator calls that forward too, so dev scores would be half-precision
    ones while the saved model is evaluated in fp32 later. `evaluate` (the trainer's documented
    override point) restores the original forward for the duration of an evaluation, so the dev curve,
    the checkpoint choice and a later evaluation of the saved model all see the same numbers.
    """
    from sentence_transformers import SentenceTransformerTrainer

    class FullPrecisionEvalTrainer(SentenceTransformerTrainer):
        def _load_from_checkpoint(self, checkpoint_path: str) -> None:
            """Best-checkpoint loading and resumption; a LoRA-wrapped model restores its adapter and heads."""
            from synthembed.models.lora import backbone, is_peft_wrapped

            model = getattr(self.model, "_orig_mod", self.model)
            if not is_peft_wrapped(backbone(model)):
                return super()._load_from_checkpoint(checkpoint_path)
            from synthembed.models.lora import load_adapter_checkpoint

            load_adapter_checkpoint(model, Path(checkpoint_path))
            return None

        def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            with full_precision_forward(self.model):
                return super().evaluate(*args, **kwargs)

    return FullPrecisionEvalTrainer


def _dev_curve_callback(output: Path, metric: str | None) -> Any:
    """A callback writing ``dev_curve.tsv`` after every evaluation, rebuilt from the trainer's log history."""
    from transformers import TrainerCallback

    class DevCurveCallback(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any) -> None:
            if state.is_world_process_zero:
                write_dev_curve(output / DEV_CURVE_FILE, state.log_history, metric)

    return DevCurveCallback()


def write_dev_curve(path: Path, log_history: Sequence[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
    """Write the evaluation entries of a Trainer log history as TSV (step, epoch, eval metrics)."""
    rows = [e for e in log_history if any(k.startswith("eval_") and k.endswith("spearman") for k in e)]
    if metric is not None:
        rows = [e for e in log_history if metric in e] or rows
    keys = sorted({k for e in rows for k in e if k.startswith("eval_") and not k.endswith(("runtime", "per_second"))})
    lines = ["\t".join(["step", "epoch", *keys])]
    for entry in rows:
        cells = [str(entry.get("step", "")), f"{entry.get('epoch', 0) or 0:.4f}"]
        cells += [f"{entry[k]:.4f}" if isinstance(entry.get(k), (int, float)) else "" for k in keys]
        lines.append("\t".join(cells))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return rows


def _version_record() -> dict[str, str]:
    import sentence_transformers
    import transformers

    from synthembed import __version__

    return {
        "synthembed": __version__,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def fit(
    model: nn.Module,
    train_dataset: Any,
    loss: nn.Module,
    output_dir: str | Path,
    *,
    settings: FitSettings | None = None,
    evaluator: Any | None = None,
    callbacks: Sequence[Any] = (),
    batch_sampler: Callable[..., Any] | None = None,
    record: dict[str, Any] | None = None,
    method: str = "contrastive training (InfoNCE with in-batch and hard negatives)",
    data_description: str = "",
    training_args: dict[str, Any] | None = None,
    steps_per_epoch_hint: int | None = None,
) -> Path:
    """Train `model` on `train_dataset` with `loss`; write the model folder `output_dir`; return its path.

    Args:
        model: a SentenceTransformer (e.g. from `load_encoder`), trained in place.
        train_dataset: a `datasets.Dataset` whose columns are what `loss` expects (text columns in order).
        loss: a sentence-transformers style loss module (may return a dict of named terms).
        output_dir: the final model folder; checkpoints live in ``<output_dir>/checkpoints``.
        settings: loop hyper-parameters (`FitSettings`); defaults if None.
        evaluator: a sentence-transformers evaluator with ``primary_metric`` (e.g. `DevSTSEvaluator`);
            enables dev evaluation every ``eval_steps`` and best-checkpoint selection by that metric.
        callbacks: extra `transformers.TrainerCallback` instances (e.g. curriculum stages).
        batch_sampler: a batch-sampler factory (see the module docstring); default: random batches.
        record: the method's full config, written to ``train_config.yaml`` with the resolved settings.
        method, data_description: named in the model card.
        training_args: extra `SentenceTransformerTrainingArguments` fields (they win over `settings`).
        steps_per_epoch_hint: optimizer steps per epoch when a custom `batch_sampler` does not walk the
            dataset once per epoch (e.g. the curriculum's level-major dataset); plans the evaluation
            interval and the recorded step count. Default: from the dataset length and batch size.
    """
    from sentence_transformers import SentenceTransformerTrainingArguments

    from synthembed.training import checkpoints as ckpt
    from synthembed.training.max_length import inference_length

    settings = settings or FitSettings()
    output = Path(output_dir)
    checkpoints = output / CHECKPOINTS
    world = _world_size()
    drop_last = world > 1  # gathering needs equal batch sizes on every process
    per_epoch = steps_per_epoch_hint or steps_per_epoch(
        len(train_dataset), settings.batch_size, world, drop_last, settings.gradient_accumulation_steps
    )
    total_steps = settings.max_steps or math.ceil(settings.epochs * per_epoch)
    eval_steps = settings.eval_steps or max(1, total_steps // 4)
    precision = resolve_precision(settings.precision)
    workers = resolve_workers(settings.dataloader_workers)
    metric = getattr(evaluator, "primary_metric", None) if evaluator is not None else None
    metric_key = None if metric is None else (metric if metric.startswith("eval_") else f"eval_{metric}")

    prepare_model(model, settings)
    if is_main_process():  # a kill may have left a half-published model or a half-written checkpoint
        ckpt.recover_output(output)
        if settings.resume:
            ckpt.set_aside_incomplete(checkpoints, output)
    newest = ckpt.newest_complete_checkpoint(checkpoints) if settings.resume else None
    last = str(newest) if newest is not None else None
    if last is None and checkpoints.is_dir() and any(checkpoints.iterdir()):
        logger.warning("%s holds no complete checkpoint; starting from scratch", checkpoints)

    args_values: dict[str, Any] = {
        "output_dir": str(checkpoints),
        "per_device_train_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "learning_rate": settings.lr,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps or -1,
        "warmup_steps": settings.warmup_ratio,
        "weight_decay": settings.weight_decay,
        "lr_scheduler_type": settings.lr_scheduler,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "bf16": precision == "bf16",
        "use_cpu": not torch.cuda.is_available(),  # transformers asks for it before bf16 autocast on CPU
        "fp16": precision == "fp16",
        "logging_steps": settings.logging_steps,
        "save_strategy": "steps",
        "save_steps": settings.save_steps or total_steps + 1,  # otherwise TimedCheckpoints decides
        "save_total_limit": 2,
        "report_to": "none",
        "dataloader_drop_last": drop_last,
        "dataloader_pin_memory": torch.cuda.is_available(),
        "dataloader_num_workers": workers,
        **({"dataloader_prefetch_factor": 4, "dataloader_persistent_workers": True} if workers else {}),
        "disable_tqdm": not logger.isEnabledFor(logging.INFO),
    }
    if batch_sampler is not None:
        args_values["batch_sampler"] = batch_sampler
    if evaluator is not None:
        args_values.update(
            eval_strategy="steps",
            eval_steps=eval_steps,
            eval_on_start=settings.eval_on_start and last is None,
        )
    args_values.update(training_args or {})
    args = SentenceTransformerTrainingArguments(**args_values)

    full_record = {
        "method": method,
        "data": data_description,
        **(record or {}),
        "fit": {
            **dataclasses.asdict(settings),
            "resolved_precision": precision,
            "resolved_dataloader_workers": workers,
            "world_size": world,
            "train_rows": len(train_dataset),
            "total_steps": total_steps,
            "eval_steps": eval_steps,
            "selection_metric": metric_key,
            "loss": {"class": type(loss).__name__, **(loss.get_config_dict() if hasattr(loss, "get_config_dict") else {})},
        },
        "versions": _version_record(),
    }
    if is_main_process():
        output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(output / CONFIG_FILE, yaml.safe_dump(_yaml_safe(full_record), sort_keys=False))

    from synthembed.training.save_policy import BestModelKeeper, SkipFinalCheckpoint, TimedCheckpoints

    keeper = None
    if metric_key is not None:
        keeper = BestModelKeeper(model, metric_key, bool(getattr(evaluator, "greater_is_better", True)))
    keepers: list[Any] = [keeper] if keeper is not None else []
    if settings.save_steps is None and settings.checkpoint_minutes > 0:
        keepers.append(TimedCheckpoints(settings.checkpoint_minutes))
    if not settings.keep_checkpoints:
        keepers.append(SkipFinalCheckpoint())
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[_dev_curve_callback(output, metric_key), *keepers, *callbacks],
    )
    if last is not None:
        logger.warning("resuming from %s", last)
        if keeper is not None:
            keeper.restore_from(last)
    trainer.train(resume_from_checkpoint=last)

    if keeper is not None:
        keeper.load_best()
    if trainer.is_world_process_zero():
        best = {
            "best_checkpoint_step": keeper.best_step if keeper is not None else None,
            "best_metric": keeper.best_metric if keeper is not None else None,
            "steps_done": trainer.state.global_step,
        }
        full_record["result"] = best
        if settings.lora_merge:
            from synthembed.models.lora import merge_lora

            merge_lora(model)
        train_length = getattr(model, "max_seq_length", None)
        full_record["fit"].update(train_max_length=train_length, saved_max_seq_length=inference_length(model))
        staging = ckpt.begin_publish(output)  # the final folder is written whole, then swapped in
        model.max_seq_length = inference_length(model) or train_length  # for inference, not the training length
        try:
            save_portable(model, staging)  # train-only modules left out: plain sentence-transformers loads it
        finally:
            model.max_seq_length = train_length
        if metric_key is not None:
            write_dev_curve(staging / DEV_CURVE_FILE, trainer.state.log_history, metric_key)
        atomic_write_text(staging / CONFIG_FILE, yaml.safe_dump(_yaml_safe(full_record), sort_keys=False))
        write_model_card(staging, _yaml_safe(full_record))  # sentence-transformers' card + provenance
        ckpt.finish_publish(output, drop=[] if settings.keep_checkpoints else [CHECKPOINTS])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    return output


def prepare_model(model: nn.Module, settings: FitSettings) -> None:
    """Apply the memory settings to `model` in place: a LoRA adapter, activation checkpointing.

    Checkpointing runs non-reentrant (``use_reentrant=False``), the form that back-propagates into an
    adapter even when the frozen layers' inputs need no gradient.
    """
    from synthembed.models.lora import LoraSpec, add_lora, backbone, trainable_parameters

    if settings.lora_r:
        spec = LoraSpec(r=settings.lora_r, alpha=settings.lora_alpha, dropout=settings.lora_dropout,
                        target_modules=tuple(settings.lora_target_modules))
        add_lora(model, spec)
        trainable, total = trainable_parameters(model)
        logger.warning("LoRA r=%d: training %d of %d parameters (%.2f%%)", spec.r, trainable, total, 100 * trainable / total)
    if settings.gradient_checkpointing:
        inner = backbone(model)
        if not getattr(inner, "supports_gradient_checkpointing", True):
            raise SynthEmbedError(f"{type(inner).__name__} does not support gradient checkpointing")
        enable_activation_checkpointing(inner, use_reentrant=False)


def _yaml_safe(value: Any) -> Any:
    """Plain YAML types: tuples -> lists, paths and other objects -> strings."""
    if isinstance(value, dict):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)  # also plain-str copies of str subclasses (e.g. torch's version string)
