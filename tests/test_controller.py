"""Whole sweeps: the loop on the local executor (no Ray at all), with a real MLflow store and
real W&B offline runs; the tests marked ``ray`` run the same loop on the session's Ray."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import Env
from sweeps.controller import trial_seed
from sweeps.state import open_study
from sweeps.status import sweep_trials
from wandb_offline import ended_runs, offline_runs


@pytest.fixture
def env(request, tmp_path: Path) -> Env:
    """Trials in threads of this process unless the test is marked ``ray``."""
    if request.node.get_closest_marker("ray"):
        request.getfixturevalue("ray_cluster")
        return Env(tmp_path)
    return Env(tmp_path, executor="local")

QUADRATIC = """
    name: quad
    method: {method}
    metric: {{name: loss, goal: minimize}}
    trainer: sweeps_test_trainers:quadratic
    seed: 3
    parameters:
      x: {x}
      steps: {{value: 3}}
"""


def quad(method: str = "random", x: str = "{min: -1.0, max: 1.0}") -> str:
    return QUADRATIC.format(method=method, x=x)


@pytest.mark.parametrize("method", ["grid", "random", "bayes", "tpe", "gp", "cmaes", "qmc"])
def test_each_method_gives_a_parent_with_exactly_n_nested_children(env, method) -> None:
    x = "{values: [-0.5, 0.0, 0.25, 0.5, 1.0]}" if method == "grid" else "{min: -1.0, max: 1.0}"
    summary = env.launch(quad(method, x), trials=5, parallel=2)
    parent, children = env.runs(summary)
    assert len(children) == 5
    assert parent.info.status == "FINISHED"
    assert sorted(c.info.run_name for c in children) == [f"quad-{i}" for i in range(5)]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.experiment_id == parent.info.experiment_id
        assert set(child.data.params) == {"x", "steps"}
        assert child.data.tags["sweeps.sweep_id"] == summary.id
        history = env.client().get_metric_history(child.info.run_id, "loss")
        # three reports, then the returned final value as one more point
        assert [m.step for m in history] == [0, 1, 2, 3]
        x_value = float(child.data.params["x"])
        assert history[2].value == pytest.approx((x_value - 0.3) ** 2 + 1 / 3)
        assert history[3].value == pytest.approx((x_value - 0.3) ** 2)
        assert child.data.metrics["loss"] == pytest.approx((x_value - 0.3) ** 2)
    if method == "grid":
        assert sorted(float(c.data.params["x"]) for c in children) == [-0.5, 0.0, 0.25, 0.5, 1.0]


@pytest.mark.ray
def test_parent_holds_the_best_so_far_equal_to_the_best_child(env) -> None:
    summary = env.launch(quad(), trials=6, parallel=2)
    parent, children = env.runs(summary)
    best = min(children, key=lambda c: c.data.metrics["loss"])
    assert parent.data.metrics["best_loss"] == pytest.approx(best.data.metrics["loss"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert parent.data.tags["best_trial"] == best.data.tags["sweeps.trial"]
    assert parent.data.tags["best.x"] == best.data.params["x"]
    curve = env.client().get_metric_history(parent.info.run_id, "best_loss")
    assert [m.step for m in curve] == list(range(1, 7))
    assert all(a.value >= b.value for a, b in zip(curve, curve[1:]))  # best so far only improves
    assert {"method", "metric", "goal", "seed", "budget.trials"} <= set(parent.data.params)
    assert parent.data.params["seed"] == "3"
    artifacts = {a.path for a in env.client().list_artifacts(parent.info.run_id)}
    assert artifacts == {"sweep.yaml", "trials.csv", "optimization_history.png", "parallel_coordinates.png", "environments"}
    png = Path(env.client().download_artifacts(parent.info.run_id, "optimization_history.png", str(env.tmp)))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(io.StringIO(Path(env.client().download_artifacts(parent.info.run_id, "trials.csv", str(env.tmp))).read_text()))
    assert len(table) == 6 and set(table["mlflow_run_id"]) == {c.info.run_id for c in children}
    assert set(table["state"]) == {"COMPLETE"}
    assert summary.best_run_id == best.info.run_id


def test_grid_with_parallel_3_covers_each_point_exactly_once(env) -> None:
    text = """
        name: grid3
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:quadratic
        parameters:
          x: {values: [0.0, 0.1, 0.2, 0.3]}
          steps: {values: [1, 2, 3]}
    """
    summary = env.launch(text, parallel=3)
    _, children = env.runs(summary)
    points = sorted((float(c.data.params["x"]), int(c.data.params["steps"])) for c in children)
    assert points == sorted((x, s) for x in (0.0, 0.1, 0.2, 0.3) for s in (1, 2, 3))
    assert summary.record.stop_reason == "grid exhausted"


def _configs(env, summary) -> list[dict]:
    study = open_study(summary.state_dir, summary.id, "minimize", create=False)
    return [t.user_attrs["config"] for t in sorted(study.get_trials(), key=lambda t: t.number)]


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_same_file_and_seed_give_the_same_configs(env, method) -> None:
    a = _configs(env, env.launch(quad(method), trials=6, parallel=1, seed=11))
    b = _configs(env, env.launch(quad(method), trials=6, parallel=1, seed=11))
    c = _configs(env, env.launch(quad(method), trials=6, parallel=1, seed=12))
    assert a == b
    assert a != c


def test_budget_holds_exactly_under_parallelism(env) -> None:
    summary = env.launch(quad(), trials=5, parallel=4)
    _, children = env.runs(summary)
    assert len(children) == 5
    assert summary.record.stop_reason == "trial budget"


def test_target_stops_launching_new_trials(env) -> None:
    text = """
        name: target
        method: grid
        metric: {name: loss, goal: minimize, target: 0.001}
        trainer: sweeps_test_trainers:quadratic
        parameters:
          x: {values: [0.3, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, -0.1]}
    """
    summary = env.launch(text, parallel=1)
    _, children = env.runs(summary)
    assert len(children) == 1
    assert summary.record.stop_reason == "target reached"
    assert summary.best_value == pytest.approx(0.0)


def test_w_and_b_mirror_has_every_trial_with_group_config_and_metrics(env) -> None:
    summary = env.launch(quad(), trials=3, parallel=2)
    _, children = env.runs(summary)
    trials, sweeps = ended_runs(env.tmp, 3, "trial"), ended_runs(env.tmp, 1, "sweep")
    runs = trials + sweeps
    assert len(trials) == 3 and len(sweeps) == 1 and len(offline_runs(env.tmp)) == 4
    assert {r.group for r in runs} == {summary.id}
    by_name = {c.info.run_name: c for c in children}
    for r in trials:
        child = by_name[r.name]
        assert r.config == {"x": pytest.approx(float(child.data.params["x"])), "steps": 3}
        losses = [(h["_step"], h["loss"]) for h in r.history if "loss" in h]
        mlflow_losses = [(m.step, m.value) for m in env.client().get_metric_history(child.info.run_id, "loss")]
        assert [s for s, _ in losses] == [s for s, _ in mlflow_losses]
        assert [v for _, v in losses] == pytest.approx([v for _, v in mlflow_losses])
        assert r.summary["sweeps/mlflow_run_id"] == child.info.run_id
    assert sweeps[0].summary["best_loss"] == pytest.approx(summary.best_value)
    assert sweeps[0].summary["best_run_id"] == summary.best_run_id
    assert sweeps[0].summary["trials_finished"] == 3 and sweeps[0].exit_code == 0


def test_a_trainer_that_raises_fails_its_trial_and_the_sweep_finishes(env) -> None:
    text = """
        name: failing
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:fails_when_big
        parameters:
          x: {values: [1, 10, 2]}
    """
    summary = env.launch(text, parallel=2)
    parent, children = env.runs(summary)
    assert parent.info.status == "FINISHED"
    states = {int(c.data.params["x"]): c.info.status for c in children}
    assert states == {1: "FINISHED", 10: "FAILED", 2: "FINISHED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert failed.data.tags["sweeps.error"] == "RuntimeError: x=10 is too big"
    tb = Path(env.client().download_artifacts(failed.info.run_id, "traceback.txt", str(env.tmp))).read_text()
    assert "Traceback" in tb and "fails_when_big" in tb and "too big" in tb
    assert [m.step for m in env.client().get_metric_history(failed.info.run_id, "loss")] == [0]  # kept what it reported
    study = open_study(summary.state_dir, summary.id, "minimize", create=False)
    assert sorted(t.state.name for t in study.get_trials()) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 1, "KILLED": 0}
    wb = {r.name: r for r in ended_runs(env.tmp, 3, "trial")}
    assert wb[failed.info.run_name].exit_code == 1 and wb[failed.info.run_name].summary["sweeps/state"] == "FAIL"


def test_objective_is_the_last_reported_value_when_nothing_is_returned(env) -> None:
    text = """
        name: reports
        method: grid
        metric: {name: score, goal: maximize}
        trainer: sweeps_test_trainers:reports_only
        parameters:
          x: {values: [1.0, 2.0]}
    """
    summary = env.launch(text)
    assert summary.best_value == pytest.approx(6.0)


@pytest.mark.parametrize("trainer", ["config_only", "objective_only"])
def test_a_trainer_without_report_or_returning_only_the_objective_works(env, trainer) -> None:
    summary = env.launch(f"""
        name: {trainer}
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:{trainer}
        parameters:
          x: {{values: [0.5, 3.0]}}
    """)
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 0, "KILLED": 0} and summary.best_value == pytest.approx(0.25)
    _, children = env.runs(summary)
    metrics = sorted((c.data.metrics["loss"], {k for k in c.data.metrics if k != "loss"}) for c in children)
    assert metrics == [(0.25, {"x_seen"} if trainer == "config_only" else {"half"}),
                       (4.0, {"x_seen"} if trainer == "config_only" else {"half"})]


@pytest.mark.parametrize(("trainer", "error"), [
    ("nan_metric", "ValueError: the metric 'loss' is nan"),
    ("reports_only", "ValueError: the trainer neither returned nor reported the metric 'loss'"),
])
def test_a_missing_or_nan_metric_fails_the_trial_with_the_reason(env, trainer, error) -> None:
    text = f"""
        name: bad-metric
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:{trainer}
        parameters:
          x: {{values: [1.0]}}
    """
    summary = env.launch(text)
    _, (child,) = env.runs(summary)
    assert child.info.status == "FAILED" and child.data.tags["sweeps.error"] == error
    assert summary.best_value is None


@pytest.mark.ray
def test_logical_gpus_are_assigned_per_trial_and_seen_by_the_trainer(env) -> None:
    out = env.tmp / "probe"
    out.mkdir()
    text = f"""
        name: gpus
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:probe_gpus
        resources: {{gpus: 1, cpus: 1}}
        parameters:
          i: {{values: [0, 1, 2, 3]}}
          out: {{value: "{out}"}}
          sleep: {{value: 1.0}}
    """
    summary = env.launch(text)
    assert summary.record.parallel == 2  # two logical GPUs hold two trials
    seen = [json.loads(p.read_text()) for p in out.iterdir()]
    assert len(seen) == 4 and {s["cuda"] for s in seen} <= {"0", "1"}
    for a in seen:  # trials that overlapped in time had different GPUs
        for b in seen:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert a["cuda"] != b["cuda"]
    _, children = env.runs(summary)
    assert {c.data.tags["sweeps.gpu.ids"] for c in children} <= {"0", "1"}
    # the name nvidia-smi gives the GPU, or where there is none, that Ray's GPUs were logical ones
    if shutil.which("nvidia-smi") is None:
        assert {c.data.tags["sweeps.gpu.name"] for c in children} == {"logical (no physical GPU)"}
    else:
        names = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                               text=True).stdout.splitlines()
        assert {c.data.tags["sweeps.gpu.name"] for c in children} <= set(names) | {"logical (no physical GPU)"}


@pytest.mark.ray
def test_every_trial_records_what_it_takes_to_reproduce_it(env) -> None:
    work = env.tmp / "work"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "train_notes.txt").write_text("v1\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    (work / "train_notes.txt").write_text("v2\n")  # dirty
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    text = """
        name: repro
        method: random
        metric: {name: loss}
        trainer: seeded_trainer:train
        seed: 5
        parameters:
          x: {min: 0.0, max: 1.0}
    """
    summary = env.launch(text, trials=2, parallel=1, workdir=work)
    parent, children = env.runs(summary)
    # every worker environment's full package list, once, on the parent run
    kept = {a.path for a in env.client().list_artifacts(parent.info.run_id, "environments")}
    assert kept == {f"environments/requirements-{c.data.tags['sweeps.requirements']}.txt" for c in children}
    packages = Path(env.client().download_artifacts(parent.info.run_id, kept.pop(), str(env.tmp / "env"))).read_text()
    assert "optuna==" in packages and "mlflow==" in packages
    for child in children:
        tags = child.data.tags
        assert tags["sweeps.git.commit"] == commit and tags["sweeps.git.dirty"] == "true"
        assert {"sweeps.python", "sweeps.host", "sweeps.packages", "sweeps.seed"} <= set(tags)
        assert "optuna" in json.loads(tags["sweeps.packages"])
        names = {a.path for a in env.client().list_artifacts(child.info.run_id)}
        assert names == {"config.json", "git.diff"}
        diff = Path(env.client().download_artifacts(child.info.run_id, "git.diff", str(env.tmp / child.info.run_id))).read_text()
        assert "+v2" in diff
        config = json.loads(Path(env.client().download_artifacts(child.info.run_id, "config.json", str(env.tmp / child.info.run_id))).read_text())
        assert config["seed"] == int(tags["sweeps.seed"]) and config["config"]["x"] == pytest.approx(float(child.data.params["x"]))
    # the seed is applied: the same sweep seed draws the same random numbers in each trial again
    again = env.launch(text, trials=2, parallel=1, workdir=work)
    _, children2 = env.runs(again)
    draws = lambda runs: sorted((c.data.tags["sweeps.trial"], c.data.metrics["r"], c.data.metrics["n"], c.data.metrics["t"]) for c in runs)  # noqa: E731
    assert draws(children) == draws(children2)
    assert len({d[1] for d in draws(children)}) == 2  # trials get different seeds


@pytest.mark.ray
def test_time_budget_stops_the_sweep_and_kills_running_trials(env) -> None:
    out = env.tmp / "probe"
    out.mkdir()
    text = f"""
        name: timed
        method: random
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:probe_gpus
        budget: {{time: 2s}}
        max_failures: 1
        parameters:
          i: {{min: 0, max: 1000}}
          out: {{value: "{out}"}}
          sleep: {{value: 60}}
    """
    summary = env.launch(text, parallel=2)
    parent, children = env.runs(summary)
    # the trials the budget stopped are killed, not failures: max_failures does not count them
    assert summary.record.stop_reason == "time budget" and summary.record.status == "finished"
    assert summary.counts == {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "KILLED": 2}
    assert len(children) == 2 and {c.info.status for c in children} == {"KILLED"}
    assert parent.info.status == "FINISHED"
    assert [t["state"] for t in sweep_trials(env.tmp / ".sweeps", summary.id)["trials"]] == ["KILLED", "KILLED"]


@pytest.mark.ray
def test_real_torch_training_of_the_digits_mlp(env) -> None:
    text = """
        name: digits
        method: random
        metric: {name: val_acc, goal: maximize}
        trainer: trainers.digits_mlp:train
        seed: 0
        parameters:
          lr: {distribution: log_uniform_values, min: 0.003, max: 0.03}
          hidden: {values: [64]}
          epochs: {value: 2}
    """
    summary = env.launch(text, trials=2, parallel=2)
    _, children = env.runs(summary)
    assert len(children) == 2
    for child in children:
        history = env.client().get_metric_history(child.info.run_id, "val_acc")
        assert [m.step for m in history] == [0, 1]
        assert 0.5 < history[-1].value <= 1.0  # it learned
        assert child.data.tags["sweeps.model.model"].startswith("models:/m-")  # and kept its model (pt2, any batch)
    assert summary.best_value > 0.5
    import mlflow
    import numpy as np

    mlflow.set_tracking_uri(env.uri)
    model = mlflow.pyfunc.load_model(children[0].data.tags["sweeps.model.model"])
    assert model.predict(np.zeros((3, 64), dtype=np.float32)).shape == (3, 10)


def test_a_w_and_b_failure_never_fails_a_trial_or_the_sweep(env) -> None:
    # a real W&B error: W&B refuses this project name when a run starts
    summary = env.launch(quad() + "    wandb: {project: 'bad/name#'}\n", trials=2, parallel=2)
    parent, children = env.runs(summary)
    assert parent.info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED", "FINISHED"]
    assert offline_runs(env.tmp) == []  # nothing reached W&B, everything reached MLflow


def test_the_live_view_runs_along(env, capsys) -> None:
    summary = env.launch(quad(), trials=2, parallel=2, progress=True)
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
    assert f"sweep {summary.id}" in capsys.readouterr().err


@pytest.mark.ray
def test_a_local_store_with_nodes_on_other_machines_is_refused(env, monkeypatch) -> None:
    # other machines cannot be had here: the one faked part is the node list
    from sweeps import FatalError
    from sweeps.execution import RayExecutor

    monkeypatch.setattr(RayExecutor, "remote_nodes", lambda self: ["10.0.0.7"])
    with pytest.raises(FatalError, match=r"nodes on other machines \(10.0.0.7\) that cannot write to sqlite:///.*"
                                         r"start a tracking server \(`sweeps head` does\)"):
        env.launch(quad(), trials=1)


def test_without_a_seed_a_random_one_is_drawn_recorded_and_reused_on_resume(env) -> None:
    text = quad().replace("    seed: 3\n", "")
    first = env.launch(text, trials=2, parallel=1)
    second = env.launch(text, trials=2, parallel=1)
    assert first.record.seed != second.record.seed  # drawn afresh for each sweep (1 in 16 million to clash)
    for summary in (first, second):
        parent, _ = env.runs(summary)
        assert parent.data.params["seed"] == str(summary.record.seed)
        saved = json.loads((summary.state_dir / "sweep.json").read_text())
        assert saved["seed"] == summary.record.seed
        trials = open_study(summary.state_dir, summary.id, "minimize", create=False).get_trials()
        assert [t.user_attrs["seed"] for t in trials] == [trial_seed(summary.record.seed, t.number) for t in trials]
