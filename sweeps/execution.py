"""The Ray executor (the contract is in :mod:`sweeps.executors`). The one module that imports ray,
with ``cluster.py``'s command lines.

Without an address a local Ray instance is started (and stopped with the sweep); with one,
the cluster is joined and the launch directory travels to the workers as Ray's working_dir.

Trials run in long-lived worker actors, one per slot (a slot is one trial's
CPUs and GPUs); their records are written by one recorder actor per node
(:class:`NodeRecorder`), which imports MLflow and opens the store once for
every slot of its node, and their W&B runs by the node's W&B process beside it
(:class:`NodeMirror`), which runs one W&B service. A worker imports its
trainer once and runs its slot's trials one after another; it
keeps the GPUs Ray gave it for its whole life, so ``CUDA_VISIBLE_DEVICES``
never changes under a process that already initialised CUDA (a reused Ray
*task* process can be handed other GPUs than the ones it started on). A
worker whose GPU trial failed is replaced, as is every worker when
``resources.reuse_workers`` is false.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FatalError
from . import tracking
from .executors import Plan, judged_end
from .mirror import Kept, WandbSettings, close, close_lost, lost_summary, warm
from .program import Pulse
from .trial import (Lost, LostCause, TrialEnd, TrialState, TrialMirror, TrialRecord, TrialRequest, TrialResult, environment_tags, quietly,
                     run_trial)
from .cluster import AGENT_RESOURCE

logger = logging.getLogger(__name__)

#: seconds between a running trial's heartbeats
HEARTBEAT_S = 1.0
#: seconds between the controller's looks at the running trials' heartbeats
CHECK_EVERY_S = 2.0
#: how long a worker that is let go waits for its W&B runs to finish
RETIRE_WAIT_S = 60.0
#: Ray's label that every node carries
NODE_ID_LABEL = "ray.io/node-id"
#: set in every worker: no prompts, no per-run banners from MLflow
WORKER_ENV = {"WANDB_SILENT": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
#: how many ended trials a node's recorder remembers (a worker may die while their end is written)
ENDED_KEPT = 10_000
#: never shipped to a cluster with the working directory (``.env``: secrets, which agents take from their own environment)
EXCLUDES = [".venv/", ".git/", "mlflow.db", "mlruns/", "mlartifacts/", "wandb/", ".sweeps/", "__pycache__/", "*.pyc",
            ".env", ".env.*"]


@dataclass
class _Slot:
    """A worker actor and, once it has answered, the node it lives on."""

    actor: Any
    gpus: float
    node: str | None = None


@dataclass(eq=False)
class _Job:
    """A submitted trial: queued until a worker is free, then running on one."""

    request: TrialRequest
    excluded: frozenset[str]
    slot: _Slot | None = None
    ref: Any = None
    #: why it was stopped, once it was (its worker is killed)
    cancelled: tuple[str, LostCause] | None = None


def prepare_local(address: str | None, workdir: Path) -> bool:
    """Before this process starts a local Ray: the environment Ray's processes inherit. True when
    this process is to start a local Ray (False: it joins one, or Ray runs in it already).

    On one machine the workers' environment (``WORKER_ENV``, and the launch
    directory on ``PYTHONPATH`` for the trainer's import) is set here, in this
    process's own environment, not as a job-wide ``runtime_env``: Ray's
    pre-started worker processes lack a job's runtime_env and could not take
    the trials, so two more Python processes would start and the pre-started
    ones idle for nothing. Call it before this process starts threads (a
    thread that copies ``os.environ`` must not see it change); it does
    nothing where Ray runs already or a cluster is joined.
    """
    ray = sys.modules.get("ray")
    if address or (ray is not None and ray.is_initialized()):
        return False
    if any(os.environ.get(k) != v for k, v in WORKER_ENV.items()):
        os.environ.update(WORKER_ENV)
    path = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(workdir) not in path:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(workdir), *path])
    return True


class RayExecutor:
    """Runs trials in a pool of worker actors, each holding one trial's CPUs and GPUs (see the
    module's doc); keeps :class:`~sweeps.executors.Executor`'s contract."""

    def __init__(self, plan: Plan, address: str | None = None, *, num_cpus: float | None = None,
                 num_gpus: float | None = None) -> None:
        import ray

        self._ray = ray
        self.plan = plan
        self._owned = False
        if ray.is_initialized():
            logger.debug("using the Ray instance already running in this process")
        else:
            runtime_env: dict[str, Any] | None = None
            if address:
                runtime_env = {"env_vars": dict(WORKER_ENV), "working_dir": plan.workdir, "excludes": EXCLUDES}
            else:  # the caller ran prepare_local before its threads: Ray's processes inherit the workers' environment
                assert plan.workdir in os.environ.get("PYTHONPATH", "").split(os.pathsep), "prepare_local first"
            try:
                # "local": a new instance of our own, even when a `ray start` cluster runs here
                ray.init(address=address or "local", runtime_env=runtime_env, include_dashboard=False,
                         log_to_driver=True, num_cpus=None if address else num_cpus,
                         num_gpus=None if address else num_gpus, configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise FatalError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self._owned = True
        self._worker = ray.remote(max_restarts=0, max_task_retries=0)(TrialWorker)
        self._idle: list[_Slot] = []
        self._running: dict[Any, _Job] = {}  # by Ray object ref
        self._queue: list[_Job] = []
        self._dropped: list[_Job] = []  # cancelled before they started
        self._retiring: list[Any] = []  # workers let go, finishing their W&B runs
        #: how many workers of the sweep's size the cluster holds (see ``capacity``)
        self._limit = 10**9
        #: the recording process of each node that can hold a trial (by node id)
        self._recorders: dict[str, Any] = {}
        self._records = tracking.enabled(plan.tracking_uri) or (plan.wandb is not None and plan.wandb.mode != "disabled")
        #: the nodes that hold at least one trial, as the last ``capacity`` found them
        self._fitting: list[str] = []
        #: the heartbeats of running trials: when the controller last looked, and the node each beat from
        self._looked = time.monotonic()
        self._nodes: dict[int, str] = {}
        self._lines: dict[int, str] = {}
        try:
            self._start()
        except BaseException:
            self.shutdown()
            raise

    def _start(self) -> None:
        """Check the cluster can run the plan; start the judge, the heartbeat board, the recorders and
        the first workers (their imports run while the controller sets up)."""
        plan = self.plan
        remote = self.remote_nodes()
        if remote and tracking.is_local(plan.tracking_uri):
            raise FatalError(f"the Ray cluster has nodes on other machines ({', '.join(remote)}) that cannot write to "
                             f"{plan.tracking_uri}: start a tracking server (`sweeps head` does) and pass "
                             "--tracking-uri http://HEAD:5000")
        capacity = self.capacity()
        if capacity == 0:
            where = "agent node" if plan.agents_only else "node"
            raise FatalError(f"no {where} of the Ray cluster can hold one trial of {plan.cpus:g} CPUs and "
                             f"{plan.gpus:g} GPUs (cluster: {dict(self._ray.cluster_resources())})")
        self._judge: Any = None
        if plan.judge is not None:
            from .pruning import Judge

            spec = plan.judge
            self._judge = self._beside_me(Judge).remote(spec.et, spec.metric, spec.goal)
            for entry in spec.history:
                self._judge.replay.remote(entry[0], list(entry[1]), entry[2], entry[3])
        self._board = self._beside_me(Heartbeats).remote()
        for _ in range(min(plan.parallel or capacity, capacity)):
            self._idle.append(self._new_slot(frozenset()))

    def remote_nodes(self) -> list[str]:
        """Addresses of alive nodes on other machines than this one."""
        here = {"127.0.0.1", "localhost", self._ray.util.get_node_ip_address()}
        return sorted({n["NodeManagerAddress"] for n in self._ray.nodes() if n.get("Alive")} - here)

    def _beside_me(self, cls: type) -> Any:
        """An actor on the controller's own node: it must not die with an agent."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(self._ray.get_runtime_context().get_node_id(), soft=False)
        return self._ray.remote(num_cpus=0, max_restarts=0, scheduling_strategy=here)(cls)

    def _new_slot(self, excluded: frozenset[str]) -> _Slot:
        plan = self.plan
        actor = self._worker.options(
            num_cpus=plan.cpus, num_gpus=plan.gpus,
            resources={AGENT_RESOURCE: 1} if plan.agents_only else None,
            # nodes this sweep gave up on (node_failure_limit) get no more trials
            label_selector={NODE_ID_LABEL: f"!in({','.join(sorted(excluded))})"} if excluded else None,
        ).remote(plan.tracking_uri, plan.wandb, plan.trainer, self._recorders)
        return _Slot(actor, plan.gpus)

    def _start_recorders(self) -> None:
        """A recorder on each node that holds a trial and has none yet (see :class:`NodeRecorder`)."""
        if not self._records:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node in self._fitting:
            if node not in self._recorders:
                self._recorders[node] = self._ray.remote(NodeRecorder).options(
                    num_cpus=0, max_restarts=0, name=f"sweeps-recorder-{os.getpid()}-{id(self):x}-{node[:12]}",
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                ).remote(self.plan.tracking_uri, self.plan.wandb)

    def _take_idle(self, excluded: frozenset[str]) -> _Slot | None:
        for slot in self._idle:
            if slot.node is None or slot.node not in excluded:
                self._idle.remove(slot)
                return slot
        return None

    def _dispatch(self) -> None:
        """Start queued trials on idle workers, or on new ones while the cluster
        has room. A worker never waits for resources an idle one holds: idle
        workers on excluded nodes are let go when a queued trial needs room."""
        while self._queue:
            job = self._queue[0]
            slot = self._take_idle(job.excluded)
            if slot is None:
                if len(self._idle) + len(self._running) >= self._limit:
                    unusable = [s for s in self._idle if s.node in job.excluded]
                    if not unusable:
                        return  # the next free worker takes it
                    self._idle.remove(unusable[0])
                    self._retire(unusable[0])
                slot = self._new_slot(job.excluded)
            self._queue.pop(0)
            job.slot = slot
            job.ref = slot.actor.run.options(name=f"trial-{job.request.number}").remote(
                job.request, self._judge, self._board, self._recorders)
            self._running[job.ref] = job

    def _kill(self, actor: Any) -> None:
        """End a worker (its trial is cancelled, or it is gone) or a recorder now."""
        try:
            self._ray.kill(actor, no_restart=True)
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("actor already gone: %s", exc)

    def _retire(self, slot: _Slot) -> None:
        """Let an idle worker go once its W&B runs are finished (it exits by itself)."""
        if self._retiring:  # forget the ones that have ended
            self._retiring = self._ray.wait(self._retiring, num_returns=len(self._retiring), timeout=0)[1]
        try:
            self._retiring.append(slot.actor.retire.remote(RETIRE_WAIT_S))
        except Exception as exc:  # noqa: BLE001 - already gone
            logger.debug("worker already gone: %s", exc)

    def capacity(self, excluded: frozenset[str] = frozenset()) -> int:
        """How many trials of the plan's size the cluster's alive nodes hold at once.

        Idle workers on nodes that died are let go here, before a trial is sent
        to one, and so are idle workers beyond what the cluster now holds."""
        plan = self.plan
        total = 0
        nodes = self._ray.nodes()
        alive = {n["NodeID"] for n in nodes if n.get("Alive")}
        for slot in [s for s in self._idle if s.node is not None and s.node not in alive]:
            self._idle.remove(slot)
            self._kill(slot.actor)
        fitting = []
        for node in nodes:
            res = node.get("Resources", {})
            if not node.get("Alive") or (plan.agents_only and AGENT_RESOURCE not in res) or node["NodeID"] in excluded:
                continue
            fits = int(res.get("CPU", 0) // plan.cpus) if plan.cpus > 0 else 10**6
            if plan.gpus > 0:
                fits = min(fits, int(res.get("GPU", 0) // plan.gpus))
            total += fits
            if fits > 0:
                fitting.append(node["NodeID"])
        self._limit, self._fitting = total, fitting
        for node in [n for n in self._recorders if n not in alive]:  # died with their node
            del self._recorders[node]
        self._start_recorders()
        # the workers on nodes the sweep gave up on go first
        self._idle.sort(key=lambda s: s.node in excluded)
        while self._idle and len(self._idle) + len(self._running) > total:
            self._retire(self._idle.pop())
        self._dispatch()
        return total

    def lines(self, handles: list[Any]) -> dict[Any, str]:
        """From the heartbeats, as the last look at them found them."""
        return {j: self._lines[j.request.number] for j in handles if j.request.number in self._lines}

    def submit(self, request: TrialRequest, excluded: frozenset[str] = frozenset()) -> _Job:
        job = _Job(request, frozenset(excluded))
        self._queue.append(job)
        self._dispatch()
        return job

    def _look_for_silence(self) -> None:
        """Every few seconds: trials whose worker has not beaten for ``heartbeat_timeout_s`` are given up
        (their worker is killed; ``wait`` hands them back as lost)."""
        if time.monotonic() - self._looked < CHECK_EVERY_S or not self._running:
            return
        self._looked = time.monotonic()
        jobs = list(self._running.values())
        try:
            ages = self._ray.get(self._board.ages.remote([j.request.key for j in jobs]), timeout=10)
        except Exception as exc:  # noqa: BLE001 - a slow actor must not stop the sweep
            logger.warning("no heartbeats this time: %s", str(exc).splitlines()[0])
            return
        for job in jobs:
            if job.request.key not in ages:
                continue
            age, node, line = ages[job.request.key]
            self._nodes[job.request.number] = node
            if line:
                self._lines[job.request.number] = line
            if age > self.plan.heartbeat_timeout_s and job.cancelled is None:
                self._stop(job, f"no heartbeat for {age:.0f} s", LostCause.SILENT)

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]:
        """Whichever of these trials ended (at once when one has), within ``timeout``."""
        self._look_for_silence()
        out: list[tuple[Any, TrialResult | Lost]] = [(j, Lost(j.request.number, *j.cancelled)) for j in self._dropped
                                                     if j.cancelled]
        self._dropped = []
        if out:
            return out
        refs = [j.ref for j in handles if j.ref is not None and j.ref in self._running]
        if not refs:  # every one of them is still queued
            time.sleep(timeout)
            return []
        ray = self._ray
        # return as soon as one trial ends, with every other one already ended
        first, rest = ray.wait(refs, num_returns=1, timeout=timeout, fetch_local=True)
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True) if first and rest else ([], [])
        for ref in first + more:
            job = self._running.pop(ref)
            out.append((job, self._ended(job, ref)))
        self._dispatch()
        return out

    def _ended(self, job: _Job, ref: Any) -> TrialResult | Lost:
        """How a trial that left the pool ended; its worker kept, let go or killed; the judge told."""
        ray, slot, request = self._ray, job.slot, job.request
        assert slot is not None
        self._board.drop.remote(request.key)
        node = self._nodes.pop(request.number, "")
        self._lines.pop(request.number, None)
        try:
            result: TrialResult = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._kill(slot.actor)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RecorderLost):  # a new one is started for the trial that runs again
                self._recorders.pop(cause.node, None)
                self._start_recorders()
                exc = cause  # type: ignore[assignment]
            why = job.cancelled or (f"{type(exc).__name__}: {str(exc).splitlines()[0]}", LostCause.DIED)
            lost = Lost(request.number, why[0], why[1], slot.node or node)
            if self._judge is not None:
                self._judge.end.remote(request.number, TrialState.FAIL.value, None)
            self._give_up(request, lost)
            return lost
        slot.node = result.node or slot.node
        if self._judge is not None:
            self._judge.end.remote(request.number, result.state.value, judged_end(request, result))
        # a failed GPU trial may leave CUDA broken in its process: that worker is replaced
        fresh = not self.plan.reuse_workers or (result.state is TrialState.FAIL and slot.gpus > 0)
        if job.cancelled:  # it ended before its worker was killed
            self._kill(slot.actor)
        elif fresh or len(self._idle) + len(self._running) >= self._limit:
            self._retire(slot)
        else:
            self._idle.append(slot)
        return result

    def _give_up(self, request: TrialRequest, lost: Lost) -> None:
        """Close the records of a trial given up: its node's recorder keeps what it reported and ends its
        W&B run as lost (or it is ended here, with the same id, where no recorder had it)."""
        state = "KILLED" if lost.cancelled else "FAIL"
        refs = [r.forget.remote(request.key, state, lost.reason) for r in self._recorders.values()]
        kept = False
        if refs:
            try:
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=10)
                kept = any(self._ray.get(ready))
            except Exception as exc:  # noqa: BLE001 - a recorder that died with its node
                logger.debug("a recorder did not answer: %s", exc)
        if not kept:
            close_lost(request.wandb, request.wandb_id or "", name=request.run_name, group=request.sweep_id,
                       state=state, reason=lost.reason)

    def cancel(self, handle: Any, reason: str = "cancelled") -> None:
        """Stop a trial now: its worker process is killed (a new one takes the slot)."""
        self._stop(handle, reason, LostCause.CANCELLED)

    def _stop(self, job: _Job, reason: str, cause: LostCause) -> None:
        job.cancelled = (reason, cause)
        if job in self._queue:
            self._queue.remove(job)
            self._dropped.append(job)
        elif job.slot is not None:
            self._kill(job.slot.actor)

    def shutdown(self) -> None:
        # idle workers, those already let go, and the recorders (every trial of theirs has ended) finish
        # their W&B runs first (each is a few milliseconds behind at most), all at once
        idle = {actor.retire.remote(RETIRE_WAIT_S): actor
                for actor in [*(slot.actor for slot in self._idle), *self._recorders.values()]}
        refs, ready = [*self._retiring, *idle], []
        if refs:
            try:
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=RETIRE_WAIT_S + 5)
            except Exception as exc:  # noqa: BLE001 - they are killed below all the same
                logger.debug("workers did not retire: %s", exc)
        self._retiring = []
        # a retired worker ends by itself (W&B's exit handler runs in it after retire returns);
        # the others are killed
        late = [actor for ref, actor in idle.items() if ref not in ready]
        helpers = [a for a in (getattr(self, "_board", None), getattr(self, "_judge", None)) if a is not None]
        for actor in [*late, *(j.slot.actor for j in self._running.values() if j.slot is not None), *helpers]:
            self._kill(actor)
        self._idle, self._running, self._queue, self._recorders = [], {}, [], {}
        self._board = self._judge = None
        if self._owned:
            self._ray.shutdown()
            self._owned = False


