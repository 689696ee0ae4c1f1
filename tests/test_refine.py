"""Refinement: chain loading errors, teacher matrices, and a tiny end-to-end refine run (CLI + resume)."""

from __future__ import annotations

import json

import pytest

from synthembed.errors import DataError
from synthembed.training.refine import _common_length, load_chains, teacher_cosines

CHAINS = [
    ["A man plays a guitar.", "A man is playing a guitar.", "Someone plays music.", "A person makes noise.", "Noise."],
    ["Two dogs run in the snow.", "Two dogs are running on snow.", "Animals run outside.", "Something moves.", "Things."],
    ["The market closed higher.", "Stocks ended up.", "Prices changed.", "Numbers moved.", "It happened."],
    ["She reads a book.", "A woman is reading.", "Someone looks at pages.", "A person sits.", "People exist."],
]


def _write(path, chains):
    path.write_text("".join(json.dumps({"id": f"c{i}", "sentences": c, "meta": {}}) + "\n" for i, c in enumerate(chains)))
    return path


def test_load_chains_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "sentences": ["x", "y", "z"]}\n{"id": "b", "sentences": "oops"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        load_chains(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "sentences": ["x", "y", "z"]}\n{not json\n')
    with pytest.raises(DataError, match=r"broken.jsonl:2"):
        load_chains(broken)
    undecodable = tmp_path / "latin1.jsonl"
    undecodable.write_bytes(b'{"id": "a", "sentences": ["x", "y", "z"]}\n{"id": "b", "sentences": ["caf\xe9", "y", "z"]}\n')
    with pytest.raises(DataError, match=r"latin1.jsonl:2"):
        load_chains(undecodable)
    short = _write(tmp_path / "short.jsonl", [["a", "b"], ["a", "b", "c"]])
    chains, skipped = load_chains(short)
    assert chains == [["a", "b", "c"]] and skipped["too_short"] == 1
    with pytest.raises(DataError):
        load_chains(tmp_path / "missing.jsonl")


def test_load_chains_from_store_folder(tmp_path):
    (tmp_path / "out" / "records").mkdir(parents=True)
    _write(tmp_path / "out" / "records" / "part-00000.jsonl", CHAINS[:2])
    chains, _ = load_chains(tmp_path / "out")
    assert chains == CHAINS[:2]


def test_common_length():
    chains, n, skipped = _common_length([["a"] * 5, ["b"] * 5, ["c"] * 4, ["d"] * 7], None)
    assert n == 5 and skipped == 1 and all(len(c) == 5 for c in chains) and len(chains) == 3


def test_teacher_cosines_shape(tiny_bert_dir):
    from synthembed.models.encoder import load_encoder

    model = load_encoder(str(tiny_bert_dir))
    mats = teacher_cosines(model, CHAINS[:2])
    assert len(mats) == 2 and len(mats[0]) == 5 and len(mats[0][0]) == 5
    assert mats[0][0][0] == pytest.approx(1.0, abs=1e-5)
    assert mats[0][1][3] == pytest.approx(mats[0][3][1], abs=1e-6)


def test_refine_cli_end_to_end(tiny_bert_dir, shared_data_dir, tmp_path):
    from synthembed.cli import main

    data = _write(tmp_path / "chains.jsonl", CHAINS)
    out = tmp_path / "refined"
    argv = ["refine", "--data", str(data), "--model", str(tiny_bert_dir), "--output", str(out), "--lr", "1e-3",
            "--eval-steps", "2", "--data-dir", str(shared_data_dir), "--dev-tasks", "stsb",
            "--infonce-weight", "0.1", "--distill-weight", "0.1", "--batch-size", "2"]
    assert main(argv) == 0
    results = json.loads((out / "refine_results.json").read_text())
    assert results["chains"] == 4 and results["list_size"] == 5
    assert set(results["dev_before"]) == {"dev_stsb_spearman", "dev_mean_spearman"}
    import yaml

    record = yaml.safe_load((out / "train_config.yaml").read_text())
    assert record["result"]["steps_done"] == 2 and record["fit"]["loss"]["class"] == "ChainRankingLoss"
    assert record["refine"]["distill_weight"] == 0.1
    curve = (out / "dev_curve.tsv").read_text()
    assert "dev_stsb_spearman" in curve
    assert (out / "modules.json").is_file()
    logged = {k for h in results["train_log"] for k in h}
    assert {"listmle", "infonce", "distill"} <= logged  # each loss term logged by name
    from synthembed.models.encoder import load_encoder

    assert load_encoder(str(out)).encode(["ok"]).shape[0] == 1
