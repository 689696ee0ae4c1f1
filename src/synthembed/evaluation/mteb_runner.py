"""`mteb:TASK`: run one MTEB task through the optional `mteb` package (needs the hub, so online only).

Kept deliberately thin: mteb owns the task data, the protocol and the main score; we only call it
and copy its main score (x100) into the suite's results. Not exercised offline; the import hint and
the error paths are.
"""

from __future__ import annotations

from typing import Any

from synthembed.evaluation.base import TaskUnavailable

INSTALL_HINT = "mteb tasks need the optional mteb package: pip install 'synthembed[mteb]' (or pip install mteb)"


def _import_mteb() -> Any:
    try:
        import mteb
    except ImportError:
        raise TaskUnavailable(INSTALL_HINT) from None
    return mteb


def run_mteb_task(model: Any, task_name: str, *, batch_size: int = 64) -> dict[str, Any]:
    """Evaluate `model` on MTEB task `task_name`; returns ``{"main_score", "metric", "splits", ...}``."""
    mteb = _import_mteb()
    try:
        tasks = mteb.get_tasks(tasks=[task_name])
    except Exception as exc:  # unknown task name (KeyError / ValueError, by mteb version)
        raise TaskUnavailable(f"mteb does not know task {task_name!r}: {exc}") from exc
    if not tasks:
        raise TaskUnavailable(f"mteb does not know task {task_name!r}")
    try:
        if hasattr(mteb, "evaluate"):  # mteb >= 2
            task_results = list(mteb.evaluate(model, tasks=tasks, encode_kwargs={"batch_size": batch_size}).task_results)
        else:  # mteb 1.x
            task_results = mteb.MTEB(tasks=tasks).run(model, output_folder=None, encode_kwargs={"batch_size": batch_size})
    except (OSError, ConnectionError) as exc:
        raise TaskUnavailable(f"mteb:{task_name} could not load its data (offline?): {exc}") from exc
    if not task_results:
        raise TaskUnavailable(f"mteb:{task_name} returned no result")
    result = task_results[0]
    splits = {
        split: [float(entry["main_score"]) * 100.0 for entry in entries]
        for split, entries in getattr(result, "scores", {}).items()
    }
    main_score = float(result.get_score()) * 100.0
    metric = getattr(getattr(tasks[0], "metadata", None), "main_score", "main_score")
    return {
        "main_score": main_score,
        "metric": str(metric),
        "split": ",".join(splits) or None,
        "splits": splits,
        "n": None,
        "mteb_version": getattr(mteb, "__version__", None),
    }
