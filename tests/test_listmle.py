"""Rank prior and ListMLE: spec cases, and the vectorised loss against a plain loop."""

from __future__ import annotations

import math

import pytest
import torch

from synthembed.losses.listmle import ChainRankingLoss, listmle, pairwise_cosine, tie_broken_order
from synthembed.losses.rank_prior import rank_prior_correction, rank_prior_targets


def _loop_correction(a: torch.Tensor) -> torch.Tensor:
    """METHODS §2.3 literally: per row, re-sort j >= i descending, B = A' - A, mirror."""
    n = a.shape[0]
    b = torch.zeros_like(a)
    for i in range(n):
        tail = sorted(a[i, i:].tolist(), reverse=True)
        for off, j in enumerate(range(i, n)):
            b[i, j] = tail[off] - a[i, j]
            if j != i:
                b[j, i] = b[i, j]
    return b


def _ordered_teacher(n: int) -> torch.Tensor:
    """A symmetric matrix whose rows fall as |i - j| grows: a teacher that respects the chain order."""
    idx = torch.arange(n, dtype=torch.float32)
    return 20.0 * (1.0 - 0.1 * (idx[:, None] - idx[None, :]).abs())


def test_rank_prior_zero_for_ordered_teacher():
    a = _ordered_teacher(6)
    y, t = rank_prior_targets(a)
    assert torch.equal(t, torch.zeros_like(t))
    assert torch.equal(y, a)


def test_rank_prior_sign_for_swapped_pair():
    a = _ordered_teacher(5)
    a[0, 2], a[0, 3] = a[0, 3].item(), a[0, 2].item()  # row 0 ranks s3 above s2: wrong order
    a[2, 0], a[3, 0] = a[0, 2].item(), a[0, 3].item()
    b = rank_prior_correction(a)
    assert b[0, 2] > 0 and b[0, 3] < 0  # raise the one that should be closer, lower the other
    assert b[2, 0] == b[0, 2] and b[3, 0] == b[0, 3]  # mirrored
    _, t = rank_prior_targets(a, omega=0.5)
    assert t[0, 2] == pytest.approx(math.log(0.5 * b[0, 2].item() + 1))
    assert t[0, 3] == pytest.approx(-math.log(0.5 * abs(b[0, 3].item()) + 1))
    assert (t[1] == 0).all()  # row 1 was already in order (for j >= 1)


def test_rank_prior_matches_loop():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(9, 16), dim=-1)
    a = (z @ z.T) * 20
    assert torch.allclose(rank_prior_correction(a), _loop_correction(a), atol=1e-6)
    batched = torch.stack([a, a.flip(0).flip(1)])
    assert torch.allclose(rank_prior_correction(batched)[1], _loop_correction(batched[1]), atol=1e-6)


def _loop_listmle(c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    total = c.new_zeros(())
    for i in range(c.shape[0]):
        pi = sorted(range(c.shape[1]), key=lambda j: -y[i, j].item())
        for p in range(len(pi)):
            total = total + torch.logsumexp(torch.stack([c[i, pi[q]] for q in range(p, len(pi))]), 0) - c[i, pi[p]]
    return total / c.shape[0]


def test_vectorised_listmle_equals_loop_value_and_gradient():
    torch.manual_seed(1)
    emb = torch.randn(7, 8, requires_grad=True)
    y = torch.randn(7, 7)  # distinct values: no ties, so the order is deterministic
    c = pairwise_cosine(emb[None])[0] * 20
    fast = listmle(c, tie_broken_order(y))
    (g_fast,) = torch.autograd.grad(fast, emb)
    c2 = pairwise_cosine(emb[None])[0] * 20
    slow = _loop_listmle(c2, y)
    (g_slow,) = torch.autograd.grad(slow, emb)
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)
    assert torch.allclose(g_fast, g_slow, atol=1e-5)


def test_ties_broken_at_random():
    y = torch.tensor([[3.0, 1.0, 1.0, 1.0, 0.0]])
    seen = {tuple(tie_broken_order(y, torch.Generator().manual_seed(s))[0].tolist()) for s in range(30)}
    assert all(o[0] == 0 and o[-1] == 4 for o in seen)
    assert len(seen) > 1


def test_listmle_lower_for_correct_order():
    c = torch.tensor([[5.0, 3.0, 1.0]])
    assert listmle(c, torch.tensor([[0, 1, 2]])) < listmle(c, torch.tensor([[2, 1, 0]]))


class _Identity(torch.nn.Module):
    def forward(self, features):
        return {"sentence_embedding": features["x"]}


def test_loss_terms_named_and_weighted():
    torch.manual_seed(2)
    b, n, d = 3, 5, 8
    cols = [torch.randn(b, d, requires_grad=True) for _ in range(n)]
    teacher = pairwise_cosine(torch.randn(b, n, d))
    loss = ChainRankingLoss(_Identity(), infonce_weight=0.5, distill_weight=0.25, seed=0)
    terms = loss.compute_loss_from_embeddings(cols, teacher)
    assert set(terms) == {"listmle", "infonce", "distill"}
    assert all(torch.isfinite(v) and v.item() > 0 for v in terms.values())
    torch.stack(list(terms.values())).sum().backward()
    assert cols[0].grad is not None
    # forward goes through the model on feature dicts
    out = loss([{"x": c} for c in cols], teacher)
    assert set(out) == {"listmle", "infonce", "distill"}
    # distillation is zero when the student equals the teacher and the temperatures match
    same = ChainRankingLoss(_Identity(), listmle_weight=0, distill_weight=1.0)
    emb = torch.randn(b, n, d)
    assert same.compute_loss_from_embeddings(list(emb.unbind(1)), pairwise_cosine(emb))["distill"].abs() < 1e-5


def test_loss_rejects_bad_weights():
    with pytest.raises(ValueError):
        ChainRankingLoss(_Identity(), listmle_weight=0)
    with pytest.raises(ValueError):
        ChainRankingLoss(_Identity(), infonce_weight=-1)
