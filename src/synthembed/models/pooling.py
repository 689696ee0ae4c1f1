"""Pooling as one registry keyed by name: token embeddings -> one sentence embedding.

Users name a pooling (``--pooling mean``, ``pooling: cls_mlp`` in a config, options after a colon:
``ata:skip_first=true,mean_mix=0.5``, values read as YAML scalars); the registry turns the name into
the sentence-transformers modules that compute it. Wherever sentence-transformers has the
equivalent, the modules are its own, so a saved model loads with plain ``SentenceTransformer(path)``:

=================  ===========================================================================
``mean``           ``Pooling(pooling_mode="mean")``
``cls``            ``Pooling(pooling_mode="cls")`` (first real token, left-padding aware)
``last_token``     ``Pooling(pooling_mode="lasttoken")``
``max``            ``Pooling(pooling_mode="max")``
``mean_sqrt_len``  ``Pooling(pooling_mode="mean_sqrt_len_tokens")``
``weighted_mean``  ``Pooling(pooling_mode="weightedmean")``
``cls_mlp``        ``Pooling("cls")`` + ``Dense(d, d, activation=Tanh)`` (SimCSE's head kept at inference);
                   with ``mlp_train_only=true`` the Dense is a `TrainOnlyDense`, applied in training
                   only and left out of exported models (SimCSE's unsupervised recipe)
``ata``            ``ata_pooling.AtaPooling``, a custom module whose code travels in the model folder
=================  ===========================================================================

    modules = build_pooling("mean", embedding_dimension=384)   # a list of modules

Models saved by earlier SynthEmbed versions name ``synthembed.models.pooling.MeanPooling`` (and
``ClsPooling``, ``LastTokenPooling``, ``ClsMlpPooling``) in ``modules.json``; those classes remain
here for loading only: the first three load straight into ``Pooling``, and `standard_modules`
converts a loaded ``ClsMlpPooling`` (``synthembed export`` writes the result).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.dense import Dense
from sentence_transformers.base.modules.module import Module
from sentence_transformers.sentence_transformer.modules import Pooling
from torch import Tensor

from synthembed.errors import SynthEmbedError

PoolingBuilder = Callable[..., list[Module]]
POOLINGS: dict[str, PoolingBuilder] = {}

# registry name -> sentence-transformers Pooling mode
STANDARD_MODES: dict[str, str] = {
    "mean": "mean",
    "cls": "cls",
    "last_token": "lasttoken",
    "max": "max",
    "mean_sqrt_len": "mean_sqrt_len_tokens",
    "weighted_mean": "weightedmean",
}


def register_pooling(name: str) -> Callable[[PoolingBuilder], PoolingBuilder]:
    """Decorator adding a builder ``(embedding_dimension, **options) -> [modules]`` under `name`."""

    def decorator(builder: PoolingBuilder) -> PoolingBuilder:
        if name in POOLINGS:
            raise ValueError(f"pooling {name!r} is registered twice")
        POOLINGS[name] = builder
        return builder

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


def pooling_builder(spec: str) -> PoolingBuilder:
    """The registered builder of a pooling name or spec; a clear error for unknown names."""
    name, _ = parse_pooling_spec(spec)
    try:
        return POOLINGS[name]
    except KeyError:
        raise SynthEmbedError(f"unknown pooling {name!r}; choose one of {sorted(POOLINGS)}") from None


def build_pooling(spec: str, embedding_dimension: int, **options: Any) -> list[Module]:
    """The modules of the pooling `spec` (a name, or a name with options) for token embeddings of size
    `embedding_dimension`; keyword `options` win over the spec's."""
    builder = pooling_builder(spec)
    name, spec_options = parse_pooling_spec(spec)
    options = {**spec_options, **options}
    accepted = set(inspect.signature(builder).parameters) - {"embedding_dimension"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise SynthEmbedError(f"pooling {name!r}: unknown option(s) {unknown}; it takes {sorted(accepted)}")
    try:
        return builder(embedding_dimension=embedding_dimension, **options)
    except (TypeError, ValueError) as exc:
        raise SynthEmbedError(f"pooling {spec!r}: {exc}") from None


def _standard(mode: str) -> PoolingBuilder:
    def build(embedding_dimension: int, include_prompt: bool = True) -> list[Module]:
        return [Pooling(embedding_dimension, pooling_mode=mode, include_prompt=bool(include_prompt))]

    return build


for _name, _mode in STANDARD_MODES.items():
    register_pooling(_name)(_standard(_mode))


class TrainOnlyDense(Dense):
    """A ``Dense`` applied in training mode only: identity at inference (SimCSE's unsupervised MLP).

    Checkpoints keep it (training resumes with its weights); exported models leave it out
    (`inference_modules`), so they hold only sentence-transformers' own modules.
    """

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        if not self.training:
            return features
        return super().forward(features)


@register_pooling("cls_mlp")
def _cls_mlp(embedding_dimension: int, mlp_train_only: bool = False) -> list[Module]:
    dense_class = TrainOnlyDense if mlp_train_only else Dense
    head = dense_class(embedding_dimension, embedding_dimension, activation_function=torch.nn.Tanh())
    return [Pooling(embedding_dimension, pooling_mode="cls"), head]


@register_pooling("ata")
def _ata(
    embedding_dimension: int,
    head_reduction: str = "mean",
    query_reduction: str = "mean",
    mean_mix: float = 0.0,
    skip_first: bool = False,
) -> list[Module]:
    from synthembed.models.ata import AtaPooling

    return [AtaPooling(embedding_dimension, head_reduction, query_reduction, mean_mix, skip_first)]


# --- Reading a model's pooling back --------------------------------------------------------------


def _is_mlp_head(module: Any, dimension: int) -> bool:
    """A square Dense with tanh: the cls_mlp head."""
    return (
        isinstance(module, Dense)
        and module.in_features == module.out_features == dimension
        and isinstance(module.activation_function, torch.nn.Tanh)
        and not module.use_residual
    )


def pooling_span(model: Any) -> tuple[str, int, int] | None:
    """(registry name, first index, end index) of the pooling modules in `model`, or None if none is found."""
    from synthembed.models.ata import is_ata_pooling

    modules = list(model)
    for index, module in enumerate(modules):
        if is_ata_pooling(module):
            return "ata", index, index + 1
        if isinstance(module, ClsMlpPooling):
            return "cls_mlp", index, index + 1
        if isinstance(module, Pooling) and isinstance(module.pooling_mode, str):
            name = next((n for n, m in STANDARD_MODES.items() if m == module.pooling_mode), None)
            following = modules[index + 1] if index + 1 < len(modules) else None
            if name == "cls" and _is_mlp_head(following, module.embedding_dimension):
                return "cls_mlp", index, index + 2
            return (name or module.pooling_mode), index, index + 1
        if isinstance(module, Pooling):
            return "+".join(module.pooling_mode), index, index + 1
    return None


def pooling_name(model: Any) -> str | None:
    """The registry name of `model`'s pooling (``None`` if it has none we recognise)."""
    span = pooling_span(model)
    return span[0] if span else None


def rebuild(model: SentenceTransformer, modules: list[torch.nn.Module]) -> SentenceTransformer:
    """A SentenceTransformer of `modules` keeping `model`'s device, prompts, similarity function and model-card
    data (training logs, datasets, evaluation: the card the new model writes is the training's)."""
    from synthembed.models.ata import AtaError

    try:
        new = SentenceTransformer(
            modules=modules,
            device=str(model.device),
            prompts=dict(model.prompts or {}),
            default_prompt_name=model.default_prompt_name,
            model_card_data=model.model_card_data,
        )
    except AtaError as exc:  # ATA on a model without attention layers
        raise SynthEmbedError(str(exc)) from None
    if getattr(model, "similarity_fn_name", None):
        new.similarity_fn_name = model.similarity_fn_name
    return new


def standard_modules(model: SentenceTransformer) -> SentenceTransformer:
    """`model` with legacy SynthEmbed pooling modules replaced by their standard equivalents (same outputs)."""
    modules = list(model)
    if not any(isinstance(m, ClsMlpPooling) for m in modules):
        return model
    converted: list[torch.nn.Module] = []
    for module in modules:
        converted.extend(module.to_standard() if isinstance(module, ClsMlpPooling) else [module])
    return rebuild(model, converted)


def inference_modules(model: SentenceTransformer) -> SentenceTransformer:
    """`model` as it is exported: standard modules, and no train-only ones (they are identities at inference)."""
    model = standard_modules(model)
    modules = list(model)
    kept = [m for m in modules if not isinstance(m, TrainOnlyDense)]
    return model if len(kept) == len(modules) else rebuild(model, kept)


def set_mlp_train_only(model: SentenceTransformer, train_only: bool = True) -> SentenceTransformer:
    """Turn `model`'s cls_mlp head into a train-only one (or back), keeping its weights."""
    model = standard_modules(model)
    span = pooling_span(model)
    if span is None or span[0] != "cls_mlp":
        raise SynthEmbedError(f"mlp_train_only needs the cls_mlp pooling; the model has {span[0] if span else 'none'}")
    modules = list(model)
    head = modules[span[2] - 1]
    wanted = TrainOnlyDense if train_only else Dense
    if type(head) is wanted:
        return model
    new_head = wanted(head.in_features, head.out_features, activation_function=torch.nn.Tanh())
    new_head.load_state_dict(head.state_dict())
    modules[span[2] - 1] = new_head
    return rebuild(model, modules)


# --- Legacy classes: models saved by SynthEmbed before its poolings became standard modules ---------


class _LegacyPooling(Module):
    """Load-only stand-in for a pre-export SynthEmbed pooling: loads as sentence-transformers' Pooling."""

    config_keys = ["embedding_dimension"]
    mode = "mean"

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> Module:  # type: ignore[override]
        hub_kwargs = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        return Pooling(int(config["embedding_dimension"]), pooling_mode=cls.mode)


class MeanPooling(_LegacyPooling):
    """Legacy ``synthembed.models.pooling.MeanPooling``: loads as ``Pooling("mean")``."""

    mode = "mean"


class ClsPooling(_LegacyPooling):
    """Legacy ``synthembed.models.pooling.ClsPooling``: loads as ``Pooling("cls")``."""

    mode = "cls"


class LastTokenPooling(_LegacyPooling):
    """Legacy ``synthembed.models.pooling.LastTokenPooling``: loads as ``Pooling("lasttoken")``."""

    mode = "lasttoken"


class ClsMlpPooling(Module):
    """Legacy ``synthembed.models.pooling.ClsMlpPooling`` (CLS + dense + tanh in one module).

    Kept so old folders load; `to_standard` gives the equivalent ``Pooling("cls")`` + ``Dense`` (or
    `TrainOnlyDense` when it was saved with ``mlp_train_only``).
    """

    config_keys = ["embedding_dimension", "mlp_train_only"]

    def __init__(self, embedding_dimension: int, mlp_train_only: bool = False) -> None:
        super().__init__()
        self.embedding_dimension = embedding_dimension
        self.mlp_train_only = mlp_train_only
        self.dense = torch.nn.Linear(embedding_dimension, embedding_dimension)
        self.activation = torch.nn.Tanh()

    def get_embedding_dimension(self) -> int:
        return self.embedding_dimension

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        token_embeddings = features["token_embeddings"]  # (batch, seq, dim)
        mask = features.get("attention_mask")
        if mask is None or mask.shape[-1] != token_embeddings.shape[1]:
            mask = torch.ones(token_embeddings.shape[:2], device=token_embeddings.device)
        first = mask.argmax(dim=1)  # (batch,)
        cls = token_embeddings[torch.arange(token_embeddings.shape[0]), first]  # (batch, dim)
        if not (self.mlp_train_only and not self.training):
            cls = self.activation(self.dense(cls))  # (batch, dim)
        features["sentence_embedding"] = cls
        return features

    def to_standard(self) -> list[Module]:
        """The same computation as sentence-transformers modules, weights copied."""
        pooling, head = _cls_mlp(self.embedding_dimension, mlp_train_only=self.mlp_train_only)
        head.linear.load_state_dict(self.dense.state_dict())
        return [pooling, head.to(self.dense.weight.device)]

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> ClsMlpPooling:  # type: ignore[override]
        hub_kwargs = {k: kwargs[k] for k in ("token", "cache_folder", "revision", "local_files_only") if k in kwargs}
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        model = cls(**config)
        cls.load_torch_weights(model_name_or_path, subfolder=subfolder, model=model, **hub_kwargs)
        return model
