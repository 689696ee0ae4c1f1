"""MGH records for small models: one short request per text instead of one JSON answer per record.

METHODS.md 3.1 asks one request for a whole JSON record (query, positive, four graded negatives);
`synthembed.synthesis.graded` does that. A 135M model cannot: even with guided JSON it fills the
slots with copies and placeholders (docs/mgh-ata.md). It can follow one instruction at a time with
few-shot demonstrations, as SynCSE's positive and negative requests show, so `LevelsTask` (the
``levels`` mode of ``synthesize graded``) asks per given query five single-sentence requests: the
positive, then negatives at levels 1 (one key fact changed) to 4 (an unrelated subject). Each request
shows `n_examples` demonstrations drawn from a pool of graded examples, as user/assistant turns for
that slot's instruction. Every text passes SynCSE's output filters (`check_output`); records whose
texts repeat each other or a demonstration are dropped and counted.

Records have the graded format: ``{"id", "task", "query", "positive", "negatives": [{"level", "text"}],
"meta"}`` with ``meta.mode = "levels"`` and the demonstrations each slot was shown.
"""

from __future__ import annotations

import importlib.resources
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.errors import DataError
from synthembed.io.tables import read_jsonl
from synthembed.llm.base import ChatRequest
from synthembed.synthesis.filters import FilterConfig, check_output, normalize
from synthembed.synthesis.inputs import InputRow
from synthembed.synthesis.runner import Drop
from synthembed.synthesis.syncse import few_shot_messages, sentence_params

__all__ = ["LEVEL_SLOTS", "LevelsPrompts", "LevelsTask", "load_levels_prompts"]

N_LEVELS = 4
LEVEL_SLOTS = ("positive", *(f"level{i}" for i in range(1, N_LEVELS + 1)))


def _resource(name: str) -> Path:
    return Path(str(importlib.resources.files("synthembed.resources") / "graded" / name))


@dataclass(frozen=True)
class LevelsPrompts:
    """One instruction per slot and the pool of graded demonstrations."""

    instructions: Mapping[str, str]
    examples: tuple[Mapping[str, Any], ...]

    def fingerprint(self) -> dict[str, Any]:
        import hashlib

        blob = json.dumps([self.instructions, self.examples], sort_keys=True)
        return {"sha256": hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16], "examples": len(self.examples)}

    def example_text(self, example: Mapping[str, Any], slot: str) -> str:
        return example["positive"] if slot == "positive" else example["negatives"][int(slot[5:]) - 1]


def load_levels_prompts(instructions: Path | None = None, examples: Path | None = None) -> LevelsPrompts:
    """Read the slot instructions (JSON object) and the demonstrations (JSONL); check their shape."""
    instructions_path = Path(instructions or _resource("levels_instructions.json"))
    examples_path = Path(examples or _resource("levels_examples.jsonl"))
    try:
        loaded = json.loads(instructions_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(instructions_path, f"cannot read the level instructions: {exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(instructions_path, f"invalid JSON: {exc.msg}", exc.lineno) from None
    missing = [slot for slot in LEVEL_SLOTS if not isinstance(loaded, dict) or not str(loaded.get(slot, "")).strip()]
    if missing:
        raise DataError(instructions_path, f"needs a non-empty instruction for each of {list(LEVEL_SLOTS)}; "
                        f"missing {missing}")
    pool = []
    for number, row in read_jsonl(examples_path):
        negatives = row.get("negatives")
        if not all(isinstance(row.get(k), str) and row[k].strip() for k in ("query", "positive")) or not (
            isinstance(negatives, list) and len(negatives) == N_LEVELS and all(isinstance(n, str) for n in negatives)
        ):
            raise DataError(examples_path, f'a demonstration needs "query", "positive" and {N_LEVELS} "negatives" '
                            "(level 1 first)", number)
        pool.append({"id": str(row.get("id", f"line{number}")), "query": row["query"], "positive": row["positive"],
                     "negatives": list(negatives)})
    if not pool:
        raise DataError(examples_path, "no demonstrations")
    return LevelsPrompts({slot: loaded[slot] for slot in LEVEL_SLOTS}, tuple(pool))


@dataclass
class LevelsTask:
    """Graded records one text at a time, as an `LLMTask` with the slots `LEVEL_SLOTS` (see module doc)."""

    prompts: LevelsPrompts
    n_examples: int = 3
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 96
    filters: FilterConfig = field(default_factory=FilterConfig)
    name: str = "graded-levels"
    slots: tuple[str, ...] = LEVEL_SLOTS
    _draws: dict[str, dict[str, list[str]]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.n_examples <= len(self.prompts.examples):
            raise ValueError(f"n_examples must be between 0 and the pool size {len(self.prompts.examples)}")

    def config(self) -> dict[str, Any]:
        return {"mode": "levels", "n_examples": self.n_examples, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "filters": self.filters.to_dict(),
                "prompts": self.prompts.fingerprint()}

    def build_request(self, row: InputRow, rng: random.Random, slot: str) -> ChatRequest:
        if slot not in LEVEL_SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        shown = rng.sample(range(len(self.prompts.examples)), self.n_examples)
        seed = rng.getrandbits(31)
        instruction = self.prompts.instructions[slot]
        self._draws.setdefault(row.id, {})[slot] = [self.prompts.examples[i]["id"] for i in shown]
        examples = [self.prompts.examples[i] for i in shown]
        demonstrations = [(e["query"], self.prompts.example_text(e, slot)) for e in examples]
        params = sentence_params(row.text, self.max_new_tokens, self.temperature, self.top_p, seed)
        return ChatRequest(f"{row.id}/{slot}", few_shot_messages(instruction, demonstrations, row.text), params)

    def parse(self, text: str, row: InputRow, slot: str) -> str:
        return check_output(text, row.text, self.filters)

    def _demonstration_texts(self) -> set[str]:
        return {normalize(t) for e in self.prompts.examples for t in (e["positive"], *e["negatives"])}

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]:
        texts = [row.text, *(parsed[slot] for slot in LEVEL_SLOTS)]
        if len({normalize(t) for t in texts}) < len(texts):
            raise Drop("duplicate", "query, positive and negatives must all differ")
        if any(normalize(t) in self._demonstration_texts() for t in texts[1:]):
            raise Drop("copied_example", "a text repeats a demonstration")
        return {
            "id": row.id,
            "task": "",
            "query": row.text,
            "positive": parsed["positive"],
            "negatives": [{"level": i, "text": parsed[f"level{i}"]} for i in range(1, N_LEVELS + 1)],
            "meta": {"mode": "levels", "draws": self._draws.pop(row.id, {})},
        }
