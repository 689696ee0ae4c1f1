"""What every evaluation task shares: the "data is missing" signal and the task protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from synthembed.errors import SynthEmbedError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from synthembed.evaluation.encoding import EmbeddingTable


class TaskUnavailable(SynthEmbedError):
    """A requested task's data cannot be found; the suite records the message as a skip note."""


@runtime_checkable
class Task(Protocol):
    """A loaded evaluation task: its texts are embedded by the suite, then `score` computes metrics."""

    name: str
    split: str
    main_metric: str

    def texts(self) -> Iterable[str]:
        """Every text this task needs embedded (duplicates allowed; the suite de-duplicates)."""
        ...

    def score(self, table: EmbeddingTable) -> dict[str, Any]:
        """Metrics (x100 where they are correlations or rates) plus `split` and `n`."""
        ...
