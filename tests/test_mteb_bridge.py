"""mteb 2.x bridge, offline: our encoders under `mteb.evaluate`, a custom STS task from local data, the two STS
averages reported apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mteb", reason="the mteb extra is not installed")

from synthembed.evaluation.base import TaskUnavailable  # noqa: E402
from synthembed.evaluation.mteb_runner import (  # noqa: E402
    COMPARABILITY_NOTE,
    MTEBEncoder,
    local_sts_task,
    mteb_eng_v2_sts_tasks,
    run_mteb_task,
)

PAIRS = [
    ("A man is playing a guitar.", "A man plays an instrument.", 4.6),
    ("Two dogs run in a field.", "Dogs are running outside.", 4.2),
    ("A woman is cooking dinner.", "A woman is swimming.", 0.8),
    ("Kids play football in the park.", "Children are playing a game.", 3.9),
    ("A red car drives fast.", "A red car is parked.", 2.1),
    ("The old man reads a book.", "An elderly person is reading.", 4.4),
    ("A bird sings on a tree.", "The stock market fell.", 0.1),
    ("People wait for the bus.", "Commuters are waiting.", 4.0),
    ("A child is drawing a picture.", "A kid paints.", 3.5),
    ("The sun sets over the sea.", "A man fixes a bike.", 0.3),
]


@pytest.fixture()
def sts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "sts"
    folder.mkdir(parents=True)
    lines = ["score\tsentence1\tsentence2"] + [f"{s}\t{a}\t{b}" for a, b, s in PAIRS]
    (folder / "stsb.test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "data"


@pytest.fixture(scope="module")
def model(tiny_bert_dir: Path):
    from synthembed.models.encoder import load_encoder

    return load_encoder(tiny_bert_dir, max_length=32)


def test_mteb_evaluate_on_a_custom_offline_task_equals_our_sts_evaluator(model, sts_dir: Path) -> None:
    from synthembed.evaluation.suite import evaluate_model

    ours = evaluate_model(model, ["stsb"], data_dir=sts_dir, show_progress=False)["tasks"]["stsb"]["spearman"]
    task = local_sts_task("LocalSTSB", [a for a, _, _ in PAIRS], [b for _, b, _ in PAIRS], [s for _, _, s in PAIRS])
    theirs = run_mteb_task(model, task, batch_size=4)
    assert theirs["metric"] == "cosine_spearman" and theirs["type"] == "STS"
    assert theirs["spearman"] == pytest.approx(ours, abs=1e-6)
    assert theirs["main_score"] == pytest.approx(ours, abs=1e-6)
    print(f"Spearman x100: ours {ours:.4f}, mteb.evaluate {theirs['main_score']:.4f}")


def test_suite_reports_senteval_and_mteb_averages_apart(model, sts_dir: Path) -> None:
    from synthembed.evaluation.report import format_table
    from synthembed.evaluation.suite import evaluate_model

    results = evaluate_model(model, ["stsb", "mteb-local:stsb"], data_dir=sts_dir, show_progress=False)
    assert results["average_over"] == ["stsb"] and results["mteb_sts_average_over"] == ["mteb-local:stsb"]
    assert results["mteb_sts_average"] == pytest.approx(results["average"], abs=1e-6)  # same data, same protocol here
    assert results["averages_note"] == COMPARABILITY_NOTE and "not comparable" in COMPARABILITY_NOTE
    table = format_table(results)
    assert "MTEB STS average over 1 task(s)" in table and "not comparable" in table


def test_encoder_interface_batches_and_prompts() -> None:
    """The 2.x interface: a DataLoader of batched inputs, task metadata and a prompt type in; one array out."""
    from mteb.types import PromptType
    from torch.utils.data import DataLoader

    calls: list[tuple[list[str], str | None]] = []

    class Recorder:
        prompts = {"query": "query: ", "document": ""}

        def encode(self, texts, prompt_name=None, **kwargs):
            calls.append((list(texts), prompt_name))
            return np.ones((len(texts), 3), dtype=np.float32) * len(calls)

        def get_sentence_embedding_dimension(self):
            return 3

    encoder = MTEBEncoder(Recorder(), name="recorder")
    task = local_sts_task("PromptSTS", ["a", "b", "c"], ["d", "e", "f"], [1, 2, 3])
    loader = DataLoader([{"text": t} for t in ["x", "y", "z"]], batch_size=2,
                        collate_fn=lambda rows: {"text": [r["text"] for r in rows]})
    out = encoder.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default",
                         prompt_type=PromptType.query)
    assert out.shape == (3, 3) and out[0, 0] == 1 and out[2, 0] == 2
    assert calls == [(["x", "y"], "query"), (["z"], "query")]
    calls.clear()
    encoder.encode(loader, task_metadata=task.metadata, hf_split="test", hf_subset="default", prompt_type=None)
    assert {prompt for _, prompt in calls} == {None}
    assert encoder.mteb_model_meta.name == "synthembed/recorder"


def test_mteb_eng_v2_sts_tasks_and_unknown_names() -> None:
    names = mteb_eng_v2_sts_tasks()
    assert "STS12" in names and "STSBenchmark" in names and "STS16" not in names
    with pytest.raises(TaskUnavailable, match="does not know"):
        run_mteb_task(object(), "NoSuchTaskAnywhere")
