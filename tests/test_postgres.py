"""PostgreSQL for real: a throwaway cluster from the distribution's package, started in a temporary
directory and stopped by the tests (never a system service). Skipped where Debian's `postgresql` is
missing; under CI (`CI=true`) that is a failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import textwrap
import time
from pathlib import Path

from conftest import create_database as _database, sweeps_cli


TRAINER = """
import time

def train(config, report):
    for step in range(int(config["steps"])):
        report(step=step, a=step * 1.0, b=-step * 1.0, c=float(config["x"]))
        time.sleep(0.002)
    return {"c": float(config["x"])}
"""


def test_eight_trials_at_once_and_a_killed_controller_lose_and_double_nothing_in_postgresql(postgres: str,
                                                                                             tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = _database(postgres, "load")
    (tmp_path / "chatty.py").write_text(TRAINER)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(f"""
        name: load
        method: grid
        metric: {{name: c}}
        trainer: chatty:train
        mlflow: {{tracking_uri: "{uri}"}}
        parameters:
          x: {{values: [0, 1, 2, 3, 4, 5, 6, 7]}}
          steps: {{value: 1000}}
    """))
    client = MlflowClient(uri)
    client.search_experiments()  # MLflow makes its tables now: this test's polling must not race the launch at it
    launch = sweeps_cli("launch", "s.yaml", "--local", "--parallel", "8", "--no-progress", cwd=tmp_path, wait=False)
    sweep = launch.stdout.readline().strip().split(": ")[1]  # type: ignore[union-attr]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # the controller dies while its 8 trials write
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], "tags.`sweeps.role` = 'trial'")
        if len(runs) == 8 and any(len(client.get_metric_history(r.info.run_id, "a")) > 100 for r in runs):
            break
        time.sleep(0.5)
    os.killpg(launch.pid, signal.SIGKILL)
    launch.wait(60)
    resumed = sweeps_cli("resume", sweep, "--local", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    status = json.loads(sweeps_cli("status", sweep, "--json", cwd=tmp_path).stdout)
    complete = {t["mlflow_run_id"]: t for t in status["trials"] if t["state"] == "COMPLETE"}
    assert sorted(t["params"]["x"] for t in complete.values()) == list(range(8))  # each point once
    for run in client.search_runs([status["sweep"]["experiment_id"]], "tags.`sweeps.role` = 'trial'"):
        for key in ("a", "b", "c"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert len(steps) == len(set(steps)), (key, run.info.run_id)  # nothing doubled
            if run.info.run_id in complete:
                assert sorted(steps) == list(range(1000)), (key, len(steps))  # nothing lost
    assert not (tmp_path / "mlruns").exists() and (tmp_path / "mlartifacts").exists()


def test_a_database_that_refuses_or_is_not_there_is_one_line_naming_the_host(postgres: str, tmp_path: Path) -> None:
    wrong = postgres.replace("sweeps:", "sweeps:not-", 1) + "/postgres"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    absent = f"postgresql://sweeps:pw@127.0.0.1:{port}/mlflow"
    (tmp_path / "s.yaml").write_text("method: random\nmetric: {name: c}\ntrainer: chatty:train\n"
                                     "parameters:\n  x: {min: 0.0, max: 1.0}\n")
    for args in (["launch", "s.yaml", "--tracking-uri"], ["head", "--backend-store-uri"]):
        for uri, why in ((wrong, 'password authentication failed for user "sweeps"'), (absent, "connection refused")):
            out = sweeps_cli(*args, uri, cwd=tmp_path)
            host = uri.split("@")[1].split("/")[0]
            assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
            line = out.stderr.strip()
            assert line.startswith(f"cannot connect to the database at {host}") and why in line.lower(), line
            assert "not-" not in line and ":pw@" not in line  # the password is never printed
