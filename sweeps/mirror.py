"""The W&B mirror: one W&B run per trial, one per sweep, in the sweep's group.

The one module that imports wandb. Mirroring never fails a trial or the
sweep: every W&B error is logged and the mirror turns itself off.
"""

from __future__ import annotations

import importlib
import logging
import queue
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .trackers import Best, SweepEnd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WandbSettings:
    """Where and how to mirror. ``dir`` is absolute: W&B writes ``dir/wandb/``."""

    mode: str = "offline"
    project: str | None = None
    entity: str | None = None
    dir: str | None = None


class Mirror:
    """A W&B run that swallows its own errors."""

    def __init__(self, settings: WandbSettings | None, *, name: str, group: str, job_type: str,
                 config: dict[str, Any] | None = None, run_id: str | None = None, resume: bool = False,
                 requirements: bool = True) -> None:
        self._run: Any = None
        if settings is None or settings.mode == "disabled":
            return
        try:
            wandb = _wandb()
            self._run = wandb.init(
                id=run_id,
                resume="allow" if resume else None,
                project=settings.project or "sweeps",
                entity=settings.entity,
                dir=settings.dir,
                name=name,
                group=group,
                job_type=job_type,
                config=config or {},
                mode=settings.mode,  # type: ignore[arg-type]
                reinit="create_new",
                # requirements: W&B reads every installed package's metadata for each run
                # (about 75 ms); trial runs skip it, their MLflow run names the environment
                settings=wandb.Settings(silent=True, console="off", save_code=False, disable_git=True,
                                        x_disable_stats=True, x_disable_machine_info=True,
                                        x_save_requirements=requirements),
            )
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            self._off("start", exc)

    @property
    def active(self) -> bool:
        return self._run is not None

    def _off(self, what: str, exc: BaseException) -> None:
        logger.warning("W&B mirror: %s failed (%s: %s); going on without W&B for this run", what, type(exc).__name__, exc)
        self._run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self._run is None:
            return
        try:
            self._run.log(metrics, step=step)
        except Exception as exc:  # noqa: BLE001
            self._off("log", exc)

    def summary(self, values: dict[str, Any]) -> None:
        if self._run is None:
            return
        try:
            self._run.summary.update(values)
        except Exception as exc:  # noqa: BLE001
            self._off("summary", exc)

    def finish(self, failed: bool = False) -> None:
        if self._run is None:
            return
        try:
            self._run.finish(exit_code=1 if failed else 0)
        except Exception as exc:  # noqa: BLE001
            self._off("finish", exc)
        self._run = None


class LaterRun:
    """A W&B run (a :class:`Mirror`) opened, updated and finished on this process's W&B thread
    (:func:`later`), in the order of the calls: its caller never waits for W&B. ``drain`` waits
    for what was sent."""

    def __init__(self, settings: WandbSettings | None, **kwargs: Any) -> None:
        self._run: Mirror | None = None
        later(lambda: self._open(settings, kwargs))

    def _open(self, settings: WandbSettings | None, kwargs: dict[str, Any]) -> None:
        self._run = Mirror(settings, **kwargs)

    def log(self, batch: list[tuple[int, dict[str, float]]]) -> None:
        """Reports, as ``(step, values)`` in the order they were made."""
        later(lambda: self._log(batch))

    def _log(self, batch: list[tuple[int, dict[str, float]]]) -> None:
        for step, values in batch:
            if self._run is not None:
                self._run.log(values, step)

    def summary(self, values: dict[str, Any]) -> None:
        later(lambda: self._run.summary(values) if self._run is not None else None)

    def finish(self, failed: bool = False) -> None:
        later(lambda: self._finish(failed))

    def _finish(self, failed: bool) -> None:
        if self._run is not None:
            self._run.finish(failed=failed)
            self._run = None


def warm(settings: WandbSettings | None) -> None:
    """Start this process's W&B service ahead of its first run (over a second, once).

    Under the import lock: a run started meanwhile waits for it instead of importing beside it."""
    if settings is None or settings.mode == "disabled":
        return
    with _IMPORT_LOCK:
        try:
            import wandb

            wandb.setup()
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            logger.warning("W&B mirror: could not start the W&B service (%s)", exc)
            return
        try:
            # a process's first wandb.init imports W&B Launch's input handling (about a second):
            # imported here, beside the worker's other start-up, not in its first trial's record
            importlib.import_module("wandb.sdk.launch.inputs.internal")
        except Exception as exc:  # noqa: BLE001 - only a head start; init imports it anyway
            logger.debug("W&B launch inputs not imported ahead: %s", exc)


