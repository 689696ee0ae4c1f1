"""SynCSE data (METHODS.md 1): an LLM writes a positive and a hard negative for each anchor.

- *partial*: anchors are given (`synthembed.synthesis.inputs`); `SynCSETask` sends one request for
  the positive and one for the hard negative per anchor, as in the paper.
- *scratch*: `AnchorTask` first asks for anchors, each request drawing a genre and about six topics
  from lists (package data or the user's files); the anchors are then annotated as in partial
  (`run_syncse`).

Diversity controls (METHODS 1.2): every request draws one instruction from the prompt pool of its
slot and shows 5 demonstration triplets drawn from the example pool as few-shot chat turns
(user: instruction + example anchor; assistant: the example's positive or negative), then the real
anchor. Draws and sampling seeds come from the request's own generator (run seed, row id, slot), so
runs are reproducible and resumable. Outputs go through `synthembed.synthesis.filters`.

Records: ``{"id", "anchor", "positive", "negative", "meta": {mode, instructions, examples, ...}}``.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.errors import DataError
from synthembed.io.tables import read_jsonl, read_text_lines
from synthembed.llm.base import ChatRequest, LLMBackend, SamplingParams
from synthembed.synthesis.filters import FilterConfig, check_output, clean_output, count_sentences, meta_reason, normalize
from synthembed.synthesis.inputs import InputRow, InputSet
from synthembed.synthesis.records import iter_records
from synthembed.synthesis.runner import Drop, RunOptions, RunSummary, run_task, two_step

__all__ = ["AnchorTask", "SynCSEPools", "SynCSETask", "load_pools", "run_syncse", "scratch_anchor_rows"]

RESOURCE_PACKAGE = "synthembed.resources"
SLOTS = ("positive", "negative")


def _resource(name: str) -> Path:
    return Path(str(importlib.resources.files(RESOURCE_PACKAGE) / "syncse" / name))


def _read_list(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a text file."""
    return [text for _, text in read_text_lines(path) if not text.startswith("#")]


@dataclass(frozen=True)
class SynCSEPools:
    """Instruction pools, demonstration triplets, genres, topics and the scratch instruction."""

    positive: tuple[str, ...]
    negative: tuple[str, ...]
    examples: tuple[Mapping[str, str], ...]
    genres: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    scratch_instruction: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """What the manifest records (pool sizes and a hash of the content), to refuse mixing pools on resume."""
        import hashlib

        blob = json.dumps([self.positive, self.negative, self.examples, self.genres, self.topics,
                           self.scratch_instruction], sort_keys=True, default=dict)
        return {
            "positive_instructions": len(self.positive),
            "negative_instructions": len(self.negative),
            "examples": len(self.examples),
            "genres": len(self.genres),
            "topics": len(self.topics),
            "sha256": hashlib.sha256(blob.encode()).hexdigest()[:16],
            "sources": dict(self.sources),
        }


def load_pools(
    positive: str | Path | None = None,
    negative: str | Path | None = None,
    examples: str | Path | None = None,
    genres: str | Path | None = None,
    topics: str | Path | None = None,
    scratch_instruction: str | Path | None = None,
) -> SynCSEPools:
    """Load the pools: the packaged files, or the user's files where given (same formats)."""
    paths = {
        "positive": Path(positive) if positive else _resource("positive_instructions.txt"),
        "negative": Path(negative) if negative else _resource("negative_instructions.txt"),
        "examples": Path(examples) if examples else _resource("examples.jsonl"),
        "genres": Path(genres) if genres else _resource("genres.txt"),
        "topics": Path(topics) if topics else _resource("topics.txt"),
        "scratch_instruction": Path(scratch_instruction) if scratch_instruction else _resource("scratch_instruction.txt"),
    }
    pos, neg = _read_list(paths["positive"]), _read_list(paths["negative"])
    for key, pool in (("positive", pos), ("negative", neg)):
        if not pool:
            raise DataError(paths[key], "the instruction pool is empty")
    rows = []
    for number, row in read_jsonl(paths["examples"]):
        for key in ("anchor", "positive", "negative"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(paths["examples"], f"example needs a non-empty string {key!r}", number)
        rows.append({"id": str(row.get("id", f"L{number}")), "anchor": row["anchor"], "positive": row["positive"],
                     "negative": row["negative"], "genre": str(row.get("genre", ""))})
    if not rows:
        raise DataError(paths["examples"], "the example pool is empty")
    template = "\n".join(_read_list(paths["scratch_instruction"]))
    for placeholder in ("{n}", "{genre}", "{topics}"):
        if placeholder not in template:
            raise DataError(paths["scratch_instruction"], f"the scratch instruction needs the placeholder {placeholder}")
    return SynCSEPools(
        tuple(pos), tuple(neg), tuple(rows), tuple(_read_list(paths["genres"])), tuple(_read_list(paths["topics"])),
        template, {k: str(v) for k, v in paths.items()},
    )


def _few_shot_user(instruction: str, sentence: str) -> str:
    return f"{instruction}\n\nSentence: {sentence}"


def few_shot_messages(instruction: str, demonstrations: Sequence[tuple[str, str]], sentence: str) -> tuple[dict[str, str], ...]:
    """Chat turns for a one-sentence rewrite: per demonstration (input, output) a user turn (instruction +
    input) and the assistant's output, then the real sentence; shared by SynCSE and graded ``levels``."""
    messages: list[dict[str, str]] = []
    for given, answer in demonstrations:
        messages.append({"role": "user", "content": _few_shot_user(instruction, given)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _few_shot_user(instruction, sentence)})
    return tuple(messages)


def sentence_params(sentence: str, cap: int, temperature: float, top_p: float, seed: int) -> SamplingParams:
    """Sampling for a one-sentence answer: about 3 tokens per input word + 16 (at most `cap`), stop at a blank line."""
    budget = min(cap, 16 + 3 * len(sentence.split()))
    return SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=budget, seed=seed, stop=("\n\n",))


