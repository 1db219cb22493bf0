"""The MLflow side of a sweep (sweeps.tracking): where a local store keeps artifacts, and
batched writes of a run's tags, params and metrics."""

from __future__ import annotations

from pathlib import Path


def test_a_local_stores_artifacts_go_beside_it_where_mlflow_ui_finds_them(tmp_path, monkeypatch) -> None:
    from mlflow import MlflowClient

    from sweeps import tracking

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.experiment_id(uri, "sweeps-test")
    assert tracking.experiment_id(uri, "sweeps-test") == exp  # found, not made twice
    client = MlflowClient(uri)
    assert client.get_experiment(exp).artifact_location == (tmp_path / "mlartifacts").as_uri()
    run = tracking.create_run(uri, exp, "r", tags={"k": "v"}, params={"x": 1})
    tracking.log_text(uri, run, '{"x": 1}', "config.json")
    tracking.log_text(uri, run, "numpy==2.0\n", "environments/requirements-abc.txt")
    assert sorted(a.path for a in client.list_artifacts(run)) == ["config.json", "environments"]
    assert client.list_artifacts(run, "environments")[0].path == "environments/requirements-abc.txt"
    assert Path(client.download_artifacts(run, "config.json", str(tmp_path / "dl"))).read_text() == '{"x": 1}'
    assert (tmp_path / "mlartifacts" / run / "artifacts" / "config.json").exists()
    assert not (tmp_path / "mlruns").exists()


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


def test_keep_models_k_deletes_the_models_of_trials_that_fall_out_of_the_k_best(local_env) -> None:
    env = local_env  # the loop's decision, and MLflow's record of it: no Ray needed
    summary = env.launch("""
        name: keep-two
        method: grid
        metric: {name: acc, goal: maximize}
        trainer: sweeps_test_trainers:keeps_a_model
        keep: {models: 2}
        parameters:
          c: {values: [0.001, 10.0, 0.01, 100.0]}
    """, parallel=1)
    assert summary.counts["COMPLETE"] == 4
    _, children = env.runs(summary)
    client = env.client()
    kept = {m.source_run_id for m in client.search_logged_models(experiment_ids=[summary.record.experiment_id])}
    by_c = {float(c.data.params["c"]): c for c in children}
    assert kept == {by_c[10.0].info.run_id, by_c[100.0].info.run_id}  # the two best
    for c in (0.001, 0.01):
        assert by_c[c].data.tags["sweeps.model.dropped"] == "not among the 2 best trials (keep: {models: 2})"
    # their files are gone too (MLflow's own gc, at the sweep's end); the kept ones' are there
    models_dir = env.tmp / "mlartifacts" / "models"
    assert len([p for p in models_dir.iterdir() if (p / "artifacts" / "MLmodel").exists()]) == 2
