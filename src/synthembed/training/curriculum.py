"""Coarse-to-fine curriculum over graded negatives (METHODS.md 3.2), as a sentence-transformers batch sampler.

Records carrying levelled negatives (``{"query"|"anchor", "positive", "negatives": [{"level": 1, "text"}, ...]}``)
become one *level-major* dataset with the columns ``anchor, positive, negative``: block ``k`` holds every
usable record paired with its negative of level ``levels[k]`` (row ``k * n + i`` = record ``i`` at that level).
`CurriculumBatchSampler` then decides, batch by batch, which block (level) to draw from:

- ``curriculum``: stages 4, 3, 2, 1 (easiest first, the paper's order);
- ``reverse``: stages 1, 2, 3, 4;
- ``random``: one stage; every row of every batch gets a level drawn at random (all levels mixed);
- ``single:N``: one stage, level N only.

An epoch has ``steps_per_epoch`` batches (default: one pass over the records, ``n // batch_size``), split
into stages by ``stage_fractions`` (equal by default), so every order spends the same compute. Within a
stage, batches walk a fresh seeded permutation of the records (cycling if a stage is longer than a pass),
so a batch never holds the same query twice and in-batch negatives stay valid. Stages run within each
epoch (``epochs_per_stage=False``, default) or stage ``k`` fills epoch ``k`` (``True``).

Plug it into the trainer at its documented hook: ``SentenceTransformerTrainingArguments(batch_sampler=
CurriculumSampler(order="curriculum"))`` (the trainer calls it with the dataset and batch size and calls
``set_epoch`` every epoch); the rest of the training loop is the library's. A batch never holds a query
twice (so several negatives per query never meet in one batch) nor, by default, any text twice.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthembed.errors import DataError, SynthEmbedError

__all__ = [
    "CurriculumBatchSampler",
    "CurriculumSampler",
    "CurriculumSpec",
    "GradedRows",
    "graded_rows",
    "level_major_dataset",
    "parse_order",
]

ALL_LEVELS = (1, 2, 3, 4)


def parse_order(order: str, levels: Sequence[int] = ALL_LEVELS) -> tuple[str, tuple[int, ...]]:
    """``curriculum|reverse|random|single:N`` -> (kind, stage levels); stage levels are empty for random."""
    easy_to_hard = tuple(sorted(levels, reverse=True))
    if order == "curriculum":
        return "staged", easy_to_hard
    if order == "reverse":
        return "staged", tuple(reversed(easy_to_hard))
    if order == "random":
        return "random", ()
    if order.startswith("single:"):
        try:
            level = int(order.split(":", 1)[1])
        except ValueError:
            level = -1
        if level not in levels:
            raise SynthEmbedError(f"curriculum order {order!r}: level must be one of {list(levels)}")
        return "staged", (level,)
    raise SynthEmbedError(f"unknown curriculum order {order!r}; use curriculum, reverse, random or single:N")


@dataclass
class CurriculumSpec:
    """How to schedule levels: the order, stage lengths, steps per epoch, seed."""

    order: str = "curriculum"
    stage_fractions: Sequence[float] | None = None  # one per stage; None = equal
    steps_per_epoch: int | None = None  # None = one pass over the records
    epochs_per_stage: bool = False
    seed: int = 0
    levels: Sequence[int] = ALL_LEVELS

    def stages(self) -> tuple[str, tuple[int, ...]]:
        return parse_order(self.order, self.levels)

    def stage_lengths(self, total_steps: int) -> list[int]:
        """Batches per stage for an epoch of `total_steps` (largest-remainder rounding; sums to total)."""
        kind, stage_levels = self.stages()
        n_stages = 1 if kind == "random" else len(stage_levels)
        fractions = list(self.stage_fractions) if self.stage_fractions is not None else [1.0] * n_stages
        if len(fractions) != n_stages or any(f < 0 for f in fractions) or sum(fractions) <= 0:
            raise SynthEmbedError(
                f"curriculum {self.order!r} has {n_stages} stage(s); stage_fractions {fractions} must give "
                f"{n_stages} non-negative numbers with a positive sum"
            )
        exact = [total_steps * f / sum(fractions) for f in fractions]
        lengths = [math.floor(x) for x in exact]
        for i in sorted(range(n_stages), key=lambda i: exact[i] - lengths[i], reverse=True)[: total_steps - sum(lengths)]:
            lengths[i] += 1
        return lengths

    def to_dict(self) -> dict[str, Any]:
        return {"order": self.order, "stage_fractions": None if self.stage_fractions is None else list(self.stage_fractions),
                "steps_per_epoch": self.steps_per_epoch, "epochs_per_stage": self.epochs_per_stage,
                "seed": self.seed, "levels": list(self.levels)}


@dataclass
class GradedRows:
    """Usable records as (query, positive, {level: negative}); ``skipped`` counts the rest by reason."""

    queries: list[str]
    positives: list[str]
    negatives: list[dict[int, str]]
    skipped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.queries)


def graded_rows(records: Iterable[Mapping[str, Any]], levels: Sequence[int] = ALL_LEVELS, source: str = "records") -> GradedRows:
    """Pick records that have a query/anchor, a positive and a negative at every level in `levels`.

    A record missing a level is skipped and counted (``missing_level``); a record of the wrong shape
    raises `DataError` naming `source` and the record number.
    """
    out = GradedRows([], [], [], {})
    for number, record in enumerate(records, start=1):
        query = record.get("query", record.get("anchor"))
        positive = record.get("positive")
        negatives = record.get("negatives")
        if not isinstance(query, str) or not isinstance(positive, str) or not isinstance(negatives, list):
            raise DataError(source, "a graded record needs string 'query' (or 'anchor'), string 'positive' and a "
                            "'negatives' list of {'level', 'text'}", number)
        by_level: dict[int, str] = {}
        for negative in negatives:
            if not isinstance(negative, Mapping) or not isinstance(negative.get("text"), str):
                raise DataError(source, f"negative {negative!r} is not {{'level': int, 'text': str}}", number)
            by_level[int(negative.get("level", 0))] = negative["text"]
        if any(level not in by_level for level in levels):
            out.skipped["missing_level"] = out.skipped.get("missing_level", 0) + 1
            continue
        out.queries.append(query)
        out.positives.append(positive)
        out.negatives.append({level: by_level[level] for level in levels})
    if not out.queries:
        raise DataError(source, f"no record carries negatives at all of the levels {list(levels)}")
    return out


def level_major_dataset(rows: GradedRows, levels: Sequence[int] = ALL_LEVELS):
    """A `datasets.Dataset` (anchor, positive, negative) whose block k pairs every record with level levels[k]."""
    from datasets import Dataset

    anchors, positives, negatives = [], [], []
    for level in levels:
        anchors.extend(rows.queries)
        positives.extend(rows.positives)
        negatives.extend(n[level] for n in rows.negatives)
    return Dataset.from_dict({"anchor": anchors, "positive": positives, "negative": negatives})


class CurriculumBatchSampler:
    """Batches of level-major dataset indices in curriculum order (see the module docstring).

    ``n_records`` is the number of records (the dataset has ``len(levels) * n_records`` rows). With
    ``row_keys`` (one set of text hashes per dataset row, see `row_text_keys`) a batch also never holds the
    same text twice (sentence-transformers' NO_DUPLICATES guarantee): a row whose text is already in the
    batch waits for the next batch instead.
    """

    def __init__(self, n_records: int, batch_size: int, spec: CurriculumSpec, drop_last: bool = True,
                 row_keys: Sequence[frozenset[int]] | None = None) -> None:
        if batch_size > n_records:
            raise SynthEmbedError(f"batch size {batch_size} exceeds the {n_records} graded records")
        self.n_records = n_records
        self.batch_size = batch_size
        self.spec = spec
        self.drop_last = drop_last
        self.kind, self.stage_levels = spec.stages()
        self.levels = tuple(spec.levels)
        if row_keys is not None and len(row_keys) != len(self.levels) * n_records:
            raise SynthEmbedError(f"row_keys has {len(row_keys)} entries for {len(self.levels) * n_records} rows")
        self.row_keys = row_keys
        self.epoch = 0
        per_pass = n_records // batch_size if drop_last else math.ceil(n_records / batch_size)
        self.steps_per_epoch = spec.steps_per_epoch or per_pass

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at each epoch start: reseeds, and selects the stage when epochs_per_stage."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def schedule(self) -> list[int | None]:
        """The level of each batch of the current epoch (None = mixed levels, the ``random`` order)."""
        if self.kind == "random":
            return [None] * self.steps_per_epoch
        if self.spec.epochs_per_stage:
            stage = min(self.epoch, len(self.stage_levels) - 1)
            return [self.stage_levels[stage]] * self.steps_per_epoch
        lengths = self.spec.stage_lengths(self.steps_per_epoch)
        return [level for level, length in zip(self.stage_levels, lengths) for _ in range(length)]

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(f"{self.spec.seed}:{self.epoch}")
        pool: deque[int] = deque()  # records still to visit in this stage's permutation, in order
        deferred: list[int] = []  # records skipped because a text of theirs was already in the batch
        previous_level: object = object()
        for level in self.schedule():
            if level != previous_level:  # each stage walks its own fresh permutation
                pool, deferred, previous_level = deque(), [], level
            yield self._next_batch(level, pool, deferred, rng)

    def _next_batch(self, level: int | None, pool: deque[int], deferred: list[int], rng: random.Random) -> list[int]:
        """One batch of row indices: deferred records first, then the pool (refilled with a fresh permutation
        of the records not already waiting when it runs out). `pool` and `deferred` are updated in place."""
        rows: list[int] = []
        taken: set[int] = set()
        keys: set[int] = set()
        waiting: list[int] = []

        def offer(record: int) -> None:
            block = rng.randrange(len(self.levels)) if level is None else self.levels.index(level)
            row = block * self.n_records + record
            row_keys = self.row_keys[row] if self.row_keys is not None else frozenset()
            if len(rows) < self.batch_size and keys.isdisjoint(row_keys):
                rows.append(row)
                taken.add(record)
                keys.update(row_keys)
            else:
                waiting.append(record)

        for record in deferred:
            offer(record)
        while len(rows) < self.batch_size:
            if not pool:
                busy = taken.union(waiting)
                fresh = [r for r in rng.sample(range(self.n_records), self.n_records) if r not in busy]
                if not fresh:
                    raise SynthEmbedError(
                        f"cannot fill a batch of {self.batch_size} records without repeating a text: only {len(rows)} "
                        "fit; lower the batch size or de-duplicate the data")
                pool.extend(fresh)
            offer(pool.popleft())
        deferred[:] = waiting
        return rows

    def batch_sampler_factory(self) -> SamplerFactory:
        """A callable for ``SentenceTransformerTrainingArguments(batch_sampler=...)`` returning this sampler."""
        return SamplerFactory(self)


def row_text_keys(dataset: Any, columns: Sequence[str] | None = None) -> list[frozenset[int]]:
    """Per dataset row, the hashes of its text cells (all string columns by default), for duplicate checks."""
    names = list(columns) if columns is not None else [
        name for name, feature in dataset.features.items() if getattr(feature, "dtype", None) in ("string", "large_string")]
    values = [dataset[name] for name in names]
    return [frozenset(hash(column[i]) for column in values) for i in range(len(dataset))]


class SamplerFactory:
    """Picklable batch-sampler factory (the trainer saves its arguments, this included, in checkpoints)."""

    def __init__(self, sampler: CurriculumBatchSampler) -> None:
        self.sampler = sampler

    def __call__(self, dataset: Any, batch_size: int, drop_last: bool = True, **_: Any) -> CurriculumBatchSampler:
        sampler = self.sampler
        if len(dataset) != len(sampler.levels) * sampler.n_records:
            raise SynthEmbedError(
                f"curriculum sampler built for {sampler.n_records} records x {len(sampler.levels)} levels, "
                f"but the training dataset has {len(dataset)} rows; use level_major_dataset()"
            )
        if batch_size != sampler.batch_size:
            raise SynthEmbedError(f"curriculum sampler built for batch size {sampler.batch_size}, trainer uses {batch_size}")
        return sampler

    def __repr__(self) -> str:
        return f"SamplerFactory(order={self.sampler.spec.order!r})"


class CurriculumSampler:
    """The curriculum as a sentence-transformers batch sampler: ``SentenceTransformerTrainingArguments(
    batch_sampler=CurriculumSampler(order="curriculum"))`` with a `level_major_dataset` as the train dataset.

    The trainer calls it with the dataset and its batch size (and seed); it returns a `CurriculumBatchSampler`
    whose ``set_epoch`` the trainer calls every epoch. Every batch holds distinct queries (each query is in
    the dataset once per level: several negatives per query, never two of them in one batch) and, with
    ``no_duplicates`` (default), no text twice, so in-batch negatives stay true negatives. The schedule is a
    function of (seed, epoch) only, so a run resumed from a checkpoint sees the batches it would have seen.

    Args:
        order: ``curriculum`` (levels 4 -> 1), ``reverse``, ``random`` (levels mixed) or ``single:N``.
        levels: the levels, in the dataset's block order (`level_major_dataset`'s ``levels``).
        stage_fractions, steps_per_epoch, epochs_per_stage: as `CurriculumSpec`.
        seed: the schedule's seed; None = the trainer's ``seed`` argument.
        no_duplicates: also keep repeated texts (e.g. two records sharing a positive) out of a batch.
    """

    def __init__(self, order: str = "curriculum", levels: Sequence[int] = ALL_LEVELS, *,
                 stage_fractions: Sequence[float] | None = None, steps_per_epoch: int | None = None,
                 epochs_per_stage: bool = False, seed: int | None = None, no_duplicates: bool = True) -> None:
        self.spec = CurriculumSpec(order=order, stage_fractions=stage_fractions, steps_per_epoch=steps_per_epoch,
                                   epochs_per_stage=epochs_per_stage, seed=0 if seed is None else seed,
                                   levels=tuple(levels))
        self.spec.stages()  # reject a bad order now, not at the first batch
        self.seed = seed
        self.no_duplicates = no_duplicates

    def __call__(self, dataset: Any, batch_size: int, drop_last: bool = True, valid_label_columns: Any = None,
                 generator: Any = None, seed: int = 0) -> CurriculumBatchSampler:
        n_levels = len(self.spec.levels)
        if len(dataset) % n_levels:
            raise SynthEmbedError(f"a curriculum dataset has one block of rows per level ({n_levels} levels), but "
                                  f"{len(dataset)} rows do not divide into {n_levels}; build it with level_major_dataset()")
        spec = dataclasses.replace(self.spec, seed=seed if self.seed is None else self.seed)
        keys = row_text_keys(dataset) if self.no_duplicates else None
        return CurriculumBatchSampler(len(dataset) // n_levels, batch_size, spec, drop_last=True, row_keys=keys)

    def __repr__(self) -> str:
        return f"CurriculumSampler(order={self.spec.order!r}, levels={list(self.spec.levels)})"


def read_graded_records(path: str | Path) -> list[dict[str, Any]]:
    """Graded records from a JSONL file, a synthesis output folder (its records.jsonl / shards), or an ``hf:``
    dataset reference whose rows have our graded-record fields (query, positive, negatives)."""
    from synthembed.io.tables import read_jsonl
    from synthembed.synthesis.records import record_files

    if isinstance(path, str) and path.startswith("hf:"):
        from synthembed.io.hf_datasets import load, parse_reference

        return [dict(row) for row in load(parse_reference(path))]
    path = Path(path)
    if path.is_dir():
        return [r for file in record_files(path) for _, r in read_jsonl(file)]
    if not path.is_file():
        raise DataError(path, "graded training data not found")
    return [r for _, r in read_jsonl(path)]


def train_graded(
    config: Any, spec: CurriculumSpec, *, dev: bool = True, model: Any = None, training_args: dict[str, Any] | None = None
) -> Path:
    """MGH training (METHODS.md 3.2): InfoNCE on (query, positive, negative of the stage's level) with in-batch
    negatives, levels scheduled by `spec`, on the shared `fit` entry point.

    `config` is a `synthembed.config.TrainConfig` (``data`` = graded JSONL or synthesis folder); `model`
    overrides the one `config` would build (e.g. a model with a non-default pooling option); `training_args`
    go to `fit` (e.g. ``{"save_strategy": "no"}`` for short runs that need no resumable checkpoints).
    Returns the output model folder; ``train_config.yaml`` there records the curriculum.
    """
    import dataclasses

    from transformers import set_seed

    from synthembed.losses.cached_infonce import build_infonce_loss
    from synthembed.training.syncse import build_evaluator, build_model
    from synthembed.training.trainer import FitSettings, fit

    config.validate()
    (data,) = config.data_sources
    records = read_graded_records(data)
    rows = graded_rows(records, spec.levels, source=str(data))
    if config.limit is not None:
        rows = GradedRows(rows.queries[: config.limit], rows.positives[: config.limit],
                          rows.negatives[: config.limit], rows.skipped)
    evaluator = build_evaluator(config) if dev else None
    set_seed(config.seed)
    if model is None:
        model = build_model(config)
    loss = build_infonce_loss(model, temperature=config.temperature, hard_negative_weight=config.hard_negative_weight,
                              mini_batch_size=config.mini_batch_size)
    dataset = level_major_dataset(rows, spec.levels)
    sampler = CurriculumBatchSampler(len(rows), config.batch_size, spec, drop_last=True, row_keys=row_text_keys(dataset))
    settings = FitSettings.from_config(config)
    record = {
        "config": config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config),
        "curriculum": {**spec.to_dict(), "stage_lengths": None if sampler.kind == "random" or spec.epochs_per_stage
                       else spec.stage_lengths(len(sampler)), "steps_per_epoch": len(sampler)},
        "graded_records": len(rows),
        "skipped_records": dict(rows.skipped),
    }
    return fit(
        model,
        dataset,
        loss,
        config.output,
        settings=settings,
        evaluator=evaluator,
        batch_sampler=sampler.batch_sampler_factory(),
        record=record,
        method=f"MGH: InfoNCE with graded hard negatives, order {spec.order} (METHODS.md 3.2)",
        data_description=f"{data} ({len(rows)} graded records)",
        training_args=training_args,
        steps_per_epoch_hint=len(sampler),  # the dataset holds levels x records rows; an epoch is len(sampler)
    )
