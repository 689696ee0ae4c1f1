"""LoRA adapters on a SentenceTransformer's backbone, through `peft` and sentence-transformers' own adapter API.

Training a 7B decoder in full needs about 16 bytes a parameter for weights, gradients and AdamW state
(~115 GB before activations); LoRA trains small low-rank matrices beside frozen weights instead.

- `add_lora` wraps the backbone (the first module's ``model``) with ``peft.get_peft_model(LoraConfig(...))``:
  only the adapter (and any trainable pooling parameters, e.g. cls_mlp's MLP) train; the backbone is
  frozen. (sentence-transformers' ``add_adapter`` would do the same through transformers' PEFT
  integration, but that integration refuses peft releases older than the one it was built against;
  `get_peft_model` is peft's own API and works with every release since 0.10.)
- Saving the SentenceTransformer writes ``adapter_config.json`` + ``adapter_model.safetensors`` into its
  folder instead of the backbone's weights (the standard PEFT layout). Loading that folder with
  ``load_encoder`` / ``SentenceTransformer`` is sentence-transformers' own adapter support: it loads the base
  model named in ``adapter_config.json`` (``base_model_name_or_path``; it must still exist there) and
  applies the adapter. Needs `peft`.
- `merge_lora` folds the adapter into the base weights (``W + (alpha/r)·BA``) and removes it, so the
  model saves as an ordinary, standalone folder (no `peft` and no base model needed to load it).

ATA pooling keeps working: LoRA wraps the attention's projections, not the attention module that
ATA switches to its capturing path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from synthembed.errors import SynthEmbedError

ALL_LINEAR = "all-linear"  # peft: every linear layer of the backbone except the output head


@dataclasses.dataclass
class LoraSpec:
    """LoRA hyper-parameters: rank r, scaling alpha (``alpha / r`` multiplies the update), dropout, targets."""

    r: int = 16
    alpha: float | None = None  # None: 2 * r
    dropout: float = 0.05
    target_modules: Sequence[str] = (ALL_LINEAR,)

    def validate(self) -> None:
        if self.r < 1:
            raise SynthEmbedError(f"lora rank must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise SynthEmbedError(f"lora dropout must be in [0, 1), got {self.dropout}")
        if self.alpha is not None and self.alpha <= 0:
            raise SynthEmbedError(f"lora alpha must be positive, got {self.alpha}")
        if not self.target_modules:
            raise SynthEmbedError("lora target modules must name at least one module (or all-linear)")


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise SynthEmbedError(
            "LoRA needs the `peft` package: pip install 'synthembed[lora]' (or pip install peft)"
        ) from None
    return peft


def backbone(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside a SentenceTransformer (its first module's ``model``; a PeftModel under LoRA)."""
    first = model[0]  # type: ignore[index]
    inner = getattr(first, "model", None)
    if not isinstance(inner, nn.Module):
        raise SynthEmbedError(f"LoRA needs a transformers backbone; the first module is {type(first).__name__}")
    return inner


def is_peft_wrapped(module: nn.Module) -> bool:
    """True for a `peft.PeftModel` (what `add_lora` puts in place of the backbone)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(module, PeftModel)


def has_adapter(model: nn.Module) -> bool:
    """True when the model's backbone carries a PEFT adapter (added by `add_lora` or loaded from a folder)."""
    try:
        inner = backbone(model)
    except (SynthEmbedError, TypeError, IndexError, KeyError):
        return False
    return is_peft_wrapped(inner) or bool(getattr(inner, "_hf_peft_config_loaded", False))


def lora_config(spec: LoraSpec) -> Any:
    """The `peft.LoraConfig` for `spec` (feature extraction: no task head)."""
    spec.validate()
    peft = _peft()
    targets: str | list[str] = list(spec.target_modules)
    if targets == [ALL_LINEAR]:
        targets = ALL_LINEAR
    return peft.LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha if spec.alpha is not None else 2 * spec.r,
        lora_dropout=spec.dropout,
        target_modules=targets,
        bias="none",
    )


def add_lora(model: nn.Module, spec: LoraSpec) -> None:
    """Inject a trainable LoRA adapter into `model`'s backbone (in place); the backbone's weights freeze.

    A model that already carries an adapter (e.g. loaded from a LoRA-trained folder) keeps it and
    continues training it: its LoRA weights are made trainable again.
    """
    peft = _peft()
    if has_adapter(model):
        for name, parameter in backbone(model).named_parameters():
            parameter.requires_grad = "lora_" in name
        return
    first = model[0]  # type: ignore[index]
    try:
        first.model = peft.get_peft_model(backbone(model), lora_config(spec))
    except ValueError as exc:  # e.g. target module names the backbone does not have
        raise SynthEmbedError(f"cannot add a LoRA adapter ({spec}): {exc}") from None


def merge_lora(model: nn.Module) -> None:
    """Fold the adapter into the backbone's weights and remove it (in place); no-op without an adapter.

    Each LoRA layer merges its update into its base layer (peft's ``merge``), the base layer takes the
    wrapper's place, and the adapter's registration is deleted, so ``save_pretrained`` writes a plain model.
    """
    if not has_adapter(model):
        return
    inner = backbone(model)
    if is_peft_wrapped(inner):
        model[0].model = inner.merge_and_unload()  # type: ignore[index]
        for parameter in model.parameters():
            parameter.requires_grad = True
        return
    # an adapter loaded from a folder (injected by transformers' PEFT integration)
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, module) for name, module in inner.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, module in wrapped:
        module.merge()
        inner.set_submodule(name, module.get_base_layer())
    for adapter in list(getattr(inner, "peft_config", {})):
        inner.delete_adapter(adapter)
    for parameter in inner.parameters():
        parameter.requires_grad = True


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def load_adapter_checkpoint(model: nn.Module, folder: Path) -> None:
    """Restore a LoRA-wrapped model from a trainer checkpoint folder (the best one, or one to resume from).

    The adapter's weights come from ``adapter_model.safetensors`` (peft's own loader); every later module
    with saved weights (e.g. cls_mlp's MLP, in its ``modules.json`` subfolder) from its own file. The base
    weights are frozen and never change, so they are not read again.
    """
    import json

    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    adapter = folder / "adapter_model.safetensors"
    if not adapter.is_file():
        raise SynthEmbedError(f"{folder} holds no adapter_model.safetensors: not a checkpoint of a LoRA run")
    result = set_peft_model_state_dict(backbone(model), load_file(str(adapter)))
    missing = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    if missing:
        raise SynthEmbedError(f"{adapter}: adapter weights that fit no layer of this model: {missing[:3]}")
    entries = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    for entry, module in list(zip(entries, model))[1:]:  # type: ignore[call-overload]
        sub = folder / entry.get("path", "")
        if any((sub / name).is_file() for name in ("model.safetensors", "pytorch_model.bin")):
            type(module).load_torch_weights(str(folder), subfolder=entry.get("path", ""), model=module)
