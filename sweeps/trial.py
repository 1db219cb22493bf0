"""One trial, as it runs on a worker: seed, call the trainer, record everything.

The controller creates the trial's MLflow child run before submitting it (so a
lost worker never leaves a run nobody can close); this module logs into it,
mirrors to W&B and returns a :class:`TrialResult`. It knows nothing of Ray.

The trainer never waits for tracking: everything written to MLflow and W&B
goes through a :class:`Recorder` thread, in order, to the trial's
:class:`TrialRecord`, and the trial's result is returned only once MLflow has
all of it. The record is kept in this process, or (on Ray) by the node's
recorder process, which writes the records of every trial on its node so that
workers import neither MLflow nor W&B. The W&B calls go on to a
:class:`TrialMirror`, on the W&B thread (``mirror.later``) of the recording
process or of the node's W&B process, so a trial's W&B run finishes while the
next trial starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import json
import logging
import math
import os
import platform
import queue
import random
import re
import shutil
import socket
import tempfile
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import Any, Callable, Iterator

from . import tracking
from .mirror import Kept, LaterRun, OwnRun, WandbSettings
from .program import Program, ProgramRun, Pulse, Target

logger = logging.getLogger(__name__)

PACKAGES = ("sweeps-orchestrator", "optuna", "mlflow", "wandb", "ray", "torch", "numpy", "pandas", "scikit-learn")


class TrialState(str, Enum):
    """How a trial that ran to its end ended (Optuna's names for them)."""

    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"  # stopped early by early termination
    FAIL = "FAIL"  # the trainer raised, or gave no usable metric


class LostCause(str, Enum):
    """Why the controller gave a trial up before it ended."""

    DIED = "died"  # its worker, its node or its recorder died: its params run again
    SILENT = "silent"  # no heartbeat for heartbeat_timeout: handled as DIED
    CANCELLED = "cancelled"  # stopped on purpose (time budget, a second Ctrl-C): not run again


@dataclass(frozen=True)
class Lost:
    """A trial the controller gave up on; ``reason`` is for people (MLflow's ``sweeps.error``)."""

    number: int
    reason: str
    cause: LostCause = LostCause.DIED
    node: str = ""

    @property
    def cancelled(self) -> bool:
        return self.cause is LostCause.CANCELLED


@dataclass(frozen=True)
class TrialRequest:
    """Everything a worker needs to run one trial (plain data, pickled by Ray)."""

    sweep_id: str
    run_name: str
    number: int
    config: dict[str, Any]
    params: dict[str, Any]
    seed: int
    trainer: str
    metric: str
    tracking_uri: str
    run_id: str
    wandb: WandbSettings | None = None
    #: the sweep's parent run: each worker environment's full package list is kept there once
    parent_run_id: str | None = None
    git_diff: str | None = None
    #: the metric early termination judges by (None: no early termination)
    stop_metric: str | None = None
    #: the trial's W&B run id, chosen by the controller
    wandb_id: str | None = None
    #: a W&B program to run instead of ``trainer``
    program: Program | None = None
    #: the launch directory (a program's path starts there)
    workdir: str = "."
    #: of "mlflow" and "wandb", those the trial's own code logs to itself (set where the trial runs)
    uses: tuple[str, ...] = ()

    @property
    def mirrored(self) -> bool:
        """Sweeps writes the trial's W&B run: W&B is on, and the trial's own code does not make the run."""
        return self.wandb is not None and self.wandb.mode != "disabled" and "wandb" not in self.uses

    @property
    def key(self) -> str:
        """The trial's name among the records a node's recorder keeps: unique in the sweep even where
        MLflow is off (then every ``run_id`` is empty)."""
        return f"{self.sweep_id}/trial-{self.number}"


@dataclass(frozen=True)
class TrialResult:
    number: int
    state: TrialState
    value: float | None
    metrics: dict[str, float]
    run_id: str
    duration_s: float
    steps: int
    error: str | None = None
    host: str = ""
    gpu_ids: tuple[str, ...] = ()
    #: every reported value of the stopping metric, in order
    curve: tuple[float, ...] = ()
    pruned_reason: str | None = None
    node: str = ""


class StopTrial(Exception):
    """Raised by ``report()`` when early termination stops the trial.

    A trainer need not catch it; if it does, the next ``report()`` raises again.
    """


class Recorder:
    """Runs a trial's tracking calls in a thread of its own, one after another.

    ``do(fn)`` queues a call; ``close()`` waits for every queued call and
    raises the first error of one queued with ``quiet=False`` (the trial's
    record could not be written: the trial is lost and runs again). When no
    call comes for ``every`` seconds, ``tick`` runs (it flushes the metrics
    buffer: what a trial reported reaches the store within about a second,
    however long it goes on without reporting).
    """

    def __init__(self, name: str, tick: Callable[[], Any] | None = None, every: float = 1.0) -> None:
        # bounded: a trainer that reports faster than the store takes it waits, instead of filling memory
        self._calls: queue.Queue[tuple[Callable[[], Any], bool] | None] = queue.Queue(maxsize=10_000)
        self._tick, self._every = tick, every
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"sweeps-recorder-{name}", daemon=True)
        self._thread.start()

    def do(self, fn: Callable[[], Any], quiet: bool = False) -> None:
        self._calls.put((fn, quiet))

    def _next(self) -> tuple[Callable[[], Any], bool] | None:
        while True:
            try:
                return self._calls.get(timeout=self._every)
            except queue.Empty:
                if self._tick is not None:
                    quietly(self._tick)

    def _work(self) -> None:
        while (call := self._next()) is not None:
            fn, quiet = call
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - kept for close(), or printed
                if quiet:
                    print(f"sweeps: could not record: {exc}", file=sys.stderr)
                elif self._error is None:
                    self._error = exc

    def close(self) -> None:
        self._calls.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class TrialEnd:
    """How a trial ended, as its record keeps it."""

    state: TrialState
    final: dict[str, float]
    error: str | None = None
    traceback: str | None = None
    pruned: str | None = None
    #: local files the trial's run keeps as artifacts (a program's output)
    files: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        """What the trial's W&B run's summary says of its end."""
        return {**self.final, "sweeps/state": self.state, **({"sweeps/error": self.error} if self.error else {}),
                **({"sweeps/pruned": True, "sweeps/pruned_reason": self.pruned} if self.pruned else {})}


