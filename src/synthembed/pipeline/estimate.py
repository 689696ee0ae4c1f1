"""`synthembed run --dry-run`: the plan, the LLM calls each synthesis stage will make, and a token estimate.

The estimate is deliberately simple (rows x requests per row x typical tokens per request of the
method's prompts) and printed as such; the real counts are in each stage's manifest after a run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthembed.pipeline.config import PipelineConfig
from synthembed.pipeline.plan import PlannedStage


@dataclass(frozen=True)
class MethodCost:
    """Typical shape of one method's LLM work per input row."""

    requests_per_row: float
    prompt_tokens: int  # per request
    completion_tokens: int  # per request


# Typical sizes per request. syncse: SmolLM2's tokenizer on the shipped 5-shot prompts averaged 500 prompt
# and 27 completion tokens a request (8,010 + 427 over 16 requests, wiki sentences); graded in levels mode
# 316 and 19 (12,657 + 760 over 40 requests, 3-shot, SNLI premises); the others are rough. Keys are the
# method, or "method:mode" where a mode changes the shape. The stage manifests hold the real counts after a run.
METHOD_COSTS = {
    "syncse": MethodCost(requests_per_row=2, prompt_tokens=500, completion_tokens=30),
    "graded": MethodCost(requests_per_row=1, prompt_tokens=330, completion_tokens=220),
    "graded:levels": MethodCost(requests_per_row=5, prompt_tokens=320, completion_tokens=20),
}
CHAIN_PROMPT_TOKENS, CHAIN_COMPLETION_TOKENS = 95, 30


def _count_rows(path: str | None) -> int | None:
    if not path or not Path(path).is_file():
        return None
    with open(path, "rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return lines - 1 if Path(path).suffix.lower() in (".tsv", ".csv") else lines


def estimate_stage(stage: PlannedStage) -> dict[str, Any] | None:
    """Rows, LLM requests and tokens for a synthesis stage (None for other stages)."""
    words = stage.config.command.split()
    if words[0] != "synthesize":
        return None
    method, args = words[1], stage.config.args
    rows = _count_rows(args.get("input"))
    limit = args.get("limit")
    if limit is not None:
        rows = int(limit) if rows is None else min(rows, int(limit))
    if rows is None:
        return {"rows": None, "note": "input size unknown until the stage runs (give --limit to bound it)"}
    if method == "chains":
        rounds = int(args.get("rounds", 32))
        # round 1 is plain decoding; rounds 2..K decode the conditional and the negative prompt together
        streams = rows * (1 + 2 * (rounds - 1))
        return {
            "rows": rows,
            "requests": rows * rounds,
            "prompt_tokens": streams * CHAIN_PROMPT_TOKENS,
            "completion_tokens": rows * rounds * CHAIN_COMPLETION_TOKENS,
        }
    cost = METHOD_COSTS.get(f"{method}:{args.get('mode')}", METHOD_COSTS.get(method))
    if cost is None:
        return {"rows": rows, "note": f"no estimate for method {method!r}"}
    requests = int(rows * cost.requests_per_row)
    return {
        "rows": rows,
        "requests": requests,
        "prompt_tokens": requests * cost.prompt_tokens,
        "completion_tokens": requests * cost.completion_tokens,
    }


def print_plan(config: PipelineConfig, plan: list[PlannedStage]) -> None:
    """Print each stage's status, command line and (for synthesis) the LLM work it will do."""
    print(f"pipeline {config.name!r} -> {config.output_dir}")
    total_requests = total_tokens = 0
    for index, stage in enumerate(plan, start=1):
        will = "skip (complete)" if stage.status == "done" else ("re-run (config changed)" if stage.status == "stale" else "run")
        print(f"\n{index}. {stage.config.name}: {will}\n   {stage.command_line}")
        estimate = estimate_stage(stage)
        if estimate is None:
            continue
        if "requests" in estimate:
            tokens = estimate["prompt_tokens"] + estimate["completion_tokens"]
            print(
                f"   LLM: {estimate['rows']} rows, ~{estimate['requests']} requests, ~{tokens:,} tokens "
                f"({estimate['prompt_tokens']:,} prompt + {estimate['completion_tokens']:,} completion)"
            )
            if stage.status != "done":
                total_requests += estimate["requests"]
                total_tokens += tokens
        else:
            print(f"   LLM: {estimate['note']}")
    print(f"\nto spend: ~{total_requests} LLM requests, ~{total_tokens:,} tokens (rough estimate; cached answers cost nothing)")
