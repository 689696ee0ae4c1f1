"""The bridge to mteb 2.x: our encoders under ``mteb.evaluate``, our STS data as mteb tasks, ``mteb:TASK``.

- `MTEBEncoder` wraps anything with ``encode(list[str]) -> (n, d)`` (a SentenceTransformer, our GGUF or
  hashing encoders) in mteb 2's encoder interface: ``encode(DataLoader of batched inputs, *, task_metadata,
  hf_split, hf_subset, prompt_type)``; the prompt (if the model has ``prompts``) is chosen by mteb's own
  priority (task + prompt type, task, task type + prompt type, task type, prompt type), similarity is cosine.
- `local_sts_task` builds an mteb STS task from sentence pairs already in memory (e.g. one of our STS files),
  so the mteb protocol runs offline; `run_mteb_task` runs a registered mteb task (its data comes from the
  hub: online only) or such a local task and returns its main score x100.

Two STS averages exist and they are not comparable: SentEval's "all" setting (STS12-16 scored over each
year's concatenated subsets, + STS-B + SICK-R; our ``sts7``) and MTEB(eng, v2)'s STS tasks (per-subset
scores averaged, different task versions, no STS16). `evaluate_model` reports them separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from synthembed.evaluation.base import TaskUnavailable

INSTALL_HINT = "mteb tasks need the optional mteb package: pip install 'synthembed[mteb]' (or pip install 'mteb>=2,<3')"
MTEB_ENG_V2 = "MTEB(eng, v2)"
COMPARABILITY_NOTE = (
    "SentEval 'all' STS (our sts12-16 with each year's subsets concatenated, stsb, sickr) and MTEB(eng, v2) STS "
    "(mteb's task versions, per-subset scores averaged, no STS16) are different protocols over different sets: "
    "the two averages are not comparable"
)

__all__ = ["COMPARABILITY_NOTE", "MTEBEncoder", "local_sts_task", "mteb_eng_v2_sts_tasks", "run_mteb_task"]


def _import_mteb() -> Any:
    try:
        import mteb
    except ImportError:
        raise TaskUnavailable(INSTALL_HINT) from None
    if not hasattr(mteb, "evaluate"):
        raise TaskUnavailable(f"mteb {getattr(mteb, '__version__', '?')} is too old: {INSTALL_HINT}")
    return mteb


def MTEBEncoder(model: Any, name: str | None = None) -> Any:  # noqa: N802 (a class built on first use)
    """`model` as an mteb 2 encoder (an ``mteb.models.AbsEncoder``); see the module docstring."""
    _import_mteb()
    return _encoder_class()(model, name)


_ENCODER_CLASS: type | None = None


def _encoder_class() -> type:
    """The wrapper class, defined once mteb is importable (mteb is optional)."""
    global _ENCODER_CLASS
    if _ENCODER_CLASS is not None:
        return _ENCODER_CLASS
    from mteb.models import ModelMeta
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ScoringFunction

    class SynthEmbedEncoder(AbsEncoder):
        """mteb 2's encoder interface over ``model.encode``: batches in, ``(n, d)`` float32 array out."""

        def __init__(self, model: Any, name: str | None = None) -> None:
            self.model = model
            prompts = getattr(model, "prompts", None)
            self.model_prompts = {k: v for k, v in prompts.items() if v} if isinstance(prompts, dict) else None
            label = name or _label(model)
            dimension = getattr(model, "get_embedding_dimension", None) or getattr(
                model, "get_sentence_embedding_dimension", lambda: None)
            dim = dimension()
            self.mteb_model_meta = ModelMeta.create_empty({
                "name": label if "/" in label else f"synthembed/{label}",
                "similarity_fn_name": ScoringFunction.COSINE,
                "embed_dim": dim,
                "framework": ["Sentence Transformers", "PyTorch"],
                "max_tokens": getattr(model, "max_seq_length", None),
            })

        def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
                   prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
            prompt_name = self.get_prompt_name(task_metadata, prompt_type) if self.model_prompts else None
            extra = {"prompt_name": prompt_name} if prompt_name else {}
            batch_size = int(kwargs.get("batch_size") or 64)
            parts = []
            for batch in inputs:  # a DataLoader of {"text": [...], ...} batches
                texts = list(batch["text"])
                parts.append(np.asarray(self.model.encode(texts, batch_size=batch_size, convert_to_numpy=True,
                                                          show_progress_bar=False, **extra), dtype=np.float32))
            if not parts:
                return np.zeros((0, self.mteb_model_meta.embed_dim or 0), dtype=np.float32)
            return np.concatenate(parts, axis=0)  # (n, d)

    _ENCODER_CLASS = SynthEmbedEncoder
    return SynthEmbedEncoder