@dataclass
class SynCSETask:
    """Partial SynCSE as an `LLMTask`: slots ``positive`` and ``negative`` (pure functions of row and rng)."""

    pools: SynCSEPools
    n_examples: int = 5
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 96  # cap; each request asks for about 3 tokens per anchor word + 16
    filters: FilterConfig = field(default_factory=FilterConfig)
    mode: str = "partial"
    name: str = "syncse"
    slots: tuple[str, ...] = SLOTS
    _draws: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.n_examples <= len(self.pools.examples):
            raise ValueError(f"n_examples must be between 0 and the pool size {len(self.pools.examples)}")

    def config(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "n_examples": self.n_examples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "filters": self.filters.to_dict(),
            "pools": self.pools.fingerprint(),
        }

    def draws(self, rng: random.Random, slot: str) -> tuple[int, list[int], int]:
        """(instruction index, example indices, sampling seed) drawn from a request's generator."""
        pool = self.pools.positive if slot == "positive" else self.pools.negative
        instruction = rng.randrange(len(pool))
        examples = rng.sample(range(len(self.pools.examples)), self.n_examples)
        return instruction, examples, rng.getrandbits(31)

    def build_request(self, row: InputRow, rng: random.Random, slot: str) -> ChatRequest:
        if slot not in SLOTS:
            raise ValueError(f"unknown slot {slot!r}")
        instruction_index, example_indices, seed = self.draws(rng, slot)
        instruction = (self.pools.positive if slot == "positive" else self.pools.negative)[instruction_index]
        self._draws.setdefault(row.id, {})[slot] = {
            "instruction": instruction_index,
            "examples": [self.pools.examples[i]["id"] for i in example_indices],
        }
        shown = [(self.pools.examples[i]["anchor"], self.pools.examples[i][slot]) for i in example_indices]
        params = sentence_params(row.text, self.max_new_tokens, self.temperature, self.top_p, seed)
        return ChatRequest(f"{row.id}/{slot}", few_shot_messages(instruction, shown, row.text), params)

    def parse(self, text: str, row: InputRow, slot: str) -> str:
        return check_output(text, row.text, self.filters)

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]:
        positive, negative = parsed["positive"], parsed["negative"]
        if normalize(positive) == normalize(negative):
            raise Drop("duplicate", "positive and negative are the same sentence")
        meta: dict[str, Any] = {"mode": self.mode, "draws": self._draws.pop(row.id, {})}
        meta.update({k: v for k, v in row.fields.items() if k in ("genre", "topics")})
        return {"id": row.id, "anchor": row.text, "positive": positive, "negative": negative, "meta": meta}


_NUMBERING = re.compile(r"^\s*(?:\d+[.):]|[-*•]|\(\d+\))\s+")


