"""W&B programs as trials (sweeps/program.py): the command line W&B's agent would run, the script's
own wandb.init and MLflow calls landing in the trial's runs, what it logs read while it runs, and
how a script's trial ends. Real scripts, real Ray, W&B offline, a real MLflow store."""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import pytest

from conftest import Env, run_here

from sweeps.controller import trial_seed
from sweeps.mirror import RunFile, find_run_file, render_command, write_param_file
from sweeps.state import open_study
from wandb_offline import offline_runs

SCRIPT = Path(__file__).parent / "program_script.py"

DUMP = """
import json, os, sys
json_file = [a for a in sys.argv if a.endswith(".json") and os.path.exists(a)]
with open(os.environ["DUMP_TO"], "w") as f:
    json.dump({"argv": sys.argv[1:], "json_file": open(json_file[0]).read() if json_file else None}, f)
"""

PARAMS = {"lr": 0.01, "flag": True, "off": False, "layers": [64, 32], "nothing": None,
          "model": {"hidden": 128, "act": "relu"}, "name": "a b; rm -rf /"}


@pytest.mark.parametrize("command", [
    None,  # W&B's default: ${env} ${interpreter} ${program} ${args}
    ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"],
    ["${env}", "${interpreter}", "${program}", "${args_no_boolean_flags}", "--literal", "${envvar:SWEEPS_TEST_VAR}"],
    ["${env}", "${interpreter}", "${program}", "--json", "${args_json}", "--file", "${args_json_file}"],
])
def test_each_macro_renders_as_wandbs_agent_renders_it(tmp_path: Path, monkeypatch, command) -> None:
    """W&B's own agent runs a program that writes down its command line; ours must be the same."""
    from wandb.sdk.lib import config_util
    from wandb.wandb_agent import Agent

    (tmp_path / "dump.py").write_text(DUMP)
    monkeypatch.chdir(tmp_path)
    for k, v in {"WANDB_DIR": str(tmp_path), "WANDB_SWEEP_ID": "s1", "WANDB_RUN_ID": "",
                 "WANDB_SWEEP_PARAM_PATH": "", "SWEEPS_TEST_VAR": "from-the-env", "DUMP_TO": str(tmp_path / "seen.json"),
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}.items():
        monkeypatch.setenv(k, v)
    agent = Agent(api=None, queue=None, sweep_id="s1")
    agent._sweep_command = list(command or [])  # what W&B's agent reads from the sweep's config
    agent._command_run({"args": {k: {"value": v} for k, v in PARAMS.items()}, "program": "dump.py", "run_id": "r1"})
    agent._run_processes["r1"].wait()
    theirs = json.loads((tmp_path / "seen.json").read_text())
    json_file = str(tmp_path / "wandb" / "sweep-s1" / "config-r1.json")

    ours = render_command(tuple(command or ()), PARAMS, interpreter="python", program="dump.py",
                          args_json_file=json_file)
    assert ours == ["/usr/bin/env", "python", "dump.py", *theirs["argv"]]
    assert "a b; rm -rf /" in " ".join(ours) and all("rm" != part for part in ours)  # one argument, no shell
    if theirs["json_file"] is not None:
        assert json.loads(theirs["json_file"]) == PARAMS
    # the sweep parameter file wandb.init reads: the same config from ours as from the agent's
    write_param_file(str(tmp_path / "ours.yaml"), PARAMS)
    assert config_util.dict_from_config_file(str(tmp_path / "ours.yaml")) == \
        config_util.dict_from_config_file(str(tmp_path / "wandb" / "sweep-s1" / "config-r1.yaml"))


def test_project_and_entity_are_the_sweeps() -> None:
    argv = render_command(("${program}", "--project", "${project}", "--entity", "${entity}"), {}, interpreter="py",
                          program="t.py", args_json_file="a.json", project="digits", entity="team")
    assert argv == ["t.py", "--project", "digits", "--entity", "team"]


