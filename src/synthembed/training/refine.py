"""Ranking refinement (METHODS.md §2.3): refine an encoder on chain records with `ChainRankingLoss`.

Flow: read chain records (``{"id", "sentences": [s0 … sK], "meta"}``) -> a frozen teacher (by default
the starting model as it is before training) embeds every sentence once and gives each chain its
cosine matrix ``(n, n)`` (the loss's label) -> sentence-transformers' trainer on columns ``s0 … s{n-1}``
+ ``label`` -> `synthembed.training.trainer.fit` (the same loop as ``train``: model selection on STS dev
(STS-B dev + SICK-R trial), resume from ``OUTPUT/checkpoints``, ``train_config.yaml``, ``dev_curve.tsv``,
model card) -> the best model in sentence-transformers format, plus ``refine_results.json``
(dev before/after, chain counts, wall times).

Precomputing the teacher matrices means no teacher in memory during training and one teacher pass
in total. Chains are truncated to a common length ``list_size`` (a prefix keeps the order); shorter
chains are skipped and counted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from synthembed.errors import DataError, SynthEmbedError
from synthembed.io.atomic import atomic_write_json
from synthembed.io.tables import read_jsonl
from synthembed.synthesis.records import record_files

__all__ = ["RefineConfig", "load_chains", "refine", "teacher_cosines"]

logger = logging.getLogger(__name__)


@dataclass
class RefineConfig:
    """Refinement settings; defaults are the paper's (lr 3e-6, 1 epoch, 1 list per step, length 32)."""

    data: str
    model: str = "embedded"
    output: str = "refined"
    teacher: str | None = None  # None: a frozen copy of the starting model
    pooling: str | None = None  # None keeps the model's pooling (the paper refined CLS-pooled SimCSE models)
    max_length: int = 32
    list_size: int | None = None  # None: the most common chain length in the data
    learning_rate: float = 3e-6
    epochs: float = 1.0
    lists_per_step: int = 1
    warmup_ratio: float = 0.0
    scale: float = 20.0  # 1/τ, student
    teacher_scale: float = 20.0  # 1/τ2, teacher
    omega: float = 0.5
    listmle_weight: float = 1.0
    infonce_weight: float = 0.0
    distill_weight: float = 0.0
    eval_steps: int | None = None  # None: evaluate about 4 times per run
    data_dir: str | None = None  # benchmark data (shared/data layout) for dev selection; None: $SYNTHEMBED_DATA
    dev_tasks: list[str] = field(default_factory=lambda: ["stsb", "sickr"])
    limit: int | None = None  # use at most this many chains
    columns: dict[str, str | None] | None = None  # hf: data: {"sentences": COLUMN} for undeclared datasets
    seed: int = 42
    device: str | None = None
    precision: str = "auto"  # as `train`: bf16 autocast on CPUs with native bf16, else fp32
    lora_r: int | None = None  # as `train` (docs/gpu.md): refine a LoRA adapter; the teacher pass runs before it
    lora_alpha: float | None = None
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = ("all-linear",)
    lora_merge: bool = False
    gradient_checkpointing: bool = False
    dataloader_workers: int | None = None


