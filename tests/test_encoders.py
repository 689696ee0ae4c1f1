"""load_encoder: every accepted reference, pooling override, save/load round trips, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synthembed.errors import ModelLoadError
from synthembed.models.encoder import load_encoder
from synthembed.models.pooling import POOLINGS, pooling_name

SENTENCES = ["A man is playing a guitar.", "Two dogs run on the beach in the sun.", "Hello"]


def test_embedded_encoder_loads_and_embeds() -> None:
    model = load_encoder("embedded")
    embeddings = model.encode(SENTENCES)
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)  # Normalize kept


@pytest.mark.parametrize("pooling", sorted(POOLINGS))
def test_plain_backbone_with_each_pooling_round_trips(tiny_bert_dir: Path, tmp_path: Path, pooling: str) -> None:
    model = load_encoder(str(tiny_bert_dir), pooling=pooling, max_length=16)
    assert model.max_seq_length == 16
    model.eval()
    before = model.encode(SENTENCES)
    model.save(str(tmp_path / "saved"))
    reloaded = load_encoder(str(tmp_path / "saved"))
    assert pooling_name(reloaded) == pooling_name(model) == pooling
    assert [type(m).__name__ for m in reloaded] == [type(m).__name__ for m in model]
    np.testing.assert_allclose(reloaded.encode(SENTENCES), before, atol=1e-5)


def test_decoder_backbone_defaults_to_mean(tiny_llama_dir: Path) -> None:
    model = load_encoder(str(tiny_llama_dir))
    assert pooling_name(model) == "mean"
    assert model.encode(SENTENCES).shape == (3, 64)


def test_pooling_override_replaces_saved_pooling() -> None:
    model = load_encoder("embedded", pooling="cls")
    assert pooling_name(model) == "cls"
    assert len(model) == 3  # transformer, pooling, normalize


def test_cls_mlp_train_only_skips_mlp_at_inference() -> None:
    from synthembed.models.pooling import TrainOnlyDense, build_pooling

    pooling, head = build_pooling("cls_mlp:mlp_train_only=true", embedding_dimension=8)
    assert isinstance(head, TrainOnlyDense)
    token_embeddings = torch.randn(2, 5, 8)
    features = {"token_embeddings": token_embeddings, "attention_mask": torch.ones(2, 5)}
    head.eval()
    out_eval = head(pooling(dict(features)))["sentence_embedding"]
    torch.testing.assert_close(out_eval, token_embeddings[:, 0])
    head.train()
    out_train = head(pooling(dict(features)))["sentence_embedding"]
    torch.testing.assert_close(out_train, torch.tanh(head.linear(token_embeddings[:, 0])))


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_encoder(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="holds no model"):
        load_encoder(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="not a .gguf"):
        load_encoder(str(tmp_path / "weights.bin"))


def test_unknown_pooling_is_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="unknown pooling"):
        load_encoder("embedded", pooling="maxx")


def test_decoder_backbone_encodes_plain_text_not_chat_messages(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """sentence-transformers 6 would wrap each sentence in the chat template; our backbones must not."""
    model = load_encoder(str(tiny_llama_dir), max_length=32)
    features = model.preprocess(["A man is playing a guitar."])
    plain = model.tokenizer("A man is playing a guitar.")["input_ids"]
    assert features["input_ids"][0].tolist()[: len(plain)] == plain
    model.save(str(tmp_path / "saved"))
    reloaded = load_encoder(str(tmp_path / "saved"))
    assert reloaded.preprocess(["A man is playing a guitar."])["input_ids"][0].tolist()[: len(plain)] == plain


def test_replacing_ata_restores_the_backbone_attention(tiny_llama_dir: Path) -> None:
    from synthembed.models.ata import ATA_ATTENTION, last_attention_module

    mean = load_encoder(str(tiny_llama_dir), pooling="mean").eval()
    switched = load_encoder(str(tiny_llama_dir), pooling="ata")
    back = load_encoder(str(tiny_llama_dir), pooling="ata")
    from synthembed.models.encoder import replace_pooling

    back = replace_pooling(back, "mean").eval()
    assert last_attention_module(switched[0].model).config._attn_implementation == ATA_ATTENTION
    assert last_attention_module(back[0].model).config._attn_implementation != ATA_ATTENTION
    assert pooling_name(back) == "mean"
    np.testing.assert_allclose(back.encode(SENTENCES), mean.encode(SENTENCES), atol=1e-5)