def test_the_run_file_is_read_as_it_grows(tmp_path: Path) -> None:
    """Cut a finished run's file at every length: whatever was read is never read again, and the rows
    come out whole and in order however the file grew."""
    import subprocess

    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_RUN_ID": "grow1",
           "SWEEPS_TRIAL": "0"}
    subprocess.run([sys.executable, str(SCRIPT), "--steps", "40"], cwd=tmp_path, env=env, check=True,
                   capture_output=True)
    whole = Path(find_run_file(str(tmp_path), "grow1"))
    data = whole.read_bytes()
    growing = tmp_path / "growing.wandb"
    growing.write_bytes(b"")
    reader, rows = RunFile(str(growing)), []
    for end in range(0, len(data) + 997, 997):
        growing.write_bytes(data[:end])
        rows += reader.read().history
    assert [r["step_seen"] for _, r in rows] == list(range(40)) and [s for s, _ in rows] == list(range(40))


def _sweep(env, body: str, **kw):
    shutil.copy(SCRIPT, env.tmp / "train.py")
    return env.launch("""
        name: script
        program: train.py
        metric: {name: loss, goal: minimize}
    """ + body, **kw)


def _trials(summary) -> list:
    study = open_study(summary.state_dir, summary.id, "minimize", create=False)
    return sorted(study.get_trials(), key=lambda t: t.number)


