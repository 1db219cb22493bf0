"""Ray: where trials run. The one module that imports ray.

An executor has three verbs: ``submit`` a trial with its resources, ``wait``
for whichever trials finish first, ``cancel`` one. Without an address a local
Ray instance is started (and stopped with the sweep); with one, the cluster is
joined and the launch directory travels to the workers as Ray's working_dir.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .errors import FatalError
from .mirror import WandbSettings, warm
from .runner import TrialRequest, TrialResult, run_trial
from .cluster import AGENT_RESOURCE
from .space import EarlyTerminate

logger = logging.getLogger(__name__)

#: seconds between a running trial's heartbeats
HEARTBEAT_S = 1.0
#: Ray's label that every node carries
NODE_ID_LABEL = "ray.io/node-id"
#: set in every worker: no prompts, no per-run banners from MLflow
WORKER_ENV = {"WANDB_SILENT": "true", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
#: never shipped to a cluster with the working directory
EXCLUDES = [".venv/", ".git/", "mlflow.db", "mlruns/", "mlartifacts/", "wandb/", ".sweeps/", "__pycache__/", "*.pyc"]


@dataclass(frozen=True)
class Lost:
    """A trial whose worker or node died, or that was cancelled."""

    number: int
    reason: str


class Executor(Protocol):
    def submit(self, request: TrialRequest, cpus: float, gpus: float) -> Any: ...
    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]: ...
    def cancel(self, handle: Any) -> None: ...


class RayExecutor:
    """Runs each trial as a Ray task with its CPUs and GPUs."""

    def __init__(self, address: str | None, workdir: Path, *, num_cpus: float | None = None,
                 num_gpus: float | None = None) -> None:
        import ray

        self._ray = ray
        self._owned = False
        self._numbers: dict[Any, int] = {}
        if ray.is_initialized():
            logger.debug("using the Ray instance already running in this process")
        else:
            env: dict[str, Any] = {"env_vars": dict(WORKER_ENV)}
            if address:
                env.update(working_dir=str(workdir), excludes=EXCLUDES)
            else:
                # one machine: workers import the trainer from the launch directory
                path = os.pathsep.join(p for p in (str(workdir), os.environ.get("PYTHONPATH", "")) if p)
                env["env_vars"]["PYTHONPATH"] = path
            try:
                # "local": a new instance of our own, even when a `ray start` cluster runs here
                ray.init(address=address or "local", runtime_env=env, include_dashboard=False, log_to_driver=True,
                         num_cpus=None if address else num_cpus, num_gpus=None if address else num_gpus,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise FatalError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            self._owned = True
        self._remote = ray.remote(max_retries=0)(_run_on_worker)
        self.judge: Any = None
        self.watch = self._beside_me(Watch).remote()

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

    def heartbeats(self) -> dict[int, tuple[float, str]]:
        """Seconds since each running trial's last heartbeat, and its node."""
        try:
            return self._ray.get(self.watch.ages.remote(), timeout=10)
        except self._ray.exceptions.RayError as exc:  # a slow or lost watch must not stop the sweep
            logger.warning("no heartbeats this time: %s", str(exc).splitlines()[0])
            return {}

    def forget(self, number: int) -> None:
        self.watch.forget.remote(number)

    def warm(self, slots: int, cpus: float, gpus: float, uri: str, wandb: WandbSettings | None) -> None:
        """Start the workers the first trials will use, while the controller sets up:
        imports, the MLflow store and the W&B service, off the first trial's path."""
        for _ in range(slots):
            self._ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_warm_worker).remote(uri, wandb)

    def capacity(self, cpus: float, gpus: float, agents_only: bool = False, excluded: set[str] | None = None) -> int:
        """How many trials of this size the cluster's alive nodes hold at once."""
        total = 0
        for node in self._ray.nodes():
            res = node.get("Resources", {})
            if not node.get("Alive") or (agents_only and AGENT_RESOURCE not in res) or node["NodeID"] in (excluded or ()):
                continue
            fits = int(res.get("CPU", 0) // cpus) if cpus > 0 else 10**6
            if gpus > 0:
                fits = min(fits, int(res.get("GPU", 0) // gpus))
            total += fits
        return total

    def cluster_resources(self) -> dict[str, float]:
        return dict(self._ray.cluster_resources())

    def remote_nodes(self) -> list[str]:
        """Addresses of alive nodes on other machines than this one."""
        here = {"127.0.0.1", "localhost", self._ray.util.get_node_ip_address()}
        return sorted({n["NodeManagerAddress"] for n in self._ray.nodes() if n.get("Alive")} - here)

    def submit(self, request: TrialRequest, cpus: float, gpus: float, agents_only: bool = False,
               excluded: set[str] | None = None) -> Any:
        ref = self._remote.options(
            num_cpus=cpus, num_gpus=gpus, name=f"trial-{request.number}",
            resources={AGENT_RESOURCE: 1} if agents_only else None,
            # nodes this sweep gave up on (node_failure_limit) get no more trials
            label_selector={NODE_ID_LABEL: f"!in({','.join(sorted(excluded))})"} if excluded else None,
        ).remote(request, self.judge, self.watch)
        self._numbers[ref] = request.number
        return ref

    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, TrialResult | Lost]]:
        if not handles:
            return []
        ray = self._ray
        # return as soon as one trial ends, with every other one already ended
        first, rest = ray.wait(handles, num_returns=1, timeout=timeout, fetch_local=True)
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0, fetch_local=True) if first and rest else ([], [])
        done = first + more
        out: list[tuple[Any, TrialResult | Lost]] = []
        for ref in done:
            number = self._numbers.pop(ref)
            try:
                out.append((ref, ray.get(ref)))
            except ray.exceptions.TaskCancelledError:
                out.append((ref, Lost(number, "cancelled")))
            except ray.exceptions.RayError as exc:
                out.append((ref, Lost(number, f"{type(exc).__name__}: {str(exc).splitlines()[0]}")))
        return out

    def cancel(self, handle: Any) -> None:
        self._ray.cancel(handle, force=True)

    def shutdown(self) -> None:
        if self._owned:
            self._ray.shutdown()


