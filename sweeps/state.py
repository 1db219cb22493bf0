"""A sweep's state directory: what it was launched with, its Optuna study, and who runs it.

``<state dir>/<sweep id>/`` holds ``sweep.json`` (:class:`SweepRecord`: settings, parent
run, status), ``sweep.yaml`` (the file as launched), ``study.log`` (the Optuna study, a
journal file: the one source of truth for trial state, written by one controller at a
time) and ``controller.lock`` (:class:`SweepLock`). Resuming is loading that study.
Reading sweeps back (``sweeps status``) never writes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import tracking
from .errors import ConfigError
from .mirror import WandbSettings, close_lost
from .space import SweepSpec, parse_spec

if TYPE_CHECKING:
    import optuna

logger = logging.getLogger(__name__)

STUDY_FILE = "study.log"
SWEEP_FILE = "sweep.json"
SPEC_FILE = "sweep.yaml"
LOCK_FILE = "controller.lock"
HOLDER_FILE = "controller.json"
_MAX_DIFF = 5_000_000


@dataclass
class SweepRecord:
    """``sweep.json``: what a sweep was launched with and where it records."""

    id: str
    name: str
    file: str
    created: str
    method: str
    sampler: str
    metric: str
    goal: str
    seed: int
    parallel: int
    trials: int | None
    time_s: float | None
    target: float | None
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    wandb_mode: str
    parallel_set: int | None = None
    status: str = "running"
    stop_reason: str | None = None
    ended: str | None = None
    resumed: int = 0
    wandb_project: str | None = None
    wandb_entity: str | None = None
    deterministic: bool = False

    def save(self, directory: Path) -> None:
        tmp = directory / (SWEEP_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(directory / SWEEP_FILE)

    @classmethod
    def load(cls, directory: Path) -> SweepRecord:
        return cls(**json.loads((directory / SWEEP_FILE).read_text()))


@dataclass(frozen=True)
class SweepSummary:
    id: str
    state_dir: Path
    record: SweepRecord
    best_value: float | None
    best_params: dict[str, Any] | None
    best_run_id: str | None
    best_trial: int | None
    counts: dict[str, int]


def git_state(workdir: Path) -> tuple[dict[str, str], str | None]:
    """Commit and dirty flag of the launch directory, and the diff when dirty."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(workdir), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"sweeps.git.commit": "none (not a git repository)"}, None
    status = git("status", "--porcelain", "--untracked-files=no") or ""
    dirty = bool(status.strip())
    tags = {"sweeps.git.commit": commit.strip(), "mlflow.source.git.commit": commit.strip(), "sweeps.git.dirty": str(dirty).lower()}
    diff = git("diff", "HEAD") if dirty else None
    if diff and len(diff) > _MAX_DIFF:
        diff = diff[:_MAX_DIFF] + "\n[diff cut at 5 MB]\n"
    return tags, diff


def open_study(state: Path, sweep_id: str, direction: str, sampler: optuna.samplers.BaseSampler | None = None,
               *, create: bool) -> optuna.Study:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(state / STUDY_FILE)))
    if create:
        return optuna.create_study(study_name=sweep_id, storage=storage, sampler=sampler, direction=direction)
    return optuna.load_study(study_name=sweep_id, storage=storage, sampler=sampler)


class SweepLock:
    """One controller per sweep: an OS file lock (freed when its process dies,
    even by kill -9) plus who holds it, for the message to a second one."""

    def __init__(self, state: Path, sweep_id: str) -> None:
        from filelock import FileLock

        self.state, self.sweep_id = state, sweep_id
        self.lock = FileLock(str(state / LOCK_FILE))

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self.lock.acquire(timeout=0)
        except Timeout:
            try:
                holder = json.loads((self.state / HOLDER_FILE).read_text())
                who = f"pid {holder['pid']} on {holder['host']} (since {holder['since']})"
            except (OSError, ValueError, KeyError):
                who = "another controller"
            raise ConfigError(f"sweep {self.sweep_id} is already being run by {who}; "
                              "stop that one first (Ctrl-C there), or wait for it to end") from None
        (self.state / HOLDER_FILE).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now()}))

    def release(self) -> None:
        if self.lock.is_locked:
            (self.state / HOLDER_FILE).unlink(missing_ok=True)
            self.lock.release()


def sweep_dir(root: Path, sweep_id: str) -> Path:
    """The state directory of sweep ``sweep_id``; ConfigError naming the known ones when missing."""
    directory = root / sweep_id
    if not (directory / SWEEP_FILE).exists():
        known = ", ".join(p.parent.name for p in root.glob(f"*/{SWEEP_FILE}")) or "none"
        raise ConfigError(f"no sweep '{sweep_id}' in {root} (sweeps there: {known})")
    return directory


def load_for_resume(root: Path, sweep_id: str) -> tuple[SweepSpec, SweepRecord]:
    """The spec and record of a sweep in ``root``, to resume it."""
    directory = sweep_dir(root, sweep_id)
    record = SweepRecord.load(directory)
    spec = parse_spec((directory / SPEC_FILE).read_text(), record.file)
    return spec, record


@dataclass
class Stock:
    """What a resumed sweep's study holds, once the trials its dead controller left running are settled."""

    launched: int = 0  # trials started against the budget (runs of the same params again do not count)
    waiting: int = 0  # enqueued and never asked: the next asks take them
    finished: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "KILLED": 0})
    #: the best trial: (value, number, MLflow run id, params)
    best: tuple[float, int, str, dict[str, Any]] | None = None
    #: trials whose params should run again: (Optuna params, user attrs, trial number, why)
    again: list[tuple[dict[str, Any], dict[str, Any], int, str]] = field(default_factory=list)
    #: the finished trials as early termination's judge replays them: (number, values, state, end value)
    history: tuple[tuple[int, tuple[float, ...], str, float | None], ...] = ()


