"""MLflow: the sweep's parent run and each trial's child run.

The one module that imports mlflow. Clients are cached per process so that a
node's recorder, which writes many trials, opens its store once.

The tracking URI ``none`` turns MLflow off: every function here then does
nothing (and never imports mlflow), run ids are empty, and the sweep's record
is its state directory alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from .trackers import Best, SweepEnd

logger = logging.getLogger(__name__)

_CLIENTS: dict[str, MlflowClient] = {}
_CLIENTS_LOCK = threading.Lock()
#: MLflow's own default: a sqlite file in the working directory
DEFAULT_URI = "sqlite:///mlflow.db"
PARENT_TAG = "mlflow.parentRunId"
#: the tracking URI that turns MLflow off
DISABLED = "none"
#: MLflow's UI opens an experiment on its training runs with this tag (else on its GenAI overview)
KIND_TAG, TRAINING = "mlflow.experimentKind", "custom_model_development"


def enabled(uri: str) -> bool:
    return uri != DISABLED


def absolute_uri(uri: str | None, cwd: Path) -> str:
    """Make a local store's path absolute, so that Ray workers in other
    directories write to the same place; a bare path becomes a sqlite file."""
    uri = uri or DEFAULT_URI
    if uri.lower() == DISABLED:
        return DISABLED
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((cwd / uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return "sqlite:///" + str((cwd / uri).resolve())
    return uri


def is_local(uri: str) -> bool:
    """A store only this machine can write to (sqlite, files)."""
    return enabled(uri) and (uri.startswith(("sqlite:", "file:")) or "://" not in uri)


def client(uri: str) -> MlflowClient:
    """A cached client for ``uri`` (opening a sqlite store costs about a second).

    MLflow is imported here, under a lock, and every function of this module
    calls this before it imports anything of MLflow's: two threads importing
    MLflow at once (a worker's warm-up and its first trial) can meet Python's
    import deadlock detection and leave ``mlflow`` half imported for the
    process's life."""
    with _CLIENTS_LOCK:  # a worker's warm-up and its first trial's recorder may ask at once
        if uri not in _CLIENTS:
            from mlflow import MlflowClient

            _CLIENTS[uri] = MlflowClient(tracking_uri=uri)
        return _CLIENTS[uri]


def experiment_id(uri: str, name: str) -> str:
    """The id of experiment ``name``, created when missing.

    For a local sqlite store, artifacts go to ``mlartifacts`` beside the
    database (absolute), where ``mlflow ui`` run in that directory finds them;
    for a database reached directly (PostgreSQL), to ``mlartifacts`` in the launch
    directory. A tracking server keeps its own.
    """
    if not enabled(uri):
        return ""
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if KIND_TAG not in exp.tags:
            c.set_experiment_tag(exp.experiment_id, KIND_TAG, TRAINING)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").as_uri()
    elif uri.startswith(("postgresql", "mysql", "mssql")):  # a database reached directly: artifacts here
        location = (Path.cwd() / "mlartifacts").resolve().as_uri()
    try:
        return c.create_experiment(name, artifact_location=location, tags={KIND_TAG: TRAINING})
    except Exception:  # created concurrently by another process
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def flatten_params(flat: dict[str, Any]) -> dict[str, str]:
    """MLflow param values: strings; lists and dicts as JSON."""
    out = {}
    for k, v in flat.items():
        out[k] = v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return out


def create_run(uri: str, exp_id: str, name: str, tags: dict[str, str], params: dict[str, Any] | None = None) -> str:
    """Create a run (RUNNING) and log its params; returns the run id."""
    if not enabled(uri):
        return ""
    info = client(uri).create_run(exp_id, run_name=name, tags=tags).info
    if params:
        set_tags(uri, info.run_id, {}, params)
    return info.run_id


def end_run(uri: str, run_id: str, status: str) -> None:
    """Close a run: FINISHED, FAILED or KILLED."""
    if enabled(uri):
        client(uri).set_terminated(run_id, status=status)


def set_tags(uri: str, run_id: str, tags: dict[str, Any], params: dict[str, Any] | None = None) -> None:
    """Tags, and params when given, in one write (logging a param again with the same value is allowed)."""
    buffer = MetricBuffer(uri, run_id)
    buffer.describe(tags, params)
    buffer.flush()


def end_given_up(uri: str, run_id: str, reason: str, state: str, params: dict[str, Any] | None = None) -> None:
    """A trial the controller gave up (``state``: KILLED, stopped; FAIL, lost and run again): its run
    ends KILLED or FAILED with the reason, over whatever end was written before."""
    killed = state == "KILLED"
    set_tags(uri, run_id, {"sweeps.error": reason, **({} if killed else {"sweeps.lost": "true"})}, params=params)
    end_run(uri, run_id, "KILLED" if killed else "FAILED")


def delete_tag(uri: str, run_id: str, key: str) -> None:
    if enabled(uri):
        client(uri).delete_tag(run_id, key)


def log_text(uri: str, run_id: str, text: str, path: str) -> None:
    """Write ``text`` as the run's artifact ``path``."""
    if enabled(uri):
        client(uri).log_text(run_id, text, path)


def read_text(uri: str, run_id: str, path: str) -> str:
    """Artifact ``path`` of run ``run_id``, as text; OSError when the run has no such artifact."""
    import tempfile

    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="sweeps-read-") as tmp:
        try:
            local = client(uri).download_artifacts(run_id, path, tmp)
        except MlflowException as exc:
            raise OSError(f"{path}: {exc}") from None
        return Path(local).read_text()


