"""Auxiliary masked-language-model term for encoder backbones (SimCSE's ``do_mlm`` option).

The head comes from the backbone's own masked-LM checkpoint (``AutoModelForMaskedLM``: BERT's
``cls``, RoBERTa's ``lm_head``), with its decoder tied to the backbone's input embeddings as in the
original model. It is applied to the first module's token embeddings of the anchor column, masked
the BERT way (15% of non-special tokens; of those 80% [MASK], 10% random, 10% unchanged).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from synthembed.errors import SynthEmbedError


def build_mlm_head(model: nn.Module) -> nn.Module:
    """The masked-LM head of `model`'s backbone, with its decoder tied to the backbone's word embeddings."""
    from transformers import AutoModelForMaskedLM

    backbone = model[0].auto_model
    if getattr(backbone.config, "is_decoder", False) or not hasattr(model[0].tokenizer, "mask_token_id") or (
        model[0].tokenizer.mask_token_id is None
    ):
        raise SynthEmbedError("the MLM auxiliary term needs an encoder backbone with a [MASK] token")
    source = backbone.config._name_or_path or backbone.name_or_path
    try:
        mlm_model = AutoModelForMaskedLM.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise SynthEmbedError(f"could not load a masked-LM head for {source!r}: {exc}") from exc
    output = mlm_model.get_output_embeddings()
    if output is not None and output.weight.shape == backbone.get_input_embeddings().weight.shape:
        output.weight = backbone.get_input_embeddings().weight  # tie the decoder to the trained embeddings
    base_name = mlm_model.base_model_prefix
    heads = [module for name, module in mlm_model.named_children() if name != base_name]
    if len(heads) != 1:
        raise SynthEmbedError(f"cannot find the masked-LM head of {type(mlm_model).__name__}")
    return heads[0]


def mask_tokens(input_ids: Tensor, special: Tensor, mask_token_id: int, vocab_size: int, probability: float) -> tuple[Tensor, Tensor]:
    """BERT masking: returns (masked input ids, labels with -100 where not masked), both (batch, seq)."""
    labels = input_ids.clone()
    chosen = torch.bernoulli(torch.full(input_ids.shape, probability, device=input_ids.device)).bool() & ~special
    labels[~chosen] = -100
    masked = input_ids.clone()
    replace = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=input_ids.device)).bool() & chosen
    masked[replace] = mask_token_id
    randomise = torch.bernoulli(torch.full(input_ids.shape, 0.5, device=input_ids.device)).bool() & chosen & ~replace
    masked[randomise] = torch.randint(vocab_size, input_ids.shape, device=input_ids.device)[randomise]
    return masked, labels


def mlm_loss(model: nn.Module, head: nn.Module, features: dict[str, Any], probability: float) -> Tensor:
    """Masked-LM cross-entropy of `head` on the first module's token embeddings of masked `features`."""
    transformer = model[0]
    tokenizer = transformer.tokenizer
    input_ids = features["input_ids"]  # (batch, seq)
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids, device=input_ids.device))
    if "attention_mask" in features:
        special |= features["attention_mask"] == 0
    masked, labels = mask_tokens(input_ids, special, tokenizer.mask_token_id, len(tokenizer), probability)
    masked_features = {key: value for key, value in features.items() if key != "input_ids"}
    masked_features["input_ids"] = masked
    tokens = transformer(masked_features)["token_embeddings"]  # (batch, seq, dim)
    logits = head(tokens)  # (batch, seq, vocab)
    if (labels != -100).sum() == 0:
        return logits.sum() * 0.0
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=-100)