def load_chains(path: str | Path, limit: int | None = None, columns: dict[str, str | None] | None = None
                ) -> tuple[list[list[str]], Counter]:
    """Chains from a records JSONL file, a synthesis output folder or an ``hf:`` dataset reference (with an
    optional ``{"sentences": COLUMN}`` mapping); returns (chains, skipped counts).

    Bad lines raise a `DataError` naming file and line; records with fewer than 3 sentences are
    skipped (``too_short``): a list of two carries no ranking.
    """
    if isinstance(path, str) and path.startswith("hf:"):
        return _hub_chains(path, limit, columns)
    path = Path(path)
    if path.is_dir():
        files = record_files(path)
        if not files:
            raise DataError(path, "no records.jsonl and no records/part-*.jsonl shards in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(path, "chain data not found")
    chains: list[list[str]] = []
    skipped: Counter = Counter()
    for file in files:
        for number, record in read_jsonl(file):  # invalid JSON or UTF-8: DataError naming file and line
            sentences = record.get("sentences")
            if not isinstance(sentences, list) or not all(isinstance(s, str) for s in sentences):
                raise DataError(file, "a chain record needs 'sentences': a list of strings", number)
            if len(sentences) < 3:
                skipped["too_short"] += 1
                continue
            chains.append(sentences)
            if limit is not None and len(chains) >= limit:
                return chains, skipped
    if not chains:
        raise DataError(path, "no usable chains (each needs at least 3 sentences)")
    return chains, skipped


def _hub_chains(reference: str, limit: int | None, columns: dict[str, str | None] | None) -> tuple[list[list[str]], Counter]:
    """Chains from an ``hf:`` reference (`synthembed.io.hf_datasets.chain_lists`), the same rules as files."""
    from synthembed.io.hf_datasets import chain_lists

    chains: list[list[str]] = []
    skipped: Counter = Counter()
    for number, chain in chain_lists(reference, columns):
        if chain is None:
            raise DataError(reference, "a chain needs a list of strings (or its Python list literal)", number)
        if len(chain) < 3:
            skipped["too_short"] += 1
            continue
        chains.append(chain)
        if limit is not None and len(chains) >= limit:
            break
    if not chains:
        raise DataError(reference, "no usable chains (each needs at least 3 sentences)")
    return chains, skipped


def _common_length(chains: list[list[str]], list_size: int | None) -> tuple[list[list[str]], int, int]:
    """Truncate to `list_size` (default: the most common length); returns (chains, n, skipped)."""
    n = list_size or Counter(len(c) for c in chains).most_common(1)[0][0]
    if n < 3:
        raise SynthEmbedError(f"list_size must be >= 3, got {n}")
    kept = [c[:n] for c in chains if len(c) >= n]
    return kept, n, len(chains) - len(kept)


def teacher_cosines(teacher: Any, chains: list[list[str]], batch_size: int = 64) -> list[list[list[float]]]:
    """Each chain's teacher cosine matrix ``(n, n)`` as nested lists (one teacher pass over all sentences)."""
    import torch

    flat = [s for chain in chains for s in chain]
    with torch.inference_mode():
        emb = teacher.encode(flat, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)  # (N, d)
    emb = emb.float().cpu()
    out, start = [], 0
    for chain in chains:
        block = emb[start : start + len(chain)]  # (n, d)
        out.append((block @ block.T).tolist())  # (n, n)
        start += len(chain)
    return out


def _log_collector() -> Any:
    """A trainer callback keeping every training log (loss terms by name: listmle, infonce, distill)."""
    from transformers import TrainerCallback

    class LogCollector(TrainerCallback):
        def __init__(self) -> None:
            self.logs: list[dict[str, Any]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if logs and not any(k.startswith("eval_") for k in logs):
                self.logs.append({"step": state.global_step, **logs})

    return LogCollector()


def refine(config: RefineConfig) -> dict[str, Any]:
    """Run one refinement through `synthembed.training.trainer.fit` (same selection, outputs and resume
    as ``train``); returns the results dict also written to OUTPUT/refine_results.json."""
    from datasets import Dataset
    from transformers import set_seed

    from synthembed.cli._common import resolve_data_dir
    from synthembed.evaluation.dev import DevSTSEvaluator
    from synthembed.losses.listmle import ChainRankingLoss
    from synthembed.models.encoder import load_encoder
    from synthembed.models.modality import pin_text_modality
    from synthembed.training.max_length import set_training_length
    from synthembed.training.trainer import FitSettings, fit

    started = time.monotonic()
    output = Path(config.output)
    set_seed(config.seed)

    raw, skipped = load_chains(config.data, config.limit, config.columns)
    chains, n, too_short = _common_length(raw, config.list_size)
    if too_short:
        skipped["shorter_than_list_size"] += too_short
    if not chains:
        raise DataError(config.data, f"no chain has {n} sentences (list_size)")

    student = load_encoder(config.model, pooling=config.pooling, device=config.device)
    set_training_length(student, config.max_length)  # saved with its own limit (training/max_length.py)
    pin_text_modality(student)
    teacher = student
    if config.teacher is not None:
        teacher = load_encoder(config.teacher, max_length=config.max_length, device=config.device)
        pin_text_modality(teacher)
    t0 = time.monotonic()
    labels = teacher_cosines(teacher, chains)  # before any update: the teacher is the frozen start
    teacher_s = time.monotonic() - t0
    del teacher

    columns: dict[str, list[Any]] = {f"s{k}": [c[k] for c in chains] for k in range(n)}
    columns["label"] = labels
    dataset = Dataset.from_dict(columns)

    data_dir = resolve_data_dir(Path(config.data_dir) if config.data_dir else None)
    evaluator = DevSTSEvaluator(data_dir, tasks=config.dev_tasks)
    t1 = time.monotonic()
    before = evaluator(student)
    loss = ChainRankingLoss(
        student,
        scale=config.scale,
        teacher_scale=config.teacher_scale,
        omega=config.omega,
        listmle_weight=config.listmle_weight,
        infonce_weight=config.infonce_weight,
        distill_weight=config.distill_weight,
        seed=config.seed,
    )
    settings = FitSettings(
        batch_size=config.lists_per_step,
        lr=config.learning_rate,
        epochs=config.epochs,
        warmup_ratio=config.warmup_ratio,
        precision=config.precision,
        seed=config.seed,
        eval_steps=config.eval_steps,
        eval_on_start=False,  # scored above as dev_before
        logging_steps=max(1, (config.eval_steps or 10) // 2),
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        lora_target_modules=tuple(config.lora_target_modules),
        lora_merge=config.lora_merge,
        gradient_checkpointing=config.gradient_checkpointing,
        dataloader_workers=config.dataloader_workers,
    )
    collector = _log_collector()
    record = {"refine": asdict(config), "chains": len(chains), "list_size": n, "skipped": dict(skipped)}
    fit(
        student,
        dataset,
        loss,
        output,
        settings=settings,
        evaluator=evaluator,
        record=record,
        callbacks=[collector],
        method="ranking refinement: ListMLE against teacher + rank prior (METHODS.md 2.3)",
        data_description=str(config.data),
    )
    train_s = time.monotonic() - t1
    after = evaluator(student)  # fit loaded the best checkpoint into `student`
    results = {
        "config": asdict(config),
        "chains": len(chains),
        "list_size": n,
        "skipped": dict(skipped),
        "teacher": config.teacher or f"frozen copy of {config.model}",
        "dev_before": before,
        "dev_after_best_checkpoint": after,
        "wall_s": {"teacher": round(teacher_s, 2), "train_and_eval": round(train_s, 2),
                   "total": round(time.monotonic() - started, 2)},
        "train_log": collector.logs,
    }
    atomic_write_json(output / "refine_results.json", results)
    return results
