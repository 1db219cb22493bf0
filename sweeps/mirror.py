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
from dataclasses import dataclass, field
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

    def keep(self, kept: Kept) -> None:
        log_kept(self._run, kept)


@dataclass(frozen=True)
class Kept:
    """Something a trainer kept, staged as a local file or folder in folder ``stage`` of the node that
    records the trial (removed once written): an MLflow artifact under ``folder`` (None: not for
    MLflow) and, where ``wandb`` says, for W&B: ``("model", name)`` (a model artifact) or
    ``("media", key, step)`` (an image, or a table from a CSV file)."""

    stage: str
    path: str
    folder: str | None = None
    wandb: tuple[Any, ...] | None = None

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.stage, ignore_errors=True)


def log_kept(run: Any, kept: Kept) -> None:
    """``kept`` into W&B run ``run`` (W&B copies what it logs), then its staged copy removed."""
    try:
        if run is not None and kept.wandb is not None:
            wandb = _wandb()
            if kept.wandb[0] == "model":
                artifact = wandb.Artifact(kept.wandb[1], type="model")
                artifact.add_dir(kept.path)
                run.log_artifact(artifact)
            else:
                _, key, step = kept.wandb
                if kept.path.endswith(".csv"):
                    import pandas as pd

                    media: Any = wandb.Table(dataframe=pd.read_csv(kept.path))
                else:
                    media = wandb.Image(kept.path)
                if step >= run.step:
                    run.log({key: media}, step=step)
                else:  # a trainer's own wandb.log moved W&B's step past this report's
                    run.log({key: media})
    except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
        logger.warning("W&B: %s not logged: %s", kept.wandb, exc)
    finally:
        kept.remove()


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

    def keep(self, kept: Kept) -> None:
        later(lambda: self._run.keep(kept) if self._run is not None else kept.remove())

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


def link_model(entity: str | None, project: str, run_id: str, name: str, alias: str) -> str:
    """Link the model artifact that W&B run ``run_id`` logged to the W&B model registry, collection
    ``name``, with ``alias``; the registry path. Online only; W&B's own errors propagate."""
    wandb = _wandb()
    api = wandb.Api()
    run = api.run(f"{entity or api.default_entity}/{project}/{run_id}")
    models = [a for a in run.logged_artifacts() if a.type == "model"]
    if not models:
        raise ValueError(f"W&B run {run_id} logged no model artifact")
    target = f"wandb-registry-model/{name}"
    models[-1].link(target, aliases=[alias])
    return f"{target}:{alias}"


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


# -- W&B programs: their command line, their run file, and a trainer's own run -----------------------

#: set for a W&B program: its run's ``.wandb`` file is written every second, not every 15 s
#: (W&B's setting ``x_transaction_log_flush_interval``, which ``wandb leet`` relies on the same way)
FLUSH_ENV = {"WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL": "1"}


def render_command(command: tuple[str, ...], args: dict[str, Any], *, interpreter: str, program: str,
                   args_json_file: str, project: str | None = None, entity: str | None = None) -> list[str]:
    """A W&B program's command line, as W&B's agent renders it (``wandb/wandb_agent.py``,
    ``Agent._command_run``): W&B's own functions render ``${envvar:NAME}`` and the argument macros;
    each ``${...}`` element is then replaced by its list. ``${interpreter}`` is ``interpreter`` (W&B's
    agent writes a literal ``python``); ``${project}`` and ``${entity}`` are the sweep's."""
    _wandb()
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    # a copy: create_sweep_command writes into the list it is given
    chunks = sweep_utils.create_sweep_command(list(command or sweep_utils.DEFAULT_SWEEP_COMMAND))
    macros: dict[str, list[str]] = sweep_utils.create_sweep_command_args({"args": {k: {"value": v}
                                                                                  for k, v in args.items()}})
    macros.update(interpreter=[interpreter], program=[program], args_json_file=[args_json_file],
                  env=["/usr/bin/env"] if sys.platform != "win32" else [],
                  project=[project] if project else [], entity=[entity] if entity else [])
    out: list[str] = []
    for chunk in map(str, chunks):
        if chunk.startswith("${") and chunk.endswith("}"):
            out += macros.get(chunk[2:-1]) or []
        else:
            out.append(chunk)
    return out


def write_param_file(path: str, config: dict[str, Any]) -> None:
    """The trial's config where ``wandb.init()`` reads it (``WANDB_SWEEP_PARAM_PATH``), in the form
    W&B's agent writes: ``{key: {value: ...}}``."""
    import yaml

    with open(path, "w") as f:
        yaml.safe_dump({k: {"value": v} for k, v in config.items()}, f, sort_keys=False)


_HEADER = 7  # the file's own header (":W&B", a key and a version)
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class RunUpdate:
    """What a run's file gained since it was last read: history rows ``(step, values)``, summary
    updates, config updates, the run's own fields (name, group, job type), the names of the
    artifacts it logged, and its exit code."""

    history: list[tuple[int, dict[str, Any]]]
    summary: dict[str, Any]
    config: dict[str, Any]
    run: dict[str, str]
    artifacts: list[str] = field(default_factory=list)
    exit_code: int | None = None


