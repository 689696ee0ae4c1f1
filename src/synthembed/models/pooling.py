"""Pooling as one registry keyed by name: token embeddings -> one sentence embedding.

Each pooling is a sentence-transformers ``Module`` (the library's documented extension point), so a
model using it saves and loads as an ordinary sentence-transformers folder: ``modules.json`` names the
class ``synthembed.models.pooling.<Class>`` and its config (and weights, for ``cls_mlp``) live in the
module's subfolder.

    pooling = build_pooling("mean", embedding_dimension=384)

A pooling given as text (``--pooling`` on the command line, ``pooling:`` in a config) may carry the
module's options: ``ata:skip_first=true,mean_mix=0.5`` (values read as YAML scalars).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from sentence_transformers.base.modules.module import Module
from torch import Tensor

from synthembed.errors import SynthEmbedError

POOLINGS: dict[str, type[Module]] = {}


def register_pooling(name: str) -> Callable[[type[Module]], type[Module]]:
    """Class decorator adding a pooling module to the registry under `name`."""

    def decorator(cls: type[Module]) -> type[Module]:
        if name in POOLINGS:
            raise ValueError(f"pooling {name!r} is registered twice")
        cls.pooling_name = name  # type: ignore[attr-defined]
        POOLINGS[name] = cls
        return cls

    return decorator


def parse_pooling_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ata:skip_first=true,mean_mix=0.5"`` -> ``("ata", {"skip_first": True, "mean_mix": 0.5})``."""
    import yaml

    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise SynthEmbedError(f"pooling option {item!r} in {spec!r} is not KEY=VALUE")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


def pooling_class(spec: str) -> type[Module]:
    """The registered class of a pooling name or spec; a clear error for unknown names."""
    name, _ = parse_pooling_spec(spec)
    try:
        return POOLINGS[name]
    except KeyError:
        raise SynthEmbedError(f"unknown pooling {name!r}; choose one of {sorted(POOLINGS)}") from None


def build_pooling(name: str, embedding_dimension: int, **options: Any) -> Module:
    """Instantiate the pooling registered as `name` (or a spec with options, see the module docstring) for
    token embeddings of size `embedding_dimension`; keyword `options` win over the spec's."""
    cls = pooling_class(name)
    options = {**parse_pooling_spec(name)[1], **options}
    try:
        return cls(embedding_dimension=embedding_dimension, **options)
    except TypeError as exc:
        raise SynthEmbedError(f"pooling {name!r}: {exc}") from None


def _mask(features: dict[str, Any], token_embeddings: Tensor) -> Tensor:
    """The attention mask (batch, seq) as the token embeddings' dtype; all ones when absent."""
    mask = features.get("attention_mask")
    if mask is None or mask.shape[-1] != token_embeddings.shape[1]:
        mask = torch.ones(token_embeddings.shape[:2], device=token_embeddings.device)
    return mask.to(token_embeddings.dtype)


class _PoolingBase(Module):
    """Shared config handling: every pooling knows its input dimension."""

    config_keys = ["embedding_dimension"]

    def __init__(self, embedding_dimension: int) -> None:
        super().__init__()
        self.embedding_dimension = embedding_dimension

    def get_sentence_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def pool(self, token_embeddings: Tensor, mask: Tensor, features: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        token_embeddings = features["token_embeddings"]  # (batch, seq, dim)
        mask = _mask(features, token_embeddings)  # (batch, seq)
        features["sentence_embedding"] = self.pool(token_embeddings, mask, features)  # (batch, dim)
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)


@register_pooling("cls")
class ClsPooling(_PoolingBase):
    """The first real token's embedding (BERT's [CLS], RoBERTa's <s>); left-padding aware."""

    def pool(self, token_embeddings: Tensor, mask: Tensor, features: dict[str, Any]) -> Tensor:
        first = mask.argmax(dim=1)  # (batch,) index of the first real token
        return token_embeddings[torch.arange(token_embeddings.shape[0]), first]  # (batch, dim)


@register_pooling("cls_mlp")
class ClsMlpPooling(_PoolingBase):
    """CLS followed by dense + tanh, as in SimCSE.

    With ``mlp_train_only=True`` the MLP is applied in training mode only and skipped at inference
    (SimCSE's unsupervised recipe); otherwise it is always applied (its supervised recipe).
    """

    config_keys = ["embedding_dimension", "mlp_train_only"]

    def __init__(self, embedding_dimension: int, mlp_train_only: bool = False) -> None:
        super().__init__(embedding_dimension)
        self.mlp_train_only = mlp_train_only
        self.dense = torch.nn.Linear(embedding_dimension, embedding_dimension)
        self.activation = torch.nn.Tanh()

    def pool(self, token_embeddings: Tensor, mask: Tensor, features: dict[str, Any]) -> Tensor:
        first = mask.argmax(dim=1)  # (batch,)
        cls = token_embeddings[torch.arange(token_embeddings.shape[0]), first]  # (batch, dim)
        if self.mlp_train_only and not self.training:
            return cls
        return self.activation(self.dense(cls))  # (batch, dim)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> ClsMlpPooling:
        hub_kwargs = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        model = cls(**config)
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=model, **hub_kwargs)
        return model


@register_pooling("mean")
class MeanPooling(_PoolingBase):
    """Average of the real (non-padding) token embeddings, accumulated in fp32."""

    def pool(self, token_embeddings: Tensor, mask: Tensor, features: dict[str, Any]) -> Tensor:
        summed = (token_embeddings * mask.unsqueeze(-1)).sum(dim=1, dtype=torch.float32)  # (batch, dim)
        counts = mask.sum(dim=1, dtype=torch.float32).clamp(min=1e-9).unsqueeze(-1)  # (batch, 1)
        return (summed / counts).to(token_embeddings.dtype)


@register_pooling("last_token")
class LastTokenPooling(_PoolingBase):
    """The last real token's embedding: right padding (last 1 in the mask) and left padding alike."""

    def pool(self, token_embeddings: Tensor, mask: Tensor, features: dict[str, Any]) -> Tensor:
        seq_len = mask.shape[1]
        positions = torch.arange(seq_len, device=mask.device).unsqueeze(0)  # (1, seq)
        last = torch.where(mask > 0, positions, -1).max(dim=1).values.clamp(min=0)  # (batch,)
        return token_embeddings[torch.arange(token_embeddings.shape[0]), last]  # (batch, dim)

from synthembed.models import ata as _ata  # noqa: E402,F401  (registers "ata"; imported last: it subclasses _PoolingBase)
