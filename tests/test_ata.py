"""ATA pooling: weights against a hand computation, padding, the last-layer-only switch, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthembed.errors import SynthEmbedError
from synthembed.models.ata import (
    ATA_ATTENTION,
    ATA_TYPE,
    AtaError,
    AtaPooling,
    ata_weights,
    declared_attention_modules,
    last_attention_module,
)
from synthembed.models.encoder import load_encoder
from synthembed.models.pooling import build_pooling

SENTENCES = ["A man is playing a guitar on the stage.", "Dogs run.", "The cat sat on the mat, quietly."]


def hand_weights(probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Loop version of METHODS.md 3.3: mean over heads and real queries, normalised over real keys."""
    batch, heads, seq, _ = probs.shape
    out = torch.zeros(batch, seq)
    for b in range(batch):
        real = [i for i in range(seq) if mask[b, i] > 0]
        for j in real:
            out[b, j] = sum(probs[b, h, i, j].item() for h in range(heads) for i in real) / (heads * len(real))
        out[b] /= out[b].sum()
    return out


def test_registered() -> None:
    (module,) = build_pooling("ata:mean_mix=0.5", 8)
    assert isinstance(module, AtaPooling) and module.mean_mix == 0.5


def test_weights_sum_to_one_ignore_padding_and_match_hand_computation() -> None:
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)  # (batch, heads, q, k)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=torch.float32)
    weights = ata_weights(probs, mask)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    assert torch.all(weights[mask == 0] == 0)
    torch.testing.assert_close(weights, hand_weights(probs, mask))


def test_mean_mix_and_skip_first() -> None:
    probs = torch.softmax(torch.randn(1, 2, 4, 4), dim=-1)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    pure = ata_weights(probs, mask)
    mixed = ata_weights(probs, mask, mean_mix=0.5)
    torch.testing.assert_close(mixed, 0.5 * pure + 0.5 * torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]]))
    skipped = ata_weights(probs, mask, skip_first=True)
    assert skipped[0, 0] == 0 and skipped[0, 3] == 0
    torch.testing.assert_close(skipped.sum(), torch.tensor(1.0))
    with pytest.raises(AtaError):
        AtaPooling(8, mean_mix=2.0)
    with pytest.raises(SynthEmbedError, match="mean_mix"):
        build_pooling("ata:mean_mix=2.0", 8)


@pytest.fixture(params=["llama", "bert"])
def backbone_dir(request: pytest.FixtureRequest, tiny_llama_dir: Path, tiny_bert_dir: Path) -> Path:
    return tiny_llama_dir if request.param == "llama" else tiny_bert_dir


def test_only_last_layer_switches(backbone_dir: Path) -> None:
    model = load_encoder(backbone_dir, pooling="ata")
    hf = model[0].model
    last = last_attention_module(hf)
    assert last.config._attn_implementation == ATA_ATTENTION
    assert hf.config._attn_implementation != ATA_ATTENTION
    others = [m for m in hf.modules() if hasattr(m, "config") and m is not last and type(m) is type(last)]
    assert others and all(m.config._attn_implementation == hf.config._attn_implementation for m in others)


