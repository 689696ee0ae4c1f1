"""Shared fixtures: tiny random models (built once per session, offline) and the data folder.

No test downloads anything: tiny BERT/Llama models are built from configs with the tokenizers the
packaged models ship, and saved to a session temp folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data beside the checkout; tests that need it are skipped where it is absent."""
    if not (SHARED_DATA / "sts").is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep SynthEmbed's cache out of the user's home unless the test run was given one."""
    if "SYNTHEMBED_CACHE" not in os.environ:
        os.environ["SYNTHEMBED_CACHE"] = str(tmp_path_factory.mktemp("synthembed-cache"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT (hidden 32) with all-MiniLM-L6-v2's tokenizer, as a Hugging Face folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from synthembed.models.embedded import embedded_encoder_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(str(embedded_encoder_path()))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer (with its chat template), read from the packaged GGUF file."""
    from transformers import AutoTokenizer

    from synthembed.models.embedded import embedded_llm_gguf_path

    path = embedded_llm_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer) -> Path:
    """A random 2-layer Llama causal LM (hidden 64) with SmolLM2's tokenizer, as a Hugging Face folder."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=smollm2_tokenizer.bos_token_id,
        eos_token_id=smollm2_tokenizer.eos_token_id,
        pad_token_id=smollm2_tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """llama.cpp's OpenAI-compatible server on the packaged SmolLM2 GGUF, on a free loopback port.

    Not skipped when llama-cpp-python is missing: scripts/setup.sh installs it, so its absence is a failure.
    """
    from synthembed.llm.llamacpp_server import LlamaServer

    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with LlamaServer("embedded-llm", n_ctx=2048, threads=1, log=log) as server:
        yield server