class Watch:
    """Heartbeats of running trials (a Ray actor): how the controller notices
    a worker that went silent where Ray itself cannot tell."""

    def __init__(self) -> None:
        self.beats: dict[int, tuple[float, str]] = {}

    def beat(self, number: int, node: str) -> None:
        self.beats[number] = (time.monotonic(), node)

    def ages(self) -> dict[int, tuple[float, str]]:
        now = time.monotonic()
        return {n: (now - t, node) for n, (t, node) in self.beats.items()}

    def forget(self, number: int) -> None:
        self.beats.pop(number, None)


def _run_on_worker(request: TrialRequest, judge: Any, watch: Any) -> TrialResult:
    """The Ray task: run the trial with heartbeats, asking the judge about each report."""
    import ray

    def decide(value: float) -> str | None:
        return ray.get(judge.report.remote(request.number, value))

    node_id = ray.get_runtime_context().get_node_id()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.is_set():
            watch.beat.remote(request.number, node_id)
            done.wait(HEARTBEAT_S)

    ray.get(watch.beat.remote(request.number, node_id))  # the first one surely arrives before the trainer runs
    threading.Thread(target=heartbeat, name="sweeps-heartbeat", daemon=True).start()
    try:
        return run_trial(request, decide if judge is not None else None, {"sweeps.node.id": node_id, "sweeps.node.ip": ray.util.get_node_ip_address()})
    finally:
        done.set()


def _warm_worker(uri: str, wandb: WandbSettings | None) -> None:
    from . import tracking

    tracking.client(uri).search_experiments(max_results=1)
    warm(wandb)