class Heartbeats:
    """The running trials' heartbeats (a Ray actor beside the controller): when each trial's worker
    last said it was alive, by this actor's clock, and on which node."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, str, str]] = {}

    def beat(self, key: str, node: str, idle_s: float = 0.0, line: str = "") -> None:
        """``idle_s``: how long the trial has shown no sign of life although its worker is alive;
        ``line``: the last line it printed."""
        self._last[key] = (time.monotonic() - idle_s, node, line)

    def drop(self, key: str) -> None:
        self._last.pop(key, None)

    def ages(self, keys: list[str]) -> dict[str, tuple[float, str, str]]:
        """For each trial: seconds since its last sign of life, its node, its last line."""
        now = time.monotonic()
        return {k: (now - self._last[k][0], *self._last[k][1:]) for k in keys if k in self._last}


class TrialWorker:
    """One slot's worker (a Ray actor): runs trials one at a time, with
    heartbeats, asking the judge about each report. Its trials are recorded by
    the node's recorder when there is one (see :class:`NodeRecorder`), else here."""

    def __init__(self, uri: str, wandb: WandbSettings | None, trainer: str, recorders: dict[str, Any]) -> None:
        import ray

        self.node_id = ray.get_runtime_context().get_node_id()
        self.node_ip = ray.util.get_node_ip_address()
        here = self.node_id in recorders
        # the trainer's module (and the store and the W&B service, where this worker records): once per
        # worker, before or beside its first trial
        _warm_up(_warm_worker, uri, wandb, trainer, not here)

    def run(self, request: TrialRequest, judge: Any, board: Any, recorders: dict[str, Any]) -> TrialResult:
        import ray

        def decide(value: float) -> str | None:
            return ray.get(judge.report.remote(request.number, value))

        done = threading.Event()
        pulse = Pulse()  # a program's signs of life (idle 0 until one starts): a program that shows none goes silent

        def beat() -> None:
            board.beat.remote(request.key, self.node_id, pulse.idle(), pulse.line)

        def heartbeat() -> None:
            while not done.wait(HEARTBEAT_S):
                try:
                    beat()
                except Exception as exc:  # noqa: BLE001 - a missed beat is what the controller looks for
                    logger.debug("heartbeat not sent: %s", exc)

        beat()  # the first one is sent before the trainer runs: a worker that freezes at once is seen
        threading.Thread(target=heartbeat, name="sweeps-heartbeat", daemon=True).start()
        recorder = recorders.get(self.node_id)
        try:
            return run_trial(request, decide if judge is not None else None,
                             {"sweeps.node.id": self.node_id, "sweeps.node.ip": self.node_ip},
                             (lambda r: _NodeRecord(recorder, r, self.node_id)) if recorder is not None else None,
                             pulse=pulse, exclusive=True)
        finally:
            done.set()
            _release_memory()

    def retire(self, wait_s: float) -> None:
        """Finish this worker's W&B runs and stop its W&B service (within ``wait_s``), then end the worker.

        The service is stopped here, not by W&B's exit handler: that one runs
        after ``retire`` has returned, while Ray may already be shutting down."""
        _retire(wait_s, "this worker")