_IMPORT_LOCK = threading.Lock()


def _wandb() -> Any:
    """wandb, imported by one thread at a time: a process's warm-up and its W&B thread may both ask
    first, and two threads importing it at once can meet Python's import deadlock detection and leave
    it half imported for the process's life."""
    with _IMPORT_LOCK:
        import wandb

    return wandb


_LANE: queue.Queue[Callable[[], Any]] | None = None
_LANE_LOCK = threading.Lock()


def later(fn: Callable[[], Any]) -> None:
    """Run ``fn`` on this process's W&B thread, after every call queued before it.

    The trials a process records (a node's recorder, or a worker recording its
    own) mirror to W&B here, one call after another, so that a
    trial's result returns once MLflow has it, and its W&B run finishes while
    the next trial starts. The queue is bounded: when W&B falls far behind,
    the caller waits. ``drain`` waits for what is queued.
    """
    global _LANE
    with _LANE_LOCK:
        if _LANE is None:
            _LANE = queue.Queue(maxsize=10_000)
            threading.Thread(target=_lane, args=(_LANE,), name="sweeps-wandb", daemon=True).start()
    _LANE.put(fn)


def _lane(calls: queue.Queue[Callable[[], Any]]) -> None:
    while True:
        fn = calls.get()
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            logger.warning("W&B mirror: %s: %s", type(exc).__name__, exc)


def drain(timeout: float | None = None) -> bool:
    """Wait until every W&B call queued so far has run; False when ``timeout`` came first."""
    if _LANE is None:
        return True
    done = threading.Event()
    later(done.set)
    return done.wait(timeout)


def close(timeout: float | None = None) -> bool:
    """Finish this process's W&B runs (``drain``), then stop its W&B service.

    W&B stops the service in an exit handler too, but a process that ends
    while its parent tears the machine down can lose the service first and
    print W&B's traceback; after ``close`` the handler has nothing to do."""
    if not drain(timeout):
        return False
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        try:
            wandb.teardown()
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            logger.warning("W&B mirror: could not stop the W&B service (%s: %s)", type(exc).__name__, exc)
    return True


def new_run_id() -> str:
    """A W&B run id chosen ahead, so that a run whose process died can still be closed."""
    import secrets

    return secrets.token_hex(4)


def lost_summary(state: str, reason: str) -> dict[str, Any]:
    """The summary of a trial's W&B run that was given up (``state``: KILLED, stopped; FAIL, lost)."""
    return {"sweeps/state": state, "sweeps/error": reason, "sweeps/lost": state == "FAIL"}


def close_lost(settings: WandbSettings | None, run_id: str, *, name: str, group: str, state: str, reason: str) -> None:
    """Mark a trial's W&B run whose process died: same run id, its end state in the summary."""
    mirror = Mirror(settings, name=name, group=group, job_type="trial", run_id=run_id, resume=True, requirements=False)
    mirror.summary(lost_summary(state, reason))
    mirror.finish(failed=state == "FAIL")


#: how long the end of a sweep waits for its own W&B run to be written
SWEEP_RUN_WAIT_S = 60.0


class WandbSweep:
    """The sweep's own W&B run (job_type ``sweep``, in the sweep's group), a
    :class:`~sweeps.trackers.SweepTracker`: the best so far in its summary, the trial counts at the end.
    Written on this process's W&B thread: nothing waits for W&B until ``end``."""

    def __init__(self, settings: WandbSettings | None, *, name: str, group: str, metric: str,
                 config: dict[str, Any]) -> None:
        self.metric = metric
        self._run = None
        if settings is not None and settings.mode != "disabled":
            self._run = LaterRun(settings, name=name, group=group, job_type="sweep", run_id=new_run_id(), config=config)

    def best(self, best: Best, previous: Best | None) -> None:
        if self._run is not None:
            self._run.summary({f"best_{self.metric}": best.value, "best_trial": best.number,
                               "best_run_id": best.run_id, **{f"best.{k}": v for k, v in best.params.items()}})

    def progress(self, finished: int, best: Best | None) -> None:
        """The summary's best is enough: W&B keeps no curve of it."""

    def end(self, end: SweepEnd) -> None:
        if self._run is None:
            return
        self._run.summary({"trials_finished": end.finished, **{f"trials_{k.lower()}": v for k, v in end.counts.items()}})
        self._run.finish(failed=end.status != "FINISHED")
        self._run = None
        if not drain(SWEEP_RUN_WAIT_S):
            logger.warning("the sweep's W&B run was still being written after %.0f s", SWEEP_RUN_WAIT_S)
