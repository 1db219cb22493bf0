"""`sweeps reproduce`: run one recorded trial again and say whether, and why not, it gave the same.

Three steps, each on the trial's own record in MLflow:

1. :func:`load` reads what the trial ran (``config.json``: config, seed, trainer or program; the
   sweep's file on the parent run for its resources, metric and W&B settings).
2. :func:`differences` compares the record with the present: the code (git commit, uncommitted
   changes, the trainer's or program's own file), the packages, Python, the data sets the trial
   declared by path. Ranked: the most likely cause of a different result first.
3. :func:`rerun` runs it through an executor, the same way a sweep does (same seed, same seeding,
   the sweep's CPUs and GPUs per trial), as a new run tagged ``sweeps.reproduces``; :func:`compare`
   matches every metric's history step by step.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import tracking
from .errors import ConfigError

#: how likely a kind of difference explains a different result (lower: more likely; printed first)
RANK = {"code": 0, "data": 1, "packages": 2, "python": 3, "device": 4}


@dataclass
class Record:
    """A recorded trial: what it ran and what it logged."""

    uri: str
    run: Any  # mlflow.entities.Run
    spec: Any  # SweepSpec, from the parent run's copy of the sweep's file
    config: dict[str, Any]
    seed: int
    trainer: str
    program: tuple[str, tuple[str, ...]] | None

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @property
    def tags(self) -> dict[str, str]:
        return self.run.data.tags

    @property
    def what(self) -> str:
        return f"program {self.program[0]}" if self.program else f"trainer {self.trainer}"


@dataclass(frozen=True)
class Difference:
    kind: str  # a key of RANK
    text: str


@dataclass
class Mismatch:
    metric: str
    step: int
    recorded: float | None
    now: float | None
    #: steps of this metric that differ, this the first
    count: int = 1


@dataclass
class Outcome:
    record: Record
    before: list[Difference]
    run_id: str
    state: str
    error: str | None
    mismatches: list[Mismatch] = field(default_factory=list)
    after: list[Difference] = field(default_factory=list)
    compared: int = 0
    duration_s: float = 0.0

    @property
    def matches(self) -> bool:
        return self.state == "COMPLETE" and not self.mismatches and self.compared > 0

    def differences(self) -> list[Difference]:
        return sorted(self.before + self.after, key=lambda d: RANK[d.kind])


def load(uri: str, run_id: str) -> Record:
    """The trial of MLflow run ``run_id``; ConfigError when there is no such run or it is not a sweeps trial."""
    from .space import parse_spec

    run = tracking.get_run(uri, run_id)
    if run is None:
        raise ConfigError(f"no MLflow run {run_id} in {uri} (pass --tracking-uri, or --sweep SWEEP --best)")
    if run.data.tags.get("sweeps.role") not in ("trial", "reproduction"):
        raise ConfigError(f"MLflow run {run_id} is not a sweeps trial (its tag sweeps.role is "
                          f"{run.data.tags.get('sweeps.role', 'missing')}): give the run id of a trial")
    parent_id = run.data.tags.get("sweeps.reproduces_parent") or run.data.tags.get(tracking.PARENT_TAG)
    parent = tracking.get_run(uri, parent_id) if parent_id else None
    try:
        recorded = json.loads(tracking.read_text(uri, run_id, "config.json"))
        file = parent.data.params["file"] if parent is not None else None
        text = tracking.read_text(uri, parent_id, Path(file).name) if file else None
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"MLflow run {run_id} lacks its record (config.json, or its sweep's file on the parent "
                          f"run): {exc}") from None
    if text is None:
        raise ConfigError(f"MLflow run {run_id} has no parent sweep run in {uri}")
    spec = parse_spec(text, file)
    program = (recorded["program"], tuple(recorded["command"])) if recorded.get("program") else None
    return Record(uri, run, spec, recorded["config"], int(recorded["seed"]), recorded.get("trainer", ""), program)


def differences(rec: Record, workdir: Path) -> list[Difference]:
    """What differs between the trial's record and this directory and environment (before a rerun)."""
    from .state import git_state

    out: list[Difference] = []
    tags = rec.tags
    now, diff = git_state(workdir)
    was = tags.get("sweeps.git.commit", "")
    commit = now.get("sweeps.git.commit", "")
    if was and commit and was != commit:
        out.append(Difference("code", f"the git commit changed since the trial: {_short(was)} -> {_short(commit)}"
                              + _commits_between(workdir, was, commit)))
    if tags.get("sweeps.git.dirty") == "true":
        recorded = _artifact(rec, "git.diff")
        if not diff:
            out.append(Difference("code", "the trial ran with uncommitted changes (its run's git.diff); the tree "
                                  "has none now"))
        elif recorded is not None and recorded != diff:
            out.append(Difference("code", "the uncommitted changes differ from those the trial ran with "
                                  "(its run's git.diff)"))
    elif diff and was:
        out.append(Difference("code", "the tree has uncommitted changes; the trial ran on a clean tree"))
    out += _source(rec, workdir)
    out += _packages(rec)
    if tags.get("sweeps.python") and tags["sweeps.python"] != platform.python_version():
        out.append(Difference("python", f"Python {tags['sweeps.python']} -> {platform.python_version()}"))
    for name, path, digest in _path_datasets(rec):
        if not os.path.exists(path):
            out.append(Difference("data", f"data set {name}: {path} is gone"))
        elif tracking.path_digest(Path(path)) != digest:
            out.append(Difference("data", f"data set {name}: the content of {path} changed since the trial "
                                  f"(digest {digest} -> {tracking.path_digest(Path(path))})"))
    return out