class RecorderLost(Exception):
    """The node's recorder died: the trial's record is incomplete (the trial is lost and runs again)."""

    def __init__(self, node: str, detail: str) -> None:
        super().__init__(f"the recorder of node {node[:12]} died: {detail}")
        self.node, self.detail = node, detail

    def __reduce__(self) -> tuple[Any, ...]:  # raised in a worker, read by the controller
        return RecorderLost, (self.node, self.detail)


class _NodeRecord:
    """A trial's record kept by its node's recorder (a :class:`TrialRecord` there).

    The trainer's reports are sent on about once a second (or every
    ``SIZE`` values), where the recorder writes them at once: what a trial
    reported reaches the store within about a second, as when a worker
    records. ``end`` returns once the recorder has written the trial's end.
    """

    SIZE = 1000

    def __init__(self, recorder: Any, req: TrialRequest, node: str, every: float = 1.0) -> None:
        self.recorder, self.req, self.node, self.every = recorder, req, node, every
        self._pending: list[tuple[int, dict[str, float]]] = []
        self._values = 0
        self._sent = time.monotonic()

    def start(self, tags: Any, packages: Any) -> None:
        mlflow = tracking.enabled(self.req.tracking_uri)  # the tags and package scan are for MLflow only
        self.recorder.start.remote(self.req, tags() if mlflow else {}, packages() if mlflow else ("", ""))

    def metrics(self, batch: list[tuple[int, dict[str, float]]]) -> None:
        self._pending.extend(batch)
        self._values += sum(len(values) for _, values in batch)
        if self._values >= self.SIZE or time.monotonic() - self._sent >= self.every:
            self._send()

    def flush_due(self) -> None:
        if self._pending and time.monotonic() - self._sent >= self.every:
            self._send()

    def _send(self) -> None:
        self._sent = time.monotonic()
        if self._pending:
            self.recorder.metrics.remote(self.req.key, self._pending)
            self._pending, self._values = [], 0

    def keep(self, kept: Kept) -> None:
        self._send()
        self.recorder.keep.remote(self.req.key, kept)  # on this node: the staged path is readable there

    def end(self, how: TrialEnd) -> None:
        import ray

        self._send()
        try:
            ray.get(self.recorder.end.remote(self.req.key, how))
        except ray.exceptions.RayActorError as exc:
            raise RecorderLost(self.node, str(exc).splitlines()[0]) from None


