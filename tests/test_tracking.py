"""The MLflow store sweeps starts from: a new sqlite file is a copy of an empty
store made once per MLflow version; an existing file is never touched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest


def _experiments(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments").fetchall()
    db.close()
    return sorted(rows)


def _schema(path: Path) -> list[tuple]:
    """Tables with their columns, indexes, and the schema version (not the CREATE
    text: SQLAlchemy writes a rebuilt table's constraints in an order that varies
    from run to run)."""
    with sqlite3.connect(path) as db:
        rows: list[tuple] = [db.execute("SELECT version_num FROM alembic_version").fetchone()]
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall():
            rows.append((table, sorted(db.execute(f'PRAGMA table_info("{table}")').fetchall()),
                         sorted(r[1] for r in db.execute(f'PRAGMA index_list("{table}")').fetchall())))
    db.close()
    return rows


def test_a_new_store_is_a_copy_of_the_cached_empty_one_and_equals_what_mlflow_makes(tmp_path, monkeypatch) -> None:
    import mlflow
    from mlflow import MlflowClient

    from sweeps import tracking

    cache = tmp_path / "cache"
    monkeypatch.setenv("SWEEPS_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "own").mkdir()
    (tmp_path / "seeded").mkdir()
    (tmp_path / "again").mkdir()
    own = tmp_path / "own" / "mlflow.db"
    MlflowClient(f"sqlite:///{own}").search_experiments()  # MLflow's own, through every migration

    seeded = tmp_path / "seeded" / "mlflow.db"
    tracking.client(f"sqlite:///{seeded}")
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    assert template.exists()
    assert _experiments(template) == []  # the Default experiment is made on opening, where it belongs
    assert _schema(seeded) == _schema(own)
    assert _experiments(seeded) == _experiments(own)

    # a second new store comes from the same template, which stays as it was
    made = template.stat().st_mtime_ns
    again = tmp_path / "again" / "mlflow.db"
    uri = f"sqlite:///{again}"
    exp = tracking.experiment_id(uri, "sweeps-test")
    run = tracking.create_run(uri, exp, "r", tags={"k": "v"}, params={"x": 1.5})
    tracking.end_run(uri, run, "FINISHED")
    assert template.stat().st_mtime_ns == made
    got = MlflowClient(uri).get_run(run)
    assert (got.info.status, got.data.params, got.data.tags["k"]) == ("FINISHED", {"x": "1.5"}, "v")
    assert not [p for p in again.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_uri_with_options_is_left_to_mlflow(tmp_path, monkeypatch) -> None:
    from sweeps import tracking

    monkeypatch.setenv("SWEEPS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}?timeout=30"
    exp = tracking.experiment_id(uri, "sweeps-test")
    assert tracking.client(uri).get_experiment(exp).name == "sweeps-test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no stray file named after the options


def test_an_existing_file_is_never_replaced(tmp_path, monkeypatch) -> None:
    from sweeps import tracking

    monkeypatch.setenv("SWEEPS_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mlflow.db"
    path.write_bytes(b"somebody else's store")
    tracking.seed_sqlite(path)
    assert path.read_bytes() == b"somebody else's store"
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("cache", ["under-a-file", "unwritable"])
def test_without_a_usable_cache_mlflow_makes_the_store_itself(tmp_path, monkeypatch, cache) -> None:
    from sweeps import tracking

    (tmp_path / "a-file").write_text("not a directory")
    where = tmp_path / "a-file" / "sweeps" if cache == "under-a-file" else Path("/proc/no-such-dir")
    monkeypatch.setenv("SWEEPS_CACHE_DIR", str(where))
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / (cache + '.db')}"
    exp = tracking.experiment_id(uri, "sweeps-test")
    assert tracking.client(uri).get_experiment(exp).name == "sweeps-test"
    assert tracking.client(uri).get_experiment("0").name == "Default"


def test_artifacts_written_straight_to_the_runs_location_are_where_mlflow_puts_them(tmp_path, monkeypatch) -> None:
    from mlflow import MlflowClient

    from sweeps import tracking

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.experiment_id(uri, "sweeps-test")
    ours = tracking.create_run(uri, exp, "ours", tags={})
    theirs = MlflowClient(uri).create_run(exp).info.run_id  # not made here: MLflow finds its location
    for run in (ours, theirs):
        tracking.log_text(uri, run, '{"x": 1}', "config.json")
        tracking.log_text(uri, run, "numpy==2.0\n", "environments/requirements-abc.txt")
    assert tracking.artifact_uri(ours) and tracking.artifact_uri(theirs) is None
    client = MlflowClient(uri)
    for run in (ours, theirs):
        assert sorted(a.path for a in client.list_artifacts(run)) == ["config.json", "environments"]
        assert client.list_artifacts(run, "environments")[0].path == "environments/requirements-abc.txt"
        assert Path(client.download_artifacts(run, "config.json", str(tmp_path / run))).read_text() == '{"x": 1}'
    # the location handed to a worker with its trial
    other = tracking.create_run(uri, exp, "handed", tags={})
    where = tracking._ARTIFACT_URIS.pop(other)
    tracking.log_text(uri, other, "diff", "git.diff", where)
    assert [a.path for a in client.list_artifacts(other)] == ["git.diff"]


def test_a_runs_tags_params_and_metrics_wait_for_one_batch(tmp_path, monkeypatch) -> None:
    import time

    from mlflow import MlflowClient

    from sweeps import tracking

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracking.create_run(uri, tracking.experiment_id(uri, "sweeps-test"), "r", tags={})
    client = MlflowClient(uri)
    buf = tracking.MetricBuffer(uri, run, interval_s=0.5)
    buf.describe({"sweeps.host": "h"}, {"x": 1.5, "opt": {"lr": 0.1}})
    for step in range(5):
        buf.add(step, {"loss": 1.0 / (step + 1)})
    buf.flush_due()  # not due yet: nothing written
    got = client.get_run(run).data
    assert (got.params, got.metrics, "sweeps.host" in got.tags) == ({}, {}, False)
    time.sleep(0.6)
    buf.flush_due()  # due: all of it, in one write
    got = client.get_run(run).data
    assert got.params == {"x": "1.5", "opt": '{"lr": 0.1}'} and got.tags["sweeps.host"] == "h"
    assert [m.step for m in client.get_metric_history(run, "loss")] == [0, 1, 2, 3, 4]


def test_a_buffer_larger_than_mlflows_batch_limits_is_written_whole(tmp_path, monkeypatch) -> None:
    from mlflow import MlflowClient

    from sweeps import tracking

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = tracking.create_run(uri, tracking.experiment_id(uri, "sweeps-test"), "r", tags={})
    buf = tracking.MetricBuffer(uri, run, size=10**6, interval_s=3600)
    buf.describe({f"t{i}": i for i in range(150)}, {f"p{i}": i for i in range(250)})
    for step in range(2500):
        buf.add(step, {"loss": float(step)})
    buf.flush()
    got = MlflowClient(uri).get_run(run).data
    assert len(got.params) == 250 and len([t for t in got.tags if t.startswith("t")]) == 150
    assert len(MlflowClient(uri).get_metric_history(run, "loss")) == 2500