def log_artifact(uri: str, run_id: str, local_path: str, folder: str | None = None) -> None:
    if enabled(uri):
        client(uri).log_artifact(run_id, local_path, folder)


def log_artifacts(uri: str, run_id: str, local_dir: str, folder: str | None = None) -> None:
    if enabled(uri):
        client(uri).log_artifacts(run_id, local_dir, folder)


def log_metric(uri: str, run_id: str, key: str, value: float, step: int) -> None:
    if enabled(uri):
        client(uri).log_metric(run_id, key, value, timestamp=int(time.time() * 1000), step=step)


class MetricBuffer:
    """Collects a run's metrics (and its tags and params) and writes them with log_batch.

    One call per metric value is what makes MLflow slow on sqlite; here values
    are sent in batches (every ``size`` values or ``interval_s`` seconds), and
    ``flush`` sends the rest. Tags and params given to ``describe`` go with the
    next batch: a trial shorter than ``interval_s`` is written in one
    transaction, a longer one shows them within ``interval_s``. Nothing is
    dropped from the buffer before the store has taken it.
    """

    def __init__(self, uri: str, run_id: str, size: int = 200, interval_s: float = 1.0, *,
                 shared: bool = False) -> None:
        self.uri, self.run_id, self.size, self.interval_s = uri, run_id, size, interval_s
        #: the trial's own code logs to this run too: a value it logged at a step is not written again
        self.shared = shared
        self._pending: list[Any] = []
        self._tags: list[Any] = []
        self._params: list[Any] = []
        self._flushed = time.monotonic()

    def describe(self, tags: dict[str, Any], params: dict[str, Any] | None = None) -> None:
        if not enabled(self.uri):
            return
        client(self.uri)  # MLflow imported whole, under the lock, before its entities
        from mlflow.entities import Param, RunTag

        self._tags.extend(RunTag(k, str(v)[:8000]) for k, v in tags.items())
        self._params.extend(Param(k, v[:6000]) for k, v in flatten_params(params or {}).items())

    def add(self, step: int, metrics: dict[str, float]) -> None:
        if not enabled(self.uri):
            return
        client(self.uri)
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, v, now, step) for k, v in metrics.items())
        # by size, and at least once a second: a worker killed mid-trial loses at most a second of metrics
        if len(self._pending) >= self.size or time.monotonic() - self._flushed >= self.interval_s:
            self.flush()

    def flush_due(self) -> None:
        """Flush when values have waited for ``interval_s``."""
        if (self._pending or self._tags or self._params) and time.monotonic() - self._flushed >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        self._flushed = time.monotonic()
        if self.shared and self._pending:
            self._pending = self._not_logged(self._pending)
        # MLflow takes at most 1000 items per batch, of them 100 params and 100 tags
        while self._pending or self._tags or self._params:
            tags, params = self._tags[:100], self._params[:100]
            metrics = self._pending[:1000 - len(tags) - len(params)]
            client(self.uri).log_batch(self.run_id, metrics=metrics, params=params, tags=tags, synchronous=True)
            del self._tags[:len(tags)], self._params[:len(params)], self._pending[:len(metrics)]


    def _not_logged(self, metrics: list[Any]) -> list[Any]:
        """The metrics whose key has no value at their step in the run yet."""
        c = client(self.uri)
        logged = {key: {m.step for m in c.get_metric_history(self.run_id, key)} for key in {m.key for m in metrics}}
        return [m for m in metrics if m.step not in logged[m.key]]


