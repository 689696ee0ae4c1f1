"""Every place SynthEmbed relies on a third-party detail that is not a documented API, one helper each.

Upstream releases rename keywords and wrap methods (transformers 5.25 wrapped every attention and model
``forward`` in ``deprecate_kwarg`` while renaming ``past_key_values`` to ``cache``). Code elsewhere calls
these helpers instead of reaching into the detail itself, and ``tests/test_compat.py`` checks each one
against the installed versions, so an upgrade that breaks a detail fails there, by name, instead of
silently changing a result somewhere else.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Any

import torch

from synthembed.errors import SynthEmbedError

# --- transformers: the key/value cache keyword and its output field --------------------------------


def cache_keyword(model: torch.nn.Module) -> str:
    """The keyword a transformers model's ``forward`` takes its key/value cache under.

    ``cache`` from transformers 5.25 on (``past_key_values`` still accepted with a warning until 5.40),
    ``past_key_values`` before. Read from the undecorated signature, so decorators do not hide it.
    """
    forward = inspect.unwrap(type(model).forward)
    parameters = inspect.signature(forward).parameters
    for name in ("cache", "past_key_values"):
        if name in parameters:
            return name
    raise SynthEmbedError(
        f"{type(model).__name__}.forward takes neither 'cache' nor 'past_key_values': this transformers "
        "version changed how a key/value cache is passed; guided decoding needs updating"
    )


def returned_cache(output: Any) -> Any:
    """The key/value cache a transformers forward returned (``cache``; ``past_key_values`` before 5.25)."""
    value = getattr(output, "cache", None)
    if value is None:
        value = getattr(output, "past_key_values", None)
    if value is None:
        raise SynthEmbedError(f"{type(output).__name__} carries no key/value cache (was use_cache=True passed?)")
    return value


def repeat_cache_rows(cache: Any, repeats: int) -> None:
    """Repeat every batch row of a transformers ``DynamicCache`` `repeats` times, in place."""
    _cache_method(cache, "batch_repeat_interleave")(repeats)


def select_cache_rows(cache: Any, rows: torch.Tensor) -> None:
    """Keep only the batch rows `rows` (1-D index tensor) of a transformers ``DynamicCache``, in place."""
    _cache_method(cache, "batch_select_indices")(rows)


def _cache_method(cache: Any, name: str) -> Any:
    method = getattr(cache, name, None)
    if method is None:
        raise SynthEmbedError(
            f"{type(cache).__name__} has no {name}(): this transformers version changed the cache API that "
            "guided decoding uses to share a prompt prefix and drop finished rows"
        )
    return method


# --- transformers: the activation-checkpointing switch, renamed in 5.2x --------------------------------


def enable_activation_checkpointing(model: torch.nn.Module, use_reentrant: bool = False) -> None:
    """Turn on activation checkpointing of a transformers model.

    ``activation_checkpointing_enable(kwargs)`` in current transformers; the older name
    ``gradient_checkpointing_enable(gradient_checkpointing_kwargs=...)`` is deprecated there.
    """
    kwargs = {"use_reentrant": use_reentrant}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# --- accelerate: the autocast wrapper it puts on a prepared model's forward ------------------------

_ACCELERATE_ORIGINAL_FORWARD = "_original_forward"


@contextlib.contextmanager
def full_precision_forward(model: torch.nn.Module) -> Iterator[None]:
    """Run `model` without the autocast wrapper accelerate installs under bf16/fp16 training.

    ``Accelerator.prepare_model`` keeps the unwrapped forward as ``model._original_forward`` and replaces
    ``model.forward`` with an autocast one (accelerate 1.x); no public API restores it temporarily. A model
    that was not wrapped is left as it is.
    """
    original = model.__dict__.get(_ACCELERATE_ORIGINAL_FORWARD)
    patched = model.__dict__.get("forward")
    if original is None or patched is None:
        yield
        return
    model.forward = original
    try:
        yield
    finally:
        model.forward = patched
