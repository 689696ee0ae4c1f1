"""The run report: scores with intervals in real tables, audits that warn, plots that carry information."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from synthembed.cli import main
from synthembed.evaluation.compare import per_item_sts
from synthembed.evaluation.hash_encoder import HashEncoder
from synthembed.evaluation.metrics import spearman
from synthembed.pipeline.plan import MARKER
from synthembed.reporting import plots
from synthembed.reporting.report import metric_words, write_report

TRIPS = ("negatives", "dropped", "chains", "dev")


def embedded_images(page: str) -> list[np.ndarray]:
    """The report's inline PNG plots (wide and narrow drawings), decoded to (height, width, channels)."""
    from matplotlib import image

    blobs = re.findall(r'(?:src|srcset)="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    return [image.imread(io.BytesIO(base64.b64decode(blob)), format="png") for blob in blobs]


def make_stage(run: Path, name: str, command: str, files: dict[str, object]) -> None:
    folder = run / name
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"hash": "x", "command": command, "elapsed_s": 1.5}))
    for filename, content in files.items():
        target = folder / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content))


def sts_results(model: str, split: str, noise: float, seed: int, n: int = 120) -> dict:
    """An STS result with per-pair outcomes: the same pairs for every model, cosine = gold + noise."""
    rng = np.random.default_rng(100)
    gold = rng.uniform(0, 5, size=n)
    texts = [f"pair {i}" for i in range(n)]
    cosine = gold / 5 + np.random.default_rng(seed).normal(scale=noise, size=n)
    result = {"spearman": 100 * spearman(gold, cosine), "split": split, "n": n, "main_metric": "spearman",
              "per_item": per_item_sts(texts, texts, gold, cosine)}
    return {"model": model, "tasks": {"stsb": result}}


def make_run(tmp_path: Path, trip: str | None = None, name: str = "run", chains: int = 6) -> Path:
    """A run directory as the pipeline writes it, clean, or built to trip one audit."""
    run = tmp_path / name
    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    triplets = []
    for i in range(10):
        anchor = f"{' '.join(words[:5])} row{i}"
        close, far = f"{anchor} indeed", f"omega psi chi phi row{i}"
        positive, negative = (far, close) if trip == "negatives" else (close, far)
        triplets.append(json.dumps({"id": f"L{i}", "anchor": anchor, "positive": positive, "negative": negative}))
    dropped = {"copy": 6, "multi_sentence": 2} if trip == "dropped" else {"copy": 1}
    dropped_rows = "\n".join(json.dumps({"id": f"D{i}", "reason": "copy", "detail": "", "raw": {"positive": "same words", "negative": "same words"},
                                         "meta": {"source": f"in.tsv:{i}"}}) for i in range(3))
    make_stage(run, "syn", "synthembed synthesize syncse --mode partial --output x",
               {"records/part-00000.jsonl": "\n".join(triplets), "dropped/part-00000.jsonl": dropped_rows,
                "manifest.json": {"counts": {"written": 10, "dropped": dropped}, "usage": {"prompt_tokens": 1200, "completion_tokens": 300}}})
    chain_rows = []
    for c in range(chains):
        sentences = [" ".join(words[: 8 - k] + [f"other{j}" for j in range(k)]) + f" c{c}" for k in range(0, 8, 2)]  # s0 .. s3, falling overlap
        if trip == "chains":
            sentences = [sentences[0], *reversed(sentences[1:])]
        chain_rows.append(json.dumps({"id": f"C{c}", "sentences": sentences}))
    make_stage(run, "ch", "synthembed synthesize chains --output y", {"records.jsonl": "\n".join(chain_rows)})
    make_stage(run, "before_dev", "synthembed evaluate base-model --split dev", {"results.json": sts_results("base-model", "dev", 0.5, 1)})
    make_stage(run, "before_test", "synthembed evaluate base-model", {"results.json": sts_results("base-model", "test", 0.5, 2)})
    curve = [70.0, 69.5, 69.9] if trip == "dev" else [70.0, 70.005, 71.5]
    make_stage(run, "fit", "synthembed train --data syn --model base-model --output fit",
               {"dev_curve.tsv": "step\tepoch\teval_dev_mean_spearman\teval_loss\n" + "".join(f"{2 * i}\t{i / 2}\t{v}\t\n" for i, v in enumerate(curve)),
                "modules.json": "[]"})
    make_stage(run, "after_dev", "synthembed evaluate fit --split dev", {"results.json": sts_results(str(run / "fit"), "dev", 0.2, 3)})
    make_stage(run, "after_test", "synthembed evaluate fit", {"results.json": sts_results(str(run / "fit"), "test", 0.5, 2)})
    return run


