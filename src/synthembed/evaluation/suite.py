"""`evaluate_model`: load the requested tasks, embed all their texts once, score, and build results.json.

Task names: the STS tasks (`sts12 … sickr`, alias `sts7` for all seven), retrieval folders
(`scifact`, or `retrieval:PATH` for any BEIR-format folder), reranking files (`rerank:NAME` or
`rerank:PATH.jsonl`), `mteb:TASK` (run by the optional mteb package; its data comes from the hub),
`mteb-sts` (the STS tasks of MTEB(eng, v2)) and `mteb-local:STS_NAME` (one of our STS files through mteb's
STS protocol, offline). A task whose data is missing is skipped with a note in ``skipped``, never silently.
The SentEval-"all" STS average and the MTEB STS average are reported apart (``average`` and
``mteb_sts_average``): they are not comparable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from synthembed.env import library_versions
from synthembed.evaluation.base import Task, TaskUnavailable
from synthembed.evaluation.encoding import encode_texts
from synthembed.evaluation.sts import STS_TASKS, load_sts_task

logger = logging.getLogger(__name__)

ALIASES: dict[str, tuple[str, ...]] = {"sts7": STS_TASKS}
MTEB_PREFIX = "mteb:"
MTEB_LOCAL_PREFIX = "mteb-local:"  # one of our STS files scored by mteb's STS protocol (offline)
MTEB_STS_ALIAS = "mteb-sts"  # the STS tasks of MTEB(eng, v2), each as mteb:NAME (their data needs the hub)


def expand_task_names(tasks: Sequence[str] | str) -> list[str]:
    """Split comma lists, expand aliases (`sts7`), drop duplicates keeping the first occurrence."""
    if isinstance(tasks, str):
        tasks = [tasks]
    names: list[str] = []
    for item in tasks:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            lowered = part.lower()  # STS names and aliases are case-insensitive; folder names are not
            key = lowered if lowered in STS_TASKS or lowered in ALIASES else part
            if lowered == MTEB_STS_ALIAS:
                from synthembed.evaluation.mteb_runner import mteb_eng_v2_sts_tasks

                names.extend(MTEB_PREFIX + name for name in mteb_eng_v2_sts_tasks())
                continue
            names.extend(ALIASES.get(key, (key,)))
    if not names:
        raise ValueError("no tasks requested")
    return list(dict.fromkeys(names))


def load_task(name: str, split: str, data_dir: Path | None) -> Task:
    """Load one (non-MTEB) task by name; TaskUnavailable when its data is missing."""
    if name in STS_TASKS:
        return load_sts_task(name, split, data_dir)
    from synthembed.evaluation.reranking import RERANK_PREFIX, load_reranking_task
    from synthembed.evaluation.retrieval import RETRIEVAL_PREFIX, is_retrieval_name, load_retrieval_task

    if name.startswith(RERANK_PREFIX):
        return load_reranking_task(name[len(RERANK_PREFIX) :], split, data_dir)
    if name.startswith(RETRIEVAL_PREFIX):
        return load_retrieval_task(name[len(RETRIEVAL_PREFIX) :], split, data_dir)
    if is_retrieval_name(name, data_dir):
        return load_retrieval_task(name, split, data_dir)
    raise ValueError(
        f"unknown task {name!r}: expected one of {STS_TASKS}, 'sts7', a retrieval dataset "
        "(e.g. scifact, or retrieval:PATH), rerank:NAME_OR_PATH, or mteb:TASK"
    )


def evaluate_model(
    model: Any,
    tasks: Sequence[str] | str,
    *,
    split: str = "test",
    data_dir: Path | str | None = None,
    batch_size: int = 64,
    show_progress: bool = True,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Evaluate a SentenceTransformer (or anything with `.encode`) on `tasks`; return results.json's dict.

    Shape: ``{"model", "tasks": {name: {main metric(s), "split", "n", ...}}, "average", "average_over",
    "skipped": {name: note}, "config", "versions", "seconds"}``. STS figures are Spearman x100 of
    cosine; retrieval/reranking metrics are x100 as well. ``average`` is the mean STS Spearman over
    the STS tasks that ran (``average_over`` lists them; None when none ran).
    """
    started = time.perf_counter()
    names = expand_task_names(tasks)
    data_dir = Path(data_dir) if data_dir is not None else None

    loaded: dict[str, Task] = {}
    skipped: dict[str, str] = {}
    mteb_names = [n for n in names if n.startswith((MTEB_PREFIX, MTEB_LOCAL_PREFIX))]
    for name in names:
        if name in mteb_names:
            continue
        try:
            loaded[name] = load_task(name, split, data_dir)
        except TaskUnavailable as exc:
            skipped[name] = str(exc)
            logger.warning("skipping %s: %s", name, exc)
    load_seconds = time.perf_counter() - started

    encode_started = time.perf_counter()
    table = encode_texts(
        model,
        (text for task in loaded.values() for text in task.texts()),
        batch_size=batch_size,
        show_progress=show_progress,
    )
    encode_seconds = time.perf_counter() - encode_started

    results: dict[str, dict[str, Any]] = {}
    for name, task in loaded.items():
        results[name] = {**task.score(table), "main_metric": task.main_metric}

    if mteb_names:
        from synthembed.evaluation.mteb_runner import local_sts_task, run_mteb_task

        for name in mteb_names:
            try:
                if name.startswith(MTEB_LOCAL_PREFIX):
                    sts = load_sts_task(name[len(MTEB_LOCAL_PREFIX) :], split, data_dir)
                    task: Any = local_sts_task(name, sts.sentences1, sts.sentences2, sts.scores, split=split,
                                               source=sts.source)
                else:
                    task = name[len(MTEB_PREFIX) :]
                results[name] = run_mteb_task(model, task, batch_size=batch_size)
                if name.startswith(MTEB_LOCAL_PREFIX):
                    results[name]["n"] = len(sts)
            except TaskUnavailable as exc:
                skipped[name] = str(exc)
                logger.warning("skipping %s: %s", name, exc)

    sts_done = [n for n in names if n in STS_TASKS and n in results]
    average = float(np.mean([results[n]["spearman"] for n in sts_done])) if sts_done else None
    mteb_sts = [n for n in mteb_names if results.get(n, {}).get("type") == "STS"]
    averages: dict[str, Any] = {}
    if mteb_sts:  # reported apart: the two protocols' averages are not comparable
        from synthembed.evaluation.mteb_runner import COMPARABILITY_NOTE

        averages = {"mteb_sts_average": float(np.mean([results[n]["main_score"] for n in mteb_sts])),
                    "mteb_sts_average_over": mteb_sts, "averages_note": COMPARABILITY_NOTE}
    return {
        "model": model_name if model_name is not None else _model_label(model),
        "tasks": {n: results[n] for n in names if n in results},
        "average": average,
        "average_over": sts_done,
        **averages,
        "skipped": skipped,
        "config": {
            "tasks": names,
            "split": split,
            "data_dir": str(data_dir) if data_dir is not None else None,
            "batch_size": batch_size,
            "similarity": "cosine",
            "max_length": getattr(model, "max_seq_length", None),
            "unique_texts": len(table.index),
        },
        "versions": library_versions(),
        "seconds": {
            "load": round(load_seconds, 3),
            "encode": round(encode_seconds, 3),
            "total": round(time.perf_counter() - started, 3),
        },
    }


def json_safe(value: Any) -> Any:
    """Copy of `value` with NaN/inf floats as None (strict JSON) and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _model_label(model: Any) -> str:
    card = getattr(model, "model_card_data", None)
    for attribute in ("model_name", "base_model", "model_id"):
        value = getattr(card, attribute, None) if card is not None else None
        if value:
            return str(value)
    return type(model).__name__
