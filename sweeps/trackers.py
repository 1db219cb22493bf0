"""The tracker contract: what a sweep tells the places it records to.

A sweep's trackers are built whole when it starts (the MLflow parent run, the sweep's W&B run)
and then hear three verbs: ``best`` (a new best trial), ``progress`` (one more trial ended)
and ``end``. :class:`~sweeps.tracking.MlflowSweep` and :class:`~sweeps.mirror.WandbSweep`
implement it; :class:`Fanout` tells each of several trackers in turn. A trial's own record
has the same shape on the worker's side (``trial.TrialRecord``: start, metrics, end, its
MLflow run and its W&B run together).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Best:
    """The best trial so far."""

    value: float
    number: int
    run_id: str
    params: dict[str, Any]


@dataclass(frozen=True)
class SweepEnd:
    """How a sweep ended, for its records."""

    status: str  # FINISHED, KILLED (interrupted) or FAILED
    stop: str  # why it stopped, for people ("done" when it ran out of trials)
    finished: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    #: files kept with the sweep (trials.csv, plots)
    files: tuple[Path, ...] = ()


class SweepTracker(Protocol):
    """Where a sweep records (see the module's doc)."""

    def best(self, best: Best, previous: Best | None) -> None:
        """A new best trial (``previous``: the one it beat)."""
        ...

    def progress(self, finished: int, best: Best | None) -> None:
        """One more trial ended: ``finished`` so far, the best among them."""
        ...

    def end(self, end: SweepEnd) -> None:
        """The sweep ended; everything it holds is written before this returns."""
        ...


class Fanout:
    """Several trackers as one: each verb goes to each, in order."""

    def __init__(self, *trackers: SweepTracker) -> None:
        self.trackers = trackers

    def best(self, best: Best, previous: Best | None) -> None:
        for t in self.trackers:
            t.best(best, previous)

    def progress(self, finished: int, best: Best | None) -> None:
        for t in self.trackers:
            t.progress(finished, best)

    def end(self, end: SweepEnd) -> None:
        for t in self.trackers:
            t.end(end)
