"""``hf:`` data references: the papers' published datasets (or any other) through `datasets.load_dataset`.

Reference syntax (usable wherever ``--data`` is)::

    hf:OWNER/NAME[@REVISION][?split=train&streaming=true&config=NAME]
    hf:/path/to/a/local/folder[?...]        a folder of parquet/CSV/JSON files, loaded the same way

Everything after ``hf:`` and before ``@``/``?`` is the ``path`` given to ``datasets.load_dataset(path,
name=config, revision=REVISION, split=split, streaming=streaming)``; a hub id needs the network (and the
Hugging Face cache) the first time, a local folder never does. Streaming reads rows lazily, so with
``--limit N`` only the first N usable rows are read from a large dataset.

Column mapping: the published datasets are declared in `KNOWN` (SynCSE's ``sent0 / sent1 / hard_neg``,
the ranked-sentence chains' ``list_sent``). A dataset not declared there that has exactly one declared
schema's columns (e.g. a local copy of the files) gets that schema; any other needs ``--columns``
(``anchor=COL,positive=COL[,negative=COL]`` for ``train``, ``sentences=COL`` for ``refine``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from synthembed.errors import DataError, SynthEmbedError

__all__ = ["KNOWN", "HubReference", "HubSchema", "chain_lists", "is_hf_reference", "parse_columns",
           "parse_reference", "resolve_columns", "training_records"]

PREFIX = "hf:"


@dataclass(frozen=True)
class HubSchema:
    """How a published dataset's columns map onto ours (``anchor/positive/negative`` or ``sentences``)."""

    kind: str  # "triplets" (train) | "chains" (refine)
    columns: Mapping[str, str]  # our name -> the dataset's column
    note: str = ""


SYNCSE = HubSchema("triplets", {"anchor": "sent0", "positive": "sent1", "negative": "hard_neg"},
                   "SynCSE (Zhang et al., 2023): premise, entailment, contradiction written by GPT-3.5-Turbo; "
                   "the partial set reuses SNLI/MNLI premises (their licences apply to that text)")
CHAINS = HubSchema("chains", {"sentences": "list_sent"},
                   "ranked sentence chains (He et al., 2025): one column holding each chain as a list, or as the "
                   "Python list literal their CSV stores (parsed with ast.literal_eval, as their train.py does)")

#: Published datasets by hub id (the SynCSE sets moved from sjtu-lit to hkust-nlp; the hub redirects).
KNOWN: dict[str, HubSchema] = {
    "sjtu-lit/SynCSE-partial-NLI": SYNCSE,
    "sjtu-lit/SynCSE-scratch-NLI": SYNCSE,
    "hkust-nlp/SynCSE-partial-NLI": SYNCSE,
    "hkust-nlp/SynCSE-scratch-NLI": SYNCSE,
    "leoner24/RankingSentences-NLI-LLaMA3-8B-32": CHAINS,
}

TRAIN_KEYS = ("anchor", "positive", "negative")
CHAIN_KEYS = ("sentences",)


def is_hf_reference(data: object) -> bool:
    return isinstance(data, str) and data.startswith(PREFIX)


@dataclass(frozen=True)
class HubReference:
    """A parsed ``hf:`` reference: what `datasets.load_dataset` is called with."""

    path: str
    revision: str | None = None
    split: str = "train"
    streaming: bool = False
    config: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        text = PREFIX + self.path + (f"@{self.revision}" if self.revision else "")
        return text + f"[{self.split}]"


def parse_reference(reference: str, default_split: str = "train") -> HubReference:
    """``hf:ID[@REV][?split=..&streaming=..&config=..]`` -> `HubReference`; `SynthEmbedError` if malformed."""
    if not is_hf_reference(reference):
        raise SynthEmbedError(f"{reference!r} is not an hf: reference (hf:OWNER/NAME[@REVISION][?split=...])")
    body, _, query = reference[len(PREFIX):].partition("?")
    path, revision = body, None
    if "@" in body and not Path(body).exists():
        path, _, revision = body.rpartition("@")
    if not path or revision == "":
        raise SynthEmbedError(f"{reference}: give a dataset id or folder after hf: (and a revision after @)")
    options = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(options) - {"split", "streaming", "config"})
    if unknown:
        raise SynthEmbedError(f"{reference}: unknown option(s) {unknown}; use split, streaming, config")
    streaming = options.get("streaming", "false").lower()
    if streaming not in ("true", "false", "1", "0", "yes", "no"):
        raise SynthEmbedError(f"{reference}: streaming must be true or false, got {streaming!r}")
    return HubReference(path=path, revision=revision, split=options.get("split") or default_split,
                        streaming=streaming in ("true", "1", "yes"), config=options.get("config") or None)


