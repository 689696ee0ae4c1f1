"""Cleaning rules for LLM-written sentences (METHODS.md 1.3), as pure functions.

`clean_output` strips formatting artifacts that carry no content (surrounding quotes or backticks,
a leading ``Result:`` / ``Rewritten sentence:`` label), then `check_output` raises `Drop` for:
``empty``, ``refusal`` ("I cannot ..."), ``meta_text`` ("Sure, here is ...", explanations),
``multi_sentence`` (more than one line, or more sentences than the anchor has), ``copy`` (identical
to the anchor after normalising case, punctuation and spaces) and ``length`` (far longer or shorter
than the anchor). The thresholds are fields of `FilterConfig`, recorded in every run's manifest.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

from synthembed.synthesis.runner import Drop

__all__ = ["FilterConfig", "check_output", "clean_output", "count_sentences", "meta_reason", "normalize"]

_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:result|answer|output|rewritten(?: sentence)?|paraphrase[ds]?|contradiction|"
    r"new sentence|sentence|hard negative|negative|positive|rewrite)(?:\*\*)?\s*[:\-]\s*",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"\b(?:i\s*(?:cannot|can't|can not|won't|am unable|am not able|'m unable|'m not able|apologi[sz]e)|"
    r"as an ai|as a language model|i'm sorry|i am sorry|sorry, but)\b",
    re.IGNORECASE,
)
_META = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|absolutely|here(?:'s| is| are)|i(?:'d| would) (?:suggest|rewrite)|"
    r"the (?:rewritten|original|new|revised|paraphrased|modified) (?:sentence|version|text))\b"
    r"|\b(?:this (?:sentence|rewrite|version|revision|paraphrase) (?:is|keeps|maintains|preserves|changes|conveys|uses))"
    r"|\b(?:rewritten sentence|original sentence|in this (?:rewrite|sentence|version))\b"
    r"|\bthe (?:original |given |above |following )?sentence (?:is|does|doesn't|did|has|contains|mentions|refers|says|states)\b"
    r"|\b(?:let me know|hope this helps|feel free)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<![A-Z])(?<!\b[A-Z][a-z])(?<!\b(?:Mr|Ms|Dr|St|vs|Jr|Sr|No))[.!?]+[\"')\]]*\s+(?=[A-Z\"'(\[])")
_QUOTES = "\"'`“”‘’«»"


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of the cleaning rules (word counts are whitespace tokens)."""

    min_length_ratio: float = 0.4  # output words / anchor words below this: "length"
    max_length_ratio: float = 2.5  # ... above this: "length"
    min_words: int = 2
    length_slack_words: int = 4  # short anchors may differ by this many words whatever the ratio
    extra_sentences: int = 0  # sentences allowed beyond the anchor's own count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize(text: str) -> str:
    """Lower case, no punctuation, single spaces: for comparing texts up to surface form."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return " ".join(text.split())


def count_sentences(text: str) -> int:
    """Rough sentence count: terminal punctuation followed by space and a capital (abbreviations spared)."""
    return 1 + len(_SENTENCE_END.findall(text.strip()))


def clean_output(text: str) -> str:
    """Strip formatting around an answer: whitespace, a leading label, surrounding quotes/backticks."""
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
    previous = None
    while previous != text:
        previous = text
        text = _LABEL.sub("", text, count=1).strip()
        if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES + ".":
            inner = text[1:-1] if text[-1] in _QUOTES else text[1:-2] + "."
            if not any(q in inner for q in "\"“”"):
                text = inner.strip()
        text = text.strip("`*").strip()
    return text


def meta_reason(text: str) -> str | None:
    """``refusal`` or ``meta_text`` when `text` (cleaned) is one, else None."""
    lines = [line for line in text.splitlines() if line.strip()]
    if _REFUSAL.search(text):
        return "refusal"
    if any(_META.search(line) for line in lines):
        return "meta_text"
    return None


def check_output(text: str, anchor: str, config: FilterConfig = FilterConfig()) -> str:
    """Return the cleaned output, or raise `Drop` with the first rule it breaks (see module doc)."""
    text = clean_output(text)
    if not text:
        raise Drop("empty")
    reason = meta_reason(text)
    if reason is not None:
        raise Drop(reason, text[:200])
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        raise Drop("multi_sentence", f"{len(lines)} lines")
    if count_sentences(text) > count_sentences(anchor) + config.extra_sentences:
        raise Drop("multi_sentence", f"{count_sentences(text)} sentences for an anchor of {count_sentences(anchor)}")
    if normalize(text) == normalize(anchor):
        raise Drop("copy")
    words, anchor_words = len(text.split()), max(1, len(anchor.split()))
    ratio = words / anchor_words
    slack = abs(words - anchor_words) <= config.length_slack_words
    if words < config.min_words or (not slack and not config.min_length_ratio <= ratio <= config.max_length_ratio):
        raise Drop("length", f"{words} words for an anchor of {anchor_words}")
    return text
