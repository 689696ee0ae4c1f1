"""Each third-party detail SynthEmbed relies on (synthembed.compat), checked against the installed versions.

A failure here names the detail an upgrade broke; the helpers' callers never reach into it themselves.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache, TrainingArguments

from synthembed.compat import (
    cache_keyword,
    full_precision_forward,
    repeat_cache_rows,
    returned_cache,
    select_cache_rows,
)


@pytest.fixture(scope="module")
def tiny_llama(tiny_llama_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()


def test_cache_keyword_passes_a_cache_without_deprecation_warnings(tiny_llama, caplog) -> None:
    from transformers.utils import logging as hf_logging

    keyword = cache_keyword(tiny_llama)
    ids = torch.tensor([[1, 2, 3]])
    hf_logging.enable_propagation()  # transformers' deprecation notes go through its logger
    try:
        with warnings.catch_warnings(), caplog.at_level("WARNING"):
            warnings.simplefilter("error")  # a deprecated keyword would warn (and, from 5.40, fail)
            out = tiny_llama(input_ids=ids, use_cache=True, **{keyword: DynamicCache()})
    finally:
        hf_logging.disable_propagation()
    assert not [r for r in caplog.records if "deprecated" in r.getMessage()], caplog.text
    cache = returned_cache(out)
    assert cache.get_seq_length() == 3
    # the cache carries on: one more token sees 4 positions
    out2 = tiny_llama(input_ids=torch.tensor([[4]]), use_cache=True, **{keyword: cache})
    assert returned_cache(out2).get_seq_length() == 4


def test_cache_rows_repeat_and_select(tiny_llama) -> None:
    keyword = cache_keyword(tiny_llama)
    cache = returned_cache(tiny_llama(input_ids=torch.tensor([[5, 6]]), use_cache=True, **{keyword: DynamicCache()}))
    repeat_cache_rows(cache, 3)
    step = tiny_llama(input_ids=torch.tensor([[7], [8], [9]]), use_cache=True, **{keyword: cache})
    cache = returned_cache(step)
    select_cache_rows(cache, torch.tensor([2, 0]))
    # row 2 continued alone from the shared prefix must equal a fresh run of the same tokens
    follow = tiny_llama(input_ids=torch.tensor([[1], [1]]), use_cache=True, **{keyword: cache}).logits[:, -1]
    fresh_9 = tiny_llama(input_ids=torch.tensor([[5, 6, 9, 1]])).logits[:, -1]
    fresh_7 = tiny_llama(input_ids=torch.tensor([[5, 6, 7, 1]])).logits[:, -1]
    torch.testing.assert_close(follow[0:1], fresh_9, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(follow[1:2], fresh_7, atol=1e-5, rtol=1e-4)


_AUTOCAST_CHECK = """
import torch
from accelerate import Accelerator
from synthembed.compat import full_precision_forward

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
x = torch.randn(4, 8)
reference = model(x)
prepared = Accelerator(mixed_precision="bf16", cpu=True).prepare(model)
patched = prepared(x)
assert not torch.equal(patched, reference), "accelerate no longer wraps forward in autocast under bf16"
with full_precision_forward(prepared):
    torch.testing.assert_close(prepared(x), reference, atol=0, rtol=0)
assert torch.equal(prepared(x), patched), "the autocast wrapper must be back after the block"
print("ok")
"""


def test_full_precision_forward_undoes_accelerate_autocast() -> None:
    """In a fresh process: accelerate's process-wide state allows one mixed-precision setting per process."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _AUTOCAST_CHECK], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_warmup_steps_takes_a_ratio() -> None:
    """The trainer passes `warmup_ratio` as `warmup_steps` (a float < 1 is a ratio since transformers 5)."""
    args = TrainingArguments(output_dir="unused", warmup_steps=0.1, report_to="none", use_cpu=True)
    assert args.get_warmup_steps(100) == 10


def test_activation_checkpointing_switch_turns_it_on(tiny_llama_dir) -> None:
    from synthembed.compat import enable_activation_checkpointing

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert not model.is_gradient_checkpointing
    enable_activation_checkpointing(model)
    assert model.is_gradient_checkpointing
