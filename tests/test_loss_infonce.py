"""InfoNCELoss: equivalence with sentence-transformers' MNRL, the formula of METHODS.md §1.4, the b term."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from synthembed.losses.infonce import InfoNCELoss


def _embeddings(batch: int, dim: int, columns: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, dim, generator=generator, requires_grad=True) for _ in range(columns)]


def _reference(embeddings: list[torch.Tensor], tau: float, b: float) -> torch.Tensor:
    """METHODS.md §1.4 written as loops: -log exp(s(x_i,x_i+)) / Σ_j [exp(s(x_i,x_j+)) + Σ_m exp(s(x_i,x_j-m) + b·1[j=i])]."""
    anchors, positives, negatives = embeddings[0], embeddings[1], embeddings[2:]
    cos = nn.functional.cosine_similarity
    total = 0.0
    n = anchors.shape[0]
    for i in range(n):
        denominator = 0.0
        for j in range(n):
            denominator = denominator + torch.exp(cos(anchors[i], positives[j], dim=0) / tau)
            for column in negatives:
                denominator = denominator + torch.exp(cos(anchors[i], column[j], dim=0) / tau + (b if i == j else 0.0))
        total = total - torch.log(torch.exp(cos(anchors[i], positives[i], dim=0) / tau) / denominator)
    return total / n


def _grads(loss: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors))


@pytest.mark.parametrize("tau", [0.05, 0.1])
def test_b0_one_negative_equals_mnrl_value_and_gradient(tau: float) -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    embeddings = _embeddings(batch=6, dim=16, columns=3)
    ours = InfoNCELoss(nn.Identity(), temperature=tau, hard_negative_weight=0.0)
    theirs = MultipleNegativesRankingLoss(nn.Identity(), scale=1.0 / tau)
    value_ours = ours.compute_loss_from_embeddings(embeddings, None)
    value_theirs = theirs.compute_loss_from_embeddings(embeddings, None)
    torch.testing.assert_close(value_ours, value_theirs)
    for g_ours, g_theirs in zip(_grads(value_ours, embeddings), _grads(value_theirs, embeddings)):
        torch.testing.assert_close(g_ours, g_theirs)


def test_pairs_equal_mnrl() -> None:
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    embeddings = _embeddings(batch=5, dim=8, columns=2, seed=3)
    value_ours = InfoNCELoss(nn.Identity()).compute_loss_from_embeddings(embeddings)
    value_theirs = MultipleNegativesRankingLoss(nn.Identity(), scale=20.0).compute_loss_from_embeddings(embeddings, None)
    torch.testing.assert_close(value_ours, value_theirs)


@pytest.mark.parametrize(("columns", "b"), [(3, 0.0), (3, 0.7), (3, -1.5), (5, 0.4)])
def test_matches_the_written_formula(columns: int, b: float) -> None:
    embeddings = _embeddings(batch=4, dim=12, columns=columns, seed=columns)
    loss = InfoNCELoss(nn.Identity(), temperature=0.05, hard_negative_weight=b)
    value = loss.compute_loss_from_embeddings(embeddings)
    expected = _reference(embeddings, 0.05, b)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)
    for g_ours, g_ref in zip(_grads(value, embeddings), _grads(expected, embeddings)):
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-5)


def test_b_changes_only_the_own_negative_logit() -> None:
    """With b -> -inf the own negative leaves the softmax and nothing else changes; with b set, the
    loss equals cross-entropy on logits where exactly the (i, own negative) entries moved by b."""
    embeddings = _embeddings(batch=5, dim=10, columns=3, seed=7)
    anchors, positives, negatives = (nn.functional.normalize(e.detach(), dim=-1) for e in embeddings)
    logits = anchors @ torch.cat([positives, negatives]).T / 0.05  # (batch, 2 * batch)
    rows = torch.arange(5)

    b = 1.3
    shifted = logits.clone()
    shifted[rows, 5 + rows] += b
    value = InfoNCELoss(nn.Identity(), hard_negative_weight=b).compute_loss_from_embeddings(embeddings)
    torch.testing.assert_close(value, nn.functional.cross_entropy(shifted, rows))
    unshifted_value = InfoNCELoss(nn.Identity()).compute_loss_from_embeddings(embeddings)
    assert not math.isclose(value.item(), unshifted_value.item(), rel_tol=1e-6)

    removed = logits.clone()
    removed[rows, 5 + rows] = -torch.inf
    value_minus_inf = InfoNCELoss(nn.Identity(), hard_negative_weight=-1e4).compute_loss_from_embeddings(embeddings)
    torch.testing.assert_close(value_minus_inf, nn.functional.cross_entropy(removed, rows))


def test_b_has_no_effect_without_negatives() -> None:
    embeddings = _embeddings(batch=4, dim=8, columns=2, seed=1)
    plain = InfoNCELoss(nn.Identity()).compute_loss_from_embeddings(embeddings)
    weighted = InfoNCELoss(nn.Identity(), hard_negative_weight=2.0).compute_loss_from_embeddings(embeddings)
    torch.testing.assert_close(plain, weighted)


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(nn.Identity(), temperature=0.0)
    with pytest.raises(ValueError, match="at least 2 columns"):
        InfoNCELoss(nn.Identity()).compute_loss_from_embeddings(_embeddings(2, 4, 1))


def test_config_spells_out_scale() -> None:
    loss = InfoNCELoss(nn.Identity(), temperature=0.05, hard_negative_weight=0.2)
    assert loss.scale == pytest.approx(20.0)
    assert loss.get_config_dict()["hard_negative_weight"] == 0.2


def test_forward_on_a_model_and_mlm_term(tiny_bert_dir) -> None:
    """End to end on a tiny BERT: forward embeds the columns; the MLM term adds a named, trainable part."""
    from synthembed.models.encoder import load_encoder

    torch.manual_seed(0)
    model = load_encoder(str(tiny_bert_dir), pooling="cls", max_length=16)
    texts = [["a cat sits", "dogs bark loudly", "the sun is hot"], ["a cat is sitting", "dogs are loud", "it is warm"],
             ["a dog runs", "cats are quiet", "it is cold"]]
    features = [model.preprocess(column) for column in texts]
    plain = InfoNCELoss(model)
    value = plain(features, None)
    assert value.ndim == 0 and torch.isfinite(value)

    with_mlm = InfoNCELoss(model, mlm_weight=0.1)
    with_mlm.train()
    terms = with_mlm([model.preprocess(column) for column in texts], None)
    assert set(terms) == {"infonce", "mlm"}
    assert torch.isfinite(terms["mlm"]) and terms["mlm"] > 0
    (terms["infonce"] + terms["mlm"]).backward()
    head_grads = [p.grad for p in with_mlm.mlm_head.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in head_grads)
    # the head's decoder is tied to the backbone's word embeddings
    assert with_mlm.mlm_head.predictions.decoder.weight is model[0].auto_model.get_input_embeddings().weight