def _short(commit: str) -> str:
    return commit[:10] if len(commit) == 40 else commit


def _commits_between(workdir: Path, old: str, new: str) -> str:
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(workdir), "rev-list", "--count", f"{old}..{new}"], capture_output=True,
                             text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if out.returncode != 0:
        return " (the recorded commit is not in this repository)"
    n = out.stdout.strip()
    return f" ({n} commit{'' if n == '1' else 's'} later; see: git diff {_short(old)} {_short(new)})"


def _source(rec: Record, workdir: Path) -> list[Difference]:
    """The trainer's module file or the program, against its recorded digest."""
    from .trial import file_digest, source_file

    was = rec.tags.get("sweeps.source.sha256")
    if not was:
        return []
    path = source_file(rec.trainer, _program(rec), str(workdir))
    shown = rec.tags.get("sweeps.source.path", path)
    if path is None:
        return [Difference("code", f"{rec.what}: its file {shown} is not found from {workdir}")]
    if file_digest(path) != was:
        return [Difference("code", f"{shown} ({rec.what}) changed since the trial (sha256 {was} -> {file_digest(path)})")]
    return []


def _packages(rec: Record) -> list[Difference]:
    """The main packages' recorded versions (``sweeps.packages``) against this environment's."""
    from importlib import metadata

    changed = []
    for name, was in sorted(json.loads(rec.tags.get("sweeps.packages", "{}")).items()):
        try:
            now = metadata.version(name)
        except metadata.PackageNotFoundError:
            now = "not installed"
        if now != was:
            changed.append(f"{name} {was} -> {now}")
    return [Difference("packages", "package versions changed: " + ", ".join(changed))] if changed else []


def _all_packages(rec: Record, new: Any) -> list[Difference]:
    """Every package of the trial's worker environment against the rerun's (each list is kept on the
    sweep's parent run by its digest), where the digests differ."""
    was, now = rec.tags.get("sweeps.requirements"), new.data.tags.get("sweeps.requirements")
    parent = rec.tags.get(tracking.PARENT_TAG, "")
    if not was or not now or was == now:
        return []
    try:
        before, after = (_versions(tracking.read_text(rec.uri, parent, f"environments/requirements-{d}.txt"))
                         for d in (was, now))
    except OSError:
        return []
    changed = [f"{n} {before.get(n, 'not installed')} -> {after.get(n, 'not installed')}"
               for n in sorted(set(before) | set(after)) if before.get(n) != after.get(n)]
    main = {_norm(n) for n in json.loads(rec.tags.get("sweeps.packages", "{}"))}
    changed = [c for c in changed if c.split()[0] not in main]  # those were named before the run
    return [Difference("packages", "other packages changed: " + ", ".join(changed))] if changed else []


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def _versions(text: str) -> dict[str, str]:
    return {_norm(n): v for n, _, v in (line.partition("==") for line in text.splitlines()) if v and not n.startswith("#")}