def parse_columns(text: str, keys: tuple[str, ...] = TRAIN_KEYS) -> dict[str, str | None]:
    """``anchor=sent0,positive=sent1,negative=hard_neg`` -> mapping (``negative=none``: pairs only);
    `SynthEmbedError` naming the bad part."""
    mapping: dict[str, str | None] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or ours not in keys or not theirs:
            raise SynthEmbedError(f"--columns {text!r}: {part!r} is not OURS=THEIRS with OURS one of {list(keys)}")
        mapping[ours] = None if ours == "negative" and theirs.lower() in ("none", "null") else theirs
    if not mapping:
        raise SynthEmbedError(f"--columns {text!r}: give at least one OURS=THEIRS pair")
    return mapping


def load(reference: HubReference) -> Any:
    """`datasets.load_dataset` on the reference: a `Dataset`, or an `IterableDataset` when streaming."""
    import datasets

    kwargs: dict[str, Any] = {"split": reference.split, "streaming": reference.streaming}
    if reference.revision:
        kwargs["revision"] = reference.revision
    if reference.config:
        kwargs["name"] = reference.config
    try:
        return datasets.load_dataset(reference.path, **kwargs)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        hint = "" if Path(reference.path).exists() else " (a hub dataset needs the network the first time)"
        raise DataError(str(reference), f"cannot load with datasets.load_dataset{hint}: {exc}") from None


def column_names(dataset: Any) -> list[str]:
    names = getattr(dataset, "column_names", None)
    if names is None:  # a streaming dataset whose features are unknown until read
        first = next(iter(dataset), None)
        names = list(first) if first is not None else []
    return list(names)


def resolve_columns(reference: HubReference, present: list[str], kind: str,
                    override: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """Our column name -> the dataset's: the declared schema (or the one schema whose columns all appear),
    updated by `override` (a None value drops that column, e.g. ``negative`` to train on pairs)."""
    override = dict(override or {})
    schema = KNOWN.get(reference.path)
    if schema is None:
        matches = {id(s): s for s in KNOWN.values() if set(s.columns.values()) <= set(present)}
        schema = next(iter(matches.values())) if len(matches) == 1 else None
    if schema is not None and schema.kind != kind and not override:
        use = "synthembed refine" if schema.kind == "chains" else "synthembed train"
        raise DataError(str(reference), f"this dataset holds {schema.kind}; use it with {use}")
    mapping: dict[str, str] = dict(schema.columns) if schema is not None and schema.kind == kind else {}
    for ours, theirs in override.items():
        if theirs is None:
            mapping.pop(ours, None)
        else:
            mapping[ours] = theirs
    required = ("anchor", "positive") if kind == "triplets" else ("sentences",)
    if any(key not in mapping for key in required):
        example = "anchor=COL,positive=COL[,negative=COL]" if kind == "triplets" else "sentences=COL"
        raise DataError(str(reference), f"no column mapping known for this dataset (columns {present}); "
                        f"give --columns {example}")
    missing = [theirs for theirs in mapping.values() if theirs not in present]
    if missing:
        raise DataError(str(reference), f"missing column(s) {missing}; the dataset has {present}")
    return mapping


def training_records(reference: str, override: Mapping[str, str | None] | None = None, *,
                     default_split: str = "train", limit: int | None = None
                     ) -> tuple[list[tuple[int, dict[str, Any]]], bool, str]:
    """(row number, row renamed to ``anchor/positive[/negative]``) pairs, whether there is a negative, the source.

    Streaming with a `limit` stops reading once `limit` rows have a non-empty value in every mapped column.
    """
    ref = parse_reference(reference, default_split)
    dataset = load(ref)
    mapping = resolve_columns(ref, column_names(dataset), "triplets", override)
    records: list[tuple[int, dict[str, Any]]] = []
    complete = 0
    for number, row in enumerate(dataset, start=1):
        renamed = {ours: row.get(theirs) for ours, theirs in mapping.items()}
        records.append((number, renamed))
        complete += all(value not in (None, "", []) for value in renamed.values())
        if ref.streaming and limit is not None and complete >= limit:
            break
    return records, "negative" in mapping, str(ref)


def _as_list(value: Any) -> list[str] | None:
    """A chain cell as a list of strings: a list, or the Python list literal the published CSV holds."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def chain_lists(reference: str, override: Mapping[str, str | None] | None = None
                ) -> Iterator[tuple[int, list[str] | None]]:
    """(row number, chain or None when the cell is not a list of strings) for a chains dataset, read lazily."""
    ref = parse_reference(reference)
    dataset = load(ref)
    column = resolve_columns(ref, column_names(dataset), "chains", override)["sentences"]
    for number, row in enumerate(dataset, start=1):
        yield number, _as_list(row.get(column))
