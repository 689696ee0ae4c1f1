"""Guided chain generation: ours (batched CFG) vs transformers' guided `generate`, chain by chain.

Both sides build the same ranked chains on the packaged SmolLM2 (fp32, greedy, gamma 1.5): round 1
plain, round k with P(s_{k-1}) conditional and P(s_{k-2}) negative. The reference calls
``model.generate(guidance_scale=..., negative_prompt_ids=...)`` once per chain per round (batch 1,
its documented usage); ours advances all chains together. Prints wall times, generated tokens/s,
chain rows/s (one row = one generated sentence), the speed ratio, the share of chains identical to
the reference, and for every chain that differs the score margin at the first differing token
(top-1 minus top-2 of the reference's guided scores, recomputed without cache or padding): a margin
close to 0 means a near-tie that batched sums round differently, not a bug.

    nice -n 5 .venv/bin/python benchmarks/bench_guided_generation.py --chains 16 --rounds 8
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from synthembed.llm.guidance import load_causal_lm
from synthembed.synthesis.chains import ChainConfig, _chat_ids, _eos_ids, clean_output, generate_chain_batch
from synthembed.synthesis.chains import load_prompt_template, render_prompt
from synthembed.synthesis.inputs import rows_from_texts

DATA = Path(os.environ.get("SYNTHEMBED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def seed_sentences(n: int, offset: int) -> list[str]:
    lines = (DATA / "unlabeled" / "wiki1m_sample.txt").read_text(encoding="utf-8").splitlines()
    usable = [line.strip() for line in lines if len(line.split()) >= 5]
    return usable[offset : offset + n]


def reference_chain(model, tokenizer, seed: str, config: ChainConfig, template: str, eos: list[int]):
    """One chain by transformers' guided generate; returns (sentences, new-token ids per round)."""
    sentences, token_rounds = [seed], []
    for k in range(1, config.rounds + 1):
        cond = _chat_ids(tokenizer, render_prompt(template, sentences[k - 1]))
        kwargs = {}
        if k >= 2 and config.guidance_scale != 1:
            neg = _chat_ids(tokenizer, render_prompt(template, sentences[k - 2]))
            kwargs = {"guidance_scale": config.guidance_scale, "negative_prompt_ids": torch.tensor([neg])}
        out = model.generate(
            torch.tensor([cond]),
            attention_mask=torch.ones(1, len(cond), dtype=torch.long),
            max_new_tokens=config.max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=tokenizer.pad_token_id,
            **kwargs,
        )
        new = out[0, len(cond) :].tolist()
        token_rounds.append(new)
        text = clean_output(tokenizer.decode(new, skip_special_tokens=True))
        sentences.append(text)
        if not text or "\n" in text:
            break  # ours stops such a chain too (it is dropped)
    return sentences, token_rounds


@torch.inference_mode()
def guided_scores(model, cond: list[int], neg: list[int] | None, prefix: list[int], gamma: float) -> torch.Tensor:
    """Reference scores for the next token after `prefix`, with full (uncached, unpadded) forwards; (vocab,)."""
    pos = model(torch.tensor([cond + prefix])).logits[0, -1].float()
    if neg is None:
        return pos
    lp_pos = torch.log_softmax(pos, -1)
    lp_neg = torch.log_softmax(model(torch.tensor([neg + prefix])).logits[0, -1].float(), -1)
    return gamma * (lp_pos - lp_neg) + lp_neg


def divergence(model, tokenizer, ours: dict, ref: tuple, template: str, config: ChainConfig) -> dict:
    """First round/token where our chain differs from the reference, and the reference's scores there.

    ``margin_ref_minus_ours``: the reference's guided score of its own token minus that of the token we
    chose (both recomputed with uncached, unpadded forwards); near 0 means a near-tie.
    """
    ref_sents, ref_tokens = ref
    for k, (a, b) in enumerate(zip(ours["token_ids"], ref_tokens, strict=False), start=1):
        if a == b:
            continue
        p = 0
        while p < min(len(a), len(b)) and a[p] == b[p]:
            p += 1
        if p == min(len(a), len(b)):
            return {"round": k, "token_position": p, "note": "one side stopped earlier"}
        cond = _chat_ids(tokenizer, render_prompt(template, ref_sents[k - 1]))
        neg = _chat_ids(tokenizer, render_prompt(template, ref_sents[k - 2])) if k >= 2 else None
        scores = guided_scores(model, cond, neg, b[:p], config.guidance_scale)
        top = torch.topk(scores, 2)
        return {
            "round": k,
            "token_position": p,
            "ours_token": tokenizer.decode([a[p]]),
            "reference_token": tokenizer.decode([b[p]]),
            "margin_ref_minus_ours": float(scores[b[p]] - scores[a[p]]),
            "top2_margin": float(top.values[0] - top.values[1]),
            "score_scale": float(top.values[0].abs()),
        }
    return {"round": None, "note": "same tokens in every shared round; one chain has more rounds"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--guidance-scale", type=float, default=1.5)
    parser.add_argument("--offset", type=int, default=2000, help="first seed line of the wiki sample")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_causal_lm("embedded", dtype="float32")
    template = load_prompt_template()
    eos = _eos_ids(model, tokenizer)
    config = ChainConfig(rounds=args.rounds, guidance_scale=args.guidance_scale,
                         max_new_tokens=args.max_new_tokens, batch_size=args.chains)
    seeds = seed_sentences(args.chains, args.offset)
    rows = rows_from_texts(seeds).rows

    t0 = time.perf_counter()
    ours = generate_chain_batch(model, tokenizer, rows, config, template)
    ours_s = time.perf_counter() - t0
    ours_tokens = sum(c["new_tokens"] for c in ours)
    ours_rows = sum(len(c["sentences"]) - 1 for c in ours)
    print(f"ours: {ours_s:.1f} s, {ours_rows} rows, {ours_tokens} tokens; running the reference ...", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    refs = [reference_chain(model, tokenizer, s, config, template, eos) for s in seeds]
    ref_s = time.perf_counter() - t0
    ref_tokens = sum(len(t) for _, rounds in refs for t in rounds)
    ref_rows = sum(len(sents) - 1 for sents, _ in refs)

    identical = [c["token_ids"] == r[1] for c, r in zip(ours, refs, strict=True)]
    diffs = [
        {"chain": i, **divergence(model, tokenizer, c, r, template, config)}
        for i, (c, r, same) in enumerate(zip(ours, refs, identical, strict=True))
        if not same
    ]
    figures = {
        "chains": args.chains,
        "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens,
        "guidance_scale": args.guidance_scale,
        "threads": torch.get_num_threads(),
        "ours": {"wall_s": round(ours_s, 2), "rows": ours_rows, "rows_per_s": round(ours_rows / ours_s, 3),
                 "new_tokens": ours_tokens, "tokens_per_s": round(ours_tokens / ours_s, 2)},
        "reference_hf_generate": {"wall_s": round(ref_s, 2), "rows": ref_rows, "rows_per_s": round(ref_rows / ref_s, 3),
                                  "new_tokens": ref_tokens, "tokens_per_s": round(ref_tokens / ref_s, 2)},
        "speedup_wall": round(ref_s / ours_s, 2),
        "speedup_rows_per_s": round((ours_rows / ours_s) / (ref_rows / ref_s), 2),
        "identical_chains": f"{sum(identical)}/{len(identical)}",
        "identical_share": round(sum(identical) / len(identical), 4),
        "differences": diffs,
    }
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