def _path_datasets(rec: Record) -> list[tuple[str, str, str]]:
    """(name, path, digest) of each data set the trial declared by path."""
    found = []
    for item in rec.run.inputs.dataset_inputs if rec.run.inputs else []:
        ds = item.dataset
        try:
            source = json.loads(ds.source)
        except ValueError:
            continue
        path = source.get("uri") or source.get("path")
        if ds.source_type == "local" and path:
            found.append((ds.name, path.removeprefix("file://"), ds.digest))
    return found


def _artifact(rec: Record, path: str) -> str | None:
    try:
        return tracking.read_text(rec.uri, rec.run_id, path)
    except OSError:
        return None


def _program(rec: Record) -> Any:
    from .program import Program

    return Program(rec.program[0], rec.program[1]) if rec.program else None


def rerun(rec: Record, workdir: Path, address: str | None, local: bool, wandb_mode: str | None,
          wandb_dir: Path, notes: list[Difference]) -> tuple[str, Any]:
    """Run the trial again, a new run in its experiment tagged ``sweeps.reproduces``: (run id, how it ended).
    How it had to run otherwise than the trial did goes to ``notes``."""
    from .executors import LocalExecutor, Plan
    from .mirror import WandbSettings, new_run_id
    from .state import git_state
    from .trial import TrialRequest

    spec, tags, r = rec.spec, rec.tags, rec.spec.resources
    mode = wandb_mode or spec.tracking.wandb_mode or os.environ.get("WANDB_MODE") or "offline"
    wandb = WandbSettings(mode=mode, project=spec.tracking.wandb_project or spec.name or Path(spec.file).stem,
                          entity=spec.tracking.wandb_entity, dir=str(wandb_dir.resolve()))
    repro, git_diff = git_state(workdir)
    sweep_id, number = tags.get("sweeps.sweep_id", ""), int(tags.get("sweeps.trial", "0"))
    name = f"{rec.run.info.run_name}-reproduced"
    run_id = tracking.create_run(rec.uri, rec.run.info.experiment_id, name, tags={
        "sweeps.role": "reproduction", "sweeps.reproduces": rec.run_id, "sweeps.sweep_id": sweep_id,
        "sweeps.trial": str(number), "sweeps.seed": str(rec.seed), **repro,
        "sweeps.reproduces_parent": tags.get(tracking.PARENT_TAG, ""),
        "mlflow.source.name": rec.program[0] if rec.program else rec.trainer, "mlflow.source.type": "LOCAL"})
    request = TrialRequest(
        sweep_id=sweep_id, run_name=name, number=number, config=rec.config, params=spec.flatten(rec.config),
        seed=rec.seed, trainer=rec.trainer, metric=spec.metric.name, tracking_uri=rec.uri, run_id=run_id, wandb=wandb,
        parent_run_id=tags.get(tracking.PARENT_TAG), git_diff=git_diff, wandb_id=new_run_id(), workdir=str(workdir),
        program=_program(rec))
    plan = Plan(cpus=r.cpus, gpus=r.gpus, agents_only=r.agents_only, reuse_workers=False,
                heartbeat_timeout_s=spec.faults.heartbeat_timeout_s, trainer=rec.trainer, tracking_uri=rec.uri,
                wandb=wandb, parallel=1, workdir=str(workdir))
    if local:
        executor: Any = LocalExecutor(plan)
    else:
        executor = _ray_executor(plan, address, workdir, notes)
    try:
        handle = executor.submit(request)
        while True:
            done = executor.wait([handle], 1.0)
            if done:
                return run_id, done[0][1]
    except KeyboardInterrupt:
        executor.cancel(handle, "interrupted")
        raise
    finally:
        executor.shutdown()


