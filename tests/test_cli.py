"""The command line as a user runs it: subprocesses, exit codes, what is imported."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import SWEEPS
from conftest import run_here as _run_here

SPACES = Path(__file__).parent / "spaces"
HEAVY = ("ray", "mlflow", "wandb", "torch")


def _user_env(**extra: str) -> dict[str, str]:
    """This environment as a user's shell has it: no W&B mode forced (W&B is offline by default)."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}
    env.update(extra)
    return env


def _sweeps(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SWEEPS, *args], capture_output=True, text=True, cwd=cwd, timeout=300, stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )


def _imported_after(argv: list[str], cwd: Path | None = None,
                    env: dict[str, str] | None = None) -> tuple[set[str], subprocess.CompletedProcess]:
    """The heavy modules a `sweeps` command left imported in its process (printed last), and its run."""
    code = (
        "import sys\n"
        "from sweeps.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
        "sys.exit(code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=cwd,
                         stdin=subprocess.DEVNULL, env=env)
    return set(eval(out.stdout.strip().splitlines()[-1])), out  # noqa: S307 - our own printed list


def test_help_and_validate_import_no_framework() -> None:
    assert _imported_after(["--help"])[0] == set()
    assert _imported_after(["validate", str(SPACES / "wandb" / "extensions.yaml")])[0] == set()


def test_validate_prints_a_summary_of_a_valid_file() -> None:
    out = _sweeps("validate", str(SPACES / "wandb" / "grid_basic.yaml"))
    assert out.returncode == 0, out.stderr
    assert "method: grid" in out.stdout
    assert "metric: val_acc (maximize)" in out.stdout
    assert "q_uniform [32, 128] q=32 (4 values)" in out.stdout
    assert "grid size: 36" in out.stdout


def test_validate_reports_every_error_in_one_line_each_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: bayes\nmetric: {name: acc, goal: maximise}\nparameters:\n  lr: {min: 0.1, max: 0.01}\n")
    out = _sweeps("validate", str(bad))
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        f"{bad}:2: metric.goal: 'maximise' is not valid; use one of: minimize, maximize (did you mean 'maximize'?)",
        f"{bad}:4: parameters.lr.min: min (0.1) must be below max (0.01)",
    ]
    assert "Traceback" not in out.stderr


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    f = tmp_path / "w.yaml"
    f.write_text("method: random\nparameters:\n  dropout: {min: 0, max: 1}\n")
    assert _sweeps("validate", str(f)).returncode == 0
    strict = _sweeps("validate", "--strict", str(f))
    assert strict.returncode == 2 and "int_uniform over {0, 1}" in strict.stderr


def test_missing_file_is_one_line() -> None:
    out = _sweeps("validate", "nope.yaml")
    assert out.returncode == 2
    assert out.stderr.strip() == "nope.yaml: cannot read the file: No such file or directory"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    out = _sweeps("--debug", "validate", "nope.yaml")
    assert out.returncode != 0 and "Traceback" in out.stderr


TRAINER = '''
def train(config, report):
    for step in range(2):
        report(step=step, acc=config["a"] * (step + 1))
    return {"acc": config["a"] * 2}
'''


def _grid_workdir(tmp: Path, name: str) -> Path:
    """A launch directory with the test trainer and a grid of it over a = 1, 2, 3 (best acc 6, trial 2)."""
    (tmp / "my_trainer.py").write_text(TRAINER)
    (tmp / "s.yaml").write_text(
        f"name: {name}\nmethod: grid\nmetric: {{name: acc, goal: maximize}}\ntrainer: my_trainer:train\n"
        "parameters:\n  a: {values: [1, 2, 3]}\n"
    )
    return tmp


