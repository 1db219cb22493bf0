"""Ray: where trials run. The one module that imports ray.

An executor has three verbs: ``submit`` a trial with its resources, ``wait``
for whichever trials finish first, ``cancel`` one. Without an address a local
Ray instance is started (and stopped with the sweep); with one, the cluster is
joined and the launch directory travels to the workers as Ray's working_dir.

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
from typing import Any, Protocol

from .errors import FatalError
from . import tracking
from .mirror import LaterRun, WandbSettings, close, lost_summary, warm
from .trial import (Lost, LostCause, TrialEnd, TrialState, TrialMirror, TrialRecord, TrialRequest, TrialResult, environment_tags, quietly,
                     run_trial)
from .cluster import AGENT_RESOURCE
from .space import EarlyTerminate

logger = logging.getLogger(__name__)

#: seconds between a running trial's heartbeats
HEARTBEAT_S = 1.0
#: how long a worker that is let go waits for its W&B runs to finish
RETIRE_WAIT_S = 60.0
#: Ray's label that every node carries
NODE_ID_LABEL = "ray.io/node-id"
#: set in every worker: no prompts, no per-run banners from MLflow
WORKER_ENV = {"WANDB_SILENT": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
#: how many ended trials a node's recorder remembers (a worker may die while their end is written)
ENDED_KEPT = 10_000
#: never shipped to a cluster with the working directory
EXCLUDES = [".venv/", ".git/", "mlflow.db", "mlruns/", "mlartifacts/", "wandb/", ".sweeps/", "__pycache__/", "*.pyc"]


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
    cpus: float
    gpus: float
    agents_only: bool
    excluded: frozenset[str]
    slot: _Slot | None = None
    ref: Any = None
    cancelled: bool = False


class Executor(Protocol):
    def submit(self, request: TrialRequest, cpus: float, gpus: float, agents_only: bool = False,
               excluded: set[str] | None = None) -> Any: ...
    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]: ...
    def cancel(self, handle: Any) -> None: ...


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
    """Runs trials in a pool of worker actors, each holding one trial's CPUs and GPUs."""

    def __init__(self, address: str | None, workdir: Path, *, num_cpus: float | None = None,
                 num_gpus: float | None = None) -> None:
        import ray

        self._ray = ray
        self._owned = False
        self._numbers: dict[Any, int] = {}
        if ray.is_initialized():
            logger.debug("using the Ray instance already running in this process")
        else:
            runtime_env: dict[str, Any] | None = None
            if address:
                runtime_env = {"env_vars": dict(WORKER_ENV), "working_dir": str(workdir), "excludes": EXCLUDES}
            else:  # the caller ran prepare_local before its threads: Ray's processes inherit the workers' environment
                assert str(workdir) in os.environ.get("PYTHONPATH", "").split(os.pathsep), "prepare_local first"
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
        #: False: a fresh worker process for every trial
        self.reuse_workers = True
        self.judge: Any = None
        #: the actor the running trials' workers beat to (started with the first trial)
        self._board: Any = None
        #: the recording process of each node that can hold a trial (by node id), once ``warm`` said what to record
        self._recorders: dict[str, Any] = {}
        self._tracking: tuple[str, WandbSettings | None] | None = None
        #: the nodes that hold at least one trial, as the last ``capacity`` found them
        self._fitting: list[str] = []

    def _beside_me(self, cls: type) -> Any:
        """An actor on the controller's own node: it must not die with an agent."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(self._ray.get_runtime_context().get_node_id(), soft=False)
        return self._ray.remote(num_cpus=0, max_restarts=0, scheduling_strategy=here)(cls)

    def start_judge(self, et: EarlyTerminate, metric: str, goal: str) -> None:
        """The early-termination judge: a Ray actor every trial's reports consult."""
        from .pruning import Judge

        self.judge = self._beside_me(Judge).remote(et, metric, goal)

    def judge_end(self, number: int, state: str, value: float | None) -> None:
        if self.judge is not None:
            self.judge.end.remote(number, state, value)

    def judge_replay(self, number: int, values: list[float], state: str, value: float | None) -> None:
        if self.judge is not None:
            self.judge.replay.remote(number, values, state, value)

    def heartbeats(self, requests: list[TrialRequest]) -> dict[int, tuple[float, str]]:
        """Seconds since each running trial last beat, and its node (trials yet to beat are left out).

        Workers send a beat every second to a :class:`Heartbeats` actor beside the controller, which
        times them with its own clock: no clocks of other machines are compared."""
        if self._board is None or not requests:
            return {}
        try:
            ages = self._ray.get(self._board.ages.remote([r.key for r in requests]), timeout=10)
        except Exception as exc:  # noqa: BLE001 - a slow actor must not stop the sweep
            logger.warning("no heartbeats this time: %s", str(exc).splitlines()[0])
            return {}
        return {r.number: ages[r.key] for r in requests if r.key in ages}

    def forget(self, request: TrialRequest, lost: bool) -> None:
        """A trial ended: its heartbeat is no longer watched."""
        if self._board is not None:
            self._board.drop.remote(request.key)

    def warm(self, slots: int, cpus: float, gpus: float, uri: str, wandb: WandbSettings | None, trainer: str,
             agents_only: bool = False) -> None:
        """Start the recorders of the nodes that can hold a trial, and the workers the first trials
        will use, while the controller sets up: the trainer's imports, the MLflow store and the W&B
        service, off the first trial's path."""
        if tracking.enabled(uri) or (wandb is not None and wandb.mode != "disabled"):
            self._tracking = (uri, wandb)
            self._start_recorders()
        for _ in range(slots):
            self._idle.append(self._new_slot(cpus, gpus, agents_only, None, uri, wandb, trainer))

    def _new_slot(self, cpus: float, gpus: float, agents_only: bool, excluded: set[str] | None, uri: str,
                  wandb: WandbSettings | None, trainer: str) -> _Slot:
        actor = self._worker.options(
            num_cpus=cpus, num_gpus=gpus,
            resources={AGENT_RESOURCE: 1} if agents_only else None,
            # nodes this sweep gave up on (node_failure_limit) get no more trials
            label_selector={NODE_ID_LABEL: f"!in({','.join(sorted(excluded))})"} if excluded else None,
        ).remote(uri, wandb, trainer, self._recorders)
        return _Slot(actor, gpus)

    def _start_recorders(self) -> None:
        """A recorder on each node that holds a trial and has none yet (see :class:`NodeRecorder`)."""
        if self._tracking is None:
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        for node in self._fitting:
            if node not in self._recorders:
                self._recorders[node] = self._ray.remote(NodeRecorder).options(
                    num_cpus=0, max_restarts=0, name=f"sweeps-recorder-{os.getpid()}-{id(self):x}-{node[:12]}",
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                ).remote(*self._tracking)

    def sweep_run(self, key: str, settings: WandbSettings, kwargs: dict[str, Any]) -> _RecorderRun | None:
        """The sweep's own W&B run (``Mirror``'s ``kwargs``, with a run id), written by the W&B process
        of this node's recorder, so that the controller imports no W&B; None where this node has no
        recorder (the caller writes the run itself). The caller mirrors to W&B, so this node's recorder,
        started with the same settings, has a W&B process."""
        node = self._ray.get_runtime_context().get_node_id()
        return _RecorderRun(self, node, key, settings, kwargs) if node in self._recorders else None

    def recorder_on(self, node: str) -> Any:
        """The recorder of ``node`` now (a new one after one died), or None."""
        return self._recorders.get(node)

    def forget_record(self, request: TrialRequest, state: str, reason: str) -> bool:
        """A trial given up: its node's recorder keeps what it reported and ends its W&B run as lost.
        False when no recorder had its record (it was kept by its worker, or the recorder is gone)."""
        refs = [r.forget.remote(request.key, state, reason) for r in self._recorders.values()]
        if not refs:
            return False
        try:
            ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=10)
            return any(self._ray.get(ready))
        except Exception as exc:  # noqa: BLE001 - a recorder that died with its node
            logger.debug("a recorder did not answer: %s", exc)
            return False

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
                slot = self._new_slot(job.cpus, job.gpus, job.agents_only, set(job.excluded), job.request.tracking_uri,
                                      job.request.wandb, job.request.trainer)
            self._queue.pop(0)
            job.slot = slot
            job.ref = slot.actor.run.options(name=f"trial-{job.request.number}").remote(job.request, self.judge,
                                                                                          self._board, self._recorders)
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

    def capacity(self, cpus: float, gpus: float, agents_only: bool = False, excluded: set[str] | None = None) -> int:
        """How many trials of this size the cluster's alive nodes hold at once.

        Idle workers on nodes that died are let go here, before a trial is sent
        to one, and so are idle workers beyond what the cluster now holds."""
        total = 0
        nodes = self._ray.nodes()
        alive = {n["NodeID"] for n in nodes if n.get("Alive")}
        for slot in [s for s in self._idle if s.node is not None and s.node not in alive]:
            self._idle.remove(slot)
            self._kill(slot.actor)
        fitting = []
        for node in nodes:
            res = node.get("Resources", {})
            if not node.get("Alive") or (agents_only and AGENT_RESOURCE not in res) or node["NodeID"] in (excluded or ()):
                continue
            fits = int(res.get("CPU", 0) // cpus) if cpus > 0 else 10**6
            if gpus > 0:
                fits = min(fits, int(res.get("GPU", 0) // gpus))
            total += fits
            if fits > 0:
                fitting.append(node["NodeID"])
        self._limit, self._fitting = total, fitting
        for node in [n for n in self._recorders if n not in alive]:  # died with their node
            del self._recorders[node]
        self._start_recorders()
        # the workers on nodes the sweep gave up on go first
        self._idle.sort(key=lambda s: s.node in (excluded or ()))
        while self._idle and len(self._idle) + len(self._running) > total:
            self._retire(self._idle.pop())
        self._dispatch()
        return total

    def cluster_resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def remote_nodes(self) -> list[str]:
        """Addresses of alive nodes on other machines than this one."""
        here = {"127.0.0.1", "localhost", self._ray.util.get_node_ip_address()}
        return sorted({n["NodeManagerAddress"] for n in self._ray.nodes() if n.get("Alive")} - here)

    def submit(self, request: TrialRequest, cpus: float, gpus: float, agents_only: bool = False,
               excluded: set[str] | None = None) -> Any:
        job = _Job(request, cpus, gpus, agents_only, frozenset(excluded or ()))
        if self._board is None:
            self._board = self._beside_me(Heartbeats).remote()
        self._queue.append(job)
        self._dispatch()
        return job

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]:
        """Whichever of these trials ended (at once when one has), within ``timeout``."""
        out: list[tuple[Any, TrialResult | Lost]] = [(j, Lost(j.request.number, "cancelled", LostCause.CANCELLED))
                                                     for j in self._dropped]
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
            slot = job.slot
            assert slot is not None
            try:
                result: TrialResult = ray.get(ref)
            except ray.exceptions.RayError as exc:
                self._kill(slot.actor)
                cause = getattr(exc, "cause", None)
                if isinstance(cause, RecorderLost):  # a new one is started for the trial that runs again
                    self._recorders.pop(cause.node, None)
                    self._start_recorders()
                    exc = cause  # type: ignore[assignment]
                if job.cancelled:
                    out.append((job, Lost(job.request.number, "cancelled", LostCause.CANCELLED, slot.node or "")))
                else:
                    reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
                    out.append((job, Lost(job.request.number, reason, LostCause.DIED, slot.node or "")))
                continue
            slot.node = result.node or slot.node
            # a failed GPU trial may leave CUDA broken in its process: that worker is replaced
            fresh = not self.reuse_workers or (result.state is TrialState.FAIL and slot.gpus > 0) or job.cancelled
            if job.cancelled:
                self._kill(slot.actor)
            elif fresh or len(self._idle) + len(self._running) >= self._limit:
                self._retire(slot)
            else:
                self._idle.append(slot)
            out.append((job, result))
        self._dispatch()
        return out

    def cancel(self, handle: Any) -> None:
        """Stop a trial now: its worker process is killed (a new one takes the slot)."""
        job: _Job = handle
        job.cancelled = True
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
        for actor in [*late, *(j.slot.actor for j in self._running.values() if j.slot is not None)]:
            self._kill(actor)
        if self._board is not None:
            self._kill(self._board)
        self._idle, self._running, self._queue, self._recorders, self._board = [], {}, [], {}, None
        if self._owned:
            self._ray.shutdown()
            self._owned = False


class Heartbeats:
    """The running trials' heartbeats (a Ray actor beside the controller): when each trial's worker
    last said it was alive, by this actor's clock, and on which node."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, str]] = {}

    def beat(self, key: str, node: str) -> None:
        self._last[key] = (time.monotonic(), node)

    def drop(self, key: str) -> None:
        self._last.pop(key, None)

    def ages(self, keys: list[str]) -> dict[str, tuple[float, str]]:
        now = time.monotonic()
        return {k: (now - self._last[k][0], self._last[k][1]) for k in keys if k in self._last}


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

        def beat() -> None:
            board.beat.remote(request.key, self.node_id)

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
                             _NodeRecord(recorder, request, self.node_id) if recorder is not None else None)
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
        self._others: dict[str, tuple[WandbSettings, dict[str, Any]]] = {}  # the controller's runs open there
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
                for key, (settings, kwargs) in self._others.items():  # the sweep's run goes on in the new one
                    self._to_mirror("open_run", key, settings, {**kwargs, "resume": True})
            self._last_call = None

    def sweep_run(self, method: str, key: str, *args: Any) -> None:
        """A W&B run of the controller's on this node (the sweep's own), written by this node's W&B
        process: ``open_run(settings, kwargs)`` (``kwargs`` name a run id), then ``summary(values)``
        and ``finish(failed)``. A new W&B process, after one died, resumes it."""
        if self._mirror is None:
            return
        if method == "open_run":
            self._others[key] = args
        elif method == "finish":
            self._others.pop(key, None)
        self._replace_dead_mirror()
        self._to_mirror(method, key, *args)

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
            if ended is not None:
                quietly(lambda: tracking.end_given_up(ended.tracking_uri, ended.run_id, reason, state, ended.params))
            return False
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

    def close(self, summary: dict[str, Any], failed: bool) -> None:
        self.recorder._to_mirror("close", self.req.key, summary, failed)


class _RecorderRun:
    """A W&B run of the controller's written by the W&B process of the controller's node, through that
    node's recorder (:meth:`RayExecutor.sweep_run`), with :class:`~sweeps.mirror.Mirror`'s ``summary``
    and ``finish``. Nothing is waited for. A recorder that died is replaced by the executor: the run
    is resumed in the new one's W&B process."""

    def __init__(self, executor: RayExecutor, node: str, key: str, settings: WandbSettings,
                 kwargs: dict[str, Any]) -> None:
        self.executor, self.node, self.key = executor, node, key
        self.opened: tuple[WandbSettings, dict[str, Any]] = (settings, kwargs)
        self._recorder: Any = None  # the recorder the run was opened through
        self._send(None)

    def _send(self, method: str | None, *args: Any) -> None:
        recorder = self.executor.recorder_on(self.node)
        if recorder is None:
            return
        try:
            if recorder is not self._recorder:  # the first call, or a new recorder: the run (re)opened there
                settings, kwargs = self.opened
                recorder.sweep_run.remote("open_run", self.key, settings,
                                          {**kwargs, "resume": self._recorder is not None})
                self._recorder = recorder
            if method is not None:
                recorder.sweep_run.remote(method, self.key, *args)
        except Exception as exc:  # noqa: BLE001 - W&B never fails a sweep
            logger.warning("W&B mirror: the sweep's %s not sent: %s", method or "run", exc)

    def summary(self, values: dict[str, Any]) -> None:
        self._send("summary", values)

    def finish(self, failed: bool = False) -> None:
        self._send("finish", failed)


class NodeMirror:
    """A node's W&B process (a Ray actor, started and owned by the node's :class:`NodeRecorder`):
    the W&B runs of the node's trials, each a :class:`TrialMirror`, and on the controller's node the
    sweep's own W&B run (``open_run``, ``summary``, ``finish``), written on its W&B thread."""

    def __init__(self, wandb: WandbSettings) -> None:
        self._runs: dict[str, TrialMirror] = {}
        self._others: dict[str, LaterRun] = {}
        _warm_up(warm, wandb)

    def open(self, request: TrialRequest) -> None:
        run = self._runs[request.key] = TrialMirror(request)
        run.open()

    def log(self, key: str, batch: list[tuple[int, dict[str, float]]]) -> None:
        if key in self._runs:
            self._runs[key].log(batch)

    def close(self, key: str, summary: dict[str, Any], failed: bool) -> None:
        run = self._runs.pop(key, None)
        if run is not None:
            run.close(summary, failed)

    def open_run(self, key: str, settings: WandbSettings, kwargs: dict[str, Any]) -> None:
        self._others[key] = LaterRun(settings, **kwargs)

    def summary(self, key: str, values: dict[str, Any]) -> None:
        if key in self._others:
            self._others[key].summary(values)

    def finish(self, key: str, failed: bool) -> None:
        run = self._others.pop(key, None)
        if run is not None:
            run.finish(failed)

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
    try:  # the trial imports it first thing (and reports an import error itself)
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
