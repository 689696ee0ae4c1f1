"""The one redaction helper: every server text we store (drops, cache errors) or print passes through it.

A server may echo what it was sent (a 400/401 body quoting the Authorization header, a proxy's error
page). `redact` replaces the API keys registered by the backends that read them (`register_secret`),
``Authorization:`` / ``Bearer`` values, ``api_key``-style JSON fields and ``sk-...``-shaped tokens
with ``[REDACTED]``.
"""

from __future__ import annotations

import re
import threading

__all__ = ["REDACTED", "redact", "register_secret"]

REDACTED = "[REDACTED]"
_secrets: set[str] = set()
_guard = threading.Lock()
_PATTERNS = [
    (re.compile(r"(?i)(authorization\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',;}]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)([\"']?(?:api[_-]?key|access[_-]?token|x-api-key)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"),
     r"\1" + REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-" + REDACTED),
]


def register_secret(value: str | None) -> None:
    """Remember a secret (e.g. the configured API key) so `redact` removes it wherever it appears."""
    if value and len(value) >= 4:
        with _guard:
            _secrets.add(value)


def redact(text: str | None) -> str | None:
    """`text` with registered secrets and key-shaped values replaced by ``[REDACTED]`` (None stays None)."""
    if not text:
        return text
    with _guard:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
