"""Ranked sentence chains steered by classifier-free guidance (METHODS.md §2.2).

From a seed ``s0``, round 1 decodes ``P(s0)`` plainly; round k ≥ 2 decodes with conditional prompt
``P(s_{k-1})`` and negative prompt ``P(s_{k-2})`` under guidance γ, so the chain keeps drifting in
one direction and similarity to ``s0`` falls step by step. Many chains advance together: each round
is one `synthembed.llm.guidance.guided_generate` call over a batch of chains.

Pure parts (prompt building, cleaning, filters, Kendall tau) are separate functions so they can be
table-tested; `generate_chains` drives a model and writes through the resumable
`synthembed.synthesis.records.RecordStore` (shards, manifest, counts by outcome). One chain is one
row: a run killed part-way resumes at the first chain not yet flushed.

Record: ``{"id", "sentences": [s0 … sK], "meta": {...}}``; drops: ``newline``, ``empty``,
``repeated_tail``, ``teacher_order`` (Kendall tau below ``min_tau``).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synthembed.errors import DataError
from synthembed.synthesis.inputs import InputRow

__all__ = [
    "DEFAULT_PROMPT_PATH",
    "ChainConfig",
    "chain_drop_reason",
    "clean_output",
    "generate_chains",
    "kendall_tau",
    "load_prompt_template",
    "render_prompt",
    "run_chains",
    "tau_summary",
]

logger = logging.getLogger(__name__)

DEFAULT_PROMPT_PATH = Path(__file__).resolve().parent.parent / "resources" / "chains" / "prompt.txt"
_QUOTES = "\"'`“”‘’"


@dataclass(frozen=True)
class ChainConfig:
    """Everything that decides a chain's content; recorded in the manifest."""

    rounds: int = 32
    guidance_scale: float = 1.5
    max_new_tokens: int = 100
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 16  # chains advanced together (x2 rows per forward with their negatives)
    seed: int = 0
    min_tau: float | None = None  # drop chains whose teacher Kendall tau is below this

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError("rounds must be >= 1")
        if not 1 <= self.max_new_tokens <= 100:
            raise ValueError("max_new_tokens must be in 1..100 (the method's limit)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")


def load_prompt_template(path: str | Path | None = None) -> str:
    """The prompt template: the packaged published prompt, or a user file holding ``{x}`` once."""
    path = Path(path) if path is not None else DEFAULT_PROMPT_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read prompt template: {exc}") from None
    if text.count("{x}") != 1:
        raise DataError(path, f"a chain prompt template must contain {{x}} exactly once (found {text.count('{x}')})")
    return text


def render_prompt(template: str, sentence: str) -> str:
    """``P(x)``: the template with ``{x}`` replaced (plain replace: other braces are left alone)."""
    return template.replace("{x}", sentence)


def clean_output(text: str) -> str:
    """Strip whitespace, then surrounding quotes/backticks (repeatedly: ``` and "..." both go)."""
    text = text.strip()
    while len(text) >= 1 and (text[0] in _QUOTES or text[-1] in _QUOTES):
        text = text.strip(_QUOTES).strip()
    return text


def chain_drop_reason(sentences: Sequence[str]) -> str | None:
    """Why a finished chain is dropped (``newline``, ``empty``, ``repeated_tail``), or None to keep it.

    Repeated tail: the last or second-to-last sentence occurs 3 or more times in the list.
    """
    outputs = sentences[1:]
    if any("\n" in s or "\r" in s for s in outputs):
        return "newline"
    if any(not s for s in outputs):
        return "empty"
    counts = Counter(sentences)
    tail = sentences[-2:] if len(sentences) >= 2 else sentences
    if any(counts[s] >= 3 for s in tail):
        return "repeated_tail"
    return None


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b of two equal-length sequences (ties handled); NaN when either is constant."""
    n = len(x)
    if n != len(y):
        raise ValueError("kendall_tau needs sequences of equal length")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else float("nan")


def chain_tau(similarities_to_s0: Sequence[float]) -> float:
    """Kendall tau between teacher similarities sim(s0, s_k), k = 1..K, and the order (1 = falls monotonically)."""
    return kendall_tau(list(similarities_to_s0), [-k for k in range(len(similarities_to_s0))])


def tau_summary(taus: Sequence[float]) -> dict[str, Any]:
    """Count, mean, quantiles and a 10-bin histogram over [-1, 1] of the chains' teacher taus."""
    values = sorted(t for t in taus if not math.isnan(t))
    if not values:
        return {"count": 0}
    edges = [-1 + 0.2 * i for i in range(11)]
    hist = [0] * 10
    for v in values:
        hist[min(int((v + 1) / 0.2), 9)] += 1

    def q(p: float) -> float:
        return round(values[min(int(p * (len(values) - 1) + 0.5), len(values) - 1)], 4)

    return {
        "count": len(values),
        "mean": round(statistics.fmean(values), 4),
        "min": round(values[0], 4),
        "q25": q(0.25),
        "median": q(0.5),
        "q75": q(0.75),
        "max": round(values[-1], 4),
        "histogram": {"edges": [round(e, 1) for e in edges], "counts": hist},
    }


