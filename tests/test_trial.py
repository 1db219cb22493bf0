"""What a trial's record names of its environment (sweeps.trial)."""

from __future__ import annotations

import threading
from importlib import metadata
from pathlib import Path

from sweeps import trial as runner
from wandb_offline import offline_runs


def test_the_package_scan_runs_once_when_a_warm_up_and_a_trial_ask_at_once(monkeypatch) -> None:
    scans = []
    real = metadata.distributions

    def counted(*args, **kwargs):  # the real scan, counted
        scans.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(metadata, "distributions", counted)
    runner._requirements.cache_clear()
    start = threading.Barrier(4)
    seen = []

    def ask() -> None:
        start.wait(10)
        seen.append(runner.requirements())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(scans) == 1 and len(seen) == 4 and len(set(seen)) == 1
    digest, text = seen[0]
    # the installed packages as name==version, this project's among them
    lines = text.splitlines()[1:]
    assert f"sweeps-orchestrator=={metadata.version('sweeps-orchestrator')}" in lines
    assert all("==" in line for line in lines)
    runner._requirements.cache_clear()


def test_a_trainers_own_mlflow_and_wandb_calls_land_in_its_trials_runs_on_one_worker(env) -> None:
    """Several trials in one worker process: each one's own calls go to its own runs, never to a stray
    run or store, and a value both logged and reported is there once."""
    summary = env.launch("""
        name: own-calls
        method: grid
        metric: {name: loss}
        trainer: own_calls_trainer:train
        parameters:
          x: {values: [1, 2, 3]}
    """, parallel=1)
    assert summary.counts["COMPLETE"] == 3
    _, children = env.runs(summary)
    client = env.client()
    wb = [r for r in offline_runs(env.tmp) if r.job_type == "trial"]
    assert sorted(r.name for r in wb) == sorted(c.info.run_name for c in children)  # one W&B run a trial
    assert len({c.data.params["worker_pid"] for c in children}) == 1  # one worker ran them all
    for c in children:
        x = float(c.data.params["x"])
        assert c.data.tags["own_tag"] == f"x={x}" and float(c.data.params["own_param"]) == x
        assert f"notes-{x:g}.txt" in [a.path for a in client.list_artifacts(c.info.run_id)]
        assert [m.step for m in client.get_metric_history(c.info.run_id, "loss")] == [0, 1, 2]
        assert [m.step for m in client.get_metric_history(c.info.run_id, "reported_only")] == [0, 1, 2]
        assert c.info.status == "FINISHED"
        run = next(r for r in wb if r.name == c.info.run_name)
        assert run.group == summary.id and run.exit_code == 0 and run.summary["own_summary"] == x
        assert [h["own_metric"] for h in run.history if "own_metric" in h] == [x * 10 + s for s in range(3)]
        assert len([h for h in run.history if "loss" in h]) == 3  # logged by the trainer, not again by report()
        assert [h["reported_only"] for h in run.history if "reported_only" in h] == [0, 1, 2]
        assert len([h for h in run.history if h.get("picture._type") == "image-file"]) == 3  # media into its own run
        assert len(client.list_artifacts(c.info.run_id, "media/picture")) == 3
        assert run.summary["sweeps/state"] == "COMPLETE" and run.summary["sweeps/mlflow_run_id"] == c.info.run_id
    exp = client.search_experiments()
    assert sum(len(client.search_runs([e.experiment_id])) for e in exp) == 4  # the parent and its 3 children
    assert not list(env.tmp.rglob("mlruns")) and not list(Path.cwd().glob("mlruns"))