class NodeRecorder:
    """A node's recording process (a Ray actor): the MLflow runs of every trial on
    its node, and through its node's W&B process (:class:`NodeMirror`, which it
    starts and owns) their W&B runs.

    One process per node imports MLflow and opens the store, and one beside it
    imports W&B and runs a W&B service, instead of both in every worker: on a
    GPU node that is every GPU's worker spared about 2 s of CPU and some 300 MB,
    and on one machine with a sqlite store, one writer per node instead of one
    per trial slot. The two are separate processes so that W&B's runs (CPU-bound
    in Python) do not hold the GIL that the MLflow writes a worker waits on
    need. Calls from one worker run in the order they were sent (Ray keeps an
    actor's calls from one caller in order); the first error of a trial's record
    is kept and raised by its ``end``. A W&B process that dies is replaced at the
    next trial's start.
    """

    def __init__(self, uri: str, wandb: WandbSettings | None) -> None:
        self._records: dict[str, TrialRecord] = {}
        self._errors: dict[str, Exception] = {}
        self._ended: OrderedDict[str, TrialRequest] = OrderedDict()  # the trials whose end it wrote last
        # W&B in a process of its own beside this one (owned by it: it ends with it): its runs are
        # written on the node's other cores instead of taking turns with MLflow's writes for one GIL
        self._wandb = wandb if wandb is not None and wandb.mode != "disabled" else None
        self._mirrors = 0  # W&B processes started so far (each has a name of its own)
        self._mirror: Any = self._new_mirror() if self._wandb is not None else None
        self._last_call: Any = None  # the last call to the W&B process: it fails once that process has died
        _warm_up(_warm_tracking, uri, None)

    def _new_mirror(self) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        context = ray.get_runtime_context()
        self._mirrors += 1
        name = (context.get_actor_name() or "").replace("sweeps-recorder-", "sweeps-wandb-")
        return ray.remote(NodeMirror).options(
            num_cpus=0, max_restarts=0, name=f"{name}-{self._mirrors}" if name else None,
            scheduling_strategy=NodeAffinitySchedulingStrategy(context.get_node_id(), soft=False),
        ).remote(self._wandb)

    def _to_mirror(self, method: str, *args: Any) -> None:
        """Send a call to the node's W&B process (never raises: W&B never fails a trial)."""
        try:
            self._last_call = getattr(self._mirror, method).remote(*args)
        except Exception as exc:  # noqa: BLE001
            logger.warning("W&B mirror: %s not sent: %s", method, exc)

    def _replace_dead_mirror(self) -> None:
        """A new W&B process when the last one has died (the W&B runs it had open stay unfinished;
        the trials themselves are not touched)."""
        import ray

        if self._last_call is not None and ray.wait([self._last_call], timeout=0)[0]:
            try:
                ray.get(self._last_call)
            except ray.exceptions.RayActorError as exc:
                logger.warning("the W&B process of this node died (%s); a new one mirrors the next trials",
                               str(exc).splitlines()[0])
                try:
                    self._mirror = self._new_mirror()
                except Exception as again:  # noqa: BLE001 - the MLflow record goes on without W&B
                    logger.warning("no new W&B process for this node: %s", again)
            self._last_call = None

    def _guard(self, key: str, fn: Any) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - raised by the trial's end
            self._errors.setdefault(key, exc)

    def start(self, request: TrialRequest, tags: dict[str, str], packages: tuple[str, str]) -> None:
        mirror = None
        if self._wandb is not None:
            self._replace_dead_mirror()
            mirror = _NodeMirrorRun(self, request)
        record = self._records[request.key] = TrialRecord(request, mirror)
        self._guard(request.key, lambda: record.start(lambda: tags, lambda: packages))

    def metrics(self, key: str, batch: list[tuple[int, dict[str, float]]]) -> None:
        record = self._records.get(key)
        if record is None:  # forgotten: its trial was given up
            return

        def write() -> None:
            record.metrics(batch)
            record.buffer.flush()

        self._guard(key, write)

    def keep(self, key: str, kept: Kept) -> None:
        record = self._records.get(key)
        if record is None:
            kept.remove()
        else:
            self._guard(key, lambda: record.keep(kept))

    def end(self, key: str, how: TrialEnd) -> None:
        record, error = self._records.pop(key, None), self._errors.pop(key, None)
        if record is None:
            raise RuntimeError(f"no record of {key} on this node's recorder (the trial was given up)")
        if error is not None:
            raise error
        record.end(how)
        self._ended[key] = record.req
        while len(self._ended) > ENDED_KEPT:
            self._ended.popitem(last=False)

    def forget(self, key: str, state: str, reason: str) -> bool:
        """The controller gave the trial up (its worker died, went silent, or was cancelled): keep what it
        reported and end its W&B run as lost. False when this recorder has no record of it.

        A worker can die while this recorder writes its trial's end: the trial is then given up all the
        same, and its run is ended here as given up, after the end written for it (the controller
        writes the same, but it may do so first when this recorder answers late)."""
        record = self._records.pop(key, None)
        self._errors.pop(key, None)
        if record is None:
            ended = self._ended.pop(key, None)
            if ended is None:
                return False
            quietly(lambda: tracking.end_given_up(ended.tracking_uri, ended.run_id, reason, state, ended.params))
            if self._mirror is None:
                return False
            # its W&B run was closed by this node's W&B process: that process (one writer per run, in order)
            # marks it lost after its end
            self._to_mirror("lost", ended, lost_summary(state, reason), state == "FAIL")
            return True
        try:
            record.buffer.flush()
        except Exception as exc:  # noqa: BLE001 - the controller closes the MLflow run all the same
            logger.warning("could not write the last metrics of %s: %s", key, exc)
        record.close_mirror(lost_summary(state, reason), failed=state == "FAIL")
        return True

    def retire(self, wait_s: float) -> None:
        """Let the node's W&B process finish its runs and stop its W&B service (within ``wait_s``), then
        end the recorder."""
        import ray

        if self._mirror is not None:
            try:
                ray.wait([self._mirror.retire.remote(wait_s)], timeout=wait_s + 5)
            except Exception as exc:  # noqa: BLE001 - it ends with this process all the same
                logger.warning("the W&B process of this node did not retire: %s", exc)
        _retire(wait_s, "this node")