def _chat_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` as one user turn in the model's chat template, with the generation prompt."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if isinstance(ids, dict) or hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)
    return tokenizer(text)["input_ids"]


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def generate_chain_batch(
    model: Any, tokenizer: Any, seeds: Sequence[InputRow], config: ChainConfig, template: str
) -> list[dict[str, Any]]:
    """Run all rounds for a batch of seeds; one dict per seed: sentences, drop reason, stats, raw token ids.

    A chain that produces an empty or multi-line output stops early (it would be dropped anyway).
    """
    from synthembed.llm.base import derive_seed
    from synthembed.llm.guidance import GuidanceParams, GuidedRequest, guided_generate

    params = GuidanceParams(
        guidance_scale=config.guidance_scale,
        max_new_tokens=config.max_new_tokens,
        do_sample=config.do_sample,
        temperature=config.temperature,
        top_p=config.top_p,
    )
    eos = _eos_ids(model, tokenizer)
    chains = [
        {"sentences": [row.text], "reason": None, "new_tokens": 0, "truncated": 0, "token_ids": []} for row in seeds
    ]
    prompt_cache: dict[str, list[int]] = {}

    def ids(sentence: str) -> list[int]:
        if sentence not in prompt_cache:
            prompt_cache[sentence] = _chat_ids(tokenizer, render_prompt(template, sentence))
        return prompt_cache[sentence]

    for k in range(1, config.rounds + 1):
        alive = [i for i, c in enumerate(chains) if c["reason"] is None]
        if not alive:
            break
        requests = []
        for i in alive:
            sents = chains[i]["sentences"]
            negative = ids(sents[k - 2]) if k >= 2 else None
            seed = derive_seed(config.seed, seeds[i].id, k) if config.do_sample else None
            requests.append(GuidedRequest(ids(sents[k - 1]), negative, seed=seed))
        outputs = guided_generate(model, requests, params, eos_token_ids=eos, pad_token_id=tokenizer.pad_token_id)
        for i, out in zip(alive, outputs, strict=True):
            chain = chains[i]
            raw = tokenizer.decode(out.token_ids, skip_special_tokens=True)
            text = clean_output(raw)
            chain["new_tokens"] += len(out.token_ids)
            chain["token_ids"].append(out.token_ids)
            chain["truncated"] += int(out.finish_reason == "length")
            chain["sentences"].append(text)
            if "\n" in text or "\r" in text:
                chain["reason"] = "newline"
            elif not text:
                chain["reason"] = "empty"
        prompt_cache = {s: v for s, v in prompt_cache.items() if any(s in c["sentences"][-2:] for c in chains)}
    for chain in chains:
        if chain["reason"] is None:
            chain["reason"] = chain_drop_reason(chain["sentences"])
    return chains


def generate_chains(
    model: Any,
    tokenizer: Any,
    rows: Sequence[InputRow],
    config: ChainConfig,
    store: Any,
    *,
    template: str,
    teacher_similarities: Callable[[list[list[str]]], list[list[float]]] | None = None,
    token_budget: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Generate chains for the `rows` not yet in `store` (a `RecordStore`), batch by batch.

    `teacher_similarities(chains)` returns, per chain, ``sim(s0, s_k)`` for k = 1..K; when given,
    each kept chain's Kendall tau is recorded in its meta, and chains with tau < ``config.min_tau``
    are dropped as ``teacher_order``. Returns ``{"taus": [...] (this call's), "complete": bool, "new_tokens": int}``.
    """
    todo = [row for row in rows if row.id not in store.done_ids]
    taus: list[float] = []
    used_tokens = 0
    complete = True
    for start in range(0, len(todo), config.batch_size):
        if token_budget is not None and used_tokens >= token_budget:
            complete = False
            break
        batch = todo[start : start + config.batch_size]
        results = generate_chain_batch(model, tokenizer, batch, config, template)
        kept = [(row, res) for row, res in zip(batch, results, strict=True) if res["reason"] is None]
        batch_taus: dict[str, float] = {}
        if teacher_similarities is not None and kept:
            sims = teacher_similarities([res["sentences"] for _, res in kept])
            for (row, _), row_sims in zip(kept, sims, strict=True):
                batch_taus[row.id] = chain_tau(row_sims)
        for row, res in zip(batch, results, strict=True):
            used_tokens += res["new_tokens"]
            meta = {
                "source": row.source,
                "rounds": config.rounds,
                "guidance_scale": config.guidance_scale,
                "new_tokens": res["new_tokens"],
                "truncated_outputs": res["truncated"],
                "usage": {"completion_tokens": res["new_tokens"]},
            }
            tau = batch_taus.get(row.id)
            if tau is not None:
                meta["teacher_tau"] = None if math.isnan(tau) else round(tau, 6)
                taus.append(tau)
            reason = res["reason"]
            if reason is None and tau is not None and config.min_tau is not None and not tau >= config.min_tau:
                reason = "teacher_order"
            if reason is None:
                store.add({"id": row.id, "sentences": res["sentences"], "meta": meta})
            else:
                store.drop(row.id, reason, raw=res["sentences"], meta=meta, detail=_detail(reason, res, tau))
            if progress is not None:
                progress.update(1, tokens=res["new_tokens"], failed=reason is not None)
    return {"taus": taus, "complete": complete, "new_tokens": used_tokens}


def _detail(reason: str, res: dict[str, Any], tau: float | None) -> str:
    if reason == "teacher_order":
        return f"kendall tau {tau:.3f}"
    return f"after {len(res['sentences']) - 1} rounds"


def config_record(config: ChainConfig, *, model: str, template: str, teacher: str | None) -> dict[str, Any]:
    """What the manifest records about a chains run."""
    return {"method": "chains", "model": model, "teacher": teacher, "prompt_template": template, **asdict(config)}


def _teacher_scorer(reference: str, device: str | None) -> Callable[[list[list[str]]], list[list[float]]]:
    """sim(s0, s_k), k = 1..K, per chain, from a `load_encoder` model (cosine of normalised embeddings)."""
    from synthembed.models.encoder import load_encoder

    encoder = load_encoder(reference, device=device)

    def score(chains: list[list[str]]) -> list[list[float]]:
        flat = [s for chain in chains for s in chain]
        emb = encoder.encode(flat, convert_to_tensor=True, normalize_embeddings=True, batch_size=64)  # (sum n, d)
        out, start = [], 0
        for chain in chains:
            block = emb[start : start + len(chain)]  # (n, d)
            out.append((block[1:] @ block[0]).tolist())  # (n - 1,)
            start += len(chain)
        return out

    return score


def _stored_taus(out_dir: Path) -> list[float]:
    """Teacher taus recorded in every kept and dropped chain of a folder (all runs into it)."""
    import json

    taus = []
    for sub in ("records", "dropped"):
        for shard in sorted((out_dir / sub).glob("part-*.jsonl")):
            for line in shard.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    tau = json.loads(line).get("meta", {}).get("teacher_tau")
                    if tau is not None:
                        taus.append(float(tau))
    return taus


def run_chains(
    rows: Any,
    config: ChainConfig,
    output: str | Path,
    *,
    model: str = "embedded",
    prompt_file: str | Path | None = None,
    teacher: str | None = None,
    dtype: str = "float32",
    device: str | None = None,
    shard_size: int = 16,
    overwrite: bool = False,
    token_budget: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The `synthembed synthesize chains` entry: load the LM (and teacher), generate, write, summarise.

    Output folder layout is `RecordStore`'s; the manifest adds ``teacher_tau`` (the tau distribution
    over every chain that reached the teacher check) and the input rows skipped.
    """
    import time

    import torch

    from synthembed.llm.guidance import load_causal_lm
    from synthembed.synthesis.progress import Progress
    from synthembed.synthesis.records import RecordStore

    template = load_prompt_template(prompt_file)
    record_config = config_record(config, model=model, template=template, teacher=teacher)
    record_config["dtype"] = dtype
    check = ("method", "model", "prompt_template", "rounds", "guidance_scale", "max_new_tokens", "do_sample",
             "temperature", "top_p", "seed", "dtype", "teacher", "min_tau")
    store = RecordStore(output, record_config, shard_size=shard_size, overwrite=overwrite, check_keys=check)
    store.extra_counts.update(getattr(rows, "skipped", {}))
    row_list = list(rows)
    torch.manual_seed(config.seed)
    lm, tokenizer = load_causal_lm(model, dtype=dtype, device=device)
    scorer = _teacher_scorer(teacher, device) if teacher is not None else None
    todo = sum(1 for r in row_list if r.id not in store.done_ids)
    bar = Progress(todo, enabled=progress, description="chains")
    started = time.monotonic()

    def summary(new_tokens: int | None) -> dict[str, Any]:
        wall = time.monotonic() - started
        return {
            "teacher_tau": tau_summary(_stored_taus(Path(output))) if teacher is not None else None,
            "this_run": {"chains_to_do": todo, "new_tokens": new_tokens, "wall_s": round(wall, 2)},
        }

    try:
        result = generate_chains(
            lm, tokenizer, row_list, config, store, template=template, teacher_similarities=scorer,
            token_budget=token_budget, progress=bar,
        )
    except KeyboardInterrupt:  # a time box (timeout -s INT) or Ctrl-C: keep what is done, resumable
        store.flush()
        store.finish(complete=False, extra=summary(None))
        raise
    finally:
        bar.close()
    return store.finish(order=[r.id for r in row_list], complete=result["complete"], extra=summary(result["new_tokens"]))
