"""The sweep controller: ask the study, submit trials to an executor, wait, tell the study, and
keep the best on the sweep's trackers.

:class:`Controller` resolves a launch's settings, opens what the sweep needs (its state, the
executor, the MLflow parent run and the sweep's W&B run) and builds a :class:`Loop` whole;
the loop does ask → submit → wait → tell with budgets, retries, the failure budget and stop
reasons, and publishes a :class:`~sweeps.live.Progress` snapshot for the live view. The
Optuna study in the sweep's state directory (:mod:`sweeps.state`) is the one source of
truth for trial state, and the loop is its only writer.
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
from .errors import ConfigError, Problem
from .mirror import WandbSettings, WandbSweep, new_run_id
from .program import Program
from .executors import Executor, JudgeSpec, LocalExecutor, Plan
from .trackers import Best, Fanout, SweepEnd
from .trial import Lost, LostCause, TrialRequest, TrialResult, TrialState, trainer_problem
from .samplers import make_sampler, sampler_type
from .space import SweepSpec
from .live import LiveView, said_counts
from .space import Metric
from .state import (SPEC_FILE, Stock, SweepLock, SweepRecord, SweepSummary, draw_plots, git_state, now, open_study,
                    reconcile, trials_frame)

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
    #: trials in synchronous batches of ``parallel``: a parallel model-based sweep repeats its configs
    deterministic: bool = False


def trial_seed(sweep_seed: int, number: int) -> int:
    """Each trial's seed, derived from the sweep's seed and the trial number."""
    import numpy as np

    return int(np.random.SeedSequence([sweep_seed, number]).generate_state(1)[0])


@dataclass(frozen=True)
class Settings:
    """A launch's settings, resolved from the file, the command line and (on resume) the sweep's record."""

    sweep_id: str
    name: str
    seed: int
    uri: str
    experiment: str
    wandb: WandbSettings
    metric: Metric
    max_trials: int | None
    parallel_set: int | None
    state: Path
    workdir: Path
    #: the metric early termination judges and its goal (None: no early termination)
    stop_metric: str | None
    stop_goal: str
    #: the points a grid runs in order, or a finite space's points without repeats (else None)
    points: list[dict[str, Any]] | None
    points_kind: str | None
    deterministic: bool = False

    @classmethod
    def resolve(cls, spec: SweepSpec, opts: LaunchOptions, resume: SweepRecord | None) -> Settings:
        assert spec.metric is not None
        workdir = opts.workdir.resolve()
        root = opts.state_dir if opts.state_dir.is_absolute() else workdir / opts.state_dir
        if resume is None:
            sweep_id = uuid.uuid4().hex[:8]
            name = opts.name or spec.name or Path(spec.file).stem
            seed = opts.seed if opts.seed is not None else spec.seed if spec.seed is not None else \
                int.from_bytes(os.urandom(3), "big")
            uri = tracking.absolute_uri(opts.tracking_uri or spec.tracking.tracking_uri, workdir)
            experiment = opts.experiment or spec.tracking.experiment or name
            mode = opts.wandb_mode or spec.tracking.wandb_mode or "offline"
            max_trials = opts.trials or spec.budget.trials
            parallel_set = opts.parallel or spec.parallel
            deterministic = opts.deterministic
        else:
            sweep_id, name, seed = resume.id, resume.name, resume.seed
            uri = tracking.absolute_uri(opts.tracking_uri, workdir) if opts.tracking_uri else resume.tracking_uri
            experiment = resume.experiment
            mode = opts.wandb_mode or resume.wandb_mode
            max_trials = opts.trials or resume.trials
            parallel_set = opts.parallel or resume.parallel_set
            deterministic = opts.deterministic or resume.deterministic
        wandb = WandbSettings(mode=mode, project=spec.tracking.wandb_project or name, entity=spec.tracking.wandb_entity,
                              dir=str(Path(opts.wandb_dir).resolve()) if opts.wandb_dir else str(workdir))
        points, kind = _points(spec, seed)
        if points is not None:
            max_trials = min(max_trials or len(points), len(points))
        et = spec.early_terminate
        return cls(sweep_id=sweep_id, name=name, seed=seed, uri=uri, experiment=experiment, wandb=wandb,
                   metric=spec.metric, max_trials=max_trials, parallel_set=parallel_set, state=root / sweep_id,
                   workdir=workdir, stop_metric=(et.metric or spec.metric.name) if et else None,
                   stop_goal=(et.goal or spec.metric.goal) if et and et.metric else spec.metric.goal,
                   points=points, points_kind=kind, deterministic=deterministic)


def _points(spec: SweepSpec, seed: int) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The points a grid runs in order; for random search in a finite space,
    a seeded draw of every point without repeats (weighted as declared)."""
    if spec.method == "grid":
        return list(spec.grid()), "grid"
    if spec.method == "random" and not spec.allow_repeats:
        finite = spec.finite_points(MAX_FINITE_POINTS)
        if finite is not None:
            import numpy as np

            points, weights = finite
            p = np.asarray(weights, dtype=float)
            order = np.random.default_rng(seed).choice(len(points), size=len(points), replace=False, p=p / p.sum())
            return [points[i] for i in order], "space"
    return None, None