def activate(uri: str, run_id: str) -> None:
    """Make ``run_id`` MLflow's active run on this thread (MLflow keeps one stack of active runs per
    thread), in ``uri``: a trainer's own ``mlflow.log_*``, ``set_tag``, ``<flavor>.log_model`` and
    ``autolog`` go to the trial's run."""
    if not enabled(uri):
        return
    client(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.start_run(run_id=run_id)


def deactivate(run_id: str) -> None:
    """End the trial's run as MLflow's active run on this thread, where it is (its end state is
    written after this, by the trial's record); a run the trainer left open is ended too."""
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is None:
        return
    while (run := mlflow.active_run()) is not None:
        mlflow.end_run()
        if run.info.run_id == run_id:
            break


def log_model(uri: str, run_id: str, model: Any, name: str, example: Any = None) -> str:
    """Log ``model`` as an MLflow logged model of run ``run_id``, in the flavour that fits it (torch,
    scikit-learn, a pyfunc ``PythonModel``), with the flavour's default requirements (MLflow's
    inference of them loads the model in a new process: seconds a model); its model URI. The run
    stays RUNNING."""
    flavor, kwargs = _flavor(model, example)
    with _active(uri, run_id):
        info = flavor.log_model(name=name, input_example=example, pip_requirements=flavor.get_default_pip_requirements(),
                                **kwargs)
    set_tags(uri, run_id, {f"sweeps.model.{name}": info.model_uri})
    return info.model_uri


@contextlib.contextmanager
def _active(uri: str, run_id: str) -> Iterator[None]:
    """Run ``run_id`` as MLflow's active run on this thread for a fluent call (it is already where the
    trainer imports MLflow); it stays RUNNING after."""

    client(uri)
    import mlflow

    saved = saved_env()
    mlflow.set_tracking_uri(uri)
    active = mlflow.active_run()
    ours = active is not None and active.info.run_id == run_id
    if not ours:
        mlflow.start_run(run_id=run_id, nested=active is not None)
    try:
        yield
    finally:
        if not ours:
            mlflow.end_run()
            client(uri).update_run(run_id, status="RUNNING")
        restore_env(saved)  # set_tracking_uri writes $MLFLOW_TRACKING_URI, end_run forgets $MLFLOW_RUN_ID


#: what MLflow's fluent API reads from the environment (and writes to it)
FLUENT_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")


def saved_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in FLUENT_ENV}


def restore_env(saved: dict[str, str | None]) -> None:
    """``FLUENT_ENV`` as ``saved_env`` found it: MLflow's ``set_tracking_uri`` writes ``$MLFLOW_TRACKING_URI``
    for the whole process, and a trial must leave the process as it was."""
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def log_dataset(uri: str, run_id: str, name: str, data: Any) -> str:
    """Record data set ``name`` as an input of run ``run_id`` (MLflow's Dataset column) with a digest of its
    content, not its path: a pandas DataFrame, a numpy array, or a file or folder. The digest is also the
    run's tag ``sweeps.dataset.<name>``; returned."""
    client(uri)
    import mlflow.data

    if isinstance(data, (str, os.PathLike)):
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource

        path = Path(data).resolve()
        dataset: Any = MetaDataset(LocalArtifactDatasetSource(str(path)), name=name, digest=path_digest(path))
    elif hasattr(data, "to_numpy") and hasattr(data, "columns"):
        dataset = mlflow.data.from_pandas(data, name=name)
    else:
        dataset = mlflow.data.from_numpy(data, name=name)
    with _active(uri, run_id):
        mlflow.log_input(dataset, context="training")
    set_tags(uri, run_id, {f"sweeps.dataset.{name}": dataset.digest})
    return dataset.digest