def test_embedding_equals_hand_computation_from_eager_attention(backbone_dir: Path) -> None:
    """Pool by hand from an all-eager copy's attention tensor and last hidden state; compare."""
    from transformers import AutoModel

    model = load_encoder(backbone_dir, pooling="ata")
    model.eval()
    got = model.encode(SENTENCES, convert_to_tensor=True, batch_size=8)  # (3, dim)

    eager = AutoModel.from_pretrained(str(backbone_dir), attn_implementation="eager").eval()
    features = model.tokenize(SENTENCES)
    with torch.no_grad():
        out = eager(
            input_ids=features["input_ids"],
            attention_mask=features["attention_mask"],
            output_attentions=True,
        )
    probs = out.attentions[-1]  # (batch, heads, seq, seq)
    mask = features["attention_mask"].float()
    weights = hand_weights(probs, mask)  # (batch, seq)
    expected = (out.last_hidden_state * weights.unsqueeze(-1)).sum(dim=1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_padding_does_not_change_embeddings(tiny_llama_dir: Path) -> None:
    model = load_encoder(tiny_llama_dir, pooling="ata").eval()
    batched = model.encode(SENTENCES, convert_to_tensor=True, batch_size=8)
    alone = torch.stack([model.encode([s], convert_to_tensor=True)[0] for s in SENTENCES])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


def test_save_and_load_round_trip(tiny_llama_dir: Path, tmp_path: Path) -> None:
    model = load_encoder(tiny_llama_dir, pooling="ata").eval()
    model[1].mean_mix = 0.25
    before = model.encode(SENTENCES, convert_to_tensor=True)
    model.save(str(tmp_path / "m"))
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    assert modules[1]["type"] == ATA_TYPE == "ata_pooling.AtaPooling"
    assert (tmp_path / "m" / "ata_pooling.py").is_file()  # the code travels with the model
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config.get("_attn_implementation") != ATA_ATTENTION  # the backbone saves as an ordinary model
    loaded = load_encoder(tmp_path / "m").eval()
    assert type(loaded[1]).__name__ == "AtaPooling" and loaded[1].mean_mix == 0.25
    torch.testing.assert_close(loaded.encode(SENTENCES, convert_to_tensor=True), before, atol=1e-5, rtol=1e-4)


def test_gradients_flow_in_training(tiny_bert_dir: Path) -> None:
    model = load_encoder(tiny_bert_dir, pooling="ata")
    model.train()
    features = model.tokenize(SENTENCES)
    embeddings = model(features)["sentence_embedding"]  # (3, dim)
    embeddings.pow(2).sum().backward()
    last = last_attention_module(model[0].model)
    assert last.query.weight.grad is not None and last.query.weight.grad.abs().sum() > 0


def test_unprepared_backbone_is_a_clear_error() -> None:
    pooling = AtaPooling(4)
    with pytest.raises(AtaError, match="no captured attention"):
        pooling({"token_embeddings": torch.zeros(1, 2, 4), "attention_mask": torch.ones(1, 2)})


def test_pooling_spec_carries_options(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from synthembed.errors import ModelLoadError
    from synthembed.models.pooling import parse_pooling_spec

    assert parse_pooling_spec("ata:skip_first=true, mean_mix=0.5") == ("ata", {"skip_first": True, "mean_mix": 0.5})
    assert parse_pooling_spec("mean") == ("mean", {})
    model = load_encoder(tiny_llama_dir, pooling="ata:skip_first=true,mean_mix=0.5").eval()
    assert isinstance(model[1], AtaPooling) and model[1].skip_first and model[1].mean_mix == 0.5
    model.save(str(tmp_path / "m"))
    loaded = load_encoder(tmp_path / "m")
    assert loaded[1].skip_first and loaded[1].mean_mix == 0.5
    with pytest.raises(SynthEmbedError, match="skip_frist"):
        load_encoder(tiny_llama_dir, pooling="ata:skip_frist=true")
    with pytest.raises(SynthEmbedError, match="not KEY=VALUE"):
        load_encoder(tiny_llama_dir, pooling="ata:skip_first")
    with pytest.raises(ModelLoadError, match="unknown pooling 'atta'"):
        load_encoder(tiny_llama_dir, pooling="atta:skip_first=true")


def test_attention_layer_comes_from_transformers_declarations(backbone_dir: Path) -> None:
    """Fails loudly on a transformers release that stops declaring `can_record_outputs["attentions"]`
    (ATA would then run on the `inspect.unwrap` code-scan fallback, or not at all)."""
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(str(backbone_dir))
    declared = declared_attention_modules(hf)
    assert declared, f"{type(hf).__name__} declares no attention class in can_record_outputs"
    assert len(declared) == hf.config.num_hidden_layers
    assert last_attention_module(hf) is declared[-1]


def test_no_attention_layer_is_an_error_naming_the_model() -> None:
    with pytest.raises(AtaError, match="Sequential"):
        last_attention_module(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_foreign_ata_code_in_a_folder_is_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from synthembed.errors import ModelLoadError

    load_encoder(tiny_llama_dir, pooling="ata").save(str(tmp_path / "m"))
    code = tmp_path / "m" / "ata_pooling.py"
    code.write_text(code.read_text() + "\nprint('not ours')\n")
    with pytest.raises(ModelLoadError, match="differs from SynthEmbed"):
        load_encoder(tmp_path / "m")


def test_code_scan_fallback_finds_the_same_layers(backbone_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without declarations, the fallback (forward code through `inspect.unwrap`, which sees past
    transformers' `deprecate_kwarg` wrapper) finds the same attention modules."""
    from transformers import AutoModel

    from synthembed.models.ata import attention_modules

    hf = AutoModel.from_pretrained(str(backbone_dir))
    declared = declared_attention_modules(hf)
    monkeypatch.setattr(type(hf), "_can_record_outputs", None)
    assert declared_attention_modules(hf) == []
    found = attention_modules(hf)
    assert len(found) == len(declared) and all(a is b for a, b in zip(found, declared))
