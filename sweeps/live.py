"""The live view of a running sweep: a progress bar, the running trials, the best so far.

The loop publishes a :class:`Progress` snapshot; this module only renders it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Progress:
    """What a running sweep shows: plain data, taken by the loop."""

    sweep_id: str
    metric: str
    total: int | None
    finished: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    #: the running trials: (number, when it started on the monotonic clock, params, the last line it printed)
    running: tuple[tuple[int, float, dict[str, Any], str], ...] = ()
    #: the best so far: (value, trial number, MLflow run id, params)
    best: tuple[float, int, str, dict[str, Any]] | None = None
    reruns: int = 0
    excluded: tuple[str, ...] = ()


def said_counts(counts: dict[str, int]) -> str:
    """A sweep's finished trials by how they ended, as one says them; the killed ones (stopped by the sweep:
    its time budget, a second Ctrl-C) only where there are some."""
    killed = counts.get("KILLED", 0)
    return (f"{counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} stopped early, "
            f"{counts.get('FAIL', 0)} failed" + (f", {killed} killed" if killed else ""))


def short(params: dict[str, Any], width: int = 60) -> str:
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class LiveView:
    """Context manager; calling the value it yields with a :class:`Progress` redraws (at most 4 times a
    second)."""

    def __init__(self, first: Progress, *, enabled: bool) -> None:
        self.enabled = enabled
        self._progress = first
        self._last = 0.0

    def __enter__(self) -> Callable[[Progress], None]:
        if not self.enabled:
            return lambda progress: None
        from rich.console import Console
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn(), console=self.console)
        self.task = self.bar.add_task(f"sweep {self._progress.sweep_id}", total=self._progress.total)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self.show

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table

        p = self._progress
        self.bar.update(self.task, completed=p.finished)
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        table.add_column("trial", justify="right")
        table.add_column("state")
        table.add_column("for", justify="right")
        table.add_column("params")
        printed = any(line for *_, line in p.running)
        if printed:
            table.add_column("last output", overflow="ellipsis", no_wrap=True, max_width=60)
        now = time.monotonic()
        for number, t0, params, line in p.running[:12]:
            table.add_row(str(number), "running", f"{now - t0:.0f}s", short(params), *([line] if printed else []))
        if p.best is not None:
            value, number, run_id, params = p.best
            best = f"best {p.metric} = {_fmt(value)} (trial {number}, run {run_id[:8]}): {short(params)}"
        else:
            best = f"best {p.metric}: none yet"
        counts = f"{said_counts(p.counts)}, {len(p.running)} running"
        lines = [self.bar, table, counts, best]
        if p.reruns:
            lines.append(f"{p.reruns} trials waiting to run again (same params)")
        if p.excluded:
            lines.append(f"nodes given up on (node_failure_limit): {', '.join(n[:12] for n in p.excluded)}")
        return Group(*lines)

    def show(self, progress: Progress) -> None:
        self._progress = progress
        now = time.monotonic()
        if now - self._last >= 0.25:
            self._last = now
            self.live.update(self._render())

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.live.update(self._render())
            self.live.__exit__(*exc)