def path_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (their paths and bytes, in order); 12 hex digits."""
    import hashlib

    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no data at {path}")
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode())
        with open(f, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def _flavor(model: Any, example: Any) -> tuple[Any, dict[str, Any]]:
    import sys

    import mlflow

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        import mlflow.pytorch

        # without an example, torch.export cannot trace it: pickled
        return mlflow.pytorch, {"pytorch_model": model, **({} if example is not None else {"serialization_format": "pickle"})}
    if type(model).__module__.split(".")[0] == "sklearn" or (hasattr(model, "get_params") and hasattr(model, "predict")):
        import mlflow.sklearn

        # cloudpickle: MLflow's default, skops, refuses the trainer's own tree models (their node arrays are
        # "untrusted types") unless each type is listed; the model was made by this trial, in this process
        return mlflow.sklearn, {"sk_model": model, "serialization_format": mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE}
    import mlflow.pyfunc

    if isinstance(model, mlflow.pyfunc.PythonModel):
        return mlflow.pyfunc, {"python_model": model}
    raise TypeError(f"report.model() keeps torch modules, scikit-learn estimators and mlflow.pyfunc.PythonModel "
                    f"objects, not {type(model).__name__}; log it with MLflow's own mlflow.<flavor>.log_model "
                    f"inside train(), which lands in the trial's run too")


def download(uri: str, artifact_uri: str, dst: str) -> str:
    """A local copy of ``artifact_uri`` (a run's artifact, or a logged model's ``models:/m-...`` URI) under ``dst``."""
    import shutil
    import tempfile

    import mlflow

    if not artifact_uri.startswith("models:/m-"):
        client(uri)
        return mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=dst, tracking_uri=uri)
    # MLflow looks a models:/ URI up in the store its global URIs name (by default ./mlflow.db, wherever this
    # runs), whatever tracking_uri it is given: the logged model's own artifact location is downloaded instead
    location = client(uri).get_logged_model(artifact_uri.split("/")[1]).artifact_location
    with tempfile.TemporaryDirectory(prefix="sweeps-model-") as tmp:  # its files, not the folder they are in
        shutil.copytree(mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=uri),
                        dst, dirs_exist_ok=True)
    return dst


def get_run(uri: str, run_id: str) -> Any:
    """The run, or None when the store does not have it."""
    if not enabled(uri):
        return None
    c = client(uri)
    from mlflow.exceptions import MlflowException

    try:
        return c.get_run(run_id)
    except MlflowException:
        return None


def reopen_run(uri: str, run_id: str) -> None:
    """Mark a run RUNNING again (a resumed sweep's parent)."""
    if enabled(uri):
        client(uri).update_run(run_id, status="RUNNING")



class MlflowSweep:
    """The sweep's MLflow parent run, a :class:`~sweeps.trackers.SweepTracker`: the best trial's params and
    run id as tags (``best.<param>``, ``best_run_id``, ``best_trial``), the best-so-far curve
    ``best_<metric>`` at step = trials finished (written in batches), and at the end the sweep's files
    and why it stopped."""

    def __init__(self, uri: str, metric: str, experiment: str, run_id: str) -> None:
        self.uri, self.metric, self.experiment_id, self.run_id = uri, metric, experiment, run_id
        self._curve = MetricBuffer(uri, run_id)

    @classmethod
    def create(cls, uri: str, experiment: str, metric: str, name: str, tags: dict[str, str],
               params: dict[str, Any], text: str, filename: str) -> MlflowSweep:
        """A new parent run in ``experiment`` (made when missing), with the sweep's file as an artifact."""
        exp = experiment_id(uri, experiment)
        run_id = create_run(uri, exp, name, tags=tags, params=params)
        log_text(uri, run_id, text, filename)
        return cls(uri, metric, exp, run_id)

    @classmethod
    def reopen(cls, uri: str, metric: str, experiment: str, run_id: str) -> MlflowSweep:
        """A resumed sweep's parent run, RUNNING again."""
        reopen_run(uri, run_id)
        return cls(uri, metric, experiment, run_id)

    def tags(self, tags: dict[str, Any]) -> None:
        set_tags(self.uri, self.run_id, tags)

    def best(self, best: Best, previous: Best | None) -> None:
        self.tags({"best_run_id": best.run_id, "best_trial": str(best.number),
                   **{f"best.{k}": v for k, v in flatten_params(best.params).items()}})
        for stale in set(previous.params if previous else {}) - set(best.params):
            delete_tag(self.uri, self.run_id, f"best.{stale}")

    def progress(self, finished: int, best: Best | None) -> None:
        if best is not None:
            self._curve.add(finished, {f"best_{self.metric}": best.value})

    def end(self, end: SweepEnd) -> None:
        for path in end.files:
            log_artifact(self.uri, self.run_id, str(path))
        self._curve.flush()
        self.tags({"sweeps.stop_reason": end.stop})
        end_run(self.uri, self.run_id, end.status)


def logged_models(uri: str, experiment_id: str, run_id: str) -> dict[str, str]:
    """The logged models of run ``run_id``: name ► model URI (``report.model`` or MLflow's own log_model)."""
    if not enabled(uri) or not run_id:
        return {}
    found = client(uri).search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'")
    return {m.name: m.model_uri for m in found}


def register(uri: str, model_uri: str, name: str, alias: str, tags: dict[str, str]) -> tuple[Any, bool]:
    """Register ``model_uri`` as a version of registered model ``name`` with ``alias``; the version and
    whether it is new. The same model registered again under ``name`` gives its version back, not a
    second one. A name the registry refuses raises ConfigError with its reason."""
    from .errors import ConfigError

    c = client(uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        same = [v for v in c.search_model_versions(f"name = '{name}'") if v.tags.get("sweeps.model_uri") == model_uri]
        created = not same
        if created:
            saved = saved_env()  # MLflow's register_model reads the global URIs; set_tracking_uri writes the env
            mlflow.set_registry_uri(uri)
            mlflow.set_tracking_uri(uri)
            try:
                version = mlflow.register_model(model_uri, name, tags={**tags, "sweeps.model_uri": model_uri})
            finally:
                restore_env(saved)
        else:
            version = same[0]
        c.set_registered_model_alias(name, alias, version.version)
    except MlflowException as exc:
        raise ConfigError(f"the model registry at {uri} refuses the model name {name!r} or alias {alias!r}: "
                          f"{exc.message.splitlines()[0]}") from None
    return version, created


def download_files(uri: str, run_id: str, dst: str) -> None:
    """The run's ``files/`` (what ``report.save`` kept) into ``dst/files``, where it has any."""
    if enabled(uri) and client(uri).list_artifacts(run_id, "files"):
        import mlflow

        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="files", dst_path=dst, tracking_uri=uri)


def final_metrics(uri: str, experiment_id: str, sweep_id: str) -> dict[str, dict[str, float]]:
    """The last value of every metric of each trial run of a sweep, by run id (one search)."""
    if not enabled(uri):
        return {}
    runs = client(uri).search_runs([experiment_id], filter_string=f"tags.`sweeps.sweep_id` = '{sweep_id}' "
                                   "and tags.`sweeps.role` = 'trial'", max_results=50_000)
    return {r.info.run_id: dict(r.data.metrics) for r in runs}


def drop_models(uri: str, experiment_id: str, run_id: str, reason: str) -> list[str]:
    """Delete the logged models of run ``run_id`` (``keep: {models: K}``), saying why on the run; the ids of
    the models deleted."""
    if not enabled(uri) or not run_id:
        return []
    c = client(uri)
    found = c.search_logged_models(experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'")
    for m in found:
        c.delete_logged_model(m.model_id)
    if found:
        set_tags(uri, run_id, {"sweeps.model.dropped": reason})
    return [m.model_id for m in found]


def free_models(uri: str, model_ids: list[str]) -> None:
    """Free the files of deleted logged models of a local store with MLflow's own ``mlflow gc`` (a tracking
    server's are freed by ``mlflow gc`` where the server runs)."""
    import subprocess
    import sys

    if not model_ids:
        return
    if not is_local(uri):
        logger.warning("%d dropped models are deleted in MLflow; their files stay on the tracking server until, on "
                       "the head: MLFLOW_TRACKING_URI=%s mlflow gc --backend-store-uri DB --logged-model-ids %s",
                       len(model_ids), uri, ",".join(model_ids))
        return
    out = subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri, "--tracking-uri", uri,
                          "--logged-model-ids", ",".join(model_ids)], capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        logger.warning("mlflow gc did not free the dropped models: %s", out.stderr.strip().splitlines()[-1:])


def histories(uri: str, run_ids: list[str], key: str) -> dict[str, list[tuple[int, float]]]:
    """Metric ``key`` of each run, as ``(step, value)`` in step order."""
    if not enabled(uri):
        return {}
    c = client(uri)
    return {r: [(m.step, m.value) for m in sorted(c.get_metric_history(r, key), key=lambda m: (m.step, m.timestamp))]
            for r in run_ids if r}
