"""Portable model folders: saved models load where SynthEmbed is not installed, old folders still load,
`synthembed export` rewrites them, and the model card is hub-ready.

The "fresh environment" is a virtual environment built without pip and without the system site
(``python -m venv --without-pip``) whose only link to the installed libraries is one ``.pth`` line
naming the shared venv's site-packages folder. A path listed in a ``.pth`` file is added to
``sys.path`` but its own ``.pth`` files are not run, so SynthEmbed's editable install (a ``.pth``
pointing at its source) is invisible there; the child also runs with ``-I`` (no PYTHONPATH, no user
site). The child asserts that ``import synthembed`` is impossible before loading anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from synthembed.models.encoder import load_encoder

SENTENCES = ["A man is playing a guitar.", "Two dogs run on the beach in the sun.", "Hello"]
ST_PREFIX = "sentence_transformers."


def _types(folder: Path) -> list[str]:
    return [entry["type"] for entry in json.loads((folder / "modules.json").read_text())]


@pytest.fixture(scope="session")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A venv that sees the installed libraries but not SynthEmbed; (its python, seconds to build)."""
    started = time.perf_counter()
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    child_site = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    Path(child_site, "shared_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, time.perf_counter() - started


def _run_fresh(python: Path, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf-modules"))
    prelude = textwrap.dedent(
        """
        import importlib.util, sys
        assert importlib.util.find_spec("synthembed") is None, "synthembed is importable in the fresh env"
        """
    )
    done = subprocess.run(
        [str(python), "-I", "-c", prelude + textwrap.dedent(script)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return done


# runs in the default suite: the fresh environment is the point of issue 23 (about 25 s on a quiet machine)
def test_fresh_environment_loads_mean_cls_mlp_and_ata_with_identical_embeddings(
    fresh_python: tuple[Path, float], tiny_llama_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from synthembed.models.card import PLACEHOLDER_ID, write_model_card
    from synthembed.models.export import save_portable

    python, build_s = fresh_python
    models = {
        "mean": load_encoder(tiny_llama_dir, pooling="mean"),
        "cls_mlp": load_encoder(tiny_bert_dir, pooling="cls_mlp"),
        "ata": load_encoder(tiny_llama_dir, pooling="ata:skip_first=true"),
    }
    expected = {}
    for name, model in models.items():
        model.eval()
        expected[name] = model.encode(SENTENCES, convert_to_numpy=True)
        save_portable(model, tmp_path / name)
    assert all(t.startswith(ST_PREFIX) for t in _types(tmp_path / "mean"))
    assert all(t.startswith(ST_PREFIX) for t in _types(tmp_path / "cls_mlp"))
    assert _types(tmp_path / "ata")[1] == "ata_pooling.AtaPooling"
    card = write_model_card(tmp_path / "ata").read_text()
    snippet = card.split("```python", 1)[1].split("```", 1)[0]  # sentence-transformers' usage snippet
    assert f'SentenceTransformer("{PLACEHOLDER_ID}", trust_remote_code=True)' in snippet
    snippet = snippet.replace(PLACEHOLDER_ID, str(tmp_path / "ata"))  # what push_to_hub does with the repo id

    started = time.perf_counter()
    done = _run_fresh(python, textwrap.dedent(f"""
        import numpy as np
        from sentence_transformers import SentenceTransformer
        sentences = {SENTENCES!r}
        for name, trust in (("mean", False), ("cls_mlp", False), ("ata", True)):
            path = {str(tmp_path)!r} + "/" + name
            if trust:
                try:
                    SentenceTransformer(path)
                except ValueError as exc:
                    assert "trust_remote_code" in str(exc), exc
                else:
                    raise AssertionError("ATA loaded without trust_remote_code")
            model = SentenceTransformer(path, trust_remote_code=trust)
            np.save(path + ".fresh.npy", model.encode(sentences, convert_to_numpy=True))
        # what push_to_hub does before uploading (the last model, ATA): save with the repo id; card and code travel
        model.model_card_data.set_model_id("someone/pushed")
        model.save_pretrained(path + "-pushed")
        card = open(path + "-pushed/README.md").read()
        assert "How this model was made" in card, card[-2000:]
        assert 'SentenceTransformer("someone/pushed", trust_remote_code=True)' in card
        again = SentenceTransformer(path + "-pushed", trust_remote_code=True).encode(sentences, convert_to_numpy=True)
        np.testing.assert_allclose(again, np.load(path + ".fresh.npy"), atol=1e-6)
        print("SNIPPET")
    """) + snippet, tmp_path)
    child_s = time.perf_counter() - started
    assert "tensor(" in done.stdout.split("SNIPPET", 1)[1]  # the card's snippet ran as written
    for name in models:
        got = np.load(tmp_path / f"{name}.fresh.npy")
        np.testing.assert_allclose(got, expected[name], atol=1e-5, rtol=1e-4, err_msg=name)
    print(f"fresh venv built in {build_s:.1f} s; loading and encoding 3 models there took {child_s:.1f} s")


def _old_style(folder: Path, pooling_type: str, config: dict, weights: dict[str, torch.Tensor] | None = None) -> None:
    """Rewrite a saved folder's pooling entry into what SynthEmbed wrote before portable modules."""
    from safetensors.torch import save_file

    modules = json.loads((folder / "modules.json").read_text())
    for entry in modules[1:]:
        shutil.rmtree(folder / entry["path"])
    sub = pooling_type.rsplit(".", 1)[1]
    (folder / f"1_{sub}").mkdir()
    (folder / f"1_{sub}" / "config.json").write_text(json.dumps(config))
    if weights is not None:
        save_file(weights, str(folder / f"1_{sub}" / "model.safetensors"))
    modules = [modules[0], {"idx": 1, "name": "1", "path": f"1_{sub}", "type": pooling_type}]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "ata_pooling.py").unlink(missing_ok=True)


def test_old_folders_load_and_export_to_standard_modules(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Folders naming synthembed.models.pooling.* load through load_encoder with the old outputs; export
    rewrites them so plain SentenceTransformer(path) loads them with the same embeddings."""
    from sentence_transformers import SentenceTransformer

    from synthembed.cli import main

    base = load_encoder(tiny_bert_dir, pooling="mean").eval()
    features = base.tokenize(SENTENCES)
    with torch.no_grad():
        tokens = base[0](dict(features))["token_embeddings"]  # (batch, seq, 32)
    mask = features["attention_mask"].float()  # (batch, seq)
    torch.manual_seed(3)
    weight, bias = torch.randn(32, 32) * 0.1, torch.randn(32) * 0.1
    cls = tokens[:, 0]  # right padding: the first token is the first real one
    cases = {
        "mean": ("synthembed.models.pooling.MeanPooling", {"embedding_dimension": 32}, None,
                 (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)),
        "cls": ("synthembed.models.pooling.ClsPooling", {"embedding_dimension": 32}, None, cls),
        "cls_mlp": ("synthembed.models.pooling.ClsMlpPooling", {"embedding_dimension": 32, "mlp_train_only": False},
                    {"dense.weight": weight, "dense.bias": bias}, torch.tanh(cls @ weight.T + bias)),
        "cls_mlp_train_only": ("synthembed.models.pooling.ClsMlpPooling",
                               {"embedding_dimension": 32, "mlp_train_only": True},
                               {"dense.weight": weight, "dense.bias": bias}, cls),
    }
    for name, (pooling_type, config, weights, hand) in cases.items():
        old = tmp_path / f"old-{name}"
        base.save(str(old))
        _old_style(old, pooling_type, config, weights)
        loaded = load_encoder(old).eval()
        got = loaded.encode(SENTENCES, convert_to_tensor=True)
        torch.testing.assert_close(got, hand, atol=1e-5, rtol=1e-4, msg=name)

        out = tmp_path / f"new-{name}"
        assert main(["export", str(old), str(out)]) == 0
        assert all(t.startswith(ST_PREFIX) for t in _types(out)), (name, _types(out))
        plain = SentenceTransformer(str(out)).eval()  # no trust_remote_code: only standard modules
        torch.testing.assert_close(plain.encode(SENTENCES, convert_to_tensor=True), hand, atol=1e-5, rtol=1e-4)
    assert _types(tmp_path / "new-cls_mlp")[1:] == [
        "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        "sentence_transformers.base.modules.dense.Dense",
    ]
    assert len(_types(tmp_path / "new-cls_mlp_train_only")) == 2  # the train-only MLP is left out


def test_old_ata_folder_loads_and_exports_with_its_code(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from synthembed.cli import main
    from synthembed.errors import SynthEmbedError

    model = load_encoder(tiny_llama_dir, pooling="ata:mean_mix=0.25").eval()
    before = model.encode(SENTENCES, convert_to_numpy=True)
    old = tmp_path / "old-ata"
    model.save(str(old))
    config = json.loads((old / "1_AtaPooling" / "config.json").read_text())
    _old_style(old, "synthembed.models.ata.AtaPooling", config)
    np.testing.assert_allclose(load_encoder(old).encode(SENTENCES), before, atol=1e-5)

    assert main(["export", str(old), str(tmp_path / "new")]) == 0
    assert _types(tmp_path / "new")[1] == "ata_pooling.AtaPooling"
    assert (tmp_path / "new" / "ata_pooling.py").is_file()
    np.testing.assert_allclose(load_encoder(tmp_path / "new").encode(SENTENCES), before, atol=1e-5)
    # re-saving a model whose ATA class came from a folder's code (transformers' dynamic modules) works too
    assert main(["export", str(tmp_path / "new"), str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "ata_pooling.py").read_bytes() == (tmp_path / "new" / "ata_pooling.py").read_bytes()
    np.testing.assert_allclose(load_encoder(tmp_path / "again").encode(SENTENCES), before, atol=1e-5)
    assert main(["export", str(old), str(tmp_path / "new")]) == 2  # exists: a clear error, exit 2
    with pytest.raises(SynthEmbedError, match="exists"):
        from synthembed.models.export import export_model

        export_model(old, tmp_path / "new")


def test_card_metadata_snippet_and_provenance(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The card's YAML is what the hub reads; the provenance comes from the synthesis manifest (the usage
    snippet is run in the fresh environment above)."""
    from huggingface_hub import ModelCard

    from synthembed.models.card import write_model_card
    from synthembed.models.export import save_portable

    synthesis = tmp_path / "synth"
    synthesis.mkdir()
    generator = tmp_path / "generator.gguf"
    generator.write_bytes(b"weights")
    (synthesis / "manifest.json").write_text(json.dumps({
        "config": {"task": "syncse", "task_config": {"mode": "partial", "temperature": 1.0,
                                                     "pools": {"sha256": "abcd1234", "examples": 5}},
                   "backend": "transformers", "model": str(generator), "seed": 0},
        "complete": True,
        "counts": {"written": 90, "dropped": {"parse_failure": 7, "duplicate": 3}},
    }))
    (synthesis / "records.jsonl").write_text("")
    record = {
        "method": "SynCSE / supervised SimCSE",
        "config": {"model": "HuggingFaceTB/SmolLM2-135M-Instruct", "data": str(synthesis / "records.jsonl"),
                   "pooling": "ata"},
        "fit": {"batch_size": 8, "world_size": 1, "lr": 5e-5, "selection_metric": "eval_dev_mean_spearman",
                "eval_steps": 10, "train_rows": 90},
        "result": {"best_checkpoint_step": 20, "best_metric": 61.5, "steps_done": 30},
    }
    folder = tmp_path / "m"
    save_portable(load_encoder(tiny_llama_dir, pooling="ata"), folder)
    (folder / "dev_curve.tsv").write_text("step\tepoch\teval_dev_mean_spearman\n10\t0.5\t55.0\n20\t1.0\t61.5\n")
    write_model_card(folder, record, license="apache-2.0")
    write_model_card(folder, record, license="apache-2.0")  # rewriting keeps one section

    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "sentence-transformers" and card.data.pipeline_tag == "sentence-similarity"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.license == "apache-2.0"
    assert {"sentence-transformers", "synthembed", "custom_code"} <= set(card.data.tags)
    text = card.text
    assert text.count("## How this model was made") == 1
    import hashlib

    for expected in ("parse_failure 7", "duplicate 3", "Kept: 90", "abcd1234", "SNLI", "mode partial",
                     hashlib.sha256(b"weights").hexdigest() + "`", "step 20", "**20**", "dev sets only"):
        assert expected in text, expected

    assert "## Usage" in text and "trust_remote_code=True" in text


def test_saved_models_load_with_plain_sentence_transformers(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """The fast in-process counterpart of the fresh-environment test (which is marked slow)."""
    from sentence_transformers import SentenceTransformer

    from synthembed.models.export import save_portable

    for spec, trust in (("mean", False), ("ata:mean_mix=0.5", True)):
        model = load_encoder(tiny_llama_dir, pooling=spec).eval()
        save_portable(model, tmp_path / spec)
        plain = SentenceTransformer(str(tmp_path / spec), trust_remote_code=trust).eval()
        np.testing.assert_allclose(plain.encode(SENTENCES), model.encode(SENTENCES), atol=1e-5, err_msg=spec)