class TrialMirror:
    """A trial's W&B run, written on this process's W&B thread (a :class:`LaterRun`), in call order:
    ``open``, ``log`` (a batch of reports), ``close``. Kept by the process that records the trial, or
    (on Ray) by its node's W&B process (``execution.NodeMirror``)."""

    def __init__(self, req: TrialRequest, resume: bool = False) -> None:
        self.req, self.resume = req, resume
        self.run: LaterRun | None = None

    def open(self) -> None:
        req = self.req
        self.run = LaterRun(req.wandb, name=req.run_name, group=req.sweep_id, job_type="trial", config=req.params,
                            run_id=req.wandb_id, requirements=False, resume=self.resume)
        self.run.summary({"sweeps/mlflow_run_id": req.run_id, "sweeps/trial": req.number, "sweeps/seed": req.seed})

    def log(self, batch: list[tuple[int, dict[str, float]]]) -> None:
        if self.run is not None:
            self.run.log(batch)

    def keep(self, kept: Kept) -> None:
        if self.run is not None:
            self.run.keep(kept)
        else:
            kept.remove()

    def close(self, summary: dict[str, Any], failed: bool) -> None:
        if self.run is not None:
            self.run.summary(summary)
            self.run.finish(failed)
            self.run = None


class TrialRecord:
    """A trial's MLflow run and W&B run, written from the process that holds this object.

    Three verbs (``start``, ``metrics``, ``end``), called in order on one
    thread, and ``flush_due`` in between: the worker's :class:`Recorder`
    thread calls them for a trial recorded in the worker itself, a node's
    recorder process (``execution.NodeRecorder``) for the trials of its node.
    The W&B run is ``mirror`` (default: a :class:`TrialMirror` in this
    process); it is given the same calls in the same order, and closed only
    once MLflow has the trial's end.
    """

    def __init__(self, req: TrialRequest, mirror: Any = None) -> None:
        self.req = req
        self.buffer = tracking.MetricBuffer(req.tracking_uri, req.run_id, shared="mlflow" in req.uses)
        # a trial whose own code makes its W&B run (a program, a trainer calling wandb) is not mirrored again
        self.mirror: Any = (mirror or TrialMirror(req)) if req.mirrored else None

    def start(self, tags: Callable[[], dict[str, str]], packages: Callable[[], tuple[str, str]]) -> None:
        """``tags()``: what names the worker's environment; ``packages()``: its package list (digest, text).
        Both are read only where MLflow records."""
        req, uri, run_id = self.req, self.req.tracking_uri, self.req.run_id
        if tracking.enabled(uri):
            self.buffer.describe(tags(), req.params)  # written with the first metrics, within a second
            quietly(lambda: keep_requirements(uri, req.parent_run_id, packages()))
            what = ({"program": req.program.path, "command": list(req.program.command)}
                    if req.program and not req.program.function else {"trainer": req.trainer})
            tracking.log_text(uri, run_id, json.dumps({"config": req.config, "seed": req.seed, **what},
                                                      indent=2, default=str), "config.json")
            if req.git_diff:
                tracking.log_text(uri, run_id, req.git_diff, "git.diff")
        if self.mirror is not None:
            self.mirror.open()

    def metrics(self, batch: list[tuple[int, dict[str, float]]]) -> None:
        """Reports, as ``(step, values)`` in the order they were made."""
        for step, values in batch:
            self.buffer.add(step, values)
        if self.mirror is not None:
            self.mirror.log(batch)

    def flush_due(self) -> None:
        self.buffer.flush_due()

    def keep(self, kept: Kept) -> None:
        """What the trainer kept (``report.save``, media, a model's copy for W&B), staged on this node: an
        artifact of the MLflow run, and to the W&B run, which removes the staged copy once it has it."""
        uri, run_id = self.req.tracking_uri, self.req.run_id
        try:
            if kept.folder is not None and os.path.isdir(kept.path):
                tracking.log_artifacts(uri, run_id, kept.path, kept.folder)
            elif kept.folder is not None:
                tracking.log_artifact(uri, run_id, kept.path, kept.folder)
        finally:
            if kept.wandb is not None and self.mirror is not None:
                self.mirror.keep(kept)
            else:
                kept.remove()

    def end(self, how: TrialEnd) -> None:
        """Tags, params and the last metrics in one write (the trial counts once they are in), then the
        W&B run's summary and the MLflow run's end state."""
        uri, run_id = self.req.tracking_uri, self.req.run_id
        if how.error is not None:
            if how.traceback:
                quietly(lambda: tracking.log_text(uri, run_id, how.traceback or "", "traceback.txt"))
            self.buffer.describe({"sweeps.error": how.error})
        if how.pruned:
            self.buffer.describe({"sweeps.pruned": "true", "sweeps.pruned_reason": how.pruned})
        self.buffer.flush()
        for path in how.files:
            quietly(lambda: tracking.log_artifact(uri, run_id, path))
        self.close_mirror(how.summary(), failed=how.error is not None)
        tracking.end_run(uri, run_id, "FAILED" if how.error else "KILLED" if how.pruned else "FINISHED")

    def close_mirror(self, summary: dict[str, Any], failed: bool) -> None:
        if self.mirror is not None:
            self.mirror.close(summary, failed)


