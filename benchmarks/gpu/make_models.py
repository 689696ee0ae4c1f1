"""Random-weight models of real architectures with the packaged MiniLM tokenizer (weights cannot travel: 64 MiB).

    python make_models.py TOKENIZER_DIR OUT_DIR [--scale full|tiny]

writes OUT_DIR/{minilm,bert-base,llama} as Hugging Face folders. ``full``: MiniLM-L6 and BERT-base shapes and
a 4-layer Llama (hidden 256) for the ATA / LoRA smoke test; ``tiny``: hidden-32 stand-ins for a CPU
rehearsal of run.sh. The Mistral-7B shape is built in memory by mgh_shape.py (14 GB of weights never touch disk).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaModel

parser = argparse.ArgumentParser()
parser.add_argument("tokenizer", type=Path)
parser.add_argument("out", type=Path)
parser.add_argument("--scale", choices=["full", "tiny"], default="full")
args = parser.parse_args()
tok = AutoTokenizer.from_pretrained(args.tokenizer)
torch.manual_seed(0)
full = args.scale == "full"


def bert(hidden: int, layers: int, heads: int) -> BertConfig:
    return BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=4 * hidden, max_position_embeddings=512)


specs = {
    "minilm": bert(384, 6, 12) if full else bert(32, 2, 4),
    "bert-base": bert(768, 12, 12) if full else bert(48, 2, 4),
}
for name, cfg in specs.items():
    BertModel(cfg).save_pretrained(args.out / name)
    tok.save_pretrained(args.out / name)
hidden = 256 if full else 32
llama = LlamaConfig(vocab_size=tok.vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=4 if full else 2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                    pad_token_id=tok.pad_token_id, bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
LlamaModel(llama).save_pretrained(args.out / "llama")
tok.save_pretrained(args.out / "llama")
print("models:", sorted(p.name for p in args.out.iterdir()), flush=True)