class Controller:
    """Runs one sweep from its spec to its summary, or resumes one from its state."""

    def __init__(self, spec: SweepSpec, opts: LaunchOptions, *, on_event: Callable[[str], None] | None = None,
                 resume: SweepRecord | None = None) -> None:
        if spec.metric is None:
            raise ConfigError(f"{spec.file}: metric: a launch needs a metric to find the best trial; "
                              "add metric: {name: ..., goal: minimize|maximize}")
        if spec.trainer is None and spec.program is None:
            raise ConfigError(f"{spec.file}: trainer: nothing to run; add trainer: module:function (a function "
                              "train(config, report) -> dict of metrics), or program: a W&B training script")
        self.spec, self.opts, self.resumed = spec, opts, resume
        self.say = on_event or (lambda msg: None)
        self.settings = Settings.resolve(spec, opts, resume)
        self.sweep_id = self.settings.sweep_id
        if spec.trainer is None and not (self.settings.workdir / str(spec.program)).is_file():
            raise ConfigError(f"{spec.file}: program: {spec.program} is not a file in the launch directory "
                              f"{self.settings.workdir}; launch from the directory W&B's agent would run in")
        if spec.trainer is not None:  # every trial would fail on it: refused before anything starts
            problem = trainer_problem(spec.trainer, str(self.settings.workdir), same_machine=not opts.address)
            if problem:
                from ._yaml import load

                raise ConfigError([Problem("error", spec.file, load(spec.text, spec.file).line_of(("trainer",)),
                                           "trainer", problem)])

    def run(self) -> SweepSummary:
        s = self.settings
        with _Signals() as signals:
            if self.opts.executor == "ray":  # the environment Ray's processes inherit, before this process starts threads
                from .execution import prepare_local

                prepare_local(self.opts.address, s.workdir)
            if self.resumed is None:
                s.state.mkdir(parents=True, exist_ok=False)
            lock = SweepLock(s.state, s.sweep_id)
            lock.acquire()
            try:
                loop = self._open(signals.count)
                signals.install()  # again: starting Ray put its own handlers in (SIGTERM would abort this process)
                shutdown: _Background | None = None
                try:
                    with LiveView(loop.progress(), enabled=self.opts.progress) as show:
                        loop.run(show)
                    # the executor shuts down (its workers finish their records, Ray stops) while the plots
                    # are drawn and the sweep's records closed
                    shutdown = _Background(loop.executor.shutdown)
                    summary = loop.close(draw_plots(loop.study, s.state) if loop.counts["COMPLETE"] else [])
                    shutdown.result()
                    return summary
                except BaseException:
                    loop.crashed()
                    raise
                finally:  # the executor is shut down once, whatever happened
                    if shutdown is None:
                        loop.executor.shutdown()
                    else:
                        shutdown.wait()
            finally:
                lock.release()

    def _open(self, interrupts: Callable[[], int]) -> Loop:
        """The sweep's study, executor and trackers, and the loop over them; what was opened is closed
        again when a later part cannot be."""
        spec, s = self.spec, self.settings
        params = {"method": spec.method, "sampler": sampler_type(spec), "metric": s.metric.name, "goal": s.metric.goal,
                  "budget.trials": s.max_trials, "budget.time_s": spec.budget.time_s,
                  "budget.target": spec.budget.target, "seed": s.seed, "file": spec.file}
        stock, study = None, None
        if self.resumed is None:
            (s.state / SPEC_FILE).write_text(spec.text)
            self.say(f"sweep {s.sweep_id} ({s.name}): state in {s.state}")
        else:
            self.say(f"resuming sweep {s.sweep_id} ({s.name}) from {s.state}")
            # a resumed sampler continues from what the study holds; its seed moves on with it
            n = len(open_study(s.state, s.sweep_id, s.metric.goal, create=False).get_trials(deepcopy=False))
            study = open_study(s.state, s.sweep_id, s.metric.goal, make_sampler(spec, s.seed + n), create=False)
            stock = reconcile(study, s.uri, s.wandb, s.metric.name, s.stop_metric)
        # the MLflow set-up (import, database, parent run) runs while the executor starts
        opening = _Background(lambda: self._open_parent(params))
        try:
            executor = self._new_executor(stock.history if stock else ())
        except BaseException:
            opening.wait()
            if opening.error is None:
                opening.result().end(SweepEnd("FAILED", "the executor did not start"))
            raise
        try:
            parent: tracking.MlflowSweep = opening.result()
            resumed = self.resumed.resumed + 1 if self.resumed is not None else 0
            trackers = Fanout(parent, WandbSweep(
                s.wandb, name=f"{s.name}-sweep" + (f" (resumed {resumed})" if resumed else ""), group=s.sweep_id,
                metric=s.metric.name, config={**params, "sweep_id": s.sweep_id, "mlflow_parent_run_id": parent.run_id}))
            if self.resumed is None:
                study = open_study(s.state, s.sweep_id, s.metric.goal, make_sampler(spec, s.seed), create=True)
            assert study is not None
            record = self._record(parent)
            return Loop(spec, s, study, executor, parent, trackers, record, stock, say=self.say, interrupts=interrupts)
        except BaseException:
            executor.shutdown()
            if opening.error is None:
                opening.result().end(SweepEnd("FAILED", "the sweep did not start"))
            raise

    def _record(self, parent: tracking.MlflowSweep) -> SweepRecord:
        """``sweep.json`` as this run of the sweep starts (its ``parallel`` is set once the loop knows it)."""
        spec, s = self.spec, self.settings
        if self.resumed is None:
            return SweepRecord(
                id=s.sweep_id, name=s.name, file=str(Path(spec.file).resolve()), created=now(), method=spec.method,
                sampler=sampler_type(spec), metric=s.metric.name, goal=s.metric.goal, seed=s.seed,
                parallel=s.parallel_set or 0, trials=s.max_trials, time_s=spec.budget.time_s,
                target=spec.budget.target, tracking_uri=s.uri, experiment=s.experiment,
                experiment_id=parent.experiment_id, parent_run_id=parent.run_id, wandb_mode=s.wandb.mode,
                parallel_set=s.parallel_set, wandb_project=s.wandb.project, wandb_entity=s.wandb.entity,
                deterministic=s.deterministic,
            )
        record = self.resumed
        record.status, record.stop_reason, record.ended = "running", None, None
        record.resumed += 1
        record.trials, record.tracking_uri, record.wandb_mode = s.max_trials, s.uri, s.wandb.mode
        record.wandb_project, record.wandb_entity = s.wandb.project, s.wandb.entity
        record.deterministic = s.deterministic
        return record

    def _new_executor(self, history: tuple[Any, ...]) -> Executor:
        """The executor the options name, built for this sweep's trials."""
        spec, s, r = self.spec, self.settings, self.spec.resources
        et = spec.early_terminate
        plan = Plan(cpus=r.cpus, gpus=r.gpus, agents_only=r.agents_only, reuse_workers=r.reuse_workers,
                    heartbeat_timeout_s=spec.faults.heartbeat_timeout_s, trainer=spec.trainer or "",
                    tracking_uri=s.uri, wandb=s.wandb, parallel=s.parallel_set, workdir=str(s.workdir),
                    judge=JudgeSpec(et, s.stop_metric or s.metric.name, s.stop_goal, history) if et else None)
        if self.opts.executor == "local":
            return LocalExecutor(plan)
        from .execution import RayExecutor

        return RayExecutor(plan, self.opts.address)

    def _open_parent(self, params: dict[str, Any]) -> tracking.MlflowSweep:
        spec, s = self.spec, self.settings
        if self.resumed is not None:
            return tracking.MlflowSweep.reopen(s.uri, s.metric.name, self.resumed.experiment_id,
                                               self.resumed.parent_run_id)
        return tracking.MlflowSweep.create(
            s.uri, s.experiment, s.metric.name, f"{s.name}-{s.sweep_id}",  # the id tells apart the sweeps of one file
            tags={"sweeps.sweep_id": s.sweep_id, "sweeps.role": "sweep",
                  **({"mlflow.note.content": spec.description} if spec.description else {})},
            params={k: v for k, v in params.items() if v is not None}, text=spec.text, filename=Path(spec.file).name)