class _NodeMirrorRun:
    """A trial's W&B run kept by its node's W&B process (a :class:`TrialMirror` there), with
    :class:`TrialMirror`'s verbs; the recorder sends every call, so they arrive in order."""

    def __init__(self, recorder: NodeRecorder, req: TrialRequest) -> None:
        self.recorder, self.req = recorder, req

    def open(self) -> None:
        self.recorder._to_mirror("open", self.req)

    def log(self, batch: list[tuple[int, dict[str, float]]]) -> None:
        self.recorder._to_mirror("log", self.req.key, batch)

    def keep(self, kept: Kept) -> None:
        self.recorder._to_mirror("keep", self.req.key, kept)

    def close(self, summary: dict[str, Any], failed: bool) -> None:
        self.recorder._to_mirror("close", self.req.key, summary, failed)


class NodeMirror:
    """A node's W&B process (a Ray actor, started and owned by the node's :class:`NodeRecorder`):
    the W&B runs of the node's trials, each a :class:`TrialMirror`, written on its W&B thread."""

    def __init__(self, wandb: WandbSettings) -> None:
        self._runs: dict[str, TrialMirror] = {}
        _warm_up(warm, wandb)

    def open(self, request: TrialRequest) -> None:
        run = self._runs[request.key] = TrialMirror(request)
        run.open()

    def log(self, key: str, batch: list[tuple[int, dict[str, float]]]) -> None:
        if key in self._runs:
            self._runs[key].log(batch)

    def keep(self, key: str, kept: Kept) -> None:
        if key in self._runs:
            self._runs[key].keep(kept)
        else:
            kept.remove()

    def close(self, key: str, summary: dict[str, Any], failed: bool) -> None:
        run = self._runs.pop(key, None)
        if run is not None:
            run.close(summary, failed)

    def lost(self, request: TrialRequest, summary: dict[str, Any], failed: bool) -> None:
        """A trial whose run this process closed was given up after its end: the run, resumed, says so."""
        run = TrialMirror(request, resume=True)
        run.open()
        run.close(summary, failed)

    def retire(self, wait_s: float) -> None:
        """Finish the W&B runs and stop the W&B service (within ``wait_s``), then end this process."""
        _retire(wait_s, "this node's W&B process")