class RunFile:
    """A W&B run's transaction log (``run-<id>.wandb``), read as it grows.

    W&B 0.31 ships no Python reader of it (its Go core and ``wandb leet`` read it), so the
    framing is read here: LevelDB's log format (32 KiB blocks; records in pieces, each with a
    7-byte header: crc32, length, type) around ``wandb.proto.wandb_internal_pb2.Record``
    messages, W&B's public protocol. Only whole records are returned; a piece still being
    written is read next time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pos = _HEADER
        self._parts = b""

    def _chunks(self) -> list[bytes]:
        with open(self.path, "rb") as f:
            f.seek(self._pos)
            data = f.read()
        out, pos, base = [], 0, self._pos
        while True:
            left = _BLOCK - (base + pos) % _BLOCK
            if left < 7:  # the block's zero tail
                if pos + left > len(data):
                    break
                pos += left
                continue
            if pos + 7 > len(data):
                break
            length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
            if kind == 0 and length == 0:  # zeros to the end of the block
                if pos + left > len(data):
                    break
                pos += left
                continue
            if pos + 7 + length > len(data):
                break
            chunk = data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind == _FULL:
                out.append(chunk)
            elif kind == _FIRST:
                self._parts = chunk
            elif kind == _MIDDLE:
                self._parts += chunk
            elif kind == _LAST:
                out.append(self._parts + chunk)
                self._parts = b""
        self._pos = base + pos
        return out

    def read(self) -> RunUpdate:
        import json

        _wandb()
        from wandb.proto import wandb_internal_pb2 as pb

        update = RunUpdate([], {}, {}, {})
        for raw in self._chunks():
            rec = pb.Record()
            rec.ParseFromString(raw)
            kind = rec.WhichOneof("record_type")
            if kind == "history":
                row = {_key(i): json.loads(i.value_json) for i in rec.history.item}
                step = rec.history.step.num if rec.history.HasField("step") else row.get("_step", 0)
                update.history.append((int(step), row))
            elif kind == "summary":
                update.summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
            elif kind in ("run", "config"):
                items = rec.run.config.update if kind == "run" else rec.config.update
                update.config.update({_key(i): json.loads(i.value_json) for i in items})
                if kind == "run":
                    update.run = {"id": rec.run.run_id, "name": rec.run.display_name, "group": rec.run.run_group,
                                  "job_type": rec.run.job_type}
            elif kind == "artifact":
                update.artifacts.append(rec.artifact.name)
            elif kind == "exit":
                update.exit_code = rec.exit.exit_code
        return update


def _key(item: Any) -> str:
    """An item's name as W&B's app and API name it: a nested dict's values joined with dots (``val.acc``)."""
    return item.key or ".".join(item.nested_key)


def find_run_file(wandb_dir: str, run_id: str) -> str | None:
    """The newest run file of W&B run ``run_id`` under ``wandb_dir/wandb`` (offline or online)."""
    import glob
    import os

    found = glob.glob(os.path.join(glob.escape(wandb_dir), "wandb", f"*run-*-{run_id}", f"run-{run_id}.wandb"))
    return max(found, key=os.path.getmtime) if found else None


class OwnRun:
    """A trial's W&B run in the trainer's own process, as ``wandb.run``: the trainer's ``wandb.log``,
    ``wandb.Image`` and ``wandb.run.summary`` go to it, and so do its ``report()`` values, but for the
    keys the trainer has already logged to it itself (each value is in the run once). Opened only
    in a process that runs one trial at a time (a Ray worker): W&B has one ``wandb.run`` a process."""

    def __init__(self, settings: WandbSettings, *, name: str, group: str, config: dict[str, Any], run_id: str) -> None:
        self._run: Any = None
        self._ours: set[str] = set()
        try:
            wandb = _wandb()
            run = wandb.init(id=run_id, project=settings.project or "sweeps", entity=settings.entity,
                             dir=settings.dir, name=name, group=group, job_type="trial", config=config,
                             mode=settings.mode,  # type: ignore[arg-type]
                             settings=wandb.Settings(silent=True, save_code=False, disable_git=True,
                                                     x_save_requirements=False))
            if run.id != run_id:  # another run of this process was returned: not the trial's
                raise RuntimeError(f"wandb.init returned the run {run.id}, which another caller started")
            self._run = run
        except Exception as exc:  # noqa: BLE001 - W&B must never fail a trial
            logger.warning("W&B: the trial's run could not be started in the trainer's process: %s", exc)

    @property
    def active(self) -> bool:
        return self._run is not None

    def log(self, step: int, values: dict[str, float]) -> None:
        run = self._run
        if run is None:
            return
        try:
            theirs = set(run.summary.keys()) - self._ours
            values = {k: v for k, v in values.items() if k not in theirs}
            if values:
                self._ours.update(values)
                if step >= run.step:
                    run.log(values, step=step)
                else:  # the trainer's own wandb.log moved W&B's step past this report's
                    run.log(values)
        except Exception as exc:  # noqa: BLE001
            logger.warning("W&B: report() not mirrored: %s", exc)

    def keep(self, kept: Kept) -> None:
        log_kept(self._run, kept)

    def close(self, summary: dict[str, Any], failed: bool) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        try:
            run.summary.update(summary)
            run.finish(exit_code=1 if failed else 0)
        except Exception as exc:  # noqa: BLE001
            logger.warning("W&B: the trial's run did not finish cleanly: %s", exc)
