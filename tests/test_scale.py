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
