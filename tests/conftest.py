"""Shared real parts: one Ray instance for the session (with two logical GPUs),
and per test a temporary MLflow sqlite store, W&B dir and state dir."""

from __future__ import annotations

import atexit
import functools
import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

TESTS = Path(__file__).parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")


@pytest.fixture(autouse=True)
def _no_tracking_uri_leaks(monkeypatch):
    """MLflow's set_tracking_uri also sets $MLFLOW_TRACKING_URI for the process (for its subprocesses): each
    test starts without it and ends without it, so no `sweeps` a later test starts writes to another test's
    store."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID"):
        monkeypatch.setenv(name, "")  # recorded as absent before: removed again after the test
        monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def ray_cluster():
    """A local Ray with 4 CPUs and 2 logical GPUs; workers import tests/ and the repo."""
    import ray

    path = os.pathsep.join([str(TESTS), str(ROOT)])
    ray.init(address="local", num_cpus=4, num_gpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": path, "WANDB_SILENT": "true"}})
    yield ray
    ray.shutdown()


_STORE_LOCK = threading.Lock()


@functools.cache
def _empty_store() -> Path:
    """An MLflow sqlite store as MLflow itself creates it, made once per test process. A test's
    store starts as a copy of it: MLflow's schema migrations cost about a second of CPU a new
    store, and the suite makes a hundred. The CLI tests keep the user's path (a new mlflow.db)."""
    from mlflow import MlflowClient

    folder = tempfile.mkdtemp(prefix="sweeps-store-")
    atexit.register(shutil.rmtree, folder, True)
    path = Path(folder) / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@dataclass
class Env:
    tmp: Path
    #: where trials run: "ray" (the session's Ray) or "local" (threads of the test process, no Ray)
    executor: str = "ray"

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.tmp / 'mlflow.db'}"

    def spec(self, text: str, name: str = "sweep.yaml"):
        from sweeps.space import parse_spec

        path = self.tmp / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return parse_spec(path.read_text(), str(path))

    def options(self, **kw):
        from sweeps.controller import LaunchOptions

        base = dict(tracking_uri=self.uri, wandb_dir=str(self.tmp), state_dir=self.tmp / ".sweeps",
                    workdir=self.tmp, progress=False, wandb_mode="offline", executor=self.executor)
        base.update(kw)
        if base["tracking_uri"] == self.uri:
            self._store()
        return LaunchOptions(**base)

    def _store(self) -> None:
        """This test's store, from the empty one, before anything opens it (a test's own thread may
        open it while the sweep starts: two openers of a new store race to create its tables)."""
        with _STORE_LOCK:
            if not (self.tmp / "mlflow.db").exists():
                shutil.copyfile(_empty_store(), self.tmp / "mlflow.db")

    def launch(self, text: str, **kw):
        from sweeps.controller import Controller

        return Controller(self.spec(text), self.options(**kw)).run()

    def client(self):
        from mlflow import MlflowClient

        self._store()
        return MlflowClient(self.uri)

    def runs(self, summary):
        """(parent, children) of a finished sweep, from the MLflow store."""
        c = self.client()
        runs = c.search_runs([summary.record.experiment_id], max_results=10000)
        parent = [r for r in runs if r.info.run_id == summary.record.parent_run_id]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary.record.parent_run_id]
        return parent[0], children


@pytest.fixture
def env(tmp_path: Path, ray_cluster) -> Env:
    """A sweep's surroundings, its trials on the session's Ray."""
    return Env(tmp_path)


@pytest.fixture
def local_env(tmp_path: Path) -> Env:
    """A sweep's surroundings, its trials in threads of the test process: no Ray at all."""
    return Env(tmp_path, executor="local")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "ray: runs its trials on the session's Ray (tests/test_controller.py)")
    # W&B imported once, here, before any test starts threads: the local executor's trial threads and this
    # process's W&B thread can import it at once, and a first import raced that way left `wandb` half
    # imported for the rest of the process (10 tests of one CI run failed on it; see the session note)
    import wandb  # noqa: F401


def run_here(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A `sweeps` command run in this process by click's runner, in ``cwd``: the same code as the command
    line, without a new interpreter importing MLflow again."""
    from click.testing import CliRunner

    from sweeps.cli import main

    here = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, list(args))
    finally:
        os.chdir(here)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):  # as a process would print it
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, stderr)


def user_env(**extra: str) -> dict[str, str]:
    """This environment as a user's shell would have it: no MLflow or W&B settings of the test run, W&B
    offline and silent, no Ray usage stats; and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    return {**env, "WANDB_SILENT": "true", "WANDB_MODE": "offline", "RAY_USAGE_STATS_ENABLED": "0", **extra}


#: the `sweeps` command as a user runs it: the console script pip installed (which, unlike `python -m`, does not
#: put the current directory on the import path)
SWEEPS = [str(Path(sys.executable).with_name("sweeps"))]


def sweeps_cli(*args: str, cwd: Path, wait: bool = True, **env: str) -> subprocess.CompletedProcess | subprocess.Popen:
    """A `sweeps` command in a process of its own, in ``cwd``, with :func:`user_env` and ``env``: finished
    (within 10 minutes), or with ``wait=False`` started in a session of its own and left running."""
    argv = [*SWEEPS, *args]
    if wait:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                              env=user_env(**env))
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True, env=user_env(**env))


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb")).parent  # type: ignore[arg-type]
    if os.environ.get("CI") == "true":
        pytest.fail("Debian's postgresql package is missing: .ci/run installs it (apt-get install postgresql)")
    pytest.skip("needs Debian's postgresql package (apt-get install postgresql)")


def _as_owner(argv: list[str], owner: str | None) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its own user runs it."""
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of the tests' own on a free port (a throwaway cluster from Debian's package, in a
    temporary directory, stopped at the end): its URL without a database name. Skipped without the package;
    under CI (`CI=true`) that is a failure."""
    bindir = _bindir()
    owner = "postgres" if os.geteuid() == 0 else None
    # not under pytest's temporary root: as root, that is closed to the postgres user
    d = Path(tempfile.mkdtemp(prefix="sweeps-postgres-"))
    password = secrets.token_hex(8)
    (d / "pw").write_text(password + "\n")
    if owner:
        for p in (d, d / "pw"):
            shutil.chown(p, owner)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(d / "data"), "-A", "scram-sha-256", "-U", "sweeps",
                              f"--pwfile={d / 'pw'}"], owner), check=True, capture_output=True, timeout=120)
    ctl = [str(bindir / "pg_ctl"), "-D", str(d / "data")]
    subprocess.run(_as_owner([*ctl, "-l", str(d / "log"), "-w", "-o",
                              f"-p {port} -k {d} -c listen_addresses=127.0.0.1 -c max_connections=200", "start"], owner),
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://sweeps:{password}@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([*ctl, "-m", "fast", "stop"], owner), capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def create_database(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"
