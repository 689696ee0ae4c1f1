"""The rank prior of ranking refinement (METHODS.md §2.3): a damped correction of teacher scores.

A chain ``s0 ≻ s1 ≻ … ≻ sK`` says that, in row i, similarity should fall as j moves away from i
(for j ≥ i). For each row, the teacher's scores at j ≥ i re-sorted into descending order are what
they would be if they respected that order; the difference is the correction ``B`` (mirrored into
the lower triangle), damped to ``T = sign(B) · ln(ω|B| + 1)``. Targets are ``Y = A + T``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rank_prior_correction", "rank_prior_targets"]


def rank_prior_correction(scores: Tensor) -> Tensor:
    """The undamped correction ``B`` for teacher scores ``A`` of shape ``(..., n, n)``; same shape.

    ``B_ij = A'_ij - A_ij`` for j ≥ i, where ``A'_i,i: = sort_desc(A_i,i:)``; ``B_ji = B_ij``.
    """
    n = scores.shape[-1]
    upper = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu()  # (n, n) j >= i
    # put +inf on j < i so that a descending sort leaves exactly i of them in front: row i's sorted
    # values of A_i,i: then land at columns i..n-1.
    padded = scores.masked_fill(~upper, float("inf"))  # (..., n, n)
    resorted = padded.sort(dim=-1, descending=True).values  # (..., n, n)
    b_upper = (resorted - scores).masked_fill(~upper, 0.0)  # (..., n, n) zero below the diagonal
    strict = b_upper.triu(diagonal=1)  # (..., n, n)
    return b_upper + strict.transpose(-1, -2)  # mirror: B_ji = B_ij


def rank_prior_targets(scores: Tensor, omega: float = 0.5) -> tuple[Tensor, Tensor]:
    """``(Y, T)``: targets ``Y = A + T`` and damped correction ``T = sign(B)·ln(ω|B|+1)``, ``(..., n, n)``."""
    correction = rank_prior_correction(scores)  # (..., n, n)
    damped = torch.sign(correction) * torch.log1p(omega * correction.abs())  # (..., n, n)
    return scores + damped, damped