def test_launch_runs_a_sweep_with_a_trainer_from_the_working_directory_then_status(tmp_path: Path) -> None:
    _grid_workdir(tmp_path, "cli")
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay short
    try:
        # exactly the user's path: its own local Ray, W&B offline by default (no mode set anywhere)
        imported, out = _imported_after(["launch", "s.yaml", "--parallel", "2"], cwd=tmp_path,
                                        env=_user_env(RAY_TMPDIR=ray_tmp))
        assert out.returncode == 0, out.stderr
        # the controller writes the parent run and the sweep's own W&B run; torch is the workers' alone
        assert imported == {"ray", "mlflow", "wandb"}
        # the workers stop their W&B service before Ray shuts down: no exit-handler traceback from them
        assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr
        # the sweep's processes: a worker per slot, the node's recorder and its W&B process, the heartbeat board.
        # The worker processes Ray starts beside itself (no job's runtime_env: Ray's log of each is
        # worker-<id>-ffffffff-<pid>.out; as many as the machine has cores) each took one of them: none idled
        # while others were started for the sweep's job
        logs = {w.name: w.read_text() for w in Path(ray_tmp).glob("ray/session_latest/logs/worker-*.out")}
        actors = {name: re.search(r"^:actor_name:(\w+)$", text, re.M) for name, text in logs.items()}
        assert sorted(m.group(1) for m in actors.values() if m) == ["Heartbeats", "NodeMirror", "NodeRecorder",
                                                                    "TrialWorker", "TrialWorker"], logs
        prestarted = [name for name in logs if name.split("-")[2] == "ffffffff"]
        assert prestarted and all(actors[name] for name in prestarted), logs
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    lines = out.stdout.splitlines()
    assert lines[0].startswith("sweep id: ")
    sweep_id = lines[0].split(": ")[1]
    assert f"sweep {sweep_id} finished: 3 complete, 0 stopped early, 0 failed (grid exhausted)" in out.stdout
    assert "best acc (maximize): 6 in trial 2" in out.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/mlflow.db" in out.stdout
    assert (tmp_path / "mlflow.db").exists() and list((tmp_path / "wandb").glob("offline-run-*"))

    listing = json.loads(_sweeps("status", "--json", cwd=tmp_path).stdout)
    assert [(s["id"], s["status"], s["complete"], s["best_value"]) for s in listing] == [(sweep_id, "finished", 3, 6.0)]
    detail = json.loads(_sweeps("status", sweep_id, "--json", cwd=tmp_path).stdout)
    assert [(t["number"], t["state"], t["value"], t["params"]) for t in detail["trials"]] == [
        (0, "COMPLETE", 2.0, {"a": 1}), (1, "COMPLETE", 4.0, {"a": 2}), (2, "COMPLETE", 6.0, {"a": 3})]
    assert detail["best_trial"] == 2 and all(t["mlflow_run_id"] for t in detail["trials"])
    table = _sweeps("status", sweep_id, cwd=tmp_path)
    assert table.returncode == 0 and "* best: trial 2, acc = 6" in table.stdout


