"""Each pooling against manual tensor math, padding on either side; standard names build ST's own modules."""

from __future__ import annotations

import torch

import pytest
from sentence_transformers.base.modules.dense import Dense
from sentence_transformers.sentence_transformer.modules import Pooling

from synthembed.errors import SynthEmbedError
from synthembed.models.pooling import STANDARD_MODES, build_pooling

TOKENS = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)  # (batch, seq, dim)
RIGHT_PADDED = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
LEFT_PADDED = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])


def pool(name: str, mask: torch.Tensor) -> torch.Tensor:
    (module,) = build_pooling(name, embedding_dimension=3)
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


def test_max_and_weighted_mean() -> None:
    expected_max = torch.stack([TOKENS[0, :3].amax(0), TOKENS[1, :2].amax(0)])
    torch.testing.assert_close(pool("max", RIGHT_PADDED), expected_max)
    weights = torch.tensor([1.0, 2.0, 3.0])
    expected = (TOKENS[0, 1:] * weights[:, None]).sum(0) / weights.sum()  # positions count from the first real token
    torch.testing.assert_close(pool("weighted_mean", LEFT_PADDED)[0], expected)


@pytest.mark.parametrize("name", sorted(STANDARD_MODES))
def test_standard_names_build_sentence_transformers_pooling(name: str) -> None:
    (module,) = build_pooling(name, embedding_dimension=3)
    assert type(module) is Pooling and module.pooling_mode == STANDARD_MODES[name]


def test_cls_mlp_is_pooling_plus_tanh_dense() -> None:
    pooling, head = build_pooling("cls_mlp", embedding_dimension=3)
    assert type(pooling) is Pooling and pooling.pooling_mode == "cls"
    assert type(head) is Dense and isinstance(head.activation_function, torch.nn.Tanh)
    out = head(pooling({"token_embeddings": TOKENS.clone(), "attention_mask": LEFT_PADDED}))["sentence_embedding"]
    first = torch.stack([TOKENS[0, 1], TOKENS[1, 2]])
    torch.testing.assert_close(out, torch.tanh(head.linear(first)))


def test_unknown_option_is_a_clear_error() -> None:
    with pytest.raises(SynthEmbedError, match="unknown option.*skip_first"):
        build_pooling("mean:skip_first=true", 3)
