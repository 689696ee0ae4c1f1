"""The run report is built from the run's files: tables, plots, and the final model's histograms."""

from __future__ import annotations

import json
from pathlib import Path

from synthembed.pipeline.plan import MARKER
from synthembed.reporting.report import write_report


def embedded_images(page: str) -> list:
    """The report's inline PNG plots, decoded to (height, width, channels) arrays."""
    import base64
    import io
    import re

    from matplotlib import image

    blobs = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    return [image.imread(io.BytesIO(base64.b64decode(blob)), format="png") for blob in blobs]


def make_stage(run: Path, name: str, command: str, files: dict[str, object]) -> None:
    folder = run / name
    folder.mkdir(parents=True)
    (folder / MARKER).write_text(json.dumps({"hash": "x", "command": command, "elapsed_s": 1.5}))
    for filename, content in files.items():
        target = folder / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content))


def test_report_tables_and_plots(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from synthembed.models.encoder import load_encoder

    run = tmp_path / "run"
    records = "\n".join(
        json.dumps({"id": str(i), "anchor": f"a cat sat {i}", "positive": f"a cat was sitting {i}", "negative": f"no dog stood {i}"})
        for i in range(5)
    )
    chains = json.dumps({"id": "c0", "sentences": ["a b c", "a b d", "a e f", "g h i"]})
    make_stage(run, "syn", "synthembed synthesize syncse --output x", {"records/part-00000.jsonl": records, "dropped/part-00000.jsonl": json.dumps({"id": "9", "reason": "parse_failure"}), "manifest.json": {"counts": {"written": 5, "dropped": {"parse_failure": 1}}, "usage": {"prompt_tokens": 1200}}})
    make_stage(run, "ch", "synthembed synthesize chains --output y", {"records.jsonl": chains})
    make_stage(run, "before", "synthembed evaluate embedded", {"results.json": {"model": "embedded", "tasks": {"stsb": {"spearman": 80.0, "split": "dev", "n": 10}}}})
    make_stage(run, "fit", "synthembed train --output z", {"dev_curve.tsv": "step\tepoch\teval_dev_mean_spearman\n0\t0.0\t70.0\n5\t1.0\t72.5\n"})
    load_encoder(str(tiny_bert_dir)).save(str(run / "fit"))
    make_stage(run, "after_test", "synthembed evaluate fit", {"results.json": {"model": str(run / "fit"), "tasks": {"stsb": {"spearman": 79.5, "split": "test", "n": 9}}}})
    make_stage(run, "after", "synthembed evaluate fit", {"results.json": {"model": str(run / "fit"), "tasks": {"stsb": {"spearman": 81.25, "split": "dev", "n": 10}}}})
    make_stage(run, "before_ata", "synthembed evaluate embedded --pooling ata", {"results.json": {"model": "embedded", "config": {"pooling": "ata"}, "tasks": {"stsb": {"spearman": 60.5, "split": "dev", "n": 10}}}})
    make_stage(run, "sts7", "synthembed evaluate fit --tasks sts7", {"results.json": {"model": str(run / "fit"), "average": 70.25, "average_over": ["stsb", "sickr"], "tasks": {"stsb": {"spearman": 79.5, "split": "test", "n": 9}, "sickr": {"spearman": 61.0, "split": "test", "n": 9}}}})

    html_path = write_report(run)
    markdown = (run / "report.md").read_text()
    assert "| model | sickr (test) | stsb (dev) | stsb (test) | STS avg (test) |" in markdown
    assert "| embedded | — | 80.00 | — | — |" in markdown and "| fit | 61.00 | 81.25 | 79.50 | 70.25 |" in markdown
    assert "| embedded (ata) | — | 60.50 | — | — |" in markdown  # a pooling override is its own row
    assert "STS avg (test): 2 of 7 tasks: stsb, sickr." in markdown
    assert "| syn | 5 | parse_failure 1 | prompt tokens 1,200 |" in markdown
    page = html_path.read_text()
    assert page.count("<img") == 5  # scores, dev curve, triplet histogram, chain tau, chain similarity
    images = embedded_images(page)
    assert len(images) == 5
    for image in images:  # each plot is a real, non-blank picture
        assert image.shape[0] >= 200 and image.shape[1] >= 300 and float(image[..., :3].std()) > 0.02
    assert "Development-set curve" in page and "chain-order agreement" in page