def test_launch_refuses_a_bad_file_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("method: bayes\nparameters: {a: {min: 1.0, max: 0.0}}\n")
    out = _sweeps("launch", "bad.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "bad.yaml:2: parameters.a.min: min (1.0) must be below max (0.0)" in out.stderr
    assert not (tmp_path / ".sweeps").exists() and not (tmp_path / "mlflow.db").exists()


def test_launch_of_a_wandb_program_that_is_not_there_names_the_launch_directory(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("program: train.py\nmethod: random\nmetric: {name: loss}\nparameters: {a: {values: [1]}}\n")
    out = _sweeps("launch", "w.yaml", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"w.yaml: program: train.py is not a file in the launch directory {tmp_path.resolve()}" in out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_launch_refuses_a_trainer_that_would_not_load_naming_the_line_and_what_was_meant(tmp_path: Path) -> None:
    (tmp_path / "refused_tr.py").write_text("def train(config, report):\n    return {'loss': 1.0}\n")
    (tmp_path / "broken.py").write_text("import math\ndef train(config, report)\n    return {'loss': 1.0}\n")
    (tmp_path / "refused_pkg").mkdir()
    (tmp_path / "refused_pkg" / "__init__.py").write_text("")
    (tmp_path / "refused_pkg" / "mod.py").write_text("from refused_tr import train as fit\n\n\ndef wandb_style():\n"
                                                     "    pass\n")
    here = tmp_path.resolve()
    for trainer, said in {
        "refused_tr:trian": "refused_tr.py defines no trian (did you mean refused_tr:train?)",
        "broken:train": "broken.py:2: SyntaxError: expected ':'",
        "refused_pkg.mdo:fit": f"no module refused_pkg.mdo in {here / 'refused_pkg'} (did you mean refused_pkg.mod?)",
        "refused_pkg.mod:fitt": "refused_pkg/mod.py defines no fitt (did you mean refused_pkg.mod:fit?)",
        "refused_pkg.mod:wandb_style": "refused_pkg/mod.py:4: wandb_style() cannot be called as "
                                       "wandb_style(config, report) or wandb_style(config), and does not call "
                                       "wandb.init() for its config",
        "tranier:train": f"no module tranier in the launch directory {here} or among the installed packages",
    }.items():
        (tmp_path / "s.yaml").write_text(f"method: random\nmetric: {{name: loss}}\ntrainer: {trainer}\n"
                                         "parameters: {a: {values: [1]}}\n")
        out = _run_here("launch", "s.yaml", "--local", "--no-progress", cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.strip() == f"s.yaml:3: trainer: {said}", out.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / ".sweeps").exists()
    # a folder without __init__.py named as an installed package: Python imports the installed one, so no refusal
    from sweeps.trial import trainer_problem

    (tmp_path / "json").mkdir()
    assert trainer_problem("json.tool:main", str(here)) is None
    assert trainer_problem("refused_pkg.nope:fit", str(here), same_machine=False) is not None  # shipped: checked
    assert trainer_problem("elsewhere:fit", str(here), same_machine=False) is None  # a cluster's workers may have it
    # a def that takes nothing but calls wandb.init() for its config, as W&B's agent calls a function: no refusal
    (tmp_path / "by_wandb.py").write_text("from wandb import init as start\n\n\ndef train():\n    start()\n")
    assert trainer_problem("by_wandb:train", str(here)) is None
    # a name bound otherwise than by a def (here an import under another name) is found: this one runs
    (tmp_path / "s.yaml").write_text("method: grid\nmetric: {name: loss}\ntrainer: refused_pkg.mod:fit\n"
                                     "parameters: {a: {values: [1]}}\n")
    out = _run_here("launch", "s.yaml", "--local", "--no-progress", "--no-tracking", cwd=tmp_path)
    assert out.returncode == 0 and "1 complete" in out.stdout, out.stdout + out.stderr


def test_status_of_an_unknown_sweep_names_the_known_ones(tmp_path: Path) -> None:
    out = _sweeps("status", "nope", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == "no sweep 'nope' in .sweeps (sweeps there: none)"


def test_no_tracking_keeps_results_in_the_state_directory_only(tmp_path: Path) -> None:
    _grid_workdir(tmp_path, "quiet")
    both = _sweeps("launch", "s.yaml", "--no-tracking", "--tracking-uri", "sqlite:///x.db", cwd=tmp_path)
    assert both.returncode == 2 and "--no-tracking turns MLflow and W&B off" in both.stderr
    out = _sweeps("launch", "s.yaml", "--no-tracking", "--parallel", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sweep_id = out.stdout.splitlines()[0].split(": ")[1]
    assert "best acc (maximize): 6 in trial 2" in out.stdout and "MLflow off" in out.stdout
    assert not any((tmp_path / p).exists() for p in ("mlflow.db", "mlartifacts", "wandb"))
    state = tmp_path / ".sweeps" / sweep_id
    rows = (state / "trials.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("number,")
    assert (state / "optimization_history.png").read_bytes()[:4] == b"\x89PNG"
    detail = json.loads(_sweeps("status", sweep_id, "--json", cwd=tmp_path).stdout)
    assert [t["value"] for t in detail["trials"]] == [2.0, 4.0, 6.0]


def test_launch_options_override_the_file_and_are_recorded(tmp_path: Path) -> None:
    (tmp_path / "my_trainer.py").write_text(TRAINER)
    (tmp_path / "s.yaml").write_text(
        "name: from-file\nmethod: random\nmetric: {name: acc, goal: maximize}\ntrainer: my_trainer:train\n"
        "seed: 1\nrun_cap: 5\nmlflow: {experiment: file-exp}\nparameters:\n  a: {min: 0.0, max: 1.0}\n"
    )
    out = _sweeps("launch", "s.yaml", "--trials", "2", "--seed", "7", "--name", "named", "--experiment", "exp-x",
                  "--wandb-mode", "disabled", "--state-dir", "st", "--no-progress", "--local", cwd=tmp_path,
                  env=_user_env())
    assert out.returncode == 0, out.stderr
    sweep_id = out.stdout.splitlines()[0].split(": ")[1]
    record = json.loads((tmp_path / "st" / sweep_id / "sweep.json").read_text())
    assert (record["name"], record["seed"], record["trials"], record["experiment"], record["wandb_mode"]) == \
        ("named", 7, 2, "exp-x", "disabled")
    assert not (tmp_path / ".sweeps").exists() and not (tmp_path / "wandb").exists()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert client.get_experiment_by_name("file-exp") is None
    runs = client.search_runs([client.get_experiment_by_name("exp-x").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(["named-0", "named-1", f"named-{sweep_id}"])
    parent = next(r for r in runs if r.info.run_name == f"named-{sweep_id}")
    assert client.get_experiment_by_name("exp-x").tags["mlflow.experimentKind"] == "custom_model_development"
    assert {r.data.tags["mlflow.source.name"] for r in runs if r.info.run_name != parent.info.run_name} == {"my_trainer:train"}
    assert parent.data.params["seed"] == "7"


def test_strict_refuses_a_file_with_warnings_before_starting_anything(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "method: random\nmetric: {name: acc}\ntrainer: my_trainer:train\nparameters:\n  a: {min: 0, max: 1}\n")
    out = _sweeps("launch", "s.yaml", "--strict", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("s.yaml:5: parameters.a: min: 0 and max: 1 are both integers, so this is "
                                 "int_uniform over {0, 1}")  # the warning, an error under --strict
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_max_failures_exits_1_and_says_how_to_resume(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("def train(config, report):\n    raise RuntimeError('broken')\n")
    (tmp_path / "s.yaml").write_text(
        "method: random\nmetric: {name: acc}\ntrainer: bad:train\nmax_failures: 1\nrun_cap: 10\nparallel: 1\n"
        "parameters:\n  a: {min: 0.0, max: 1.0}\n")
    out = _sweeps("launch", "s.yaml", "--no-progress", "--wandb-mode", "disabled", "--local", cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    sweep_id = out.stdout.splitlines()[0].split(": ")[1]
    assert (f"the sweep stopped: too many failures: 2 of 2 trials failed (max_failures allows 1); after fixing the "
            f"cause, continue it with: sweeps resume {sweep_id}") in out.stderr
    # each failure is said once, with its error
    assert [line for line in out.stderr.splitlines() if "failed" in line and "broken" in line] == \
        ["trial 0 failed: RuntimeError: broken", "trial 1 failed: RuntimeError: broken"]


def test_local_runs_a_quick_sweep_in_the_launch_process_without_ray(tmp_path: Path) -> None:
    _grid_workdir(tmp_path, "quick")
    refused = _sweeps("launch", "s.yaml", "--local", "--address", "127.0.0.1:6379", cwd=tmp_path)
    assert refused.returncode == 2 and "--local runs trials in this process, without Ray" in refused.stderr
    imported, out = _imported_after(["launch", "s.yaml", "--local", "--parallel", "2", "--no-progress"], cwd=tmp_path,
                                    env=_user_env())
    assert out.returncode == 0, out.stderr
    assert imported == {"mlflow", "wandb"}  # no Ray at all
    assert "best acc (maximize): 6 in trial 2" in out.stdout
    sweep_id = out.stdout.splitlines()[0].split(": ")[1]
    detail = json.loads(_sweeps("status", sweep_id, "--json", cwd=tmp_path).stdout)
    assert sorted(t["value"] for t in detail["trials"]) == [2.0, 4.0, 6.0]
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 4  # 3 trials and the sweep, offline by default


MODEL_TRAINER = '''
from sklearn.datasets import load_breast_cancer
from sklearn.tree import DecisionTreeClassifier


def train(config, report):
    if config["c"] < 0:
        raise ValueError("no negative C")
    x, y = load_breast_cancer(return_X_y=True)
    x = x / x.max(axis=0)
    # a tree: MLflow's default serialization (skops) refuses its node arrays unless told to trust them
    model = DecisionTreeClassifier(max_depth=max(1, int(config["c"])), random_state=0).fit(x, y)
    if config.get("keep", True):
        report.model(model, example=x[:2])
    return {"acc": float(model.score(x, y))}
'''


def _model_sweep(tmp: Path, name: str, cs: list[float], keep: str = "[true]") -> str:
    (tmp / "model_trainer.py").write_text(MODEL_TRAINER)
    (tmp / f"{name}.yaml").write_text(
        f"name: {name}\nmethod: grid\nmetric: {{name: acc, goal: maximize}}\ntrainer: model_trainer:train\n"
        f"parameters:\n  c: {{values: {cs}}}\n  keep: {{values: {keep}}}\n")
    out = _sweeps("launch", f"{name}.yaml", "--local", "--no-progress", cwd=tmp, env=_user_env())
    assert out.returncode in (0, 1), out.stderr
    return out.stdout.splitlines()[0].split(": ")[1]


def test_best_names_the_model_and_promote_registers_it_once_under_an_alias(tmp_path: Path) -> None:
    import mlflow
    import numpy as np

    sweep = _model_sweep(tmp_path, "models", [0.01, 10.0])
    best = json.loads(_run_here("best", sweep, "--json", cwd=tmp_path).stdout)
    assert best["trial"] == 1 and best["params"] == {"c": 10.0, "keep": True} and best["run_id"] and best["wandb_run_id"]
    assert best["model_uri"].startswith("models:/m-") and best["models"] == {"model": best["model_uri"]}
    # from another directory (the model found in the sweep's store, not in a ./mlflow.db there)
    (tmp_path / "elsewhere").mkdir()
    text = _run_here("best", sweep, "--state-dir", str(tmp_path / ".sweeps"), "--download", "got",
                     cwd=tmp_path / "elsewhere")
    assert text.returncode == 0 and f'mlflow.pyfunc.load_model("{best["model_uri"]}")' in text.stdout, text.stderr
    assert (tmp_path / "elsewhere" / "got" / "model" / "MLmodel").exists()
    assert not (tmp_path / "elsewhere" / "mlflow.db").exists()
    first = _run_here("promote", sweep, "--model", "cancer-lr", cwd=tmp_path)
    again = _run_here("promote", sweep, "--model", "cancer-lr", cwd=tmp_path)
    assert first.returncode == 0 and "registered: cancer-lr version 1 (trial 1" in first.stdout, first.stderr
    assert again.returncode == 0 and "already registered: cancer-lr version 1" in again.stdout
    assert "W&B: not linked to the W&B registry: the sweep's W&B runs are offline" in first.stdout
    mlflow.set_tracking_uri(best["tracking_uri"])
    model = mlflow.pyfunc.load_model("models:/cancer-lr@champion")
    assert model.predict(np.zeros((3, 30))).shape == (3,)
    version = mlflow.MlflowClient(best["tracking_uri"]).get_model_version_by_alias("cancer-lr", "champion")
    assert version.tags["sweeps.sweep_id"] == sweep and version.tags["sweeps.trial"] == "1"
    other = _run_here("promote", sweep, "--model", "cancer-lr", "--trial", "0", cwd=tmp_path)
    assert "registered: cancer-lr version 2 (trial 0" in other.stdout  # another trial: a new version takes the alias
    parent = mlflow.MlflowClient(best["tracking_uri"]).get_run(best["parent_run_id"])
    assert parent.data.tags["sweeps.promoted"] == "cancer-lr/2@champion"
    _export_and_load(tmp_path, sweep)


def _export_and_load(tmp_path: Path, sweep: str) -> None:
    """sweeps export and sweeps.load: one row a trial with params, final metrics and run ids."""
    import pandas as pd

    import sweeps

    rows = json.loads(_run_here("export", sweep, "--format", "json", cwd=tmp_path).stdout)
    assert [(r["number"], r["state"], r["params.c"]) for r in rows] == [(0, "COMPLETE", 0.01), (1, "COMPLETE", 10.0)]
    assert all(r["metrics.acc"] == r["value"] and r["mlflow_run_id"] and r["wandb_run_id"] for r in rows)
    out = _run_here("export", sweep, "--format", "parquet", "-o", "t.parquet", cwd=tmp_path)
    assert out.returncode == 0 and out.stderr.strip() == f"2 trials of sweep {sweep} written to t.parquet"
    frame = sweeps.load(sweep, tmp_path / ".sweeps")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), frame)
    assert _run_here("export", sweep, cwd=tmp_path).stdout == frame.to_csv(index=False)
    refused = _run_here("export", sweep, "--format", "parquet", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip() == "--format parquet writes a binary file: name it with -o FILE"




def test_best_and_promote_refuse_in_one_line_what_cannot_be(tmp_path: Path) -> None:
    unknown = _run_here("best", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.strip() == "no sweep 'nope' in .sweeps (sweeps there: none)"
    failed = _model_sweep(tmp_path, "failing", [-1.0])
    out = _run_here("best", failed, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == (f"sweep {failed} has no complete trial yet (1 fail); "
                                                          f"`sweeps status {failed}` shows them")
    mixed = _model_sweep(tmp_path, "mixed", [1.0], keep="[false, true]")  # trial 0 keeps no model, trial 1 does
    out = _run_here("promote", mixed, "--model", "x", "--trial", "0", cwd=tmp_path)
    assert out.returncode == 2 and "trial 0 of sweep" in out.stderr and "kept no model: call report.model(model)" in out.stderr
    assert "no model kept: call report.model(model)" in _run_here("best", mixed, "--trial", "0", cwd=tmp_path).stdout
    out = _run_here("promote", mixed, "--model", "", "--trial", "1", cwd=tmp_path)
    assert out.returncode == 2 and "the model registry at sqlite:///" in out.stderr and "refuses the model name ''" in out.stderr
    out = _run_here("best", mixed, "--download", "/proc/nope", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().startswith("cannot write to /proc/nope: ")
    assert "Traceback" not in out.stderr


def test_a_head_or_a_tracking_server_that_is_not_there_is_one_line_at_once(tmp_path: Path, monkeypatch) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "s.yaml").write_text("method: random\nmetric: {name: loss}\ntrainer: t:train\nparameters:\n"
                                     "  x: {min: 0.0, max: 1.0}\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "some-token")
    for args, said in (
        (["launch", "s.yaml", "--address", f"127.0.0.1:{port}"],
         f"no Ray head answers at 127.0.0.1:{port} (connection refused): start one there with `sweeps head --host "
         "127.0.0.1` (or scripts/start_head.sh), or check the address and that the port is open from this machine"),
        (["launch", "s.yaml", "--tracking-uri", f"http://127.0.0.1:{port}"],
         f"no MLflow tracking server answers at http://127.0.0.1:{port} (connection refused): start one (`sweeps head` "
         "does), or check --tracking-uri / $MLFLOW_TRACKING_URI"),
        (["agent", "--address", f"127.0.0.1:{port}"], f"no Ray head answers at 127.0.0.1:{port} (connection refused)"),
        (["launch", "s.yaml", "--address", "headnode"], "--address headnode: give the Ray head as HOST:PORT"),
    ):
        out = _run_here(*args, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.startswith(said) and len(out.stderr.splitlines()) == 1, out.stderr
    assert not (tmp_path / ".sweeps").exists()  # nothing was started


def test_a_sweep_its_time_budget_stopped_resumes_for_another_and_one_that_ran_to_its_end_is_refused(tmp_path) -> None:
    # 20 reports 0.3 s apart: each trial outlives the 2 s budget, which kills it (not a failure: max_failures 1)
    (tmp_path / "timed.yaml").write_text("name: timed\nmethod: random\nmetric: {name: loss}\n"
                                         "trainer: sweeps_test_trainers:curve\nbudget: {trials: 4, time: 2s}\n"
                                         "max_failures: 1\nparameters:\n  x: {min: 0.0, max: 1.0}\n"
                                         f"  curve: {{value: {[3] + [1] * 19}}}\n  pause: {{value: 0.3}}\n")
    out = _run_here("launch", "timed.yaml", "--local", "--parallel", "2", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0 and "finished: 0 complete, 0 stopped early, 0 failed, 2 killed (time budget)" in out.stdout
    sweep_id = out.stdout.splitlines()[0].split(": ")[1]
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("timed").experiment_id], "tags.`sweeps.role` = 'trial'")
    # stopped at a report by the local executor: killed by the sweep, not stopped early by a pruner
    assert [(r.info.status, r.data.tags["sweeps.error"], "sweeps.pruned" in r.data.tags) for r in runs] == \
        [("KILLED", "time budget reached", False)] * 2
    out = _run_here("resume", sweep_id, "--local", "--no-progress", cwd=tmp_path)
    assert out.returncode == 0 and "0 failed, 4 killed (time budget)" in out.stdout, out.stdout + out.stderr
    status = json.loads(_run_here("status", sweep_id, "--json", cwd=tmp_path).stdout)
    assert [t["state"] for t in status["trials"]] == ["KILLED"] * 4 and status["sweep"]["status"] == "finished"

    (tmp_path / "done.yaml").write_text("name: done\nmethod: random\nmetric: {name: loss}\n"
                                        "trainer: sweeps_test_trainers:quadratic\nbudget: {trials: 1}\n"
                                        "parameters:\n  x: {min: 0.0, max: 1.0}\n  steps: {value: 1}\n")
    out = _run_here("launch", "done.yaml", "--local", "--no-progress", "--no-tracking", cwd=tmp_path)
    done_id = out.stdout.splitlines()[0].split(": ")[1]
    out = _run_here("resume", done_id, "--local", "--no-progress", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip() == \
        f"sweep {done_id} finished its budget of 1 trials; pass --trials N to run more"
