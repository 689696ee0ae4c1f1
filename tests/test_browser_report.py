"""The report that `synthembed run` writes, opened in headless Chromium at 1280 px and 390 px.

The run is the demo's pipeline at a reduced scale: SynCSE synthesis (the deterministic fake backend),
the base model scored on dev and test, training with dev evaluation, the trained model scored again.
Chromium is Debian's (scripts/setup-browser.sh installs it); a missing browser fails the test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthembed.cli import main
from synthembed.reporting.browser import check_report

CONFIG = """
name: browser
output_dir: {out}
seed: 7
data_dir: {data}
stages:
  - name: syncse
    command: synthesize syncse
    args: {{mode: partial, input: {input}, limit: 24, backend: fake}}
  - name: before_dev
    command: evaluate
    positional: ["{model}"]
    args: {{tasks: "stsb,sickr", split: dev}}
  - name: before_test
    command: evaluate
    positional: ["{model}"]
    args: {{tasks: stsb}}
  - name: train
    command: train
    args: {{data: "{{stage:syncse}}", model: "{model}", epochs: 1, batch_size: 4, max_length: 16, eval_steps: 2}}
  - name: after_dev
    command: evaluate
    positional: ["{{stage:train}}"]
    args: {{tasks: "stsb,sickr", split: dev}}
  - name: after_test
    command: evaluate
    positional: ["{{stage:train}}"]
    args: {{tasks: stsb}}
"""

WORDS = "cat dog man woman child plays runs sits eats reads park street house water ball guitar red blue old young".split()


def sts_file(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    lines = ["score\tsentence1\tsentence2"]
    for _ in range(n):
        first = list(rng.choice(WORDS, size=6))
        keep = int(rng.integers(0, 7))
        second = first[:keep] + list(rng.choice(WORDS, size=6 - keep))
        lines.append(f"{keep * 5 / 6:.2f}\t{' '.join(first)}\t{' '.join(second)}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def pipeline_report(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("browser-run")
    sts = root / "data" / "sts"
    sts.mkdir(parents=True)
    for name, seed in (("stsb.dev.tsv", 1), ("sickr.trial.tsv", 2), ("stsb.test.tsv", 3)):
        sts_file(sts / name, 60, seed)
    rng = np.random.default_rng(4)
    (root / "premises.txt").write_text("\n".join(" ".join(rng.choice(WORDS, size=8)) + "." for _ in range(24)) + "\n")
    config = root / "browser.yaml"
    config.write_text(CONFIG.format(out=root / "run", data=root / "data", input=root / "premises.txt", model=tiny_bert_dir))
    assert main(["run", str(config)]) == 0
    return root / "run" / "report.html"


def test_pipeline_report_reads_well_in_chromium(pipeline_report: Path, tmp_path: Path) -> None:
    page = pipeline_report.read_text(encoding="utf-8")
    assert "before_dev" in page and "<table" in page  # the pipeline wrote it, with its tables
    shots = tmp_path / "screenshots"
    check = check_report(pipeline_report, screenshots=shots)
    assert check.problems == [], check.problems
    assert [w.width for w in check.widths] == [1280, 390]
    for width in check.widths:
        assert width.scroll_width <= width.inner_width
        assert width.images >= 3 and not width.broken_images  # effects, dev curve, similarity (nothing was dropped)
        assert width.tables >= 4 and width.fake_tables == 0  # scores, kept rows, checks, stages
        assert width.screenshot is not None and width.screenshot.stat().st_size > 20_000