def _label(model: Any) -> str:
    path = getattr(getattr(model, "model_card_data", None), "base_model", None) or type(model).__name__
    return str(path).rstrip("/").rsplit("/", 1)[-1] or "model"


def local_sts_task(name: str, sentences1: Sequence[str], sentences2: Sequence[str], scores: Sequence[float], *,
                   split: str = "test", min_score: float | None = None, max_score: float | None = None,
                   source: str = "local") -> Any:
    """An mteb ``AbsTaskSTS`` over pairs in memory (loaded already: ``mteb.evaluate`` needs no network)."""
    _import_mteb()
    from datasets import Dataset, DatasetDict
    from mteb.abstasks import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    gold = [float(s) for s in scores]
    if not (len(sentences1) == len(sentences2) == len(gold)) or len(gold) < 2:
        raise ValueError(f"{name}: sentences1, sentences2 and scores must have the same length (>= 2)")
    low = min(gold) if min_score is None else min_score
    high = max(gold) if max_score is None else max_score

    class LocalSTS(AbsTaskSTS):
        min_score = low
        max_score = high
        metadata = TaskMetadata(
            name=name,
            dataset={"path": source, "revision": "local"},
            description=f"STS pairs from {source}, scored by mteb's STS protocol.",
            type="STS",
            category="t2t",
            modalities=["text"],
            eval_splits=[split],
            eval_langs=["eng-Latn"],
            main_score="cosine_spearman",
        )

    task = LocalSTS()
    task.dataset = DatasetDict({split: Dataset.from_dict(
        {"sentence1": list(sentences1), "sentence2": list(sentences2), "score": gold})})
    task.data_loaded = True
    return task


def mteb_eng_v2_sts_tasks() -> list[str]:
    """The STS task names of the MTEB(eng, v2) benchmark (the benchmark's definition ships with mteb)."""
    mteb = _import_mteb()
    benchmark = mteb.get_benchmark(MTEB_ENG_V2)
    return [task.metadata.name for task in benchmark.tasks if task.metadata.type == "STS"]


def run_mteb_task(model: Any, task: str | Any, *, batch_size: int = 64) -> dict[str, Any]:
    """Evaluate `model` on an mteb task (a registered name, or a task object such as `local_sts_task`'s).

    Returns ``{"main_score", "metric", "split", "splits", "n", "mteb_version"}`` with scores x100; for STS
    tasks ``spearman`` too (the cosine Spearman, our STS metric). No result cache is read or written.
    """
    mteb = _import_mteb()
    if isinstance(task, str):
        try:
            tasks = mteb.get_tasks(tasks=[task])
        except Exception as exc:  # unknown task name (KeyError / ValueError, by mteb version)
            raise TaskUnavailable(f"mteb does not know task {task!r}: {exc}") from exc
        if not tasks:
            raise TaskUnavailable(f"mteb does not know task {task!r}")
        task_object = tasks[0]
    else:
        task_object = task
    name = task_object.metadata.name
    try:
        result = mteb.evaluate(MTEBEncoder(model), task_object, cache=None, show_progress_bar=False,
                               encode_kwargs={"batch_size": batch_size})
    except (OSError, ConnectionError) as exc:
        raise TaskUnavailable(f"mteb:{name} could not load its data (offline? registered tasks need the hub): "
                              f"{exc}") from exc
    task_results = list(result.task_results)
    if not task_results:
        raise TaskUnavailable(f"mteb:{name} returned no result")
    task_result = task_results[0]
    splits = {split: [float(entry["main_score"]) * 100.0 for entry in entries]
              for split, entries in task_result.scores.items()}
    out: dict[str, Any] = {
        "main_score": float(task_result.get_score()) * 100.0,
        "metric": str(task_object.metadata.main_score),
        "split": ",".join(splits) or None,
        "splits": splits,
        "n": None,
        "type": task_object.metadata.type,
        "mteb_version": getattr(mteb, "__version__", None),
    }
    if task_object.metadata.type == "STS":
        spearman = [float(e["cosine_spearman"]) * 100.0 for entries in task_result.scores.values() for e in entries]
        out["spearman"] = float(np.mean(spearman))
    return out