class _Reporter:
    """The ``report`` a trainer calls: ``report(step=..., **metrics)``, and what it keeps:
    ``report.model(model)``, ``report.save(path)``.

    With early termination, each value of the stopping metric is judged at
    once; a decision to stop raises :class:`StopTrial` out of ``report``.
    """

    def __init__(self, recorder: Recorder, record: TrialRecord, req: TrialRequest,
                 decide: Callable[[float], str | None] | None = None, own: OwnRun | None = None,
                 pulse: Pulse | None = None) -> None:
        self.recorder, self.record, self.req, self.own, self.pulse = recorder, record, req, own, pulse
        self.stop_metric, self.decide = req.stop_metric, decide
        self.step = -1
        self.count = 0
        self.last: dict[str, float] = {}
        self.curve: list[float] = []
        self.stopped: str | None = None

    def __call__(self, step: int | None = None, **metrics: Any) -> None:
        if self.pulse is not None and self.pulse.cancelled and not self.stopped:
            # cancelled by an executor that cannot kill the trial (the local one): it stops here, as the sweep
            # stops it (its time budget, Ctrl-C), not early termination: run_trial ends it as failed
            self.stopped = LostCause.CANCELLED.value
        if self.stopped:
            raise StopTrial(self.stopped)
        step = self.step + 1 if step is None else int(step)
        numeric = {}
        for k, v in metrics.items():
            if _is_number(v):
                numeric[k] = float(v)
            elif not self._media(k, v, step):
                logger.warning("report(): %s=%r is neither a number nor an image, a figure or a table; not recorded",
                               k, type(v).__name__)
        self.step = max(self.step, step)
        self.count += 1
        self.last.update(numeric)
        self.keep(step, numeric)
        if self.stop_metric in numeric:
            value = numeric[self.stop_metric]  # type: ignore[index]
            self.curve.append(value)
            if self.decide is not None:
                reason = self.decide(value)
                if reason:
                    self.stopped = reason
                    raise StopTrial(reason)

    def model(self, model: Any, name: str = "model", example: Any = None) -> str:
        """Keep a trained model: an MLflow logged model of the trial's run, in the flavour that fits it
        (a torch module, a scikit-learn estimator, an ``mlflow.pyfunc.PythonModel``), and a W&B model
        artifact of the trial's W&B run. ``example``: an input (a batch of 2 or more for torch, whose
        model is then exported with ``torch.export``; pickled without one). Written now, on this
        thread; returns its model URI (``models:/m-...``), which ``sweeps best`` names."""
        req = self.req
        if not tracking.enabled(req.tracking_uri):
            logger.warning("report.model(): MLflow is off for this sweep; the model is not kept")
            return ""
        uri = tracking.log_model(req.tracking_uri, req.run_id, model, name, example)
        if self._mirrored:
            stage = tempfile.mkdtemp(prefix="sweeps-model-")
            self._keep(Kept(stage, tracking.download(req.tracking_uri, uri, stage), None,
                            ("model", f"{req.run_name}-{name}")))
        return uri

    def _media(self, key: str, value: Any, step: int) -> bool:
        """An image (a PIL image, a numpy array of HxW or HxWxC), a matplotlib figure or a pandas table,
        written now as a file: an MLflow artifact ``media/<key>/step-<step>.png|csv`` and W&B media at
        ``step``. False for anything else."""
        kind = _media_kind(value)
        if kind is None:
            return False
        stage = tempfile.mkdtemp(prefix="sweeps-media-")
        path = os.path.join(stage, f"step-{step}.{'csv' if kind == 'table' else 'png'}")
        if kind == "table":
            value.to_csv(path, index=False)
        elif kind == "figure":
            value.savefig(path, format="png")
        elif kind == "pil":
            value.save(path, format="PNG")
        else:
            import matplotlib.image

            matplotlib.image.imsave(path, value)
        self._keep(Kept(stage, path, f"media/{key}", ("media", key, step) if self._mirrored else None))
        return True

    @property
    def _mirrored(self) -> bool:
        """The trial has a W&B run that sweeps writes: in this process, or mirrored by its record."""
        return self.own is not None or self.req.mirrored

    def _keep(self, kept: Kept) -> None:
        """To the trial's record (MLflow, and W&B where it mirrors), or to the W&B run this process holds."""
        if self.own is not None and kept.wandb is not None:
            own, for_wandb = self.own, kept
            if kept.folder is not None:  # MLflow's copy and W&B's are removed apart: two copies
                twin = tempfile.mkdtemp(prefix="sweeps-media-")
                for_wandb = Kept(twin, shutil.copy2(kept.path, twin), None, kept.wandb)
                self.recorder.do(lambda: self.record.keep(dataclasses.replace(kept, wandb=None)))
            self.recorder.do(lambda: own.keep(for_wandb), quiet=True)
        else:
            self.recorder.do(lambda: self.record.keep(kept))

    def dataset(self, name: str, data: Any) -> str:
        """Declare the data this trial trains on: a pandas DataFrame, a numpy array, or a file or folder. Its
        digest (of the content, not the path) is recorded on the trial's run as an MLflow input (the Dataset
        column) and tag ``sweeps.dataset.<name>``, so trials on different data are told apart; returned."""
        if not tracking.enabled(self.req.tracking_uri):
            return ""
        return tracking.log_dataset(self.req.tracking_uri, self.req.run_id, name, data)

    def save(self, path: str, name: str | None = None) -> None:
        """Keep a file or a folder as an artifact of the trial's run, under ``files/`` (as ``name``).
        Copied now: the trainer may change or remove it after."""
        src = os.fspath(path)
        stage = tempfile.mkdtemp(prefix="sweeps-file-")
        staged = os.path.join(stage, name or os.path.basename(src.rstrip(os.sep)))
        if os.path.isdir(src):
            shutil.copytree(src, staged)
            self.recorder.do(lambda: self.record.keep(Kept(stage, staged, f"files/{os.path.basename(staged)}")))
        else:
            shutil.copy2(src, staged)
            self.recorder.do(lambda: self.record.keep(Kept(stage, staged, "files")))

    def keep(self, step: int, values: dict[str, float]) -> None:
        """Into the trial's record, and its W&B run where the trainer's process holds it."""
        self.recorder.do(lambda: self.record.metrics([(step, values)]))
        if self.own is not None:
            own = self.own
            self.recorder.do(lambda: own.log(step, values), quiet=True)


