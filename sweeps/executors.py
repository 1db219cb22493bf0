"""Where trials run: the executor contract, and the local executor.

An executor runs :class:`~sweeps.trial.TrialRequest` s and hands back how each ended. The
loop needs six verbs and nothing more: ``submit``, ``wait``, ``cancel``, ``capacity``,
``lines`` (what a running program last printed, for the live view) and ``shutdown``. Everything else is the executor's own business, settled when it is built
from a :class:`Plan`: starting workers ahead, early termination (the judge every report
consults), liveness (a trial whose worker died or went silent comes back from ``wait`` as
:class:`~sweeps.trial.Lost`), and closing the records of a trial it gave up on.

Two executors keep the contract: :class:`LocalExecutor` (threads of this process, no Ray:
for tests and quick runs on one machine) and ``execution.RayExecutor`` (worker actors on a
Ray cluster). ``tests/executor_contract.py`` is the suite both pass.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import FatalError
from .program import Pulse
from .trial import Lost, LostCause, TrialRequest, TrialResult, TrialState

if TYPE_CHECKING:
    from .mirror import WandbSettings
    from .space import EarlyTerminate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JudgeSpec:
    """Early termination for a sweep: the rule, the metric it judges and its goal, and on resume
    the trials already ended, as ``(number, reported values, state, end value)``."""

    et: EarlyTerminate
    metric: str
    goal: str
    history: tuple[tuple[int, tuple[float, ...], str, float | None], ...] = ()

    def build(self) -> Any:
        from .pruning import Judge

        judge = Judge(self.et, self.metric, self.goal)
        for number, values, state, value in self.history:
            judge.replay(number, list(values), state, value)
        return judge


@dataclass(frozen=True)
class Plan:
    """What every trial of one sweep asks of an executor (plain data)."""

    cpus: float = 1.0
    gpus: float = 0.0
    agents_only: bool = False
    #: False: a fresh worker process for every trial
    reuse_workers: bool = True
    heartbeat_timeout_s: float = 60.0
    #: ``module:function``, imported ahead by workers that start before their first trial
    trainer: str = ""
    tracking_uri: str = "none"
    wandb: WandbSettings | None = None
    #: trials at once the sweep asks for (None: as many as the cluster holds)
    parallel: int | None = None
    judge: JudgeSpec | None = None
    #: the launch directory: trainers import from it
    workdir: str = field(default=".")


def judged_end(request: TrialRequest, result: TrialResult) -> float | None:
    """The value the judge keeps for an ended trial: its objective where it judges the objective,
    else the last value it reported of the judged metric."""
    if request.stop_metric == request.metric:
        return result.value
    return result.curve[-1] if result.curve else None


class Executor(Protocol):
    """Runs trials; see the module's doc."""

    def submit(self, request: TrialRequest, excluded: frozenset[str] = frozenset()) -> Any:
        """Queue a trial (not on the nodes in ``excluded``); a handle for ``wait`` and ``cancel``."""
        ...

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]:
        """Whichever of these trials ended, at once when one has, else within ``timeout`` seconds."""
        ...

    def cancel(self, handle: Any, reason: str = "cancelled") -> None:
        """Stop a trial; ``wait`` hands it back as ``Lost`` with ``LostCause.CANCELLED`` and ``reason``."""
        ...

    def capacity(self, excluded: frozenset[str] = frozenset()) -> int:
        """How many trials of the plan's size fit at once now (nodes come and go)."""
        ...

    def lines(self, handles: list[Any]) -> dict[Any, str]:
        """The last line each of these running trials printed, where one did (a program's output),
        for the live view; a few seconds old at most."""
        ...

    def shutdown(self) -> None:
        """Let every worker go, once its records are written. Safe to call twice."""
        ...


@dataclass(eq=False)
class _LocalJob:
    request: TrialRequest
    thread: threading.Thread | None = None
    outcome: TrialResult | Lost | None = None
    cancelled: str | None = None  # why, once cancelled
    pulse: Pulse = field(default_factory=Pulse)


