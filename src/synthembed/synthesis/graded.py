"""MGH data (METHODS.md 3.1): multi-granularity hard negatives, synthesized in two steps.

1. `BrainstormTask`: one request per row asks for a JSON list of task descriptions of one family
   (asymmetric ``short-long``, ``long-short``, ``short-short``, ``long-long``; ``symmetric``); families
   rotate over the rows.
2. `GradedTask`: one request per task description asks for JSON ``{"query", "positive", "negatives":
   [level 1 .. level 4]}`` (level 1 the most similar to the query, level 4 the least), shown one
   demonstration first. In *partial* mode the queries are given (any text input) and the request asks
   for the positive and the four graded negatives only.

Every answer goes through `synthembed.synthesis.json_repair` (near-JSON repaired, JSON Schema
validated); requests carry the schema as ``response_format`` so servers decode guided JSON (and the
transformers backend with xgrammar, see `synthembed.synthesis.guided_json`). Unusable rows are dropped
and counted by reason: ``no_json``, ``invalid_json``, ``schema``, ``placeholder`` (a text of fewer than
two words, e.g. a copied ``...``), ``refusal``, ``duplicate`` (repeated texts within a record),
``copied_example`` (a text copied from the demonstration, which small models do). Repairs applied are kept in the record's ``meta.repairs``.

Records: ``{"id", "task", "query", "positive", "negatives": [{"level": 1, "text": ...}, ...], "meta"}``.
`level_order_report` optionally checks with an embedding model how often the levels come out in the
intended order of similarity to the query.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthembed.errors import DataError
from synthembed.llm.base import ChatRequest, LLMBackend, SamplingParams
from synthembed.synthesis.filters import clean_output, meta_reason, normalize
from synthembed.synthesis.inputs import InputRow, InputSet
from synthembed.synthesis.json_repair import JsonAnswerError, parse_json_answer
from synthembed.synthesis.records import iter_records
from synthembed.synthesis.runner import Drop, RunOptions, RunSummary, run_task, two_step

__all__ = [
    "FAMILIES",
    "BrainstormTask",
    "GradedPrompts",
    "GradedTask",
    "collect_tasks",
    "graded_schema",
    "level_order_report",
    "load_prompts",
    "run_graded",
]

N_LEVELS = 4
_WORD = re.compile(r"[^\W_]{2,}")  # a word: two or more letters/digits
FAMILIES = ("short-long", "long-short", "short-short", "long-long", "symmetric")
_STRING = {"type": "string", "minLength": 1}
BRAINSTORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"tasks": {"type": "array", "items": _STRING, "minItems": 1, "maxItems": 40}},
    "required": ["tasks"],
    "additionalProperties": False,
}


def graded_schema(partial: bool = False) -> dict[str, Any]:
    """JSON Schema of one graded answer (without ``query`` in partial mode)."""
    properties: dict[str, Any] = {
        "query": _STRING,
        "positive": _STRING,
        "negatives": {"type": "array", "items": _STRING, "minItems": N_LEVELS, "maxItems": N_LEVELS},
    }
    if partial:
        del properties["query"]
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _resource(name: str) -> Path:
    return Path(str(importlib.resources.files("synthembed.resources") / "graded" / name))


@dataclass(frozen=True)
class GradedPrompts:
    """The prompt templates, family descriptions and the demonstration (package data or user files)."""

    brainstorm: str
    graded: str
    partial: str
    families: Mapping[str, Mapping[str, str]]
    example: Mapping[str, Any] | None
    partial_example: Mapping[str, Any] | None = None

    def fingerprint(self) -> dict[str, Any]:
        import hashlib

        blob = json.dumps([self.brainstorm, self.graded, self.partial, self.families, self.example,
                           self.partial_example], sort_keys=True)
        return {"sha256": hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16], "families": sorted(self.families)}


def load_prompts(
    brainstorm: Path | None = None,
    graded: Path | None = None,
    partial: Path | None = None,
    families: Path | None = None,
    example: Path | None = None,
    use_example: bool = True,
    partial_example: Path | None = None,
) -> GradedPrompts:
    """Read the templates (each argument overrides one packaged file); check their placeholders."""
    paths = {
        "brainstorm": brainstorm or _resource("brainstorm.txt"),
        "graded": graded or _resource("graded.txt"),
        "partial": partial or _resource("graded_partial.txt"),
        "families": families or _resource("families.json"),
        "example": example or _resource("example.json"),
        "partial_example": partial_example or _resource("example_partial.json"),
    }
    texts = {}
    for key, path in paths.items():
        try:
            texts[key] = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(path, f"cannot read the {key} prompt file: {exc}") from None
    for key, placeholders in {"brainstorm": ("{n}", "{brainstorm}"), "graded": ("{task}", "{query}", "{document}"),
                              "partial": ("{query}",)}.items():
        for placeholder in placeholders:
            if placeholder not in texts[key]:
                raise DataError(paths[key], f"the {key} template needs the placeholder {placeholder}")
    loaded = {}
    for key in ("families", "example", "partial_example"):
        try:
            loaded[key] = json.loads(texts[key])
        except json.JSONDecodeError as exc:
            raise DataError(paths[key], f"invalid JSON: {exc.msg}", exc.lineno) from None
    for name, family in loaded["families"].items():
        missing = {"kind", "query", "document", "brainstorm"} - set(family)
        if missing:
            raise DataError(paths["families"], f"family {name!r} lacks {sorted(missing)}")
    return GradedPrompts(texts["brainstorm"], texts["graded"], texts["partial"], loaded["families"],
                         loaded["example"] if use_example else None,
                         loaded["partial_example"] if use_example else None)


def _sampling(temperature: float, top_p: float, max_new_tokens: int, rng: random.Random, schema: dict) -> SamplingParams:
    from synthembed.synthesis.guided_json import response_format_for

    return SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                          seed=rng.getrandbits(31), response_format=response_format_for(schema))


def _json_or_drop(text: str, schema: dict[str, Any]) -> tuple[Any, list[str]]:
    try:
        return parse_json_answer(text, schema)
    except JsonAnswerError as exc:
        raise Drop(exc.reason, exc.detail) from None


@dataclass
class BrainstormTask:
    """Step 1 as an `LLMTask`: row ``B<i>`` asks for `per_request` tasks of family ``families[i % len]``."""

    prompts: GradedPrompts
    per_request: int = 10
    families: Sequence[str] = FAMILIES
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 600
    name: str = "graded-tasks"
    slots: tuple[str, ...] = ("tasks",)

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in self.prompts.families]
        if unknown or not self.families:
            raise ValueError(f"unknown task families {unknown}; known: {sorted(self.prompts.families)}")

    def config(self) -> dict[str, Any]:
        return {"per_request": self.per_request, "families": list(self.families), "temperature": self.temperature,
                "top_p": self.top_p, "max_new_tokens": self.max_new_tokens, "prompts": self.prompts.fingerprint()}

    def family_of(self, row: InputRow) -> str:
        return self.families[int(row.fields.get("index", 0)) % len(self.families)]

    def build_request(self, row: InputRow, rng: random.Random, slot: str) -> ChatRequest:
        family = self.prompts.families[self.family_of(row)]
        prompt = self.prompts.brainstorm.format(n=self.per_request, brainstorm=family["brainstorm"])
        params = _sampling(self.temperature, self.top_p, self.max_new_tokens, rng, BRAINSTORM_SCHEMA)
        return ChatRequest(f"{row.id}/{slot}", ({"role": "user", "content": prompt},), params)

    def parse(self, text: str, row: InputRow, slot: str) -> dict[str, Any]:
        value, repairs = _json_or_drop(text, BRAINSTORM_SCHEMA)
        tasks = [clean_output(t) for t in value["tasks"]]
        tasks = [t for t in tasks if len(_WORD.findall(t)) >= 4]
        if not tasks:
            raise Drop("schema", "no task description of at least 4 words")
        return {"tasks": tasks, "repairs": repairs}

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]:
        got = parsed["tasks"]
        return {"id": row.id, "family": self.family_of(row), "tasks": got["tasks"], "meta": {"repairs": got["repairs"]}}


def brainstorm_rows(n_rows: int) -> list[InputRow]:
    return [InputRow(f"B{i:06d}", f"brainstorm request {i}", f"brainstorm:{i}", {"index": i}) for i in range(n_rows)]


def collect_tasks(task_dir: Path, order: Sequence[str]) -> InputSet:
    """Step-2 rows from step-1 records, in request order; repeated task descriptions skipped (counted)."""
    by_id = {r["id"]: r for r in iter_records(task_dir)}
    rows, seen, skipped = [], set(), Counter()
    for request_id in order:
        record = by_id.get(request_id)
        if record is None:
            continue
        for j, description in enumerate(record["tasks"]):
            key = normalize(description)
            if key in seen:
                skipped["duplicate_task"] += 1
                continue
            seen.add(key)
            rows.append(InputRow(f"{request_id}-{j:02d}", description, f"brainstorm:{request_id}",
                                 {"family": record["family"]}))
    return InputSet(rows, skipped)


@dataclass
class GradedTask:
    """Step 2 as an `LLMTask` (see the module docstring); ``partial=True`` takes the row text as the query."""

    prompts: GradedPrompts
    partial: bool = False
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 700
    default_family: str = "symmetric"
    name: str = "graded"
    slots: tuple[str, ...] = ("graded",)

    def config(self) -> dict[str, Any]:
        return {"partial": self.partial, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "prompts": self.prompts.fingerprint()}

    def schema(self) -> dict[str, Any]:
        return graded_schema(self.partial)

    def _example_texts(self) -> set[str]:
        """Normalised texts of the demonstration shown with each request (copying one is a drop)."""
        shown = self.prompts.partial_example if self.partial else self.prompts.example
        if shown is None:
            return set()
        answer = shown["answer"]
        return {normalize(t) for t in [answer.get("query", ""), answer["positive"], *answer["negatives"]] if t}

    def _family(self, row: InputRow) -> tuple[str, Mapping[str, str]]:
        name = row.fields.get("family", self.default_family)
        return name, self.prompts.families.get(name, self.prompts.families[self.default_family])

    def _user(self, task: str, family: Mapping[str, str]) -> str:
        return self.prompts.graded.format(task=task, query=family["query"], document=family["document"])

    def build_request(self, row: InputRow, rng: random.Random, slot: str) -> ChatRequest:
        messages: list[dict[str, str]] = []
        if self.partial:
            shown = self.prompts.partial_example
            if shown is not None:
                messages.append({"role": "user", "content": self.prompts.partial.format(query=shown["query"])})
                messages.append({"role": "assistant", "content": json.dumps(shown["answer"], ensure_ascii=False)})
            messages.append({"role": "user", "content": self.prompts.partial.format(query=row.text)})
        else:
            example = self.prompts.example
            if example is not None:
                shown = self.prompts.families.get(example.get("family", ""), self.prompts.families[self.default_family])
                messages.append({"role": "user", "content": self._user(example["task"], shown)})
                messages.append({"role": "assistant", "content": json.dumps(example["answer"], ensure_ascii=False)})
            messages.append({"role": "user", "content": self._user(row.text, self._family(row)[1])})
        params = _sampling(self.temperature, self.top_p, self.max_new_tokens, rng, self.schema())
        return ChatRequest(f"{row.id}/{slot}", tuple(messages), params)

    def parse(self, text: str, row: InputRow, slot: str) -> dict[str, Any]:
        value, repairs = _json_or_drop(text, self.schema())
        query = row.text if self.partial else clean_output(value["query"])
        positive = clean_output(value["positive"])
        negatives = [clean_output(n) for n in value["negatives"]]
        texts = [query, positive, *negatives]
        if any(not t for t in texts):
            raise Drop("schema", "an empty text after cleaning")
        reasons = [meta_reason(t) for t in texts[1:]]
        if any(reasons):
            raise Drop(next(r for r in reasons if r), "a text is a refusal or meta-text")
        if len({normalize(t) for t in texts}) < len(texts):
            raise Drop("duplicate", "query, positive and negatives must all differ")
        if any(normalize(t) in self._example_texts() for t in texts[1:]):
            raise Drop("copied_example", "a text repeats the demonstration")
        if any(len(_WORD.findall(t)) < 2 for t in texts):
            raise Drop("placeholder", "a text has fewer than two words (e.g. '...')")
        return {"query": query, "positive": positive, "negatives": negatives, "repairs": repairs}

    def assemble(self, row: InputRow, parsed: Mapping[str, Any]) -> dict[str, Any]:
        got = parsed["graded"]
        family, _ = self._family(row)
        return {
            "id": row.id,
            "task": "" if self.partial else row.text,
            "query": got["query"],
            "positive": got["positive"],
            "negatives": [{"level": i + 1, "text": t} for i, t in enumerate(got["negatives"])],
            "meta": {"mode": "partial" if self.partial else "full", "family": None if self.partial else family,
                     "repairs": got["repairs"]},
        }


def run_graded(
    task: GradedTask,
    backend: LLMBackend,
    options: RunOptions,
    *,
    rows: InputSet | None = None,
    brainstorm: BrainstormTask | None = None,
    config: Mapping[str, Any] | None = None,
) -> RunSummary:
    """Partial (give `rows`) or full two-step synthesis (give `brainstorm`; ``options.limit`` = records wanted)."""
    if (rows is None) == (brainstorm is None):
        raise ValueError("give rows (partial) or a brainstorm task (full), not both")
    if brainstorm is None:
        return run_task(task, rows, backend, options, config=config)
    if options.overwrite and options.output.exists():
        import shutil

        shutil.rmtree(options.output)
    wanted = options.limit if options.limit is not None else 1000
    task_dir = options.output / "tasks"
    n_requests = max(1, math.ceil(wanted / brainstorm.per_request))
    tasks = InputSet([])
    for _ in range(10):  # brainstorm more until there are enough distinct tasks (or 10 rounds)
        stage1 = RunOptions(**{**vars(options), "output": task_dir, "limit": None, "overwrite": False,
                               "description": "brainstorm tasks"})
        request_rows = brainstorm_rows(n_requests)
        summary = run_task(brainstorm, request_rows, backend, stage1, config=config)
        tasks = collect_tasks(task_dir, [r.id for r in request_rows])
        if len(tasks) >= wanted or not summary.complete:
            break
        per = max(1.0, len(tasks) / n_requests)
        n_requests += max(1, math.ceil((wanted - len(tasks)) / per * 1.2))
    stage2 = RunOptions(**{**vars(options), "limit": wanted, "overwrite": False})
    return two_step(summary, lambda: run_task(task, tasks, backend, stage2,
                                              config={**(config or {}), "brainstorm": brainstorm.config()}))


def level_order_report(records: Iterable[Mapping[str, Any]], model: Any, batch_size: int = 32) -> dict[str, Any]:
    """How often the negatives' similarity to the query falls with the level, by an embedding model.

    Returns ``records``, ``fully_ordered`` (share with sim(q, level 1) > ... > sim(q, level 4)),
    ``pairwise_ordered`` (share of level pairs in the intended order), ``positive_first`` (share with the
    positive above every negative) and ``mean_similarity`` per level and for the positive.
    """
    import numpy as np

    records = [r for r in records if len(r.get("negatives", [])) >= 2]
    if not records:
        return {"records": 0}
    texts: list[str] = []
    for record in records:
        negatives = sorted(record["negatives"], key=lambda n: n["level"])
        texts.extend([record["query"], record["positive"], *(n["text"] for n in negatives)])
    embeddings = np.asarray(model.encode(texts, batch_size=batch_size, normalize_embeddings=True))  # (texts, dim)
    full = pairs = pairs_ok = positive_first = 0
    sums: dict[str, list[float]] = {}
    start = 0
    for record in records:
        k = len(record["negatives"])
        block = embeddings[start : start + 2 + k]  # (2 + k, dim)
        start += 2 + k
        sims = block[1:] @ block[0]  # (1 + k,) positive then levels 1..k
        negative_sims = sims[1:]
        levels = [n["level"] for n in sorted(record["negatives"], key=lambda n: n["level"])]
        full += int(all(negative_sims[i] > negative_sims[i + 1] for i in range(k - 1)))
        for i in range(k):
            for j in range(i + 1, k):
                pairs += 1
                pairs_ok += int(negative_sims[i] > negative_sims[j])
        positive_first += int(sims[0] > negative_sims.max())
        sums.setdefault("positive", []).append(float(sims[0]))
        for level, sim in zip(levels, negative_sims):
            sums.setdefault(f"level_{level}", []).append(float(sim))
    n = len(records)
    return {
        "records": n,
        "fully_ordered": full / n,
        "pairwise_ordered": pairs_ok / max(1, pairs),
        "positive_first": positive_first / n,
        "mean_similarity": {key: float(np.mean(values)) for key, values in sums.items()},
    }
