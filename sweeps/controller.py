"""The sweep controller: ask the study, run trials on Ray, tell the study,
keep the best on the MLflow parent run.

The Optuna study in the sweep's state directory is the one source of truth for
trial state, and the controller is its only writer. A sweep's directory holds
``sweep.json`` (settings, parent run, status), ``sweep.yaml`` (the file as
launched), ``study.log`` (Optuna's journal) and ``controller.lock`` (held by
the one controller running the sweep). Resuming is loading that study.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import tracking
from .errors import ConfigError
from .mirror import WandbSettings, WandbSweep, new_run_id
from .executors import Executor, JudgeSpec, LocalExecutor, Plan
from .trackers import Best, Fanout, SweepEnd
from .trial import Lost, LostCause, TrialRequest, TrialResult, TrialState
from .samplers import make_sampler, sampler_type
from .space import SweepSpec
from .state import (SPEC_FILE, SweepLock, SweepRecord, SweepSummary, git_state, now, open_study, reconcile,
                    trials_frame)

if TYPE_CHECKING:
    import optuna

    from .live import Progress

logger = logging.getLogger(__name__)

#: how many times the params of a trial whose worker or node was lost run again
MAX_LOST_RERUNS = 3
#: seconds between looks at the cluster's size and at the trials' heartbeats
CHECK_EVERY_S = 2.0
#: finite spaces up to this many points are drawn without repeats
MAX_FINITE_POINTS = 200_000


class Stop(str, Enum):
    """Why a sweep stopped starting new trials (the value is what people read)."""

    TRIAL_BUDGET = "trial budget"
    GRID_EXHAUSTED = "grid exhausted"
    SPACE_EXHAUSTED = "space exhausted"
    TIME_BUDGET = "time budget"
    TARGET = "target reached"
    INTERRUPTED = "interrupted"
    NODES_EXCLUDED = "every node is excluded"
    FAILURES = "too many failures"

    @property
    def lets_reruns_go_on(self) -> bool:
        """A spent budget still lets lost or failed trials run again; a user, a deadline or a target does not."""
        return self in (Stop.TRIAL_BUDGET, Stop.GRID_EXHAUSTED, Stop.SPACE_EXHAUSTED)


@dataclass(frozen=True)
class LaunchOptions:
    """What the command line (or a caller) sets over the file."""

    trials: int | None = None
    parallel: int | None = None
    seed: int | None = None
    name: str | None = None
    address: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    wandb_mode: str | None = None
    wandb_dir: str | None = None
    state_dir: Path = Path(".sweeps")
    workdir: Path = field(default_factory=Path.cwd)
    progress: bool = True
    #: where trials run: "ray" (a local Ray, or the cluster at ``address``) or "local" (threads of this process)
    executor: str = "ray"


def trial_seed(sweep_seed: int, number: int) -> int:
    """Each trial's seed, derived from the sweep's seed and the trial number."""
    import numpy as np

    return int(np.random.SeedSequence([sweep_seed, number]).generate_state(1)[0])


class Controller:
    """Runs one sweep from its spec to its summary, or resumes one from its state."""

    def __init__(self, spec: SweepSpec, opts: LaunchOptions, *, on_event: Callable[[str], None] | None = None,
                 resume: SweepRecord | None = None) -> None:
        if spec.metric is None:
            raise ConfigError(f"{spec.file}: metric: a launch needs a metric to find the best trial; "
                              "add metric: {name: ..., goal: minimize|maximize}")
        if spec.trainer is None:
            hint = f" (this W&B file runs the script {spec.program})" if spec.program else ""
            raise ConfigError(f"{spec.file}: trainer: no trainer to call{hint}; add trainer: module:function, "
                              "a function train(config, report) -> dict of metrics")
        self.spec = spec
        self.opts = opts
        self.resumed = resume
        self.metric = spec.metric
        self.say = on_event or (lambda msg: None)
        self.workdir = opts.workdir.resolve()
        root = opts.state_dir if opts.state_dir.is_absolute() else self.workdir / opts.state_dir
        if resume is None:
            self.sweep_id = uuid.uuid4().hex[:8]
            self.name = opts.name or spec.name or Path(spec.file).stem
            self.seed = opts.seed if opts.seed is not None else spec.seed if spec.seed is not None else int.from_bytes(os.urandom(3), "big")
            self.uri = tracking.absolute_uri(opts.tracking_uri or spec.tracking.tracking_uri, self.workdir)
            self.experiment = opts.experiment or spec.tracking.experiment or self.name
            mode = opts.wandb_mode or spec.tracking.wandb_mode or "offline"
            self.max_trials = opts.trials or spec.budget.trials
            self.parallel_set = opts.parallel or spec.parallel
        else:
            self.sweep_id, self.name, self.seed = resume.id, resume.name, resume.seed
            self.uri = tracking.absolute_uri(opts.tracking_uri, self.workdir) if opts.tracking_uri else resume.tracking_uri
            self.experiment = resume.experiment
            mode = opts.wandb_mode or resume.wandb_mode
            self.max_trials = opts.trials or resume.trials
            self.parallel_set = opts.parallel or resume.parallel_set
        self.state = root / self.sweep_id
        self.wandb = WandbSettings(mode=mode, project=spec.tracking.wandb_project or self.name,
                                   entity=spec.tracking.wandb_entity,
                                   dir=str(Path(opts.wandb_dir).resolve()) if opts.wandb_dir else str(self.workdir))
        self.points, self.points_kind = self._points()
        if self.points is not None:
            self.max_trials = min(self.max_trials or len(self.points), len(self.points))
        self._interrupts = 0
        self.running: dict[Any, tuple[optuna.trial.Trial, TrialRequest, float]] = {}
        self.finished = 0
        self.best: Best | None = None
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.launched = 0
        self._waiting = 0
        #: trials to run again with the same params: (Optuna params, user attrs)
        self.reruns: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.node_streak: dict[str, int] = {}
        self.excluded: set[str] = set()
        self.failed_out = False
        et = spec.early_terminate
        self.stop_metric = (et.metric or self.metric.name) if et else None
        self.stop_goal = (et.goal or self.metric.goal) if et and et.metric else self.metric.goal
        self.stop: Stop | None = None
        #: what people read of the stop (the stop's value, or more where it says more)
        self.stop_message: str | None = None

    def _points(self) -> tuple[list[dict[str, Any]] | None, str | None]:
        """The points a grid runs in order; for random search in a finite space,
        a seeded draw of every point without repeats (weighted as declared)."""
        spec = self.spec
        if spec.method == "grid":
            return list(spec.grid()), "grid"
        if spec.method == "random" and not spec.allow_repeats:
            finite = spec.finite_points(MAX_FINITE_POINTS)
            if finite is not None:
                import numpy as np

                points, weights = finite
                p = np.asarray(weights, dtype=float)
                order = np.random.default_rng(self.seed).choice(len(points), size=len(points), replace=False, p=p / p.sum())
                return [points[i] for i in order], "space"
        return None, None

    # -- set-up ------------------------------------------------------------

    def _start(self) -> None:
        from .execution import prepare_local

        spec = self.spec
        params = {
            "method": spec.method, "sampler": sampler_type(spec), "metric": self.metric.name, "goal": self.metric.goal,
            "budget.trials": self.max_trials, "budget.time_s": spec.budget.time_s, "budget.target": spec.budget.target,
            "seed": self.seed, "file": spec.file,
        }
        if self.opts.executor == "ray":  # the environment Ray's processes inherit, before this process starts threads
            prepare_local(self.opts.address, self.workdir)
        if self.resumed is None:
            self.state.mkdir(parents=True, exist_ok=False)
        self.lock = SweepLock(self.state, self.sweep_id)
        self.lock.acquire()
        history: tuple[Any, ...] = ()
        if self.resumed is None:
            (self.state / SPEC_FILE).write_text(spec.text)
            self.say(f"sweep {self.sweep_id} ({self.name}): state in {self.state}")
        else:
            self.say(f"resuming sweep {self.sweep_id} ({self.name}) from {self.state}")
            # a resumed sampler continues from what the study holds; its seed moves on with it
            n = len(open_study(self.state, self.sweep_id, self.metric.goal, create=False).get_trials(deepcopy=False))
            self.study = open_study(self.state, self.sweep_id, self.metric.goal, make_sampler(spec, self.seed + n), create=False)
            history = self._reconcile()
        # the MLflow set-up (import, database, parent run) runs while the executor starts
        parent = _Background(lambda: self._open_parent(params))
        try:
            self.executor = self._new_executor(history)
        finally:
            parent.wait()
        self.parent: tracking.MlflowSweep = parent.result()
        self.exp_id, self.parent_id = self.parent.experiment_id, self.parent.run_id
        capacity = self._capacity()
        self.parallel = self.parallel_set or capacity
        self._next_check = time.monotonic() + CHECK_EVERY_S
        resumed = self.resumed.resumed + 1 if self.resumed is not None else 0
        self.trackers = Fanout(self.parent, WandbSweep(
            self.wandb, name=f"{self.name}-sweep" + (f" (resumed {resumed})" if resumed else ""), group=self.sweep_id,
            metric=self.metric.name, config={**params, "sweep_id": self.sweep_id, "mlflow_parent_run_id": self.parent_id}))
        if self.parallel > capacity:
            logger.warning("parallel %d is more than the cluster holds (%d); trials will queue", self.parallel, capacity)
        self.parent.tags({"sweeps.parallel": self.parallel})
        if self.resumed is None:
            self.record = SweepRecord(
                id=self.sweep_id, name=self.name, file=str(Path(spec.file).resolve()), created=now(), method=spec.method,
                sampler=sampler_type(spec), metric=self.metric.name, goal=self.metric.goal, seed=self.seed,
                parallel=self.parallel, trials=self.max_trials, time_s=spec.budget.time_s, target=spec.budget.target,
                tracking_uri=self.uri, experiment=self.experiment, experiment_id=self.exp_id, parent_run_id=self.parent_id,
                wandb_mode=self.wandb.mode, parallel_set=self.parallel_set,
            )
            self.study = open_study(self.state, self.sweep_id, self.metric.goal, make_sampler(spec, self.seed), create=True)
        else:
            self.record = self.resumed
            self.record.status, self.record.stop_reason, self.record.ended = "running", None, None
            self.record.resumed += 1
            self.record.trials, self.record.tracking_uri, self.record.wandb_mode = self.max_trials, self.uri, self.wandb.mode
            # the curve reaches what was settled: the dead controller's last points may be lost,
            # and when its last trials ended after it died, no trial of this run adds one
            self._best_point()
        self.record.save(self.state)
        self.repro_tags, self.git_diff = git_state(self.workdir)
        if self.best is not None:
            self.trackers.best(self.best, None)

    def _new_executor(self, history: tuple[Any, ...]) -> Executor:
        """The executor the options name, built for this sweep's trials."""
        spec, r = self.spec, self.spec.resources
        et = spec.early_terminate
        plan = Plan(cpus=r.cpus, gpus=r.gpus, agents_only=r.agents_only, reuse_workers=r.reuse_workers,
                    heartbeat_timeout_s=spec.faults.heartbeat_timeout_s, trainer=spec.trainer or "",
                    tracking_uri=self.uri, wandb=self.wandb, parallel=self.parallel_set, workdir=str(self.workdir),
                    judge=JudgeSpec(et, self.stop_metric or self.metric.name, self.stop_goal, history) if et else None)
        if self.opts.executor == "local":
            return LocalExecutor(plan)
        from .execution import RayExecutor

        return RayExecutor(plan, self.opts.address)

    def _open_parent(self, params: dict[str, Any]) -> tracking.MlflowSweep:
        spec = self.spec
        if self.resumed is not None:
            return tracking.MlflowSweep.reopen(self.uri, self.metric.name, self.resumed.experiment_id,
                                               self.resumed.parent_run_id)
        return tracking.MlflowSweep.create(
            self.uri, self.experiment, self.metric.name, self.name,
            tags={"sweeps.sweep_id": self.sweep_id, "sweeps.role": "sweep",
                  **({"mlflow.note.content": spec.description} if spec.description else {})},
            params={k: v for k, v in params.items() if v is not None}, text=spec.text, filename=Path(spec.file).name)

    def _reconcile(self) -> tuple[tuple[int, tuple[float, ...], str, float | None], ...]:
        """On resume: take stock of the study (see :func:`state.reconcile`); returns the finished trials
        as early termination's judge replays them."""
        stock = reconcile(self.study, self.uri, self.wandb, self.metric.name, self.stop_metric)
        self.launched, self._waiting, self.finished = stock.launched, stock.waiting, stock.finished
        self.counts.update(stock.counts)
        if stock.best is not None:
            self.best = Best(*stock.best)
        for params, attrs, number, reason in stock.again:
            self._queue_again(params, attrs, number, reason, lost=True)
        self.say(f"{self.finished} trials done ({self.counts['COMPLETE']} complete, {self.counts['PRUNED']} stopped early, "
                 f"{self.counts['FAIL']} failed); {len(self.reruns)} to run again")
        return stock.history

    def _best_point(self) -> None:
        """The best-so-far curve's point for the trials finished now."""
        self.trackers.progress(self.finished, self.best)

    # -- the loop ----------------------------------------------------------

    def run(self) -> SweepSummary:
        self.started_at = time.monotonic()
        status = "FAILED"
        restore = self._install_signals()
        try:
            self._start()
            with self._display() as refresh:
                self._loop(refresh)
            status = "FAILED" if self.failed_out else "KILLED" if self._interrupts else "FINISHED"
            # the plots are drawn while the executor shuts down
            plots = _Background(self._draw_plots)
            self.executor.shutdown()
            return self._finish(status, plots.result())
        finally:
            restore()
            if status == "FAILED" and not self.failed_out and hasattr(self, "parent_id"):
                self._close_after_crash()
            if hasattr(self, "executor"):
                self.executor.shutdown()
            if hasattr(self, "lock"):
                self.lock.release()

    def progress(self) -> Progress:
        """A snapshot of the sweep for the live view."""
        from .live import Progress

        best = self.best
        return Progress(
            sweep_id=self.sweep_id, metric=self.metric.name, total=self.max_trials, finished=self.finished,
            counts=dict(self.counts), running=tuple((r.number, t0, r.params) for _, r, t0 in self.running.values()),
            best=(best.value, best.number, best.run_id, best.params) if best else None,
            reruns=len(self.reruns), excluded=tuple(sorted(self.excluded)),
        )

    def _loop(self, refresh: Callable[[Progress], None]) -> None:
        deadline = self.started_at + self.spec.budget.time_s if self.spec.budget.time_s else None
        while True:
            if self._interrupts >= 2:
                self._stop(Stop.INTERRUPTED, force=True)
                self._cancel_all("interrupted twice")
                return
            if self._interrupts == 1 and self.stop is None:
                self._stop(Stop.INTERRUPTED)
                self.say(f"stopping: no new trials; waiting for {len(self.running)} running (Ctrl-C again to stop them)")
            if deadline is not None and time.monotonic() >= deadline and self.stop in (None, Stop.TIME_BUDGET):
                self._stop(Stop.TIME_BUDGET)
                if self.running:
                    self._cancel_all("time budget reached")
            if time.monotonic() >= self._next_check:
                self._check_cluster()
            # runs of the same params again do not count against the budget: they
            # go on after it is spent, not after a user, a deadline or a target stopped the sweep
            again = self.stop is None or self.stop.lets_reruns_go_on
            while again and self.reruns and len(self.running) < self.parallel:
                self._launch_one()
            while self.stop is None and len(self.running) < self.parallel:
                if self.max_trials is not None and self.started() >= self.max_trials:
                    if self.points is not None and self.max_trials == len(self.points):
                        self._stop(Stop.GRID_EXHAUSTED if self.points_kind == "grid" else Stop.SPACE_EXHAUSTED)
                    else:
                        self._stop(Stop.TRIAL_BUDGET)
                    break
                self._launch_one()
            if not self.running and not (again and self.reruns):
                return
            timeout = 0.2 if deadline is None else max(0.0, min(0.2, deadline - time.monotonic()))
            for handle, outcome in self.executor.wait(list(self.running), timeout=timeout):
                self._finish_trial(handle, outcome)
            refresh(self.progress())

    def _check_cluster(self) -> None:
        """Every few seconds: the cluster's size (agents come and go)."""
        self._next_check = time.monotonic() + CHECK_EVERY_S
        capacity = self._capacity()
        if not self.parallel_set:
            self.parallel = max(1, capacity)

    def started(self) -> int:
        """Trials started against the budget (runs of the same params again do not count)."""
        return self.launched

    def _capacity(self) -> int:
        return self.executor.capacity(frozenset(self.excluded))

    def _launch_one(self) -> None:
        spec = self.spec
        if self.reruns:
            params, attrs = self.reruns.pop(0)
            self.study.enqueue_trial(params, user_attrs=attrs)
        elif self._waiting:
            self._waiting -= 1  # left enqueued by a controller that died; counted already
        else:
            if self.points is not None:
                index = self.launched
                self.study.enqueue_trial(spec.optuna_params(self.points[index]), user_attrs={"grid_index": index})
            self.launched += 1
        trial = self.study.ask()
        flat = spec.suggest(trial)
        number = trial.number
        seed = trial_seed(self.seed, number)
        run_name = f"{self.name}-{number}"
        again = {"sweeps.retry_of": str(trial.user_attrs["retry_of"]), "sweeps.attempt": str(trial.user_attrs["attempt"])} \
            if "retry_of" in trial.user_attrs else {}
        run_id = tracking.create_run(
            self.uri, self.exp_id, run_name,
            tags={tracking.PARENT_TAG: self.parent_id, "sweeps.sweep_id": self.sweep_id, "sweeps.trial": str(number),
                  "sweeps.role": "trial", "sweeps.seed": str(seed), **self.repro_tags, **again},
        )  # the worker logs the params with its own tags, in one write
        trial.set_user_attr("config", flat)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("wandb_id", new_run_id())
        request = TrialRequest(
            sweep_id=self.sweep_id, run_name=run_name, number=number, config=spec.nest(flat), params=flat, seed=seed,
            trainer=spec.trainer or "", metric=self.metric.name, tracking_uri=self.uri, run_id=run_id,
            wandb=self.wandb, parent_run_id=self.parent_id, git_diff=self.git_diff, stop_metric=self.stop_metric,
            wandb_id=trial.user_attrs["wandb_id"],
        )
        handle = self.executor.submit(request, frozenset(self.excluded))
        self.running[handle] = (trial, request, time.monotonic())

    def _finish_trial(self, handle: Any, outcome: TrialResult | Lost) -> None:
        trial, request, t0 = self.running.pop(handle)
        self.finished += 1
        if isinstance(outcome, TrialResult):
            self._tell_result(trial, request, outcome)
        else:
            self._tell_lost(trial, request, outcome, time.monotonic() - t0)
        self._best_point()
        self._check_failures()
        target = self.spec.budget.target
        if target is not None and self.best is not None and self.stop is None:
            reached = self.best.value >= target if self.metric.goal == "maximize" else self.best.value <= target
            if reached:
                self._stop(Stop.TARGET)
                self.say(f"target {target:g} reached by trial {self.best.number}")

    def _tell_result(self, trial: optuna.trial.Trial, request: TrialRequest, outcome: TrialResult) -> None:
        """A trial that ran to its end: the study learns how."""
        import optuna

        trial.set_user_attr("duration_s", round(outcome.duration_s, 3))
        trial.set_user_attr("host", outcome.host)
        trial.set_user_attr("node", outcome.node)
        trial.set_user_attr("gpu_ids", list(outcome.gpu_ids))
        for i, v in enumerate(outcome.curve):  # the stopping metric's curve, for pruners and dashboards
            trial.report(v, i)
        if outcome.state is TrialState.COMPLETE and outcome.value is not None:
            self.study.tell(trial, outcome.value)
            self.counts["COMPLETE"] += 1
            self._maybe_best(outcome.value, request)
            self._node_result(outcome.node, ok=True)
        elif outcome.state is TrialState.PRUNED:
            trial.set_user_attr("pruned_reason", outcome.pruned_reason)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            self.counts["PRUNED"] += 1
            self._node_result(outcome.node, ok=True)
        else:
            trial.set_user_attr("error", outcome.error)
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.counts["FAIL"] += 1
            self.say(f"trial {request.number} failed: {outcome.error}")
            self._queue_again(trial.params, trial.user_attrs, request.number, outcome.error or "failed", lost=False)
            self._node_result(outcome.node, ok=False)

    def _tell_lost(self, trial: optuna.trial.Trial, request: TrialRequest, outcome: Lost, duration_s: float) -> None:
        """A trial given up (its worker died or went silent, or it was cancelled): failed in the study,
        its MLflow run ended with the reason (the executor has closed what its workers kept of it), and
        unless cancelled, its params run again."""
        import optuna

        trial.set_user_attr("duration_s", round(duration_s, 3))
        trial.set_user_attr("error", outcome.reason)
        if outcome.node:
            trial.set_user_attr("node", outcome.node)
        if outcome.cancelled and self.stop is Stop.INTERRUPTED:
            trial.set_user_attr("interrupted", True)  # a resume runs its params again
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.counts["FAIL"] += 1
        state = "KILLED" if outcome.cancelled else "FAIL"
        try:  # with the params: the worker may not have written them
            tracking.end_given_up(self.uri, request.run_id, outcome.reason, state, request.params)
        except Exception as exc:  # noqa: BLE001 - keep the sweep going
            logger.warning("could not close run %s: %s", request.run_id, exc)
        if not outcome.cancelled:
            self.say(f"trial {request.number} lost: {outcome.reason}")
            self._queue_again(trial.params, trial.user_attrs, request.number, outcome.reason, lost=True)
            self._node_result(outcome.node, ok=False)

    def _stop(self, why: Stop, message: str | None = None, *, force: bool = False) -> None:
        """Start no new trials, for ``why`` (the first reason stays, unless ``force``)."""
        if self.stop is None or force:
            self.stop, self.stop_message = why, message or why.value

    def _queue_again(self, params: dict[str, Any], attrs: dict[str, Any], number: int, reason: str, *, lost: bool) -> None:
        """Run the same params again: a lost trial (up to MAX_LOST_RERUNS times),
        or a failed one when the file allows retries."""
        kind = "lost" if lost else "failed"
        done = int(attrs.get(kind, 0)) + 1
        allowed = MAX_LOST_RERUNS if lost else self.spec.faults.retries
        if done > allowed:
            if allowed and lost:
                self.say(f"trial {number}: its params were lost {done} times; not run again")
            return
        again = {"retry_of": int(attrs.get("retry_of", number)), "attempt": int(attrs.get("attempt", 1)) + 1,
                 "lost": int(attrs.get("lost", 0)), "failed": int(attrs.get("failed", 0)), kind: done,
                 "again_because": reason}
        if "grid_index" in attrs:
            again["grid_index"] = attrs["grid_index"]
        self.reruns.append((dict(params), again))
        self.say(f"trial {number} will run again with the same params (attempt {again['attempt']})")

    def _node_result(self, node: str, *, ok: bool) -> None:
        limit = self.spec.faults.node_failure_limit
        if not node or limit is None:
            return
        self.node_streak[node] = 0 if ok else self.node_streak.get(node, 0) + 1
        if self.node_streak[node] >= limit and node not in self.excluded:
            self.excluded.add(node)
            self.say(f"node {node[:12]} gets no more trials in this sweep: {limit} failures in a row")
            self.parent.tags({"sweeps.excluded_nodes": ",".join(sorted(self.excluded))})
            if self._capacity() == 0 and self.stop is None:
                self._stop(Stop.NODES_EXCLUDED)
                self.failed_out = True

    def _check_failures(self) -> None:
        limit = self.spec.faults.failure_limit(self.finished)
        failures = self.counts["FAIL"]
        if limit is not None and failures > limit and not self.failed_out:
            self.failed_out = True
            self.reruns.clear()
            self._stop(Stop.FAILURES, f"too many failures: {failures} of {self.finished} trials failed "
                                      f"(max_failures allows {limit})", force=True)
            self.say(f"stopping: {self.stop_message}")

    def _maybe_best(self, value: float, request: TrialRequest) -> None:
        better = self.best is None or (value > self.best.value if self.metric.goal == "maximize" else value < self.best.value)
        if not better:
            return
        previous, self.best = self.best, Best(value, request.number, request.run_id, request.params)
        self.trackers.best(self.best, previous)

    def _cancel_all(self, reason: str) -> None:
        for handle in list(self.running):
            self.executor.cancel(handle, reason)
        # a cancelled trial may still finish first; wait for each outcome
        deadline = time.monotonic() + 30
        while self.running and time.monotonic() < deadline:
            for handle, outcome in self.executor.wait(list(self.running), timeout=1.0):
                self._finish_trial(handle, outcome)
        for handle in list(self.running):
            self._finish_trial(handle, Lost(self.running[handle][1].number, reason, LostCause.CANCELLED))

    # -- the end -----------------------------------------------------------

    def trials_frame(self) -> Any:
        return trials_frame(self.study)

    def _finish(self, status: str, plots: list[Path]) -> SweepSummary:
        table = self.state / "trials.csv"
        self.trials_frame().to_csv(table, index=False)
        self.trackers.end(SweepEnd(status, self.stop_message or "done", self.finished, dict(self.counts),
                                   (table, *plots)))
        self.record.status = status.lower()
        self.record.stop_reason = self.stop_message
        self.record.ended = now()
        self.record.save(self.state)
        best = self.best
        return SweepSummary(
            id=self.sweep_id, state_dir=self.state, record=self.record,
            best_value=best.value if best else None, best_params=best.params if best else None,
            best_run_id=best.run_id if best else None, best_trial=best.number if best else None,
            counts=dict(self.counts),
        )

    def _draw_plots(self) -> list[Path]:
        """Optimization history and parallel coordinates as images in the sweep's
        state directory (and on the parent run): the files written."""
        written: list[Path] = []
        if self.counts["COMPLETE"] == 0:
            return written
        try:
            import warnings

            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            import optuna
            from optuna.visualization import matplotlib as plots

            with warnings.catch_warnings():  # Optuna marks its matplotlib plots experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                for name, plot in (("optimization_history.png", plots.plot_optimization_history),
                                   ("parallel_coordinates.png", plots.plot_parallel_coordinate)):
                    ax = plot(self.study)
                    figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
                    figure.set_size_inches(10, 6)
                    figure.tight_layout()
                    figure.savefig(self.state / name)
                    plt.close(figure)
                    written.append(self.state / name)
        except Exception as exc:  # noqa: BLE001 - a plot never fails a sweep
            logger.warning("could not draw the sweep's plots: %s", exc)
        return written

    def _close_after_crash(self) -> None:
        """The controller itself failed: close what it opened, keep what was recorded."""
        for trial, request, _ in list(self.running.values()):
            try:
                tracking.end_run(self.uri, request.run_id, "KILLED")
            except Exception:  # noqa: BLE001
                pass
        try:
            if hasattr(self, "trackers"):
                self.trackers.end(SweepEnd("FAILED", "the controller failed", self.finished, dict(self.counts)))
            else:
                tracking.end_run(self.uri, self.parent_id, "FAILED")
            if hasattr(self, "record"):
                self.record.status = "failed"
                self.record.ended = now()
                self.record.save(self.state)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not close the parent run: %s", exc)

    # -- signals and display ------------------------------------------------

    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def handler(signum: int, frame: Any) -> None:
            self._interrupts += 1

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

    def _display(self) -> Any:
        from .live import LiveView

        return LiveView(self.progress(), enabled=self.opts.progress)


class _Background:
    """Runs ``fn`` in a thread; ``result()`` waits for it and raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value


