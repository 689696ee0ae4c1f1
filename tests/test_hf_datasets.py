"""``hf:`` inputs: the published datasets' schemas (local fixtures built here), the hub call's arguments,
``--columns``, and our own outputs read back with ``datasets.load_dataset("json", ...)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthembed.errors import DataError, SynthEmbedError
from synthembed.io.hf_datasets import parse_columns, parse_reference
from synthembed.training.data import load_training_rows

NLI = [
    ("A man is playing a guitar on stage.", "A man performs music.", "The man is asleep at home."),
    ("Two dogs run through a snowy field.", "Animals are outside in the snow.", "The dogs are sleeping indoors."),
    ("A woman slices vegetables in a kitchen.", "Someone is preparing food.", "The woman is swimming."),
    ("Children kick a ball in the park.", "Kids are playing a game.", "The park is empty."),
    ("A red car speeds down the highway.", "A vehicle is moving fast.", "The car is parked."),
    ("An old man reads a newspaper.", "A person is reading.", "The old man is running a marathon."),
]


def syncse_partial_parquet(folder: Path) -> Path:
    """sjtu-lit/SynCSE-partial-NLI as published: string columns sent0, sent1, hard_neg (parquet here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({"sent0": [a for a, _, _ in NLI], "sent1": [p for _, p, _ in NLI],
                      "hard_neg": [n for _, _, n in NLI]})
    pq.write_table(table, folder / "train-00000-of-00001.parquet")
    return folder


def syncse_scratch_csv(folder: Path) -> Path:
    """sjtu-lit/SynCSE-scratch-NLI as published: one train.csv with header sent0,sent1,hard_neg."""
    import csv

    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerows(reversed(NLI))
    return folder


def ranking_chains_csv(folder: Path, n: int = 5) -> Path:
    """leoner24/RankingSentences-NLI-LLaMA3-8B-32 as its generation script writes it: one column list_sent holding
    each chain as a Python list literal (pandas ``to_csv`` of a list column)."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    chains = [[f"{a}", f"{p}", f"{p} Maybe.", f"{n_} Perhaps.", n_] for a, p, n_ in NLI[:n]]
    pd.DataFrame({"list_sent": chains}).to_csv(folder / "train.csv", index=False)
    return folder


# ---------------------------------------------------------------- parsing


def test_parse_reference_and_columns() -> None:
    ref = parse_reference("hf:sjtu-lit/SynCSE-partial-NLI@a1b2c3?split=train[:10]&streaming=true")
    assert (ref.path, ref.revision, ref.split, ref.streaming) == ("sjtu-lit/SynCSE-partial-NLI", "a1b2c3", "train[:10]", True)
    assert parse_reference("hf:x/y").split == "train" and not parse_reference("hf:x/y").streaming
    for bad in ("hf:", "hf:x/y@", "hf:x/y?splt=train", "hf:x/y?streaming=maybe", "sjtu-lit/x"):
        with pytest.raises(SynthEmbedError):
            parse_reference(bad)
    assert parse_columns("anchor=q, positive=d,negative=none") == {"anchor": "q", "positive": "d", "negative": None}
    for bad in ("anchor", "query=q", "anchor=", ""):
        with pytest.raises(SynthEmbedError, match="--columns"):
            parse_columns(bad)


# ---------------------------------------------------------------- the published schemas, local copies


def test_syncse_partial_and_scratch_schemas_load_without_columns(tmp_path: Path) -> None:
    partial = load_training_rows(f"hf:{syncse_partial_parquet(tmp_path / 'partial')}")
    assert partial.columns["anchor"][0] == NLI[0][0] and partial.columns["negative_1"][0] == NLI[0][2]
    assert list(partial.columns) == ["anchor", "positive", "negative_1"] and len(partial) == len(NLI)
    scratch = load_training_rows(f"hf:{syncse_scratch_csv(tmp_path / 'scratch')}", limit=4)
    assert scratch.columns["positive"][0] == NLI[-1][1] and len(scratch) == 4
    pairs = load_training_rows(f"hf:{tmp_path / 'partial'}", negative=None)
    assert list(pairs.columns) == ["anchor", "positive"]


def test_hub_ids_reach_load_dataset_with_revision_split_and_streaming(tmp_path: Path, monkeypatch) -> None:
    """The hub path: the id, revision, split and streaming go to datasets.load_dataset unchanged (redirected here
    to a local copy of the files, since the hub is unreachable in tests)."""
    import datasets

    local = syncse_partial_parquet(tmp_path / "partial")
    real = datasets.load_dataset
    calls = []

    def fake_hub(path, **kwargs):
        calls.append((path, kwargs))
        return real(str(local), **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    rows = load_training_rows("hf:sjtu-lit/SynCSE-partial-NLI@0123abc?streaming=true", limit=2)
    assert calls == [("sjtu-lit/SynCSE-partial-NLI", {"split": "train", "streaming": True, "revision": "0123abc"})]
    assert len(rows) == 2 and rows.source == "hf:sjtu-lit/SynCSE-partial-NLI@0123abc[train]"
    load_training_rows("hf:sjtu-lit/SynCSE-scratch-NLI", split="train")
    assert calls[-1] == ("sjtu-lit/SynCSE-scratch-NLI", {"split": "train", "streaming": False})


def test_unknown_dataset_needs_columns_and_wrong_kind_is_named(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "other"
    folder.mkdir()
    Dataset.from_dict({"q": ["a", "b"], "d": ["c", "d"], "n": ["e", "f"]}).to_parquet(str(folder / "train.parquet"))
    with pytest.raises(DataError, match="give --columns anchor=COL"):
        load_training_rows(f"hf:{folder}")
    rows = load_training_rows(f"hf:{folder}", anchor="q", positive="d", negative="n")
    assert rows.columns == {"anchor": ["a", "b"], "positive": ["c", "d"], "negative_1": ["e", "f"]}
    with pytest.raises(DataError, match=r"missing column\(s\) \['x'\]"):
        load_training_rows(f"hf:{folder}", anchor="x", positive="d", negative=None)
    with pytest.raises(DataError, match="use it with synthembed refine"):
        load_training_rows(f"hf:{ranking_chains_csv(tmp_path / 'chains')}")


def test_ranking_chains_schema_for_refine(tmp_path: Path) -> None:
    from synthembed.training.refine import load_chains

    folder = ranking_chains_csv(tmp_path / "chains")
    chains, skipped = load_chains(f"hf:{folder}", limit=3)
    assert len(chains) == 3 and chains[0][0] == NLI[0][0] and len(chains[0]) == 5 and not skipped
    # the same chains as a real list column (parquet) and under another column name with --columns
    from datasets import Dataset

    other = tmp_path / "other-chains"
    other.mkdir()
    Dataset.from_dict({"ranked": chains}).to_parquet(str(other / "train.parquet"))
    with pytest.raises(DataError, match="sentences=COL"):
        load_chains(f"hf:{other}")
    assert load_chains(f"hf:{other}", columns={"sentences": "ranked"})[0] == chains


def _dev_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "dev"
    (folder / "sts").mkdir(parents=True)
    lines = ["score\tsentence1\tsentence2"]
    for i, (a, p, n) in enumerate(NLI):
        lines += [f"{4 + i % 2}\t{a}\t{p}", f"{i % 2}\t{a}\t{n}"]
    for name in ("stsb.dev.tsv", "sickr.trial.tsv"):
        (folder / "sts" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_cli_train_and_refine_on_published_schemas(tmp_path: Path, tiny_bert_dir: Path, capsys) -> None:
    """No code change by a user: `synthembed train --data hf:...` and `synthembed refine --data hf:...`."""
    from synthembed.cli import main

    data = syncse_partial_parquet(tmp_path / "partial")
    out = tmp_path / "trained"
    assert main(["train", "--data", f"hf:{data}", "--output", str(out), "--model", str(tiny_bert_dir),
                 "--batch-size", "3", "--max-steps", "2", "--precision", "fp32", "--no-dev"]) == 0
    saved = (out / "train_config.yaml").read_text()
    assert "negatives_per_row: 1" in saved and "data_rows: 6" in saved

    chains = ranking_chains_csv(tmp_path / "chains")
    refined = tmp_path / "refined"
    assert main(["refine", "--data", f"hf:{chains}", "--model", str(tiny_bert_dir), "--output", str(refined),
                 "--data-dir", str(_dev_dir(tmp_path)), "--limit", "4", "--precision", "fp32", "--eval-steps", "2"]) == 0
    summary = json.loads((refined / "refine_results.json").read_text())
    assert summary["chains"] == 4 and summary["list_size"] == 5


def test_cli_columns_flag(tmp_path: Path, tiny_bert_dir: Path, capsys) -> None:
    from datasets import Dataset

    from synthembed.cli import main

    folder = tmp_path / "other"
    folder.mkdir()
    Dataset.from_dict({"q": [a for a, _, _ in NLI], "d": [p for _, p, _ in NLI]}).to_parquet(str(folder / "t.parquet"))
    base = ["train", "--data", f"hf:{folder}", "--model", str(tiny_bert_dir), "--batch-size", "3", "--max-steps", "1",
            "--precision", "fp32", "--no-dev"]
    assert main([*base, "--output", str(tmp_path / "a")]) == 2
    assert "--columns" in capsys.readouterr().err
    assert main([*base, "--output", str(tmp_path / "b"), "--columns", "anchor=q,positive=d,negative=none"]) == 0
    assert main([*base, "--output", str(tmp_path / "c"), "--columns", "anchr=q"]) == 2
    assert "anchr=q" in capsys.readouterr().err


# ---------------------------------------------------------------- our outputs as datasets


def test_our_synthesis_outputs_load_with_datasets_json(tmp_path: Path) -> None:
    from datasets import load_dataset

    from synthembed.cli import main

    source = tmp_path / "anchors.txt"
    source.write_text("\n".join(f"A sentence about topic {i} that is long enough to paraphrase." for i in range(6)) + "\n")
    out = tmp_path / "run"
    assert main(["synthesize", "syncse", "--input", str(source), "--limit", "4", "--backend", "fake",
                 "--output", str(out), "--no-progress", "--seed", "3"]) == 0
    merged = load_dataset("json", data_files=str(out / "records.jsonl"), split="train")
    shards = load_dataset("json", data_files=str(out / "records" / "part-*.jsonl"), split="train")
    ours = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(merged) == len(ours) == len(shards) > 0
    assert {"id", "anchor", "positive", "negative"} <= set(merged.column_names)
    assert merged["anchor"] == [r["anchor"] for r in ours] and sorted(shards["id"]) == sorted(merged["id"])
    # and they train as they are: the dataset's columns, selected, are what InfoNCELoss takes
    assert load_training_rows(out).columns["anchor"] == merged["anchor"]


def test_graded_records_pushed_as_a_dataset_train_with_the_curriculum(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Our graded (MGH) records as a `datasets` folder (what push_to_hub uploads) -> `train --curriculum`."""
    from datasets import Dataset

    from synthembed.cli import main

    records = [{"query": a, "positive": p, "negatives": [{"level": lv, "text": f"{n} ({lv})"} for lv in (1, 2, 3, 4)]}
               for a, p, n in NLI]
    folder = tmp_path / "graded"
    folder.mkdir()
    Dataset.from_list(records).to_parquet(str(folder / "train.parquet"))
    out = tmp_path / "mgh"
    assert main(["train", "--data", f"hf:{folder}", "--curriculum", "curriculum", "--output", str(out), "--model",
                 str(tiny_bert_dir), "--batch-size", "2", "--epochs", "1", "--precision", "fp32", "--no-dev"]) == 0
    assert "graded_records: 6" in (out / "train_config.yaml").read_text()


def test_our_graded_outputs_load_with_datasets_json(tmp_path: Path) -> None:
    from datasets import load_dataset

    from synthembed.cli import main
    from synthembed.synthesis.records import iter_records

    queries = tmp_path / "q.txt"
    queries.write_text("A man is playing a guitar on the street corner.\nThe sky is very blue over the hills today.\n"
                       "Two children are building a sandcastle on the beach.\n", encoding="utf-8")
    out = tmp_path / "graded"
    assert main(["synthesize", "graded", "--mode", "levels", "--input", str(queries), "--backend", "fake",
                 "--few-shot", "1", "--output", str(out), "--no-progress"]) == 0
    ours = list(iter_records(out))
    if not ours:
        pytest.skip("the fake backend kept no graded record")
    loaded = load_dataset("json", data_files=str(out / "records.jsonl"), split="train")
    assert len(loaded) == len(ours) and loaded["query"] == [r["query"] for r in ours]
    assert [[n["text"] for n in row] for row in loaded["negatives"]] == [[n["text"] for n in r["negatives"]] for r in ours]