def load_trainer(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _final(returned: Any, metric: str) -> dict[str, float]:
    """The final metrics in what a trainer returned: a dict's numbers, or a number alone, the objective's value
    (as Optuna's objectives return it)."""
    if _is_number(returned):
        returned = {metric: returned}
    if returned is not None and not isinstance(returned, dict):
        raise TypeError(f"the trainer returned {type(returned).__name__}; return a dict of metrics, the value of "
                        f"'{metric}', or None")
    return {k: float(v) for k, v in (returned or {}).items() if _is_number(v)}


def _call_trainer(trainer: Callable[..., Any], config: dict[str, Any], report: Callable[..., None]) -> Any:
    """``train(config, report)``; ``train(config)`` where the trainer takes one argument (as Ray Tune's do)."""
    import inspect

    try:
        params = list(inspect.signature(trainer).parameters.values())
    except (TypeError, ValueError):  # no signature to read (some builtins): the contract's call
        return trainer(config, report)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) == 1 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        return trainer(config)
    return trainer(config, report)


def trainer_problem(spec: str, workdir: str, same_machine: bool = True) -> str | None:
    """Why ``module:function`` would not load where trials run, found without running any of the user's code:
    a module that is neither in the launch directory ``workdir`` nor installed here (where the trials run on
    ``same_machine``), a module that does not parse, a function its module does not define. None where it
    looks right, and where only running the module could tell (an installed module, ``from m import *``, a
    module ``__getattr__``)."""
    import ast
    import difflib

    module, _, name = spec.partition(":")
    parts = module.split(".")
    here = os.path.join(workdir, *parts)
    file = _module_file(module, workdir)
    if file is None:
        top, installed = os.path.join(workdir, parts[0]), _find_spec(parts[0])
        # its package is here, so the module is missing (a folder without __init__.py is a namespace package,
        # which an installed package of that name comes before)
        if os.path.isfile(os.path.join(top, "__init__.py")) or os.path.isfile(f"{top}.py") or (
                os.path.isdir(top) and (installed is None or installed.origin is None)):
            folder = os.path.dirname(here)
            near = difflib.get_close_matches(parts[-1], _module_names(folder), 1)
            return (f"no module {module} in {folder}" + (f" (did you mean {'.'.join([*parts[:-1], near[0]])}?)"
                                                         if near else ""))
        if not same_machine or installed is not None:
            return None  # an installed package (or, on a cluster, maybe one of the workers')
        near = difflib.get_close_matches(parts[0], _module_names(workdir), 1)
        return (f"no module {module} in the launch directory {workdir} or among the installed packages"
                + (f" (did you mean {near[0]}?)" if near else ""))
    with open(file, encoding="utf-8", errors="replace") as f:
        source = f.read()
    try:
        tree = ast.parse(source, file)
    except SyntaxError as exc:
        return f"{os.path.relpath(file, workdir)}:{exc.lineno}: SyntaxError: {exc.msg}"
    names: set[str] = set()
    for node in ast.walk(tree):  # every name bound anywhere in it: more than its top level, never less
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(a.asname or a.name.partition(".")[0] for a in node.names)
    fn = _trainer_def(tree, name)
    if fn is not None and not _takes_a_config(fn.args) and not _calls_wandb_init(tree, fn):
        return (f"{os.path.relpath(file, workdir)}:{fn.lineno}: {name}() cannot be called as {name}(config, "
                f"report) or {name}(config), and does not call wandb.init() for its config")
    if name in names or "*" in names or "__getattr__" in names or re.search(rf"\b{re.escape(name)}\b", source):
        return None
    functions = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    near = difflib.get_close_matches(name, sorted(n for n in names if not n.startswith("_")), 1)
    return (f"{os.path.relpath(file, workdir)} defines no {name}"
            + (f" (did you mean {module}:{near[0]}?)" if near else f"; its functions: {', '.join(functions) or 'none'}"))


