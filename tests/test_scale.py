"""Training at scale on CPU-sized models: the cached (GradCache) InfoNCE, activation checkpointing, LoRA.

docs/gpu.md says what each is for; the GPU figures come from benchmarks/gpu/run.sh.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synthembed.losses.cached_infonce import CachedInfoNCELoss
from synthembed.losses.infonce import InfoNCELoss

TEXTS = [
    ("A man is playing a guitar on stage.", "Someone performs music with a guitar.", "The stage is empty and silent."),
    ("Two dogs run across the field.", "Dogs are running outside.", "The dogs are asleep in their beds."),
    ("A woman slices an onion.", "Someone is cutting a vegetable.", "A woman is swimming in a lake."),
    ("Children build a sandcastle.", "Kids play on the beach.", "The children are in a classroom."),
    ("The chef stirs the soup.", "A cook is preparing food.", "The kitchen is closed today."),
    ("A cyclist climbs a steep hill.", "Someone rides a bike uphill.", "A man drives a truck downhill."),
    ("An old man reads a newspaper.", "A person is reading.", "The man is jogging in the park."),
]


def _columns(model, rows=TEXTS, negatives: int = 1) -> list[dict[str, torch.Tensor]]:
    """Tokenized columns anchor, positive, negative_1..k (the k-th negative of row i is row i+k's negative)."""
    cols = [[r[0] for r in rows], [r[1] for r in rows]]
    for k in range(negatives):
        cols.append([rows[(i + k) % len(rows)][2] for i in range(len(rows))])
    return [dict(model.preprocess(texts)) for texts in cols]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _loss_and_grads(loss_fn, model, features) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = loss_fn([dict(f) for f in features], None)
    loss.backward()
    return float(loss.detach()), _grads(model)


@pytest.mark.parametrize("mini_batch, b, negatives", [(2, 0.0, 1), (3, 0.7, 2), (64, 0.3, 1)])
def test_cached_loss_equals_uncached_in_value_and_gradients(tiny_bert_dir: Path, mini_batch: int, b: float, negatives: int) -> None:
    from synthembed.models.encoder import load_encoder

    model = load_encoder(str(tiny_bert_dir), pooling="cls_mlp", max_length=24).double()  # float64: exact comparison
    model.eval()  # no dropout: the two forms then see identical activations
    features = _columns(model, negatives=negatives)
    plain, g_plain = _loss_and_grads(InfoNCELoss(model, temperature=0.05, hard_negative_weight=b), model, features)
    cached, g_cached = _loss_and_grads(
        CachedInfoNCELoss(model, temperature=0.05, hard_negative_weight=b, mini_batch_size=mini_batch), model, features
    )
    assert cached == pytest.approx(plain, rel=1e-12)
    assert g_plain.keys() == g_cached.keys() and len(g_plain) > 10
    for name, grad in g_plain.items():
        torch.testing.assert_close(g_cached[name], grad, rtol=1e-9, atol=1e-12, msg=name)


def test_cached_loss_scales_with_the_outer_gradient(tiny_bert_dir: Path) -> None:
    """The trainer multiplies the loss (accumulation, fp16 scaling): the cached gradients must follow."""
    from synthembed.models.encoder import load_encoder

    model = load_encoder(str(tiny_bert_dir), pooling="mean", max_length=24)
    model.eval()
    features = _columns(model)
    _, g1 = _loss_and_grads(CachedInfoNCELoss(model, mini_batch_size=3), model, features)
    model.zero_grad(set_to_none=True)
    (CachedInfoNCELoss(model, mini_batch_size=3)([dict(f) for f in features], None) * 0.25).backward()
    for name, grad in _grads(model).items():
        torch.testing.assert_close(grad, 0.25 * g1[name], rtol=1e-4, atol=1e-7)


def test_cached_loss_replays_dropout(tiny_bert_dir: Path) -> None:
    """In training mode the re-embedding replays each chunk's RNG: its gradients are those of the chunked forward."""
    from synthembed.models.encoder import load_encoder

    model = load_encoder(str(tiny_bert_dir), pooling="mean", max_length=24)
    model[0].model.config.hidden_dropout_prob = 0.3
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.3
    model.train()
    features = _columns(model)
    loss_fn = CachedInfoNCELoss(model, mini_batch_size=2)
    torch.manual_seed(5)
    value, grads = _loss_and_grads(loss_fn, model, features)
    torch.manual_seed(5)
    again, grads_again = _loss_and_grads(loss_fn, model, features)
    assert value == again
    for name, grad in grads.items():
        torch.testing.assert_close(grads_again[name], grad)
    # the gradients are consistent with the loss the forward computed: a tiny step along -grad lowers it
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in grads:
                p -= 1e-3 * grads[name]
    torch.manual_seed(5)
    lowered, _ = _loss_and_grads(loss_fn, model, features)
    assert lowered < value


@pytest.mark.parametrize("backbone", ["bert", "llama"])
def test_gradient_checkpointing_does_not_change_loss_or_gradients(backbone: str, tiny_bert_dir: Path, tiny_llama_dir: Path) -> None:
    from synthembed.models.encoder import load_encoder
    from synthembed.training.trainer import FitSettings, prepare_model

    path = tiny_bert_dir if backbone == "bert" else tiny_llama_dir
    model = load_encoder(str(path), pooling="mean", max_length=24)
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    features = _columns(model)
    plain, g_plain = _loss_and_grads(InfoNCELoss(model), model, features)
    prepare_model(model, FitSettings(gradient_checkpointing=True))
    inner = model[0].model
    assert inner.is_gradient_checkpointing
    checkpointed, g_ckpt = _loss_and_grads(InfoNCELoss(model), model, features)
    assert checkpointed == pytest.approx(plain, rel=1e-6)
    for name, grad in g_plain.items():
        torch.testing.assert_close(g_ckpt[name], grad, rtol=1e-4, atol=1e-6, msg=name)


# ---------------------------------------------------------------- LoRA


def _dataset(rows=TEXTS):
    from datasets import Dataset

    return Dataset.from_dict({"anchor": [r[0] for r in rows] * 2, "positive": [r[1] for r in rows] * 2,
                              "negative_1": [r[2] for r in reversed(rows)] * 2})


def _dev(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "sts"
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["score\tsentence1\tsentence2"]
    for i, (a, p, n) in enumerate(TEXTS):
        lines += [f"{4 + i % 2}\t{a}\t{p}", f"{i % 3}\t{a}\t{n}"]
    for name in ("stsb.dev.tsv", "sickr.trial.tsv"):
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder.parent


@pytest.mark.parametrize("backbone, pooling", [("bert", "cls_mlp"), ("llama", "mean")])
def test_lora_train_save_load_merge(tmp_path: Path, tiny_bert_dir: Path, tiny_llama_dir: Path, backbone: str, pooling: str) -> None:
    """Only the adapter (and the pooling's MLP) train; the folder holds the adapter; loaded and merged models
    give the trained model's embeddings; the best checkpoint is restored through the adapter path."""
    from synthembed.evaluation.dev import DevSTSEvaluator
    from synthembed.models.encoder import load_encoder
    from synthembed.models.lora import has_adapter, merge_lora
    from synthembed.training.trainer import FitSettings, fit

    path = tiny_bert_dir if backbone == "bert" else tiny_llama_dir
    model = load_encoder(str(path), pooling=pooling, max_length=24)
    base = {n: p.detach().clone() for n, p in model[0].model.named_parameters()}
    sentences = [t for row in TEXTS for t in row]
    before = model.encode(sentences, convert_to_numpy=True)
    settings = FitSettings(batch_size=7, lr=2e-2, max_steps=3, eval_steps=1, precision="fp32", lora_r=4, lora_dropout=0.0,
                           eval_on_start=False)
    output = fit(model, _dataset(), InfoNCELoss(model), tmp_path / "lora", settings=settings,
                 evaluator=DevSTSEvaluator(_dev(tmp_path)))
    assert has_adapter(model)
    frozen = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in model[0].model.named_parameters()}
    for name, value in base.items():  # the backbone's own weights did not move
        torch.testing.assert_close(frozen[name], value, msg=name)
    assert json.loads((output / "adapter_config.json").read_text())["r"] == 4
    assert not (output / "model.safetensors").exists()

    model.eval()
    trained = model.encode(sentences, convert_to_numpy=True)
    assert not np.allclose(trained, before, atol=1e-4)
    loaded = load_encoder(str(output))
    assert has_adapter(loaded)
    np.testing.assert_allclose(loaded.encode(sentences, convert_to_numpy=True), trained, rtol=1e-5, atol=1e-5)

    merge_lora(model)
    assert not has_adapter(model)
    np.testing.assert_allclose(model.encode(sentences, convert_to_numpy=True), trained, rtol=1e-4, atol=1e-5)
    model.save_pretrained(str(tmp_path / "merged"))
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    merged = load_encoder(str(tmp_path / "merged"))
    np.testing.assert_allclose(merged.encode(sentences, convert_to_numpy=True), trained, rtol=1e-4, atol=1e-5)

    best = DevSTSEvaluator(_dev(tmp_path))(loaded)["dev_mean_spearman"]
    curve = [line.split("\t") for line in (output / "dev_curve.tsv").read_text().splitlines()]
    column = curve[0].index("eval_dev_mean_spearman")
    assert best == pytest.approx(max(float(r[column]) for r in curve[1:]), abs=1e-3)


def test_cli_train_lora_merge_and_cached_loss(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """`synthembed train --lora-r --lora-merge --mini-batch-size --gradient-checkpointing` writes a standalone model."""
    import yaml

    from synthembed.cli import main
    from synthembed.models.encoder import load_encoder
    from synthembed.models.lora import has_adapter

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"anchor": a, "positive": p, "negative": n}) + "\n" for a, p, n in TEXTS))
    output = tmp_path / "model"
    code = main(["train", "--data", str(data), "--output", str(output), "--model", str(tiny_bert_dir), "--pooling", "mean",
                 "--max-steps", "2", "--batch-size", "4", "--max-length", "16", "--no-dev", "--precision", "fp32",
                 "--lora-r", "2", "--lora-target-modules", "query,value", "--lora-merge", "--mini-batch-size", "3",
                 "--gradient-checkpointing"])
    assert code == 0
    assert (output / "model.safetensors").is_file() and not (output / "adapter_config.json").exists()
    assert not has_adapter(load_encoder(str(output)))
    record = yaml.safe_load((output / "train_config.yaml").read_text())
    assert record["config"]["lora_target_modules"] == ["query", "value"]
    assert record["fit"]["loss"]["class"] == "CachedInfoNCELoss" and record["fit"]["loss"]["mini_batch_size"] == 3
    assert main(["train", "--data", str(data), "--output", str(tmp_path / "x"), "--mini-batch-size", "0"]) == 2


