"""The live view of a running sweep: a progress bar, the running trials, the best so far."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .controller import Controller


def short(params: dict[str, Any], width: int = 60) -> str:
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class LiveView:
    """Context manager; calling the value it yields redraws (at most 4 times a second)."""

    def __init__(self, controller: Controller, *, enabled: bool) -> None:
        self.c = controller
        self.enabled = enabled
        self._last = 0.0

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.console import Console, Group
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console)
        self.task = self.progress.add_task(f"sweep {self.c.sweep_id}", total=self.c.max_trials)
        self._group = Group
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.__enter__()
        return self.refresh

    def _render(self) -> Any:
        from rich.table import Table

        c = self.c
        self.progress.update(self.task, completed=c.finished)
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        table.add_column("trial", justify="right")
        table.add_column("state")
        table.add_column("for", justify="right")
        table.add_column("params")
        now = time.monotonic()
        for _, request, t0 in list(c.running.values())[:12]:
            table.add_row(str(request.number), "running", f"{now - t0:.0f}s", short(request.params))
        metric = c.metric.name
        if c.best is not None:
            value, number, run_id, params = c.best
            best = f"best {metric} = {_fmt(value)} (trial {number}, run {run_id[:8]}): {short(params)}"
        else:
            best = f"best {metric}: none yet"
        counts = (f"{c.counts['COMPLETE']} complete, {c.counts['PRUNED']} stopped early, {c.counts['FAIL']} failed, "
                  f"{len(c.running)} running")
        lines = [self.progress, table, counts, best]
        if c.reruns:
            lines.append(f"{len(c.reruns)} trials waiting to run again (same params)")
        if c.excluded:
            lines.append(f"nodes given up on (node_failure_limit): {', '.join(n[:12] for n in sorted(c.excluded))}")
        return self._group(*lines)

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._last >= 0.25:
            self._last = now
            self.live.update(self._render())

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.live.update(self._render())
            self.live.__exit__(*exc)
