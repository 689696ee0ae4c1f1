"""Training wiring: data loading, config, `fit` (save/load, dev curve, best checkpoint, resume), the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from synthembed.config import TrainConfig, load_config
from synthembed.errors import DataError, SynthEmbedError
from synthembed.training.data import load_training_rows, rows_from_records

SENTENCES = [
    ("A man is playing a guitar.", "Someone plays an instrument.", "A man is sleeping."),
    ("Two dogs run in a field.", "Dogs are running outside.", "Two cats sleep indoors."),
    ("A woman is cooking dinner.", "Someone prepares food.", "A woman is swimming."),
    ("Kids play football in the park.", "Children are playing a game.", "The park is empty."),
    ("A red car drives fast.", "A vehicle is moving quickly.", "A red car is parked."),
    ("The old man reads a book.", "An elderly person is reading.", "The old man is running."),
    ("A bird sings on a tree.", "A bird is singing.", "The tree is silent."),
    ("People wait for the bus.", "Commuters are waiting.", "Nobody is at the stop."),
]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _triplet_file(tmp_path: Path, repeats: int = 2) -> Path:
    rows = [
        {"id": f"r{k}-{i}", "anchor": a, "positive": p, "negative": n}
        for k in range(repeats)
        for i, (a, p, n) in enumerate(SENTENCES)
    ]
    return _write_jsonl(tmp_path / "train.jsonl", rows)


@pytest.fixture()
def dev_dir(tmp_path: Path) -> Path:
    """A small STS-B dev / SICK-R trial pair of files in the shared-data layout."""
    folder = tmp_path / "data"
    (folder / "sts").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["score\tsentence1\tsentence2"]
    for i, (a, p, n) in enumerate(SENTENCES * 2):
        lines.append(f"{rng.uniform(3, 5):.2f}\t{a}\t{p}")
        lines.append(f"{rng.uniform(0, 2):.2f}\t{a}\t{n}")
    for name in ("stsb.dev.tsv", "sickr.trial.tsv"):
        (folder / "sts" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# ---------------------------------------------------------------- data


def test_jsonl_records_with_string_and_list_negatives(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "1", "anchor": "a1", "positive": "p1", "negative": ["n1a", "n1b"]},
            {"id": "2", "anchor": "a2", "positive": "p2", "negative": ["n2a", "n2b", "n2c"]},
            {"id": "3", "anchor": "", "positive": "p3", "negative": "n3"},
        ],
    )
    rows = load_training_rows(path)
    assert rows.columns == {
        "anchor": ["a1", "a2"],
        "positive": ["p1", "p2"],
        "negative_1": ["n1a", "n2a"],
        "negative_2": ["n1b", "n2b"],
    }
    assert rows.skipped["empty anchor or positive"] == 1
    assert sum(rows.skipped.values()) == 2  # one empty row, one row whose third negative was dropped


def test_tsv_with_named_columns_limit_and_pairs(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("premise\tentailment\tcontradiction\n" + "".join(f"a{i}\tp{i}\tn{i}\n" for i in range(5)))
    rows = load_training_rows(path, "premise", "entailment", "contradiction", limit=3)
    assert rows.columns["anchor"] == ["a0", "a1", "a2"] and rows.columns["negative_1"] == ["n0", "n1", "n2"]
    pairs = load_training_rows(path, "premise", "entailment", None)
    assert list(pairs.columns) == ["anchor", "positive"] and len(pairs) == 5


def test_csv_and_hf_dataset_folder(tmp_path: Path) -> None:
    import datasets

    csv_path = tmp_path / "t.csv"
    csv_path.write_text('anchor,positive,negative\n"a, quoted",p,n\n', encoding="utf-8")
    assert load_training_rows(csv_path).columns["anchor"] == ["a, quoted"]

    folder = tmp_path / "hf"
    datasets.Dataset.from_dict({"q": ["x", "y"], "d": ["x+", "y+"]}).save_to_disk(str(folder))
    rows = load_training_rows(folder, "q", "d", None)
    assert rows.columns == {"anchor": ["x", "y"], "positive": ["x+", "y+"]}


def test_wrong_columns_name_the_file(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "a", "doc": "b"}])
    with pytest.raises(DataError, match=r"bad\.jsonl.*missing column\(s\) \['anchor', 'positive', 'negative'\]"):
        load_training_rows(path)
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("x\ty\n1\t2\n")
    with pytest.raises(DataError, match=r"bad\.tsv:1: missing column"):
        load_training_rows(tsv)


def test_no_usable_rows_is_an_error(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "empty.jsonl", [{"anchor": " ", "positive": "p", "negative": "n"},
                                                   {"anchor": "a", "positive": "p", "negative": []}])
    with pytest.raises(DataError, match=r"empty\.jsonl: no usable training rows \(1 empty anchor or positive, 1 no usable negative\)"):
        load_training_rows(path)
    with pytest.raises(DataError, match="no usable training rows"):
        rows_from_records([], "nothing")


# ---------------------------------------------------------------- config


def test_config_file_flags_override_and_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("data: x.jsonl\noutput: out\nlr: 1e-5\nbatch-size: 16\ndev_tasks: [stsb]\nlimit: null\n")
    config = load_config(TrainConfig, path, {"batch_size": 8, "temperature": None})
    assert (config.lr, config.batch_size, config.temperature, config.dev_tasks) == (1e-5, 8, 0.05, ("stsb",))
    path.write_text("data: x\nlearning_rate: 1e-5\n")
    with pytest.raises(SynthEmbedError, match=r"c\.yaml: unknown key\(s\) \['learning_rate'\]"):
        load_config(TrainConfig, path)
    path.write_text("batch_size: many\n")
    with pytest.raises(SynthEmbedError, match="batch_size: expected int"):
        load_config(TrainConfig, path)
    path.write_text("- a list\n")
    with pytest.raises(DataError, match="mapping"):
        load_config(TrainConfig, path)
    with pytest.raises(SynthEmbedError, match="no training data"):
        TrainConfig(output="o").validate()


# ---------------------------------------------------------------- fit


def _train(tmp_path: Path, tiny_bert_dir: Path, dev_dir: Path | None, output: Path, **overrides) -> Path:
    from synthembed.training.syncse import train_from_config

    values = dict(
        data=str(_triplet_file(tmp_path)),
        output=str(output),
        model=str(tiny_bert_dir),
        pooling="cls_mlp",
        max_length=16,
        batch_size=4,
        lr=1e-3,
        max_steps=2,
        eval_steps=1,
        data_dir=str(dev_dir) if dev_dir else None,
        seed=1,
    )
    values.update(overrides)
    return train_from_config(TrainConfig(**values), dev=dev_dir is not None)


def test_two_steps_change_embeddings_and_save_load(tmp_path: Path, tiny_bert_dir: Path, dev_dir: Path) -> None:
    from synthembed.models.encoder import load_encoder
    from synthembed.models.pooling import pooling_name

    sentences = [s for row in SENTENCES[:3] for s in row]
    output = _train(tmp_path, tiny_bert_dir, dev_dir, tmp_path / "model", mlp_train_only=True)

    for name in ("modules.json", "train_config.yaml", "dev_curve.tsv", "README.md"):
        assert (output / name).is_file(), name
    assert not (output / "checkpoints").exists()  # removed after a successful run by default

    trained = load_encoder(str(output))
    types = [m["type"] for m in json.loads((output / "modules.json").read_text())]
    assert all(t.startswith("sentence_transformers.") for t in types), types  # train-only MLP left out
    assert pooling_name(trained) == "cls"
    torch.manual_seed(1)
    reference = load_encoder(str(tiny_bert_dir), pooling="cls", max_length=16)  # the untrained CLS output
    changed = trained.encode(sentences, convert_to_numpy=True)
    assert not np.allclose(changed, reference.encode(sentences, convert_to_numpy=True), atol=1e-4)

    record = yaml.safe_load((output / "train_config.yaml").read_text())
    assert record["config"]["pooling"] == "cls_mlp" and record["data_rows"] == 16
    assert record["fit"]["loss"]["class"] == "InfoNCELoss" and record["result"]["steps_done"] == 2
    curve = (output / "dev_curve.tsv").read_text().splitlines()
    assert curve[0].split("\t")[:3] == ["step", "epoch", "eval_dev_mean_spearman"]
    assert [line.split("\t")[0] for line in curve[1:]] == ["0", "1", "2"]
    assert "How this model was made (SynthEmbed)" in (output / "README.md").read_text()


def test_best_checkpoint_is_the_one_kept(tmp_path: Path, tiny_bert_dir: Path, dev_dir: Path) -> None:
    """The saved model scores the best dev mean of the curve (among trained steps)."""
    from synthembed.evaluation.dev import DevSTSEvaluator
    from synthembed.models.encoder import load_encoder

    output = _train(tmp_path, tiny_bert_dir, dev_dir, tmp_path / "m", max_steps=3, lr=5e-3)
    lines = [line.split("\t") for line in (output / "dev_curve.tsv").read_text().splitlines()]
    header, rows = lines[0], lines[2:]  # skip step 0: the untrained model has no checkpoint
    column = header.index("eval_dev_mean_spearman")
    best = max(float(r[column]) for r in rows)
    score = DevSTSEvaluator(dev_dir)(load_encoder(str(output)))["dev_mean_spearman"]
    assert score == pytest.approx(best, abs=1e-3)


def test_resume_after_interruption_gives_the_same_model(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import TrainerCallback

    from synthembed.models.encoder import load_encoder
    from synthembed.training import trainer as trainer_module

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    common = dict(max_steps=4, eval_steps=2, save_steps=2, lr=1e-3)
    straight = _train(tmp_path, tiny_bert_dir, None, tmp_path / "straight", **common)

    real_fit = trainer_module.fit
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "fit", lambda *a, **k: real_fit(*a, callbacks=[Interrupt()], **k))
        with pytest.raises(KeyboardInterrupt):
            _train(tmp_path, tiny_bert_dir, None, tmp_path / "resumed", **common)
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "modules.json").exists()
    resumed = _train(tmp_path, tiny_bert_dir, None, tmp_path / "resumed", **common)
    record = yaml.safe_load((resumed / "train_config.yaml").read_text())
    assert record["result"]["steps_done"] == 4

    sentences = [row[0] for row in SENTENCES]
    a = load_encoder(str(straight)).encode(sentences, convert_to_numpy=True)
    b = load_encoder(str(resumed)).encode(sentences, convert_to_numpy=True)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_cli_train_with_config_and_flags(tmp_path: Path, tiny_bert_dir: Path, dev_dir: Path) -> None:
    from synthembed.cli import main

    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump({"model": str(tiny_bert_dir), "pooling": "mean", "batch_size": 4, "max_steps": 50, "max_length": 16})
    )
    output = tmp_path / "cli-model"
    code = main([
        "train", "--config", str(config), "--data", str(_triplet_file(tmp_path)), "--output", str(output),
        "--max-steps", "1", "--hard-negative-weight", "0.5", "--data-dir", str(dev_dir), "--seed", "3",
    ])
    assert code == 0
    record = yaml.safe_load((output / "train_config.yaml").read_text())
    assert record["config"]["max_steps"] == 1 and record["config"]["hard_negative_weight"] == 0.5
    assert record["fit"]["loss"]["hard_negative_weight"] == 0.5

    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    assert main(["train", "--config", str(bad), "--data", "x", "--output", "y"]) == 2


def test_cli_reports_bad_data_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from synthembed.cli import main

    path = _write_jsonl(tmp_path / "wrong.jsonl", [{"text": "a"}])
    assert main(["train", "--data", str(path), "--output", str(tmp_path / "o"), "--no-dev"]) == 2
    assert "wrong.jsonl:1: missing column(s)" in capsys.readouterr().err


def test_decoder_backbone_encodes_plain_text(tiny_llama_dir: Path) -> None:
    """A chat-template tokenizer must not wrap training sentences in the chat template."""
    from synthembed.config import TrainConfig
    from synthembed.training.syncse import build_model

    model = build_model(TrainConfig(data="x", output="y", model=str(tiny_llama_dir), pooling="mean", max_length=32))
    ids = model.preprocess(["A man is playing a guitar."])["input_ids"][0].tolist()
    assert ids == model[0].tokenizer("A man is playing a guitar.")["input_ids"]
    assert "message" not in model[0].modality_config


# ---------------------------------------------------------------- issue 15: malformed rows, saved max length
def test_malformed_rows_are_reported_with_file_line_and_field(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [{"id": f"ok{i}", "anchor": f"a{i}", "positive": f"p{i}", "negative": f"n{i}"} for i in range(5)]
    rows.insert(2, {"id": "bad", "anchor": 42, "positive": "p", "negative": "n"})
    path = _write_jsonl(tmp_path / "mixed.jsonl", rows)
    with caplog.at_level("WARNING"):
        loaded = load_training_rows(path)
    assert len(loaded) == 5 and loaded.skipped == {"malformed anchor": 1}
    assert loaded.examples == [f"{path}:3: malformed: 'anchor' is int '42', not text"]
    assert f"{path}:3: malformed: 'anchor' is int" in caplog.text
    # a synthesis folder names the shard file and its line
    (tmp_path / "out" / "records").mkdir(parents=True)
    shard = _write_jsonl(tmp_path / "out" / "records" / "part-00000.jsonl", rows)
    assert load_training_rows(tmp_path / "out").examples[0].startswith(f"{shard}:3: malformed")


def test_too_many_bad_rows_is_an_error(tmp_path: Path) -> None:
    rows = [{"anchor": ["a", "list"], "positive": "p", "negative": "n"}] * 3 + [
        {"anchor": "a", "positive": "p", "negative": "n"}] * 2
    path = _write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad\.jsonl: 3 of 5 rows unusable \(3 malformed anchor\), more than the 50% "
                       r"allowed \(max_bad_rows\); first: .*bad\.jsonl:1: malformed: 'anchor' is list"):
        load_training_rows(path)
    assert len(load_training_rows(path, max_bad_share=0.6)) == 2


def test_saved_model_keeps_the_base_inference_length(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from synthembed.models.encoder import load_encoder

    base = load_encoder(str(tiny_bert_dir)).max_seq_length
    assert base is not None and base > 16
    output = _train(tmp_path, tiny_bert_dir, None, tmp_path / "m", max_length=16, max_steps=1, pooling="mean")
    loaded = SentenceTransformer(str(output), trust_remote_code=True)  # our pooling module is not an ST class
    assert loaded.max_seq_length == base  # plain loading: no silent truncation at 16
    record = yaml.safe_load((output / "train_config.yaml").read_text())
    assert record["fit"]["train_max_length"] == 16 and record["fit"]["saved_max_seq_length"] == base
    assert "trained at 16 tokens" in (output / "README.md").read_text()
