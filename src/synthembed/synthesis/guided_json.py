"""Grammar-constrained JSON decoding for local transformers models, via xgrammar (optional dependency).

`JsonSchemaLogitsProcessor` is a transformers ``LogitsProcessor``: for every row that has a schema it
masks the tokens that would leave the JSON Schema's language, so even a 135M model writes parseable
records of the asked shape; rows without a schema are left untouched. Put it *before* any sampler in
the ``LogitsProcessorList`` (the sampler then draws among allowed tokens only). One instance serves one
``generate`` call (it tracks each row's grammar state from the tokens generated so far).

Server backends get the same schema as ``response_format`` (see `response_format_for`), which
OpenAI-compatible servers (vLLM, SGLang, llama.cpp, OpenAI) turn into guided decoding themselves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from synthembed.errors import SynthEmbedError

__all__ = ["JsonSchemaLogitsProcessor", "response_format_for", "schema_from_response_format", "xgrammar_available"]


def xgrammar_available() -> bool:
    try:
        import xgrammar  # noqa: F401
    except ImportError:
        return False
    return True


def response_format_for(schema: dict[str, Any], name: str = "record") -> dict[str, Any]:
    """The OpenAI ``response_format`` asking for JSON that follows `schema`."""
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def schema_from_response_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """The JSON Schema inside a ``response_format`` (``{}`` = any JSON object for ``json_object``), or None."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        return dict(response_format.get("json_schema", {}).get("schema") or {})
    if kind == "json_object":
        return {"type": "object"}
    return None


class _Compiler:
    """One xgrammar compiler per tokenizer; compiled grammars cached by schema text."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.vocab_size = vocab_size
        self.compiler = xgr.GrammarCompiler(info)
        self.compiled = lru_cache(maxsize=64)(self._compile)

    def _compile(self, schema_text: str) -> Any:
        return self.compiler.compile_json_schema(schema_text, any_whitespace=False)


_COMPILERS: dict[tuple[int, int], _Compiler] = {}


def _compiler_for(tokenizer: Any, vocab_size: int) -> _Compiler:
    key = (id(tokenizer), vocab_size)
    if key not in _COMPILERS:
        _COMPILERS[key] = _Compiler(tokenizer, vocab_size)
    return _COMPILERS[key]


class JsonSchemaLogitsProcessor:
    """Mask each row's logits to its JSON Schema's grammar (rows whose schema is None are free)."""

    def __init__(self, tokenizer: Any, vocab_size: int, schemas: Sequence[dict[str, Any] | None]) -> None:
        try:
            import xgrammar as xgr
        except ImportError:
            raise SynthEmbedError("guided JSON on the transformers backend needs xgrammar: pip install xgrammar") from None
        self._xgr = xgr
        compiler = _compiler_for(tokenizer, vocab_size)
        self.vocab_size = vocab_size
        self.matchers = [
            None if schema is None else xgr.GrammarMatcher(compiler.compiled(json.dumps(schema, sort_keys=True)))
            for schema in schemas
        ]
        self.bitmask = xgr.allocate_token_bitmask(len(schemas), vocab_size)
        self.started = False

    def __call__(self, input_ids, scores):  # input_ids (batch, seq); scores (batch, vocab)
        if input_ids.shape[0] != len(self.matchers):
            raise SynthEmbedError(f"guided JSON set up for {len(self.matchers)} rows, got {input_ids.shape[0]}")
        if self.started:
            for row, matcher in enumerate(self.matchers):
                if matcher is not None and not matcher.is_terminated():
                    matcher.accept_token(int(input_ids[row, -1]))
        self.started = True
        rows = [row for row, m in enumerate(self.matchers) if m is not None and not m.is_terminated()]
        if not rows:
            return scores
        for row in rows:
            self.matchers[row].fill_next_token_bitmask(self.bitmask, row)
        masked = scores.float().cpu()  # (batch, vocab)
        width = min(masked.shape[1], self.vocab_size)
        constrained = masked[rows][:, :width].contiguous()  # (rows, vocab)
        self._xgr.apply_token_bitmask_inplace(constrained, self.bitmask[rows].contiguous())
        masked[rows, :width] = constrained
        if masked.shape[1] > width:
            masked[rows, width:] = float("-inf")
        return masked.to(device=scores.device, dtype=scores.dtype)

    def finished(self, row: int) -> bool:
        """True when row `row` completed its JSON (or has no schema)."""
        matcher = self.matchers[row]
        return matcher is None or matcher.is_terminated()


def json_schema_processor_factory(backend: Any, batch: Sequence[Any]) -> JsonSchemaLogitsProcessor | None:
    """``logits_processor_factory`` for `TransformersBackend`: guide the rows whose request has a JSON
    ``response_format``; None when no row of the batch asks for JSON."""
    schemas = [schema_from_response_format(r.params.response_format) for r in batch]
    if all(s is None for s in schemas):
        return None
    return JsonSchemaLogitsProcessor(backend.tokenizer, backend.lm.config.vocab_size, schemas)


def guided_transformers_backend(**options: Any) -> Any:
    """A `TransformersBackend` that honours ``response_format`` through its ``logits_processor_factory``
    hook (the grammar processor runs before the backend's per-request sampler)."""
    from synthembed.llm.transformers_local import TransformersBackend

    return TransformersBackend(**options, logits_processor_factory=json_schema_processor_factory)