@pytest.fixture(autouse=True)
def word_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report embeds the data with the base model; here a bag-of-words encoder with known similarities."""
    monkeypatch.setattr("synthembed.models.encoder.load_encoder", lambda reference, **_: HashEncoder(dim=256))


def test_clean_run_has_tables_intervals_and_no_warning(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    page = write_report(run).read_text()
    markdown = (run / "report.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| base-model") or line.startswith("| fit")]
    assert rows[0].startswith("| base-model (base) |") and rows[1].startswith("| fit |")  # pipeline order
    # test columns first: stsb (test) unchanged (0-width interval, n.s.), stsb (dev) better with an interval above 0
    assert re.search(r"\| fit \| [\d.]+ \(0\.00 \[0\.00, 0\.00\] n\.s\.\) \| [\d.]+ \(\+[\d.]+ \[\+[\d.]+, \+[\d.]+\]\) \|", rows[1]), rows[1]
    assert "## Warnings" not in markdown and "No check fired" in page
    assert "<pre" not in page and page.count("<table") >= 5
    for section in ("warnings", "r1-scores", "r1-training", "r1-data", "r1-checks", "r1-stages", "method"):
        assert f'id="{section}"' in page and f'href="#{section}"' in page
    images = embedded_images(page)
    assert len(images) == 2 * 5  # effects, dev curve, drop reasons, triplet scatter, chains: each drawn wide and narrow
    for image in images:
        assert image.shape[0] >= 150 and image.shape[1] >= 300 and float(image[..., :3].std()) > 0.02
    assert "eval_dev_mean_spearman" not in page and "mean dev Spearman x100" in page
    assert "omega psi chi phi row0" in page and "same words" in page  # a kept row and a dropped one
    assert page.count('class="passed"') == 5 and 'class="fired"' not in page


@pytest.mark.parametrize("trip", TRIPS)
def test_each_audit_trips_on_a_run_built_to_trip_it(tmp_path: Path, trip: str) -> None:
    run = make_run(tmp_path, trip)
    page = write_report(run).read_text()
    markdown = (run / "report.md").read_text()
    expected = {
        "negatives": "Negatives closer than positives",
        "dropped": "Rows dropped",
        "chains": "Chains whose similarity does not fall",
        "dev": "Dev curve never beats the base model",
    }[trip]
    warnings = page[page.index('id="warnings"') : page.index('id="r1-scores"')]
    assert "1 warning" in warnings and expected in warnings
    assert page.count('class="fired"') == 1
    assert "## Warnings" in markdown and expected.lower() in markdown


def test_small_data_skips_the_plot_with_a_reason(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path, chains=2)).read_text()
    assert "Plot not drawn:" in page and "Only 2 chain(s) were kept" in page


def test_axes_never_let_a_hundredth_fill_the_frame() -> None:
    low, high = plots.honest_limits([83.2075, 83.2250])
    assert high - low >= plots.MIN_SPAN and low < 83.2075 and high > 83.2250
    assert plots.honest_limits([60.0, 80.0]) [1] - plots.honest_limits([60.0, 80.0])[0] > 20
    assert metric_words("eval_dev_mean_spearman") == "mean dev Spearman x100"
    assert metric_words("eval_dev_sickr_spearman") == "SICK-R trial Spearman x100"


def test_results_without_per_pair_outcomes_show_the_change_without_an_interval(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    for stage in ("before_test", "after_test"):
        path = run / stage / "results.json"
        data = json.loads(path.read_text())
        del data["tasks"]["stsb"]["per_item"]
        path.write_text(json.dumps(data))
    markdown = (write_report(run, with_model_plots=False).with_suffix(".md")).read_text()
    assert "written before per-pair outcomes were stored" in markdown
    assert re.search(r"\| fit \| [\d.]+ \(0\.00\) \| [\d.]+ \(\+[\d.]+ \[.*\]\) \|", markdown)


def test_several_runs_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = make_run(tmp_path, name="first"), make_run(tmp_path, "dev", name="second")
    out = tmp_path / "both.html"
    assert main(["report", str(first), str(second), "-o", str(out), "--no-model-plots"]) == 0
    page = out.read_text()
    assert "Runs side by side" in page and 'id="r2-scores"' in page
    side = page[page.index('id="side-by-side"') : page.index('id="r1-run"')]
    assert side.count("<tr>") == 1 + 4 and "first" in side and "second" in side  # header + 2 models x 2 runs
    assert "second / fit" in out.with_suffix(".md").read_text()  # the warning names its run
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_graded_stage_gets_its_strip_plot_and_negatives_check(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    rows = [json.dumps({"id": f"G{i}", "query": f"red fox jumps high row{i}", "positive": f"red fox jumps high row{i} now",
                        "negatives": [{"level": 1, "text": f"red fox sits row{i}"}, {"level": 2, "text": f"blue whale sings {i}"}]})
            for i in range(6)]
    make_stage(run, "gr", "synthembed synthesize graded --mode levels --output g", {"records.jsonl": "\n".join(rows)})
    page = write_report(run).read_text()
    assert "gr: graded negatives (MGH)" in page
    assert "cosine of the positive and of each level" in page
    checks = page[page.index('id="r1-checks"') : page.index('id="r1-stages"')]
    assert checks.count("negatives closer than positives") == 2 and 'class="fired"' not in checks