def test_a_wandb_script_runs_unchanged_and_lands_in_the_trials_runs(env) -> None:
    """The default command; the config the script saw is the child run's params; every wandb.log step
    reaches MLflow; one W&B run per trial, the script's own; hyperband stops the bad one."""
    summary = _sweep(env, """
        method: grid
        parameters:
          x: {values: [1, 2, 9]}
          sleep: {value: 0.5}
          steps: {value: 5}
        early_terminate: {type: hyperband, min_iter: 1, eta: 2}
    """, parallel=1)
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 0, "KILLED": 0}
    _, children = env.runs(summary)
    client = env.client()
    wb = {r.path.parent.name.rsplit("-", 1)[1]: r for r in offline_runs(env.tmp) if r.job_type == "trial"}
    for t in _trials(summary):
        run = next(c for c in children if c.info.run_id == t.user_attrs["mlflow_run_id"])
        seen = json.loads((env.tmp / "seen" / f"{t.number}.json").read_text())
        swept = {k: seen["config"][k] for k in ("x", "sleep", "steps")}
        assert {k: float(v) for k, v in swept.items()} == {k: float(run.data.params[k]) for k in swept}
        assert seen["config"]["default_only"] == 7 and seen["config"]["mode"] == "ok"  # the script's defaults stay
        assert seen["run_id"] == t.user_attrs["wandb_id"] and seen["group"] == summary.id
        assert seen["argv"] == [f"--x={t.params['x']}", "--sleep=0.5", "--steps=5"]
        history = client.get_metric_history(run.info.run_id, "loss")
        wandb_run = wb[t.user_attrs["wandb_id"]]  # the script's own run: the only one of this trial
        logged = [(h["_step"], h["loss"]) for h in wandb_run.history]
        # every step reached MLflow (a stopped script's last ones may have come after its stop)
        assert [(m.step, m.value) for m in history] == logged[:len(history)]
        output = Path(client.download_artifacts(run.info.run_id, "output.log", str(env.tmp / f"out{t.number}")))
        assert "the script started" in output.read_text()
        if t.params["x"] == 9:
            assert t.state.name == "PRUNED" and run.info.status == "KILLED"
            assert run.data.tags["sweeps.pruned_reason"].startswith("hyperband band 1: loss")
            assert len(history) < 5
            assert not _alive(seen["pid"])  # SIGTERM, and the script is gone
        else:
            assert t.state.name == "COMPLETE" and run.info.status == "FINISHED" and len(history) == len(logged) == 5
            assert t.value == history[-1].value
    assert len(wb) == 3
    assert not list(env.tmp.rglob("mlruns")) and not list(Path.cwd().glob("mlruns"))

    # a script's trial reproduces; an early-stopped one up to where it was stopped
    for number, values in ((1, 10), (2, None)):
        run_id = _trials(summary)[number].user_attrs["mlflow_run_id"]
        out = run_here("reproduce", run_id, "--tracking-uri", env.uri, cwd=env.tmp)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "program train.py" in out.stdout.splitlines()[0] and "differs" not in out.stdout
        said = out.stdout.splitlines()[-1]
        assert said.startswith(f"reproduced exactly: {values or ''}") and " values of 2 metrics match" in said, said


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def test_a_failing_script_a_silent_one_and_one_calling_mlflow_itself_with_args_json_file(local_env) -> None:
    env = local_env  # how a script's trial ends is the program runner's: the local executor runs it too
    summary = _sweep(env, """
        command: ["${interpreter}", "${program}", --config-json, "${args_json_file}"]
        method: grid
        parameters:
          mode: {values: [fail, silent, mlflow, media]}
          x: {value: 1.5}
    """, parallel=4)
    by_mode = {t.params["mode"]: t for t in _trials(summary)}
    for t in by_mode.values():  # the values came in the JSON file ${args_json_file} names
        seen = json.loads((env.tmp / "seen" / f"{t.number}.json").read_text())
        assert seen["argv"][0] == "--config-json" and seen["config"]["x"] == 1.5 and seen["config"]["mode"] == t.params["mode"]
    error = by_mode["fail"].user_attrs["error"]
    assert error.startswith("ProgramFailed: train.py exited with code 3; the last lines of its stderr:")
    assert "CUDA out of memory (not really)" in error
    assert by_mode["silent"].user_attrs["error"].startswith("ValueError: train.py never logged the metric 'loss'")
    assert by_mode["mlflow"].state.name == "COMPLETE"
    client = env.client()
    run = client.get_run(by_mode["mlflow"].user_attrs["mlflow_run_id"])
    assert run.data.params["from_the_script"] == "yes" and run.info.status == "FINISHED"
    # logged by the script to MLflow and with wandb.log: once a step
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1, 2, 3]
    failed = client.get_run(by_mode["fail"].user_attrs["mlflow_run_id"])
    assert failed.info.status == "FAILED" and "exited with code 3" in failed.data.tags["sweeps.error"]
    assert not list(env.tmp.rglob("mlruns"))

    # a nested dict's values are metrics named as W&B names them; images and tables are MLflow media, and
    # no field of a W&B data type (an image's width, a histogram's bins) is a metric
    media = client.get_run(by_mode["media"].user_attrs["mlflow_run_id"])
    assert media.info.status == "FINISHED" and set(media.data.metrics) == {"loss", "val.acc"}
    assert [(m.step, m.value) for m in client.get_metric_history(media.info.run_id, "val.acc")] == \
        [(s, s / 4) for s in range(4)]
    kept = {a.path for d in ("media/picture", "media/table") for a in client.list_artifacts(media.info.run_id, d)}
    assert kept == {*(f"media/picture/step-{s}.png" for s in range(4)), "media/table/step-4.csv"}
    got = Path(client.download_artifacts(media.info.run_id, "media", str(env.tmp / "media")))
    from PIL import Image

    with Image.open(got / "picture" / "step-2.png") as image:
        assert image.size == (6, 4) and image.getpixel((0, 0))[:3] == (120, 120, 120)
    assert (got / "table" / "step-4.csv").read_text().splitlines() == ["a,b", "1,x", "2,y"]


def test_a_hanging_script_goes_silent_and_its_trial_runs_again(env) -> None:
    t0 = time.monotonic()
    summary = _sweep(env, """
        method: grid
        parameters:
          mode: {values: [hang_once]}
        heartbeat_timeout: 10
    """, parallel=1)
    trials = _trials(summary)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[0].user_attrs["error"].startswith("no heartbeat for ") and trials[1].user_attrs["retry_of"] == 0
    hung = json.loads((env.tmp / "seen" / "0.json").read_text())
    assert not _alive(hung["pid"])  # killed with its worker
    assert time.monotonic() - t0 < 600


