"""Read JSON an LLM wrote: repair near-JSON, validate against a (small) JSON Schema, say why it failed.

`parse_json_answer(text, schema)` returns ``(value, repairs)`` where ``repairs`` lists what had to be
fixed (kept in the record's meta, so the rate of each repair is measurable), or raises
`JsonAnswerError` whose ``reason`` is one of ``no_json`` (nothing JSON-like in the answer),
``invalid_json`` (unrepairable) or ``schema`` (parsed, but not the asked shape); callers turn that into
a counted drop.

Repairs, tried in order and only when strict parsing fails: markdown code fences, prose around the
JSON (the first balanced ``{...}``/``[...]`` is taken), typographic quotes, ``//`` and ``#`` line
comments, trailing commas, Python literals (True/False/None), single-quoted strings, and an answer
cut off inside the JSON (open strings/brackets closed; reported as ``closed_truncated``).

The validator covers the JSON Schema subset the synthesis schemas use (type, properties, required,
additionalProperties, items, minItems, maxItems, minLength, enum), so no extra dependency is needed;
the same schema dict goes to servers as ``response_format`` and to the grammar-constrained decoder.
"""

from __future__ import annotations

import json
import re
from typing import Any

from synthembed.errors import SynthEmbedError

__all__ = ["JsonAnswerError", "extract_json_text", "parse_json_answer", "repair_json_text", "validate_schema"]


class JsonAnswerError(SynthEmbedError):
    """An answer that is not (repairably) JSON of the asked shape; ``reason`` is a short counter key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)(?:```|$)", re.DOTALL)
_SMART = {"\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2018": "'", "\u2019": "'"}
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}


def extract_json_text(text: str) -> tuple[str, list[str]]:
    """The JSON-looking part of an answer (fences and surrounding prose removed) and the repairs made."""
    repairs: list[str] = []
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
        repairs.append("code_fence")
    starts = [i for i in (text.find("{"), text.find("[")) if i != -1]
    if not starts:
        raise JsonAnswerError("no_json", "no '{' or '[' in the answer")
    start = min(starts)
    end = _balanced_end(text, start)
    core = text[start:end]
    if text[:start].strip() or text[end:].strip():
        repairs.append("surrounding_text")
    return core, repairs


def _balanced_end(text: str, start: int) -> int:
    """Index just past the bracket closing ``text[start]`` (string-aware); len(text) if it never closes."""
    depth, in_string, quote, escaped = 0, False, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                in_string = False
        elif ch in "\"'":
            if ch == '"' or _opens_single_quoted(text, i):
                in_string, quote = True, ch
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return len(text)


def _opens_single_quoted(text: str, i: int) -> bool:
    """A single quote opens a string only where a JSON value or key can start (not an apostrophe)."""
    before = text[:i].rstrip()
    return not before or before[-1] in "{[,:"


def _strip_comments(text: str) -> str:
    """Drop // and # comments outside strings."""
    out, in_string, escaped, i = [], False, False, 0
    while i < len(text):
        ch = text[i]
        if in_string:
            out.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
            out.append(ch)
        elif ch == "#" or text.startswith("//", i):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _single_to_double(text: str) -> str:
    """Rewrite 'single-quoted' keys/values as JSON strings (apostrophes inside words are left alone)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = i + 1
            while end < len(text) and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            i = end + 1
        elif ch == "'" and _opens_single_quoted(text, i):
            end = i + 1
            while end < len(text) and not (text[end] == "'" and text[end + 1 : end + 2].strip()[:1] in ("", ",", "}", "]", ":")):
                end += 1
            out.append(json.dumps(text[i + 1 : end].replace("\\'", "'")))
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _close_truncated(text: str) -> str:
    """Close an unterminated string and the open brackets of a cut-off answer."""
    stack, in_string, escaped = [], False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    text = text + ('"' if in_string else "")
    text = re.sub(r"[,:]\s*$", "", text.rstrip())
    return text + "".join(reversed(stack))


def repair_json_text(text: str) -> tuple[Any, list[str]]:
    """Parse `text` as JSON, applying the repairs of the module docstring as needed."""
    core, repairs = extract_json_text(text)
    try:
        return json.loads(core), repairs
    except json.JSONDecodeError:
        pass
    steps = [
        ("smart_quotes", lambda s: "".join(_SMART.get(c, c) for c in s)),
        ("comments", _strip_comments),
        ("trailing_comma", lambda s: _TRAILING_COMMA.sub(r"\1", s)),
        ("python_literals", lambda s: re.sub(r"\b(True|False|None)\b(?=(?:[^\"]*\"[^\"]*\")*[^\"]*$)",
                                              lambda m: _PY_LITERALS[m.group(1)], s)),
        ("single_quotes", _single_to_double),
        ("closed_truncated", _close_truncated),
    ]
    current = core
    last_error = ""
    for name, step in steps:
        fixed = step(current)
        if fixed != current:
            repairs.append(name)
            current = fixed
            if name == "closed_truncated":  # a cut string may leave a trailing comma behind
                current = _TRAILING_COMMA.sub(r"\1", current)
        try:
            return json.loads(current), repairs
        except json.JSONDecodeError as exc:
            last_error = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    raise JsonAnswerError("invalid_json", f"unrepairable JSON ({last_error}) after {repairs or 'no repairs'}")


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def validate_schema(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Errors of `value` against `schema` (the subset named in the module docstring), each with its path."""
    errors: list[str] = []
    expected = schema.get("type")
    if expected is not None:
        kinds = expected if isinstance(expected, list) else [expected]
        ok = any(isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                 for k in kinds)
        if not ok:
            return [f"{path}: expected {'/'.join(kinds)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not one of {schema['enum']}")
    if isinstance(value, str) and len(value.strip()) < schema.get("minLength", 0):
        errors.append(f"{path}: string shorter than {schema['minLength']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: missing required key {key!r}")
        if schema.get("additionalProperties") is False:
            errors.extend(f"{path}: unexpected key {key!r}" for key in value if key not in properties)
        for key, sub in properties.items():
            if key in value:
                errors.extend(validate_schema(value[key], sub, f"{path}.{key}"))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: {len(value)} items, at least {schema['minItems']} needed")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: {len(value)} items, at most {schema['maxItems']} allowed")
        if "items" in schema:
            for i, item in enumerate(value):
                errors.extend(validate_schema(item, schema["items"], f"{path}[{i}]"))
    return errors


def parse_json_answer(text: str, schema: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """Repair-parse `text` and validate it against `schema`; raise `JsonAnswerError` with a reason."""
    value, repairs = repair_json_text(text)
    if schema is not None:
        errors = validate_schema(value, schema)
        if errors:
            raise JsonAnswerError("schema", "; ".join(errors[:5]))
    return value, repairs