def _ray_executor(plan: Any, address: str | None, workdir: Path, notes: list[Difference]) -> Any:
    """A Ray executor for ``plan``; on the CPU, saying so, where no GPU is free for a GPU trial."""
    import dataclasses

    from .errors import FatalError
    from .execution import RayExecutor, prepare_local

    prepare_local(address, workdir)
    try:
        return RayExecutor(plan, address)
    except FatalError:
        if not plan.gpus:
            raise
    notes.append(Difference("device", f"the trial ran with {plan.gpus:g} GPUs; no GPU is free here: it runs on the CPU"))
    return RayExecutor(dataclasses.replace(plan, gpus=0.0), address)


def compare(rec: Record, run_id: str, tolerance: float) -> tuple[list[Mismatch], int]:
    """Every metric the trial recorded, step by step, against the rerun's: the mismatches (the first
    differing step of each metric, and how many differ) and how many values were compared."""
    c = tracking.client(rec.uri)
    pruned = rec.tags.get("sweeps.pruned") == "true"
    mismatches, compared = [], 0
    for key in sorted(rec.run.data.metrics):
        was = _history(c, rec.run_id, key)
        now = _history(c, run_id, key)
        steps = sorted(set(was) | (set() if pruned else set(now)))  # an early-stopped trial: up to where it stopped
        bad = [s for s in steps if not _close(was.get(s), now.get(s), tolerance)]
        compared += len(steps)
        if bad:
            mismatches.append(Mismatch(key, bad[0], was.get(bad[0]), now.get(bad[0]), len(bad)))
    return mismatches, compared


def _history(c: Any, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in sorted(c.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))}


def _close(a: float | None, b: float | None, tolerance: float) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= tolerance * max(abs(a), abs(b))


def after(rec: Record, run_id: str) -> list[Difference]:
    """What the rerun recorded that differs from the trial: its data sets' digests, its device."""
    new = tracking.get_run(rec.uri, run_id)
    if new is None:
        return []
    out = []
    for key, digest in sorted(rec.tags.items()):
        if key.startswith("sweeps.dataset."):
            now = new.data.tags.get(key)
            name = key.removeprefix("sweeps.dataset.")
            if now is None:
                out.append(Difference("data", f"data set {name}: declared by the trial, not by the rerun"))
            elif now != digest:
                out.append(Difference("data", f"data set {name}: its content changed since the trial "
                                      f"(digest {digest} -> {now})"))
    out += _all_packages(rec, new)
    was_gpu, now_gpu = rec.tags.get("sweeps.gpu.name", ""), new.data.tags.get("sweeps.gpu.name", "")
    if was_gpu != now_gpu:
        out.append(Difference("device", f"device: {was_gpu or 'CPU'} -> {now_gpu or 'CPU'}"))
    return out


def reproduce(rec: Record, workdir: Path, *, tolerance: float, address: str | None, local: bool,
              wandb_mode: str | None, wandb_dir: Path, before: list[Difference], say: Any) -> Outcome:
    """The whole of it: rerun, compare, and what differs; ``say(line)`` tells what happens as it does."""
    from .trial import TrialResult

    t0 = time.monotonic()
    notes: list[Difference] = []
    run_id, ended = rerun(rec, workdir, address, local, wandb_mode, wandb_dir, notes)
    for d in notes:
        say(f"  differs: {d.text}")
    if isinstance(ended, TrialResult):
        state, error = ended.state.value, ended.error
    else:
        state, error = "LOST", ended.reason
    outcome = Outcome(rec, before + notes, run_id, state, error)
    outcome.mismatches, outcome.compared = compare(rec, run_id, tolerance)
    outcome.after = after(rec, run_id)
    outcome.duration_s = time.monotonic() - t0
    return outcome