FUNCTIONS = '''
import json, os, random
import wandb
import wandb as wb


def train(config=None):
    # W&B's sweep tutorial, as it is
    with wandb.init(config=config):
        config = wandb.config
        for epoch in range(config.epochs):
            wandb.log({"loss": (config.x - 2) ** 2 + 1 / (epoch + 1), "epoch": epoch})
        _seen(dict(config))


def no_arguments():
    wb.init(config={"epochs": 2, "x": 9.0, "default_only": 7})  # the swept values come over these defaults
    for epoch in range(wb.config.epochs):
        wb.log({"loss": (wb.config.x - 2) ** 2 + 1 / (epoch + 1)})
    _seen(dict(wb.config))
    return {"draw": random.random()}  # its run left open: finished for it, with this in its summary


def _seen(config):
    os.makedirs("seen", exist_ok=True)
    with open(os.path.join("seen", wandb.run.id + ".json"), "w") as f:
        json.dump({"config": config, "group": wandb.run.group, "pid": os.getpid()}, f)
'''


def test_a_trainer_that_calls_wandb_init_itself_runs_as_wandbs_agent_runs_a_function(env) -> None:
    """W&B's tutorial trainer and a function without arguments: each trial's wandb.init() makes the trial's W&B
    run with its config over the function's defaults, in a process of its own; what it logs is the record."""
    (env.tmp / "fns.py").write_text(FUNCTIONS)
    sweep = """
        name: fn
        method: grid
        metric: {name: loss, goal: minimize}
        trainer: fns:%s
        parameters:
          x: {values: [1.0, 2.5]}
          epochs: {value: 3}
    """
    summary = env.launch(sweep % "train", parallel=2)
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
    wb = {r.path.parent.name.rsplit("-", 1)[1]: r for r in offline_runs(env.tmp) if r.job_type == "trial"}
    assert len(wb) == 2  # one W&B run a trial: the function's own
    client = env.client()
    for t in _trials(summary):
        seen = json.loads((env.tmp / "seen" / f"{t.user_attrs['wandb_id']}.json").read_text())
        assert seen["config"] == {"x": t.params["x"], "epochs": 3} and seen["group"] == summary.id
        assert seen["pid"] != os.getpid()
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        loss = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")]
        assert loss == [(e, (t.params["x"] - 2) ** 2 + 1 / (e + 1)) for e in range(3)]
        assert t.value == loss[-1][1] and run.info.status == "FINISHED"
        assert run.data.tags["sweeps.source.path"] == "fns.py"  # the trainer's file, hashed for reproduce
        kept = client.download_artifacts(run.info.run_id, "config.json", str(env.tmp / run.info.run_id))
        assert json.loads(Path(kept).read_text())["trainer"] == "fns:train"
    # it reproduces (its file found in the launch directory, which is not on this process's import path)
    out = run_here("reproduce", "--sweep", summary.id, "--best", "--local", "--tracking-uri", env.uri, cwd=env.tmp)
    assert out.returncode == 0 and "differs" not in out.stdout, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1].startswith("reproduced exactly: 6 values of 2 metrics match")

    local = Env(env.tmp / "local", executor="local")
    local.tmp.mkdir()
    shutil.copy(env.tmp / "fns.py", local.tmp)
    summary = local.launch(sweep % "no_arguments", parallel=2, seed=4)
    draws = []
    for t in _trials(summary):
        seen = json.loads((local.tmp / "seen" / f"{t.user_attrs['wandb_id']}.json").read_text())
        assert seen["config"] == {"x": t.params["x"], "epochs": 3, "default_only": 7}
        run = local.client().get_run(t.user_attrs["mlflow_run_id"])
        assert t.state.name == "COMPLETE" and run.data.metrics["loss"] == (t.params["x"] - 2) ** 2 + 1 / 3
        draws.append((t.number, run.data.metrics["draw"]))  # what it returned, from its run's summary
    # each trial seeded with its seed before the call, as every trainer is
    assert draws == [(n, random.Random(trial_seed(4, n)).random()) for n, _ in draws]