def _retire(wait_s: float, whose: str) -> None:
    """End the actor this runs in once its W&B runs are finished and its W&B service is stopped."""
    import ray

    if not close(wait_s):
        logger.warning("W&B runs of %s were still being written after %.0f s", whose, wait_s)
    ray.actor.exit_actor()


def _warm_up(fn: Any, *args: Any) -> None:
    """An actor's start-up work on a thread of its own (its first calls need not wait for it)."""
    threading.Thread(target=fn, args=args, name="sweeps-warm", daemon=True).start()


def _warm_tracking(uri: str, wandb: WandbSettings | None) -> None:
    try:
        if tracking.enabled(uri):
            tracking.client(uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - the trial itself reports what is wrong
        logger.warning("could not open the MLflow store %s ahead: %s", uri, exc)
    warm(wandb)


def _warm_worker(uri: str, wandb: WandbSettings | None, trainer: str, records: bool) -> None:
    try:  # the trial imports it first thing (and reports an import error itself); a program has none
        if trainer:
            importlib.import_module(trainer.partition(":")[0])
    except Exception as exc:  # noqa: BLE001
        logger.debug("could not import the trainer ahead: %s", exc)
    if tracking.enabled(uri):
        environment_tags()  # the package scan every trial's record names
    if records:
        _warm_tracking(uri, wandb)


def _release_memory() -> None:
    """Between two GPU trials in one process: free the last trial's tensors and
    hand cached GPU memory back, so the next trial starts with the whole GPU
    (a full collection costs tens of milliseconds: only where CUDA is in use)."""
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()
