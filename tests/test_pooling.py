"""Each pooling against manual tensor math, padding on either side."""

from __future__ import annotations

import torch

from synthembed.models.pooling import build_pooling

TOKENS = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # (batch, seq, dim)
RIGHT_PADDED = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
LEFT_PADDED = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])


def pool(name: str, mask: torch.Tensor) -> torch.Tensor:
    module = build_pooling(name, embedding_dimension=3)
    return module({"token_embeddings": TOKENS.clone(), "attention_mask": mask})["sentence_embedding"]


def test_mean_ignores_padding() -> None:
    expected = torch.stack([TOKENS[0, :3].mean(0), TOKENS[1, :2].mean(0)])
    torch.testing.assert_close(pool("mean", RIGHT_PADDED), expected)


def test_cls_takes_first_real_token() -> None:
    torch.testing.assert_close(pool("cls", RIGHT_PADDED), TOKENS[:, 0])
    torch.testing.assert_close(pool("cls", LEFT_PADDED), torch.stack([TOKENS[0, 1], TOKENS[1, 2]]))


def test_last_token_is_padding_aware() -> None:
    torch.testing.assert_close(pool("last_token", RIGHT_PADDED), torch.stack([TOKENS[0, 2], TOKENS[1, 1]]))
    torch.testing.assert_close(pool("last_token", LEFT_PADDED), TOKENS[:, 3])