def _takes_a_config(args: Any) -> bool:
    """A def's arguments (``ast.arguments``) take ``(config, report)`` or ``(config)``."""
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    return (positional >= 1 or args.vararg is not None) and required <= 2 and None not in args.kw_defaults


def wandb_function(trainer: str, metric: str, workdir: str) -> Program | None:
    """The trainer as W&B's agent runs a function, where it is one: a def that takes no ``report`` and calls
    ``wandb.init()`` itself, as in W&B's sweep tutorial (``def train(config=None): with wandb.init(config=config):
    config = wandb.config ...``). It then runs as a W&B program does, in a process of its own
    (:mod:`sweeps.wandb_function`): its ``wandb.init()`` makes the trial's run, with the trial's config over
    the defaults it passes, and what it logs with ``wandb.log`` is the trial's record. None for any other
    trainer (then it is called here), and where its module's file cannot be read."""
    import ast

    module, _, name = trainer.partition(":")
    file = source_file(trainer, None, workdir)
    try:
        with open(file, encoding="utf-8") as f:  # type: ignore[arg-type]
            tree = ast.parse(f.read())
    except (TypeError, OSError, SyntaxError, ValueError):
        return None
    fn = _trainer_def(tree, name)
    if fn is None or _takes_a_report(fn.args) or not _calls_wandb_init(tree, fn):
        return None
    parts = module.split(".")  # its file from the launch directory, where it is there (ProgramRun.cwd)
    path = (os.path.join(*parts, "__init__.py") if os.path.basename(file) == "__init__.py"
            else os.path.join(*parts[:-1], f"{parts[-1]}.py"))
    return Program(path, ("${interpreter}", "-m", "sweeps.wandb_function", module, name, metric, "${args_json_file}"),
                   trainer)


