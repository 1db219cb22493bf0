"""`sweeps reproduce`: a recorded trial run again from its record, compared value by value, with what
changed since named first."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

from conftest import run_here, sweeps_cli


def test_a_seeded_torch_trial_reproduces_exactly_and_a_changed_package_is_named(env) -> None:
    summary = env.launch("""
        name: torch-fit
        method: grid
        metric: {name: loss}
        trainer: seeded_trainer:fit
        resources: {gpus: 0.5}
        parameters:
          lr: {values: [0.05, 0.2]}
          steps: {value: 4}
    """)
    _, children = env.runs(summary)
    run_id = next(c.info.run_id for c in children if c.data.params["lr"] == "0.2")
    # the record says numpy was another version: named before the run, and the metrics still match
    packages = json.loads(env.client().get_run(run_id).data.tags["sweeps.packages"])
    env.client().set_tag(run_id, "sweeps.packages", json.dumps({**packages, "numpy": "1.0.0"}))
    out = run_here("reproduce", run_id, "--tracking-uri", env.uri, cwd=env.tmp)
    assert out.returncode == 0, out.stdout + out.stderr
    first, said = out.stdout.splitlines()[0], out.stdout.splitlines()[-1]
    assert first.startswith(f"reproducing trial 1 of sweep {summary.id} (MLflow run {run_id}): trainer "
                            "seeded_trainer:fit, seed ")
    assert [line for line in out.stdout.splitlines() if "differs" in line] == [
        f"  differs: package versions changed: numpy 1.0.0 -> {packages['numpy']}"]
    assert said.startswith("reproduced exactly: 8 values of 2 metrics match (new MLflow run ")  # loss and noise, 4 steps
    new = env.client().get_run(said.split("new MLflow run ")[1].split(",")[0])
    assert new.data.tags["sweeps.reproduces"] == run_id and new.info.experiment_id == summary.record.experiment_id
    seed = next(c for c in children if c.info.run_id == run_id).data.tags["sweeps.seed"]
    assert new.data.params["lr"] == "0.2" and new.data.tags["sweeps.seed"] == seed and f"seed {seed}" in first

    strict = run_here("reproduce", "--sweep", summary.id, "--trial", "1", "--strict", cwd=env.tmp)  # the same trial
    assert strict.returncode == 1 and "--strict: 1 difference(s) from the record; nothing was run" in strict.stderr
    assert len(env.client().search_runs([summary.record.experiment_id], "tags.`sweeps.reproduces` != ''")) == 1

    for args, said in ((["nope"], "no MLflow run nope in"),
                       ([summary.record.parent_run_id], "is not a sweeps trial"),
                       (["--sweep", summary.id], "name the trial")):
        bad = run_here("reproduce", *args, "--tracking-uri", env.uri, "--state-dir", str(env.tmp / ".sweeps"), cwd=env.tmp)
        assert bad.returncode == 2 and said in bad.stdout + bad.stderr, bad.stdout + bad.stderr


def test_a_gpu_trial_runs_on_the_cpu_where_no_gpu_is_free_saying_so(env) -> None:
    from sweeps.executors import Plan
    from sweeps.reproduce import _ray_executor

    notes: list = []
    executor = _ray_executor(Plan(cpus=1, gpus=4, workdir=str(env.tmp)), None, env.tmp, notes)  # the Ray here has 2
    try:
        assert executor.plan.gpus == 0 and executor.plan.cpus == 1
    finally:
        executor.shutdown()
    assert [(n.kind, n.text) for n in notes] == [
        ("device", "the trial ran with 4 GPUs; no GPU is free here: it runs on the CPU")]


TRAINER = """
import csv

def train(config, report):
    report.dataset("data", "data.csv")
    rows = [float(r[0]) for r in csv.reader(open("data.csv"))]
    for step, v in enumerate(rows):
        report(step=step, score=v * config["w"] + {shift})
    return {{"score": sum(rows) * config["w"] + {shift}}}
"""


def test_after_a_commit_that_changes_the_code_reproduce_exits_1_and_names_it_first(tmp_path: Path) -> None:
    def commit(message: str) -> None:
        subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)
        subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], cwd=tmp_path,
                       check=True)

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("mlflow.db\nmlartifacts/\nwandb/\n.sweeps/\n")
    (tmp_path / "data_trainer.py").write_text(TRAINER.format(shift=0))
    (tmp_path / "data.csv").write_text("1\n2\n3\n")
    (tmp_path / "sweep.yaml").write_text(textwrap.dedent("""
        method: grid
        metric: {name: score, goal: maximize}
        trainer: data_trainer:train
        parameters:
          w: {values: [0.5]}
    """))
    commit("first")
    launched = sweeps_cli("launch", "sweep.yaml", "--local", "--no-progress", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    sweep = launched.stdout.splitlines()[0].split(": ")[1]
    same = sweeps_cli("reproduce", "--sweep", sweep, "--best", "--local", cwd=tmp_path)
    assert same.returncode == 0 and "reproduced exactly: 4 values of 1 metrics match" in same.stdout, same.stdout + same.stderr
    assert "differs" not in same.stdout

    (tmp_path / "data_trainer.py").write_text(TRAINER.format(shift=1))
    commit("shift the score")
    (tmp_path / "data.csv").write_text("1\n2\n4\n")  # the data changes too, uncommitted
    changed = sweeps_cli("reproduce", "--sweep", sweep, "--best", "--local", cwd=tmp_path)
    assert changed.returncode == 1, changed.stdout + changed.stderr
    lines = changed.stdout.splitlines()
    table = lines.index(next(line for line in lines if line.startswith("what differs from the record")))
    assert lines[table + 1].startswith("  code: the git commit changed since the trial: ")  # the most likely cause first
    assert "(1 commit later; see: git diff " in lines[table + 1]
    assert any(line.startswith("  code: data_trainer.py (trainer data_trainer:train) changed since the trial")
               for line in lines)
    assert any(line.startswith("  data: data set data: the content of ") for line in lines)
    assert any(line.split()[:5] == ["score", "0", "0.5", "1.5", "+1"] for line in lines), changed.stdout


def test_a_deterministic_parallel_bayes_sweep_gives_the_same_configs_twice(local_env) -> None:
    def configs(**kw) -> list[dict]:
        summary = local_env.launch("""
            method: bayes
            metric: {name: loss}
            trainer: sweeps_test_trainers:jittery
            seed: 7
            sampler: {type: tpe, n_startup_trials: 2}
            parameters:
              x: {min: -2.0, max: 2.0}
              y: {min: -1.0, max: 1.0}
        """, trials=8, parallel=2, **kw)
        from sweeps.state import open_study

        study = open_study(summary.state_dir, summary.id, "minimize", create=False)
        assert summary.record.deterministic == kw.get("deterministic", False)
        return [t.params for t in sorted(study.get_trials(), key=lambda t: t.number)]

    first = configs(deterministic=True)
    assert len(first) == 8 and configs(deterministic=True) == first