def trial_state(trial: optuna.trial.FrozenTrial) -> str:
    """How a trial ended, as sweeps says it: Optuna's state, but KILLED for a trial the sweep itself stopped
    (its time budget, a second Ctrl-C), which the study holds as FAIL and MLflow as KILLED."""
    killed = trial.state.name == "FAIL" and (trial.user_attrs.get("killed") or trial.user_attrs.get("interrupted"))
    return "KILLED" if killed else trial.state.name


def reconcile(study: optuna.Study, uri: str, wandb: WandbSettings | None, metric: str,
              stop_metric: str | None) -> Stock:
    """On resume: take stock of the study. Trials the dead controller left running are settled from
    what MLflow recorded (a trial that ended after it died keeps its result), or failed and run again,
    as are trials a second Ctrl-C stopped."""
    import optuna

    TS = optuna.trial.TrialState
    stock = Stock()
    for frozen in study.get_trials(deepcopy=False):
        if "retry_of" not in frozen.user_attrs:
            stock.launched += 1
        if frozen.state == TS.WAITING:
            stock.waiting += 1
        elif frozen.state == TS.RUNNING:
            _settle_orphan(study, frozen, uri, wandb, metric, stock)
    trials = study.get_trials(deepcopy=False)
    rerun_of = {(t.user_attrs["retry_of"], t.user_attrs.get("attempt")) for t in trials if "retry_of" in t.user_attrs}
    for frozen in trials:
        if frozen.user_attrs.get("interrupted"):
            original = frozen.user_attrs.get("retry_of", frozen.number)
            if (original, int(frozen.user_attrs.get("attempt", 1)) + 1) not in rerun_of:
                stock.again.append((frozen.params, frozen.user_attrs, frozen.number, "interrupted"))
    history = []
    for frozen in study.get_trials(deepcopy=False):
        if frozen.state.is_finished():
            stock.finished += 1
            key = {TS.COMPLETE: "COMPLETE", TS.PRUNED: "PRUNED", TS.FAIL: trial_state(frozen)}[frozen.state]
            stock.counts[key] += 1
            curve = tuple(v for _, v in sorted(frozen.intermediate_values.items()))
            end_value = frozen.value if stop_metric == metric else (curve[-1] if curve else None)
            history.append((frozen.number, curve, key, end_value))
    stock.history = tuple(history)
    try:
        best = study.best_trial
        stock.best = (best.value, best.number, best.user_attrs.get("mlflow_run_id", ""), best.user_attrs.get("config", {}))
    except ValueError:  # no complete trial yet
        pass
    return stock


def _settle_orphan(study: optuna.Study, frozen: optuna.trial.FrozenTrial, uri: str, wandb: WandbSettings | None,
                   metric: str, stock: Stock) -> None:
    import optuna

    run_id = frozen.user_attrs.get("mlflow_run_id")
    run = tracking.get_run(uri, run_id) if run_id else None
    if run is not None and run.info.status == "FINISHED" and metric in run.data.metrics:
        # the trial ended after the controller died: its result is in MLflow
        study.tell(frozen.number, run.data.metrics[metric])
        return
    if run is not None and run.info.status == "KILLED" and run.data.tags.get("sweeps.pruned") == "true":
        study.tell(frozen.number, state=optuna.trial.TrialState.PRUNED)
        return
    reason = "the controller stopped while it ran"
    study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
    if run_id and run is not None and run.info.status == "RUNNING":
        tracking.end_given_up(uri, run_id, reason, "FAIL", frozen.user_attrs.get("config"))
        if frozen.user_attrs.get("wandb_id"):
            close_lost(wandb, frozen.user_attrs["wandb_id"], name=run.info.run_name, group=study.study_name,
                       state="FAIL", reason=reason)
    stock.again.append((frozen.params, frozen.user_attrs, frozen.number, reason))


def draw_plots(study: optuna.Study, directory: Path) -> list[Path]:
    """Optimization history and parallel coordinates as images in the sweep's
    state directory (and on the parent run): the files written."""
    written: list[Path] = []
    try:
        import warnings

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import optuna
        from optuna.visualization import matplotlib as plots

        with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # matplotlib widens the axis of a parameter that has one value among the complete trials, and says so
            warnings.filterwarnings("ignore", "Attempting to set identical low and high", UserWarning)
            for name, plot in (("optimization_history.png", plots.plot_optimization_history),
                               ("parallel_coordinates.png", plots.plot_parallel_coordinate)):
                ax = plot(study)
                figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                figure.set_size_inches(10, 6)
                figure.tight_layout()
                figure.savefig(directory / name)
                plt.close(figure)
                written.append(directory / name)
    except Exception as exc:  # noqa: BLE001 - a plot never fails a sweep
        logger.warning("could not draw the sweep's plots: %s", exc)
    return written


def trials_frame(study: optuna.Study) -> Any:
    """One row per trial: number, state, value, params, duration, run id."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number,
            "state": trial_state(t),
            "value": t.value,
            **{f"params.{k}": v for k, v in (t.user_attrs.get("config") or {}).items()},
            "duration_s": t.user_attrs.get("duration_s"),
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"),
            "wandb_run_id": t.user_attrs.get("wandb_id"),
            "retry_of": t.user_attrs.get("retry_of"),
            "node": t.user_attrs.get("node"),
            "error": t.user_attrs.get("error"),
            "pruned_reason": t.user_attrs.get("pruned_reason"),
        })
    return pd.DataFrame(rows)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