@dataclass
class AnchorTask:
    """Scratch step 1 as an `LLMTask`: one request per row asks for `per_request` sentences of a genre on topics."""

    pools: SynCSEPools
    per_request: int = 8
    topics_per_request: int = 6
    temperature: float = 1.0
    top_p: float = 0.9
    max_new_tokens: int = 400
    min_words: int = 5
    max_words: int = 50
    name: str = "syncse-anchors"
    slots: tuple[str, ...] = ("anchors",)
    drop_truncated: bool = False  # a cut-off answer still holds whole sentences before its last line

    def __post_init__(self) -> None:
        if not self.pools.genres or len(self.pools.topics) < self.topics_per_request:
            raise ValueError(f"scratch mode needs genres and at least {self.topics_per_request} topics")

    def config(self) -> dict[str, Any]:
        return {"per_request": self.per_request, "topics_per_request": self.topics_per_request,
                "temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
                "min_words": self.min_words, "max_words": self.max_words, "pools": self.pools.fingerprint()}

    def topic_draw(self, rng: random.Random) -> tuple[str, list[str], int]:
        genre = rng.choice(self.pools.genres)
        topics = rng.sample(list(self.pools.topics), self.topics_per_request)
        return genre, topics, rng.getrandbits(31)

    def build_request(self, row: InputRow, rng: random.Random, slot: str) -> ChatRequest:
        genre, topics, seed = self.topic_draw(rng)
        prompt = self.pools.scratch_instruction.format(n=self.per_request, genre=genre, topics=", ".join(topics))
        params = SamplingParams(temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                                seed=seed)
        return ChatRequest(f"{row.id}/{slot}", ({"role": "user", "content": prompt},), params)

    def parse(self, text: str, row: InputRow, slot: str) -> list[str]:
        sentences = []
        lines = text.splitlines()
        for line in lines if text.rstrip().endswith((".", "!", "?", '"')) else lines[:-1]:
            line = clean_output(_NUMBERING.sub("", line))
            words = len(line.split())
            if not line or line.endswith(":") or not self.min_words <= words <= self.max_words:
                continue
            if count_sentences(line) != 1 or meta_reason(line) is not None:
                continue
            sentences.append(line)
        if not sentences:
            raise Drop("parse_failure", "no usable sentence in the answer")
        return sentences

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": row.id, "anchors": parsed["anchors"], "meta": {}}


def scratch_anchor_rows(n_rows: int) -> list[InputRow]:
    """Stage-1 rows ``S000000 ...`` (their genre/topics are drawn when requests are built)."""
    return [InputRow(f"S{i:06d}", f"scratch request {i}", f"scratch:{i}") for i in range(n_rows)]


def collect_anchors(anchor_dir: Path, task: AnchorTask, seed: int, order: Sequence[str]) -> InputSet:
    """Stage-2 rows from stage-1 records, in request order, repeated sentences skipped (counted)."""
    from collections import Counter

    from synthembed.synthesis.runner import row_rng

    by_id = {r["id"]: r for r in iter_records(anchor_dir)}
    rows, seen, skipped = [], set(), Counter()
    for request_id in order:
        record = by_id.get(request_id)
        if record is None:
            continue
        genre, topics, _ = task.topic_draw(row_rng(seed, task.name, request_id, "anchors"))
        for j, sentence in enumerate(record["anchors"]):
            key = normalize(sentence)
            if key in seen:
                skipped["duplicate_anchor"] += 1
                continue
            seen.add(key)
            rows.append(InputRow(f"{request_id}-{j:02d}", sentence, f"scratch:{request_id}",
                                 {"genre": genre, "topics": topics}))
    return InputSet(rows, skipped)


def run_syncse(
    task: SynCSETask,
    backend: LLMBackend,
    options: RunOptions,
    *,
    rows: InputSet | None = None,
    anchor_task: AnchorTask | None = None,
    config: Mapping[str, Any] | None = None,
) -> RunSummary:
    """Partial (give `rows`) or scratch (give `anchor_task`; ``options.limit`` = anchors wanted) SynCSE."""
    if (rows is None) == (anchor_task is None):
        raise ValueError("give rows (partial) or anchor_task (scratch), not both")
    if anchor_task is None:
        return run_task(task, rows, backend, options, config=config)
    wanted = options.limit if options.limit is not None else 1000
    anchor_dir = options.output / "anchors"
    if options.overwrite and options.output.exists():
        import shutil

        shutil.rmtree(options.output)
    n_requests = max(1, math.ceil(wanted / anchor_task.per_request))
    anchors = InputSet([])
    for _ in range(10):  # ask for more anchor requests until enough anchors (or 10 rounds)
        stage1 = RunOptions(**{**vars(options), "output": anchor_dir, "limit": None, "overwrite": False,
                               "description": "scratch anchors"})
        request_rows = scratch_anchor_rows(n_requests)
        summary = run_task(anchor_task, request_rows, backend, stage1, config=config)
        anchors = collect_anchors(anchor_dir, anchor_task, options.seed, [r.id for r in request_rows])
        if len(anchors) >= wanted or not summary.complete:
            break
        per = max(1.0, len(anchors) / n_requests)
        n_requests += max(1, math.ceil((wanted - len(anchors)) / per * 1.2))
    stage2 = RunOptions(**{**vars(options), "limit": wanted, "overwrite": False})
    return two_step(summary, lambda: run_task(task, anchors, backend, stage2,
                                              config={**(config or {}), "scratch": anchor_task.config()}))