def test_a_torch_model_logged_with_mlflow_pytorch_is_a_logged_model_of_its_trial(local_env) -> None:
    """trainers/digits_mlp_model.py: the model each trial logs with mlflow.pytorch.log_model belongs to
    that trial's child run, and loads back (MLflow's active run is per thread: the local executor's
    trials, threads of one process, keep theirs apart)."""
    import mlflow
    import torch

    env = local_env
    summary = env.launch("""
        name: models
        method: grid
        metric: {name: val_acc, goal: maximize}
        trainer: trainers.digits_mlp_model:train
        parameters:
          hidden: {values: [16, 32]}
          epochs: {value: 1}
    """, parallel=1)  # torch.export is not thread-safe: two local trials exporting at once fail
    assert summary.counts["COMPLETE"] == 2
    _, children = env.runs(summary)
    client = env.client()
    models = client.search_logged_models(experiment_ids=[summary.record.experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(c.info.run_id for c in children)
    mlflow.set_tracking_uri(env.uri)
    for m in models:
        model = mlflow.pytorch.load_model(m.model_uri)
        hidden = int(client.get_run(m.source_run_id).data.params["hidden"])
        weights = dict(model.named_parameters()) or dict(model.named_buffers())
        assert model(torch.zeros(3, 64)).shape == (3, 10) and hidden in {w.shape[0] for w in weights.values()}


def test_report_model_and_save_keep_a_model_files_and_a_folder_in_the_trials_runs(env) -> None:
    """A trainer that imports neither MLflow nor W&B keeps its model and files through report."""
    import mlflow
    import numpy as np

    summary = env.launch("""
        name: keeps
        method: grid
        metric: {name: acc, goal: maximize}
        trainer: sweeps_test_trainers:keeps_a_model
        parameters:
          c: {values: [0.1, 10.0]}
    """, parallel=1)
    assert summary.counts["COMPLETE"] == 2
    _, children = env.runs(summary)
    client = env.client()
    models = {m.source_run_id: m for m in client.search_logged_models(experiment_ids=[summary.record.experiment_id])}
    wb = {r.name: r for r in offline_runs(env.tmp) if r.job_type == "trial"}
    mlflow.set_tracking_uri(env.uri)
    for c in children:
        model = models[c.info.run_id]
        assert c.data.tags["sweeps.model.model"] == model.model_uri
        assert mlflow.pyfunc.load_model(model.model_uri).predict(np.zeros((2, 30))).shape == (2,)
        files = {a.path for a in client.list_artifacts(c.info.run_id, "files")}
        assert files == {"files/notes.txt", "files/plots"}
        assert [a.path for a in client.list_artifacts(c.info.run_id, "files/plots")] == ["files/plots/a.csv"]
        assert wb[c.info.run_name].artifacts == [f"{c.info.run_name}-model"]  # a W&B model artifact too
        inputs = {d.dataset.name: d.dataset.digest for d in client.get_run(c.info.run_id).inputs.dataset_inputs}
        assert inputs == {"breast_cancer": c.data.tags["sweeps.dataset.breast_cancer"],
                          "plots": c.data.tags["sweeps.dataset.plots"]}
    assert len({c.data.tags["sweeps.dataset.breast_cancer"] for c in children}) == 1  # by content: the same data


def test_reported_images_figures_and_tables_are_mlflow_artifacts_and_wandb_media(env) -> None:
    summary = env.launch("""
        name: media
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:reports_media
        parameters:
          x: {values: [1]}
    """, parallel=1)
    assert summary.counts["COMPLETE"] == 1
    (child,) = env.runs(summary)[1]
    client = env.client()
    for key, ext in (("picture", "png"), ("curve", "png"), ("table", "csv")):
        assert [a.path for a in client.list_artifacts(child.info.run_id, f"media/{key}")] == \
            [f"media/{key}/step-0.{ext}", f"media/{key}/step-1.{ext}"]
    assert [m.step for m in client.get_metric_history(child.info.run_id, "loss")] == [0, 1]
    (run,) = [r for r in offline_runs(env.tmp) if r.job_type == "trial"]
    rows = {h["_step"]: h for h in run.history}
    for step in (0, 1):  # W&B's media in the same rows as the metric
        assert rows[step]["picture._type"] == "image-file" and rows[step]["curve._type"] == "image-file"
        assert rows[step]["table._type"] == "table-file" and rows[step]["loss"] == 1.0 / (step + 1)
