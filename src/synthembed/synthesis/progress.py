"""Progress bar and end-of-run summary for synthesis runs (rows/s, tokens/s, ETA, failures)."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["Progress", "format_summary"]


class Progress:
    """A tqdm bar over rows whose postfix shows tokens/s, failures and cache hits; silent when disabled."""

    def __init__(self, total: int, *, enabled: bool = True, description: str = "synthesize") -> None:
        self._bar = None
        self._start = time.monotonic()
        self.tokens = 0
        self.failures = 0
        self.cached = 0
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="row", file=sys.stderr, dynamic_ncols=True)

    def update(self, rows: int = 1, *, tokens: int = 0, failed: bool = False, cached: int = 0) -> None:
        self.tokens += tokens
        self.failures += int(failed)
        self.cached += cached
        if self._bar is not None:
            elapsed = max(time.monotonic() - self._start, 1e-9)
            self._bar.set_postfix(tok_s=f"{self.tokens / elapsed:.0f}", fail=self.failures, cached=self.cached,
                                  refresh=False)
            self._bar.update(rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def format_summary(manifest: Mapping[str, Any], *, title: str = "synthesis") -> str:
    """A few human-readable lines from a run manifest."""
    counts = manifest.get("counts", {})
    usage = manifest.get("usage", {})
    dropped = counts.get("dropped", {})
    lines = [
        f"{title}: {counts.get('written', 0)} records written, {sum(dropped.values())} rows dropped"
        f" ({'complete' if manifest.get('complete') else 'INCOMPLETE: run again to resume'})",
    ]
    if dropped:
        lines.append("  dropped: " + ", ".join(f"{k}={v}" for k, v in dropped.items()))
    skipped = counts.get("input_skipped")
    if skipped:
        lines.append("  input rows skipped: " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
    elapsed = manifest.get("elapsed_s", 0.0)
    tokens = usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
    lines.append(
        f"  tokens: {usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion"
        f" ({usage.get('cached_requests', 0)} of {usage.get('requests', 0)} requests from cache);"
        f" elapsed {elapsed:.1f} s over {len(manifest.get('runs', []))} run(s)"
        + (f", {tokens / elapsed:.0f} tok/s" if elapsed > 0 else "")
    )
    if manifest.get("stopped"):
        lines.append(f"  stopped early: {manifest['stopped']}")
    return "\n".join(lines)