def _trainer_def(tree: Any, name: str) -> Any:
    """The module's last top-level ``def name``, where it is undecorated (a decorator may change how it is
    called); else None."""
    import ast

    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name]
    return defs[-1] if defs and not defs[-1].decorator_list else None


def _takes_a_report(args: Any) -> bool:
    """A def's arguments (``ast.arguments``) take a second positional one, ``report``."""
    return len(args.posonlyargs) + len(args.args) >= 2 or args.vararg is not None


def _calls_wandb_init(tree: Any, fn: Any) -> bool:
    """The def ``fn`` of module ``tree`` calls ``wandb.init()`` (by any name its imports give it)."""
    import ast

    modules, inits = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.asname or a.name for a in node.names if a.name == "wandb")
        elif isinstance(node, ast.ImportFrom) and node.module == "wandb":
            inits.update(a.asname or a.name for a in node.names if a.name == "init")
    return any(isinstance(node, ast.Call) and (
        isinstance(node.func, ast.Attribute) and node.func.attr == "init" and isinstance(node.func.value, ast.Name)
        and node.func.value.id in modules or isinstance(node.func, ast.Name) and node.func.id in inits)
        for node in ast.walk(fn))


def _find_spec(name: str) -> Any:
    """The spec of module ``name`` on this process's path, or None. No code of it runs (but a dotted name's
    parent packages are imported)."""
    import importlib.util

    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _module_names(folder: str) -> list[str]:
    """The modules and packages in ``folder``, by name."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    return [e[:-3] if e.endswith(".py") else e for e in entries
            if e.endswith(".py") or os.path.isfile(os.path.join(folder, e, "__init__.py"))]


def seed_everything(seed: int) -> None:
    """Seed random, numpy and torch for this trial.

    torch is seeded when it is imported (by the trainer's module, which is
    loaded first): importing it here for trainers that never use it would cost
    seconds in every new worker.
    """
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def gpu_ids() -> tuple[str, ...]:
    ids = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return tuple(i for i in ids.split(",") if i.strip())


@functools.cache
def gpu_name(ids: tuple[str, ...]) -> str | None:
    """The name of the first assigned GPU; 'logical' when Ray gave ids of GPUs that do not exist."""
    if not ids:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", ids[0]],
                             capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return "logical (no physical GPU)"


@functools.cache
def environment_tags() -> dict[str, str]:
    """Python, package versions and host: what it takes to rebuild the environment.

    Read once per worker process (a process's packages do not change under it).
    ``sweeps.requirements`` names the full package list, kept on the parent run
    as ``environments/requirements-<digest>.txt``.
    """
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "sweeps.python": platform.python_version(),
        "sweeps.platform": platform.platform(),
        "sweeps.packages": json.dumps(versions, sort_keys=True),
        "sweeps.host": socket.gethostname(),
        "sweeps.requirements": requirements()[0],
    }


def source_tags(req: TrialRequest) -> dict[str, str]:
    """The file of the trial's code (the trainer's module, or the program) and a digest of its bytes, for
    ``sweeps reproduce`` to tell whether it changed since; nothing where it cannot be found."""
    path = source_file(req.trainer, req.program, req.workdir)
    if path is None:
        return {}
    relative = os.path.relpath(path, req.workdir)
    shown = path if relative.startswith("..") else relative
    return {"sweeps.source.path": shown, "sweeps.source.sha256": file_digest(path)}


def source_file(trainer: str, program: Program | None, workdir: str) -> str | None:
    """The trainer's module file (``trainer`` is `module:function`), or the program's in ``workdir``, as this
    process finds it."""
    if program is not None and not program.function:
        path = os.path.join(workdir, program.path)
        return path if os.path.isfile(path) else None
    module = trainer.partition(":")[0]
    found = _find_spec(module)  # what this process imports (a worker: Ray's copy of the launch directory) ...
    if found is not None and found.origin and os.path.isfile(found.origin):
        return found.origin
    return _module_file(module, workdir)  # ... else the launch directory's (`sweeps reproduce` there)


def _module_file(module: str, workdir: str) -> str | None:
    """Module ``module``'s file in the launch directory ``workdir`` (``a/b.py`` or ``a/b/__init__.py``), or None."""
    here = os.path.join(workdir, *module.split("."))
    return next((f for f in (f"{here}.py", os.path.join(here, "__init__.py")) if os.path.isfile(f)), None)