class LocalExecutor:
    """Runs trials in threads of this process, ``slots`` at a time, recording from this process.

    No Ray: for tests and quick runs. A trial cannot be stopped between two of its reports
    (a thread cannot be killed): a cancelled trial stops at its next ``report()``, or runs
    to its end, and comes back as cancelled either way. There are no GPUs to hand out and
    no worker that could die apart from this process, so no heartbeats."""

    def __init__(self, plan: Plan, slots: int | None = None) -> None:
        if plan.gpus > 0:
            raise FatalError("the local executor runs CPU trials only: run GPU trials on Ray")
        import os
        import sys

        if plan.workdir not in sys.path:  # trainers import from the launch directory, as with `python -m`
            sys.path.insert(0, plan.workdir)
        self.plan = plan
        self._slots = max(1, slots or plan.parallel or os.cpu_count() or 1)
        self._judge = plan.judge.build() if plan.judge is not None else None
        self._lock = threading.Lock()
        self._ended = threading.Condition(self._lock)
        self._queue: list[_LocalJob] = []
        self._running: list[_LocalJob] = []
        self._closed = False

    def capacity(self, excluded: frozenset[str] = frozenset()) -> int:
        return self._slots

    def lines(self, handles: list[Any]) -> dict[Any, str]:
        return {job: job.pulse.line for job in handles if job.pulse.line and job.outcome is None}

    def submit(self, request: TrialRequest, excluded: frozenset[str] = frozenset()) -> _LocalJob:
        job = _LocalJob(request)
        with self._lock:
            self._queue.append(job)
            self._dispatch()
        return job

    def _dispatch(self) -> None:
        while self._queue and len(self._running) < self._slots:
            job = self._queue.pop(0)
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"sweeps-trial-{job.request.number}",
                                          daemon=True)
            self._running.append(job)
            job.thread.start()

    def _decide(self, job: _LocalJob, value: float) -> str | None:
        with self._lock:  # a cancelled trial stops at its next report (run_trial's reporter sees job.pulse)
            return self._judge.report(job.request.number, value) if self._judge is not None else None

    def _run(self, job: _LocalJob) -> None:
        from .trial import run_trial

        request = job.request
        try:
            outcome: TrialResult | Lost = run_trial(request, lambda value: self._decide(job, value),
                                                    {"sweeps.node.id": "local"}, pulse=job.pulse)
        except Exception as exc:  # noqa: BLE001 - the record could not be written: lost, runs again
            outcome = Lost(request.number, f"{type(exc).__name__}: {exc}", LostCause.DIED, "local")
        with self._lock:
            if job.cancelled and not (isinstance(outcome, TrialResult) and outcome.state is TrialState.COMPLETE):
                outcome = Lost(request.number, job.cancelled, LostCause.CANCELLED, "local")
            if self._judge is not None:
                if isinstance(outcome, TrialResult):
                    self._judge.end(request.number, outcome.state.value, judged_end(request, outcome))
                else:
                    self._judge.end(request.number, TrialState.FAIL.value, None)
            job.outcome = outcome
            self._running.remove(job)
            self._dispatch()
            self._ended.notify_all()

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                done = [(job, job.outcome) for job in handles if job.outcome is not None]
                left = deadline - time.monotonic()
                if done or left <= 0:
                    return done  # type: ignore[return-value]
                self._ended.wait(left)

    def cancel(self, handle: Any, reason: str = "cancelled") -> None:
        job: _LocalJob = handle
        with self._lock:
            job.cancelled = reason
            job.pulse.cancelled = True  # a program is stopped at once
            if job in self._queue:  # never started
                self._queue.remove(job)
                job.outcome = Lost(job.request.number, reason, LostCause.CANCELLED)
                self._ended.notify_all()

    def shutdown(self) -> None:
        """Wait for the running trials (each stops at its next report), then for their W&B runs."""
        from .mirror import drain

        with self._lock:
            for job in self._queue + self._running:
                job.cancelled = job.cancelled or "the sweep ended"
                job.pulse.cancelled = True
            self._queue.clear()
            running = list(self._running)
        for job in running:
            if job.thread is not None:
                job.thread.join(60)
        if not drain(60):
            logger.warning("W&B runs were still being written after 60 s")