# ---------------------------------------------------------------- checkpoints and best-model selection


def test_evaluations_write_no_checkpoints_and_resume_keeps_the_best(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Dev evaluations no longer write a full checkpoint each (issue 20's lost time); a run interrupted after
    its first resumption checkpoint and resumed ends on the same best model as an uninterrupted run."""
    from transformers import TrainerCallback

    from synthembed.evaluation.dev import DevSTSEvaluator
    from synthembed.models.encoder import load_encoder
    from synthembed.training.trainer import FitSettings, fit

    class Count(TrainerCallback):
        saves = 0

        def on_save(self, args, state, control, **kw):
            Count.saves += 1

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise KeyboardInterrupt

    dev = DevSTSEvaluator(_dev(tmp_path))
    sentences = [t for row in TEXTS for t in row]

    def run(output: Path, callbacks, **overrides):
        model = load_encoder(str(tiny_bert_dir), pooling="mean", max_length=24)
        settings = FitSettings(batch_size=7, lr=5e-3, max_steps=4, eval_steps=1, precision="fp32", seed=3, **overrides)
        fit(model, _dataset(), InfoNCELoss(model), output, settings=settings, evaluator=dev, callbacks=callbacks)
        return load_encoder(str(output)).encode(sentences, convert_to_numpy=True)

    run(tmp_path / "default", [Count()])
    assert Count.saves == 0  # four evaluations, no checkpoint: the run is shorter than checkpoint_minutes

    straight = run(tmp_path / "straight", [], save_steps=2)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "resumed", [Interrupt()], save_steps=2)
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-2" / "synthembed_best.json").is_file()
    resumed = run(tmp_path / "resumed", [], save_steps=2)
    np.testing.assert_allclose(resumed, straight, rtol=1e-5, atol=1e-6)


def test_loader_workers_give_the_same_training(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """Tokenizing in loader processes changes where the work runs, not the batches: same model after 2 steps."""
    from synthembed.models.encoder import load_encoder
    from synthembed.training.trainer import FitSettings, fit

    sentences = [row[0] for row in TEXTS]
    out = []
    for workers in (0, 2):
        model = load_encoder(str(tiny_bert_dir), pooling="mean", max_length=24)
        settings = FitSettings(batch_size=4, lr=5e-3, max_steps=2, precision="fp32", dataloader_workers=workers)
        fit(model, _dataset(), InfoNCELoss(model), tmp_path / f"w{workers}", settings=settings)
        record = (tmp_path / f"w{workers}" / "train_config.yaml").read_text()
        assert f"resolved_dataloader_workers: {workers}" in record
        out.append(model.encode(sentences, convert_to_numpy=True))
    np.testing.assert_allclose(out[1], out[0], rtol=1e-5, atol=1e-6)


def test_half_precision_base_needs_lora(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """A bf16 frozen base under LoRA trains (adapter weights stay fp32); bf16 full fine-tuning is refused."""
    from synthembed.cli import main
    from synthembed.config import TrainConfig
    from synthembed.errors import SynthEmbedError

    with pytest.raises(SynthEmbedError, match="needs lora_r"):
        TrainConfig(data="x", output="y", model_dtype="bfloat16").validate()
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"anchor": a, "positive": p, "negative": n}) + "\n" for a, p, n in TEXTS))
    code = main(["train", "--data", str(data), "--output", str(tmp_path / "m"), "--model", str(tiny_bert_dir),
                 "--max-steps", "1", "--batch-size", "4", "--no-dev", "--model-dtype", "bfloat16", "--lora-r", "2"])
    assert code == 0 and (tmp_path / "m" / "adapter_model.safetensors").is_file()


def test_refine_trains_a_lora_adapter(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """`synthembed refine --lora-r` (teacher pass first, then the adapter trains) writes an adapter folder that loads."""
    import yaml

    from synthembed.cli import main
    from synthembed.models.encoder import load_encoder
    from synthembed.models.lora import has_adapter

    chains = tmp_path / "chains.jsonl"
    chains.write_text("".join(json.dumps({"id": f"c{i}", "sentences": [row[0], row[1], row[2], TEXTS[i - 1][2]]}) + "\n"
                              for i, row in enumerate(TEXTS)))
    out = tmp_path / "refined"
    assert main(["refine", "--data", str(chains), "--model", str(tiny_bert_dir), "--output", str(out), "--lr", "1e-2",
                 "--batch-size", "2", "--eval-steps", "2", "--data-dir", str(_dev(tmp_path)), "--dev-tasks", "stsb",
                 "--lora-r", "2", "--lora-dropout", "0"]) == 0
    assert (out / "adapter_config.json").is_file()
    record = yaml.safe_load((out / "train_config.yaml").read_text())
    assert record["fit"]["lora_r"] == 2 and record["result"]["steps_done"] == 4
    assert has_adapter(load_encoder(str(out)))