class Loop:
    """ask → submit → wait → tell, until the budget, the grid, a target, the failure budget, a deadline or
    the user stops it; built whole by :class:`Controller`."""

    def __init__(self, spec: SweepSpec, settings: Settings, study: optuna.Study, executor: Executor,
                 parent: tracking.MlflowSweep, trackers: Fanout, record: SweepRecord, stock: Stock | None, *,
                 say: Callable[[str], None], interrupts: Callable[[], int]) -> None:
        self.spec, self.s, self.study, self.executor = spec, settings, study, executor
        self.parent, self.trackers, self.record = parent, trackers, record
        self.say, self.interrupts = say, interrupts
        self.running: dict[Any, tuple[optuna.trial.Trial, TrialRequest, float]] = {}
        self.finished = 0
        self.best: Best | None = None
        #: KILLED: trials the sweep itself stopped (its time budget, a second Ctrl-C), FAIL in the study
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
        self.launched = 0  # trials started against the budget (runs of the same params again do not count)
        self._waiting = 0  # left enqueued by a controller that died
        #: trials to run again with the same params: (Optuna params, user attrs)
        self.reruns: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.node_streak: dict[str, int] = {}
        self.excluded: set[str] = set()
        self.failed_out = False
        self.stop: Stop | None = None
        #: what people read of the stop (the stop's value, or more where it says more)
        self.stop_message: str | None = None
        self.repro_tags, self.git_diff = git_state(settings.workdir)
        #: keep: {models: K}: the trials whose models were dropped, and the models' ids
        self.dropped: set[int] = set()
        self.dropped_models: list[str] = []
        capacity = self._capacity()
        self.parallel = settings.parallel_set or capacity
        if self.parallel > capacity:
            logger.warning("parallel %d is more than the cluster holds (%d); trials will queue", self.parallel, capacity)
        self._next_check = time.monotonic() + CHECK_EVERY_S
        parent.tags({"sweeps.parallel": self.parallel})
        record.parallel = record.parallel or self.parallel
        if stock is not None:
            self._adopt(stock)
        record.save(settings.state)

    def _adopt(self, stock: Stock) -> None:
        """A resumed sweep goes on from what its study holds."""
        self.launched, self._waiting, self.finished = stock.launched, stock.waiting, stock.finished
        self.counts.update(stock.counts)
        for params, attrs, number, reason in stock.again:
            self._queue_again(params, attrs, number, reason, lost=True)
        self.say(f"{self.finished} trials done ({said_counts(self.counts)}); {len(self.reruns)} to run again")
        if stock.best is not None:
            self.best = Best(*stock.best)
            self.trackers.best(self.best, None)
        # the curve reaches what was settled: the dead controller's last points may be lost,
        # and when its last trials ended after it died, no trial of this run adds one
        self._best_point()

    def _best_point(self) -> None:
        """The best-so-far curve's point for the trials finished now."""
        self.trackers.progress(self.finished, self.best)

    def progress(self) -> Progress:
        """A snapshot of the sweep for the live view."""
        from .live import Progress

        best = self.best
        lines = self.executor.lines(list(self.running))
        return Progress(
            sweep_id=self.s.sweep_id, metric=self.s.metric.name, total=self.s.max_trials, finished=self.finished,
            counts=dict(self.counts),
            running=tuple((r.number, t0, r.params, lines.get(h, "")) for h, (_, r, t0) in self.running.items()),
            best=(best.value, best.number, best.run_id, best.params) if best else None,
            reruns=len(self.reruns), excluded=tuple(sorted(self.excluded)),
        )

    def run(self, refresh: Callable[[Progress], None]) -> None:
        """Until no trial runs and none is left to start. A time budget counts from here: the set-up
        (starting Ray, opening the stores) is not the trials' time."""
        time_s = self.spec.budget.time_s
        deadline = time.monotonic() + time_s if time_s else None
        while True:
            if self.interrupts() >= 2:
                self._stop(Stop.INTERRUPTED, force=True)
                self._cancel_all("interrupted twice")
                return
            if self.interrupts() == 1 and self.stop is None:
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
            # deterministic: a batch starts once the last one ended, so each ask sees the same results every time
            fill = not self.s.deterministic or not self.running
            while fill and again and self.reruns and len(self.running) < self.parallel:
                self._launch_one()
            while fill and self.stop is None and len(self.running) < self.parallel:
                if self.s.max_trials is not None and self.launched >= self.s.max_trials:
                    if self.s.points is not None and self.s.max_trials == len(self.s.points):
                        self._stop(Stop.GRID_EXHAUSTED if self.s.points_kind == "grid" else Stop.SPACE_EXHAUSTED)
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
        if not self.s.parallel_set and not self.s.deterministic:  # a deterministic sweep keeps its batch size
            self.parallel = max(1, capacity)

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
            if self.s.points is not None:
                index = self.launched
                self.study.enqueue_trial(spec.optuna_params(self.s.points[index]), user_attrs={"grid_index": index})
            self.launched += 1
        trial = self.study.ask()
        flat = spec.suggest(trial)
        number = trial.number
        seed = trial_seed(self.s.seed, number)
        run_name = f"{self.s.name}-{number}"
        again = {"sweeps.retry_of": str(trial.user_attrs["retry_of"]), "sweeps.attempt": str(trial.user_attrs["attempt"])} \
            if "retry_of" in trial.user_attrs else {}
        run_id = tracking.create_run(
            self.s.uri, self.parent.experiment_id, run_name,
            tags={tracking.PARENT_TAG: self.parent.run_id, "sweeps.sweep_id": self.s.sweep_id, "sweeps.trial": str(number),
                  "sweeps.role": "trial", "sweeps.seed": str(seed), **self.repro_tags, **again,
                  # MLflow's Source column: the trainer or the program
                  "mlflow.source.name": spec.trainer or spec.program or "", "mlflow.source.type": "LOCAL"},
        )  # the worker logs the params with its own tags, in one write
        trial.set_user_attr("config", flat)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("wandb_id", new_run_id())
        request = TrialRequest(
            sweep_id=self.s.sweep_id, run_name=run_name, number=number, config=spec.nest(flat), params=flat, seed=seed,
            trainer=spec.trainer or "", metric=self.s.metric.name, tracking_uri=self.s.uri, run_id=run_id,
            wandb=self.s.wandb, parent_run_id=self.parent.run_id, git_diff=self.git_diff, stop_metric=self.s.stop_metric,
            wandb_id=trial.user_attrs["wandb_id"], workdir=str(self.s.workdir),
            program=Program(spec.program, spec.command) if spec.trainer is None and spec.program else None,
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
            reached = self.best.value >= target if self.s.metric.goal == "maximize" else self.best.value <= target
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
            self._keep_models()
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
        if outcome.cancelled:
            trial.set_user_attr("killed", True)  # stopped by the sweep: no failure of the trainer's
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.counts["KILLED" if outcome.cancelled else "FAIL"] += 1
        state = "KILLED" if outcome.cancelled else "FAIL"
        try:  # with the params: the worker may not have written them
            tracking.end_given_up(self.s.uri, request.run_id, outcome.reason, state, request.params)
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
        better = self.best is None or (value > self.best.value if self.s.metric.goal == "maximize" else value < self.best.value)
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

    def _keep_models(self) -> None:
        """``keep: {models: K}``: the models of trials that fell out of the K best are deleted."""
        import optuna

        k = self.spec.keep_models
        if k is None or not tracking.enabled(self.s.uri):
            return
        done = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        sign = -1 if self.s.metric.goal == "maximize" else 1
        for t in sorted(done, key=lambda t: (sign * t.value, t.number))[k:]:
            if t.number not in self.dropped:
                self.dropped.add(t.number)
                self.dropped_models += tracking.drop_models(
                    self.s.uri, self.parent.experiment_id, t.user_attrs.get("mlflow_run_id", ""),
                    f"not among the {k} best trials (keep: {{models: {k}}})")

    def close(self, plots: list[Path]) -> SweepSummary:
        """The sweep ran to its end (or was stopped): its table and plots kept, its records closed."""
        status = "FAILED" if self.failed_out else "KILLED" if self.interrupts() else "FINISHED"
        tracking.free_models(self.s.uri, self.dropped_models)
        table = self.s.state / "trials.csv"
        trials_frame(self.study).to_csv(table, index=False)
        self.trackers.end(SweepEnd(status, self.stop_message or "done", self.finished, dict(self.counts),
                                   (table, *plots)))
        self.record.status = status.lower()
        self.record.stop_reason = self.stop_message
        self.record.ended = now()
        self.record.save(self.s.state)
        best = self.best
        return SweepSummary(
            id=self.s.sweep_id, state_dir=self.s.state, record=self.record,
            best_value=best.value if best else None, best_params=best.params if best else None,
            best_run_id=best.run_id if best else None, best_trial=best.number if best else None,
            counts=dict(self.counts),
        )

    def crashed(self) -> None:
        """The controller itself failed: close what it opened, keep what was recorded."""
        for _, request, _ in list(self.running.values()):
            try:
                tracking.end_run(self.s.uri, request.run_id, "KILLED")
            except Exception:  # noqa: BLE001
                pass
        try:
            self.trackers.end(SweepEnd("FAILED", "the controller failed", self.finished, dict(self.counts)))
            self.record.status = "failed"
            self.record.ended = now()
            self.record.save(self.s.state)
        except Exception as exc:  # noqa: BLE001
            logger.warning("could not close the parent run: %s", exc)


class _Signals:
    """Counts SIGINT and SIGTERM while a sweep runs (the first stops new trials, the second running ones);
    in threads other than the main one, where signals cannot be caught, it counts nothing."""

    def __init__(self) -> None:
        self._count = 0
        self._old: dict[int, Any] = {}

    def count(self) -> int:
        return self._count

    def _handler(self, signum: int, frame: Any) -> None:
        self._count += 1

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                old = signal.signal(s, self._handler)
                self._old.setdefault(s, old)

    def __enter__(self) -> _Signals:
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


class _Background:
    """Runs ``fn`` in a thread; ``result()`` waits for it and raises what it raised."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to result()
                self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self._value