def file_digest(path: str) -> str:
    """sha256 of a file's bytes, 12 hex digits."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


_SCAN_LOCK = threading.Lock()


def requirements() -> tuple[str, str]:
    """This process's installed packages as ``name==version`` lines, and a digest of them.

    Read once per process: a worker's warm-up and its first trial may both ask at once, and the
    scan (50 ms alone) is not done twice."""
    with _SCAN_LOCK:
        return _requirements()


@functools.cache
def _requirements() -> tuple[str, str]:
    from importlib import metadata

    # each distribution's metadata parsed once (``d.version`` parses it again: 0.12 s against 0.04 s
    # for the 150 packages of this project's environment, in every worker)
    found = (d.metadata for d in metadata.distributions())
    lines = sorted({f"{md['Name']}=={md['Version']}" for md in found if md["Name"]}, key=str.lower)
    text = f"# python {platform.python_version()} on {platform.platform()}\n" + "\n".join(lines) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()[:12], text


_KEPT: set[tuple[str, str, str]] = set()


def keep_requirements(uri: str, parent_run_id: str | None, packages: tuple[str, str] | None = None) -> None:
    """Write an environment's package list (``requirements()`` of the process it names; this one's by
    default) to the parent run, once per process and sweep."""
    digest, text = packages or requirements()
    key = (uri, parent_run_id or "", digest)
    if parent_run_id and key not in _KEPT:
        tracking.log_text(uri, parent_run_id, text, f"environments/requirements-{digest}.txt")
        _KEPT.add(key)


def uses(req: TrialRequest) -> tuple[str, ...]:
    """Of MLflow and W&B, those the trial's own code logs to: both for a program; for a trainer, those
    its module imports (``import mlflow``, ``from wandb import ...``)."""
    if req.program is not None:
        return ("mlflow", "wandb")
    try:
        module = importlib.import_module(req.trainer.partition(":")[0])
    except Exception:  # noqa: BLE001 - the trial reports it when it loads the trainer
        return ()
    names = {v.__name__ if isinstance(v, ModuleType) else str(getattr(v, "__module__", "") or "")
             for v in vars(module).values()}
    return tuple(lib for lib in ("mlflow", "wandb") if any(n == lib or n.startswith(f"{lib}.") for n in names))


@contextlib.contextmanager
def own_calls(req: TrialRequest, exclusive: bool) -> Iterator[None]:
    """While the trainer runs, the trial's MLflow run is MLflow's active run on this thread: the
    trainer's own ``mlflow.*`` calls land in it. In a process that runs one trial at a time
    (``exclusive``), ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` name it too, for a trainer that
    imports MLflow only when it runs, and for the processes it starts."""
    on = tracking.enabled(req.tracking_uri) and req.program is None
    saved = tracking.saved_env()
    if on and exclusive:
        os.environ.update(MLFLOW_TRACKING_URI=req.tracking_uri, MLFLOW_RUN_ID=req.run_id)
    try:
        if on and "mlflow" in req.uses:
            tracking.activate(req.tracking_uri, req.run_id)
        yield
    finally:
        if on:
            quietly(lambda: tracking.deactivate(req.run_id))
            tracking.restore_env(saved)


def _own_run(req: TrialRequest, exclusive: bool) -> OwnRun | None:
    """The trial's W&B run, opened here as ``wandb.run`` for a trainer that calls W&B itself, in a process
    that runs one trial at a time (elsewhere the trial is mirrored as usual)."""
    if req.program is not None or not exclusive or "wandb" not in req.uses or req.wandb is None \
            or req.wandb.mode == "disabled":
        return None
    run = OwnRun(req.wandb, name=req.run_name, group=req.sweep_id, config=req.params, run_id=req.wandb_id or "")
    return run if run.active else None


def _program(req: TrialRequest, pulse: Pulse | None) -> ProgramRun | None:
    if req.program is None:
        return None
    return ProgramRun(req.program, Target(req.number, req.seed, req.run_name, req.sweep_id, req.wandb, req.wandb_id or "",
                                          req.tracking_uri, req.run_id, req.workdir), pulse)


def run_trial(req: TrialRequest, decide: Callable[[float], str | None] | None = None,
              node_tags: dict[str, str] | None = None, record: Callable[[TrialRequest], Any] | None = None, *,
              pulse: Pulse | None = None, exclusive: bool = False) -> TrialResult:
    """Run one trial to the end. Never raises for a trainer's failure; raises when its record could
    not be written (the trial is then lost, and runs again).

    ``decide(value)`` judges each reported value of ``req.stop_metric``: a
    reason to stop, or None. ``record(req)`` makes what keeps the trial's record (default: a
    TrialRecord here). ``exclusive``: no other trial runs in this process meanwhile (a Ray worker).
    """
    start = time.monotonic()
    ids = gpu_ids()
    req = dataclasses.replace(req, program=req.program or wandb_function(req.trainer, req.metric, req.workdir))
    req = dataclasses.replace(req, uses=uses(req))
    own = _own_run(req, exclusive)
    if own is None and req.program is None:
        req = dataclasses.replace(req, uses=tuple(u for u in req.uses if u != "wandb"))
    program = _program(req, pulse)
    record = (record or TrialRecord)(req)
    recorder = Recorder(str(req.number), tick=record.flush_due)
    # the tags are read on the recorder thread: the trainer does not wait for them
    recorder.do(lambda: record.start(lambda: _tags(req, node_tags, ids), requirements))
    report = _Reporter(recorder, record, req, decide, own, pulse)
    error = tb = None
    value = None
    final: dict[str, float] = {}
    try:
        trainer = program or load_trainer(req.trainer)
        seed_everything(req.seed)
        with own_calls(req, exclusive):
            returned = _call_trainer(trainer, req.config, report)
        final = _final(returned, req.metric)
        changed = {k: v for k, v in final.items() if report.last.get(k) != v}
        if changed:
            # a returned value that differs from the last report is one more point
            # on that curve; new keys sit at the last step
            step = report.step + 1 if any(k in report.last for k in changed) else max(report.step, 0)
            report.keep(step, changed)
        value = final.get(req.metric, report.last.get(req.metric))
        if report.stopped:  # the trainer swallowed StopTrial and returned
            raise StopTrial(report.stopped)
        if value is None and program is not None:
            raise ValueError(f"{program.program.function or program.program.path} never logged the metric "
                             f"'{req.metric}' with wandb.log (or in wandb.run.summary) in the W&B run {req.wandb_id} "
                             "that sweeps started it with")
        if value is None:
            raise ValueError(f"the trainer neither returned nor reported the metric '{req.metric}'")
        if not math.isfinite(value):
            raise ValueError(f"the metric '{req.metric}' is {value}")
    except StopTrial:
        value = report.last.get(req.metric)
    except Exception as exc:  # noqa: BLE001 - a failing trainer fails its trial, not the sweep
        error = f"{type(exc).__name__}: {exc}"
        tb = traceback.format_exc()
        logger.info("trial %s failed: %s", req.number, error)  # the controller says so, once
    if report.stopped == LostCause.CANCELLED.value and error is None:
        error = report.stopped
    pruned = report.stopped if error is None else None
    state = TrialState.FAIL if error else TrialState.PRUNED if pruned else TrialState.COMPLETE
    how = TrialEnd(state, final, error, tb, pruned, program.files() if program is not None else ())
    recorder.do(lambda: record.end(how))
    if own is not None:
        recorder.do(lambda: own.close({**how.summary(), "sweeps/mlflow_run_id": req.run_id}, error is not None),
                    quiet=True)
    try:
        recorder.close()
    finally:
        if program is not None:
            program.cleanup()
    return TrialResult(
        number=req.number, state=state, value=None if error else value, metrics={**report.last, **final},
        run_id=req.run_id, duration_s=time.monotonic() - start, steps=report.count, error=error,
        host=socket.gethostname(), gpu_ids=ids, curve=tuple(report.curve), pruned_reason=pruned,
        node=(node_tags or {}).get("sweeps.node.id", ""),
    )


def _tags(req: TrialRequest, node_tags: dict[str, str] | None, ids: tuple[str, ...]) -> dict[str, str]:
    """What the trial's run is tagged with: its environment, node, code and GPUs."""
    name = gpu_name(ids)
    return {**environment_tags(), **(node_tags or {}), **source_tags(req), "sweeps.gpu.ids": ",".join(ids),
            **({"sweeps.gpu.name": name} if name else {})}


def _media_kind(v: Any) -> str | None:
    """What kind of media a reported value is, by what it can do (no library is imported for it)."""
    if hasattr(v, "savefig"):
        return "figure"
    if hasattr(v, "to_csv") and hasattr(v, "columns"):
        return "table"
    if hasattr(v, "save") and hasattr(v, "mode") and hasattr(v, "size"):
        return "pil"
    if getattr(v, "ndim", 0) in (2, 3) and hasattr(v, "dtype"):
        return "array"
    return None


def _is_number(v: Any) -> bool:
    """A metric value: ints, floats, numpy scalars, 0-d tensors; not bools or strings."""
    return not isinstance(v, (bool, str)) and (isinstance(v, (int, float)) or
                                               (hasattr(v, "__float__") and getattr(v, "ndim", 0) == 0))


def quietly(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        print(f"sweeps: could not record: {exc}", file=sys.stderr)
