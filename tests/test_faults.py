"""Sweeps that survive: faults caused for real, then the study, MLflow and W&B checked to agree."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import SWEEPS
from sweeps.state import open_study
from wandb_offline import offline_runs

STATE = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED", "KILLED": "KILLED"}


def grid(trainer: str, out: Path, xs: list[int], extra: str = "") -> str:
    return f"""
        name: faults
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:{trainer}
        parameters:
          x: {{values: {xs}}}
          out: {{value: "{out}"}}
    """ + extra


def agree(env, summary) -> tuple[list, list]:
    """The study and MLflow agree on every trial; no run is left RUNNING; W&B
    runs that finished say the same. Returns (study trials, MLflow children)."""
    study = open_study(summary.state_dir, summary.id, "minimize", create=False)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    parent, children = env.runs(summary)
    by_id = {c.info.run_id: c for c in children}
    assert len(children) == len(trials)
    assert all(c.info.status != "RUNNING" for c in [parent, *children])
    for t in trials:
        run = by_id[t.user_attrs["mlflow_run_id"]]
        if t.state.name == "FAIL" and run.info.status == "KILLED":
            continue  # stopped by the user or a time budget: KILLED in MLflow, FAIL in Optuna
        assert run.info.status == STATE[t.state.name], (t.number, t.state, run.info.status)
    wb: dict[str, dict] = {}
    for r in offline_runs(env.tmp):  # a run closed by the controller is a second offline file of the same run
        if r.job_type == "trial":
            wb.setdefault(r.name, {}).update(r.summary)
    for c in children:
        assert STATE[wb[c.info.run_name]["sweeps/state"]] == c.info.status, c.info.run_name
    return trials, children


def test_failed_trials_run_again_with_the_same_params_when_the_file_allows(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    out = env.tmp / "marks"
    out.mkdir()
    summary = env.launch(grid("flaky", out, [1, 2, 3], "    retries: {max: 1}\n"), parallel=2)
    trials, children = agree(env, summary)
    assert summary.counts == {"COMPLETE": 3, "PRUNED": 0, "FAIL": 3, "KILLED": 0}
    assert summary.record.stop_reason == "grid exhausted"
    finished = sorted(int(c.data.params["x"]) for c in children if c.info.status == "FINISHED")
    assert finished == [1, 2, 3]  # each grid point completed exactly once
    for t in trials:
        if t.state.name == "COMPLETE":  # the second attempt, linked to the first
            first = trials[t.user_attrs["retry_of"]]
            assert first.state.name == "FAIL" and first.params == t.params and t.user_attrs["attempt"] == 2
    again = [c for c in children if "sweeps.retry_of" in c.data.tags]
    assert len(again) == 3 and {c.data.tags["sweeps.attempt"] for c in again} == {"2"}


def test_without_retries_a_failed_trial_stays_failed(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    out = env.tmp / "marks"
    out.mkdir()
    summary = env.launch(grid("flaky", out, [1, 2]), parallel=1)
    assert summary.counts == {"COMPLETE": 0, "PRUNED": 0, "FAIL": 2, "KILLED": 0}
    agree(env, summary)


@pytest.mark.parametrize(("limit", "finished", "allows"), [
    ("5", 3, 5), ("5", 40, 5),  # a count
    ("0.5", 3, 5), ("0.5", 40, 20),  # a fraction of the trials finished, counting at least 10
    ("'25%'", 3, 2), ("'25%'", 40, 10),  # a percentage, the same way
])
def test_max_failures_allows_a_count_a_fraction_or_a_percentage(limit, finished, allows) -> None:
    from sweeps.space import parse_spec

    spec = parse_spec(f"method: random\nmetric: {{name: loss}}\nmax_failures: {limit}\nparameters: {{x: {{value: 1}}}}\n")
    assert spec.faults.failure_limit(finished) == allows


def test_max_failures_stops_the_sweep_with_a_clear_reason(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    text = """
        name: doomed
        method: random
        metric: {name: loss}
        trainer: sweeps_test_trainers:always_fails
        max_failures: '25%'
        parameters:
          x: {min: 0.0, max: 1.0}
    """
    summary = env.launch(text, trials=20, parallel=1)
    parent, children = env.runs(summary)
    assert len(children) == 3  # 3 failures of 3 is more than 25 % of 10
    assert summary.record.status == "failed"
    assert summary.record.stop_reason == "too many failures: 3 of 3 trials failed (max_failures allows 2)"
    assert parent.info.status == "FAILED" and parent.data.tags["sweeps.stop_reason"] == summary.record.stop_reason


def test_a_worker_that_kills_itself_is_lost_and_its_params_run_again(env) -> None:
    out = env.tmp / "marks"
    out.mkdir()
    summary = env.launch(grid("dies_once", out, [1, 2]), parallel=2)
    trials, children = agree(env, summary)
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 2, "KILLED": 0}
    lost = [c for c in children if c.info.status == "FAILED"]
    assert {c.data.tags["sweeps.lost"] for c in lost} == {"true"}
    assert all("Worker" in c.data.tags["sweeps.error"] or "died" in c.data.tags["sweeps.error"] for c in lost)
    assert sorted(int(c.data.params["x"]) for c in children if c.info.status == "FINISHED") == [1, 2]


def test_the_params_of_a_trial_lost_again_and_again_run_three_more_times_then_no_more(env) -> None:
    said: list[str] = []
    from sweeps.controller import Controller

    summary = Controller(env.spec(grid("always_dies", env.tmp, [1])), env.options(parallel=1),
                         on_event=said.append).run()
    trials, children = agree(env, summary)
    assert summary.counts == {"COMPLETE": 0, "PRUNED": 0, "FAIL": 4, "KILLED": 0}  # the first attempt and 3 more
    assert sorted(int(c.data.tags.get("sweeps.attempt", 1)) for c in children) == [1, 2, 3, 4]
    assert {c.data.tags["sweeps.lost"] for c in children} == {"true"}
    assert "trial 3: its params were lost 4 times; not run again" in said


def test_a_worker_killed_from_outside_is_lost_and_its_params_run_again(env) -> None:
    out = env.tmp / "marks"
    out.mkdir()

    def killer() -> None:
        pid_file = out / "pid-1"
        client = env.client()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until trial x=1 runs and has metrics recorded
            time.sleep(0.2)
            if not pid_file.exists():
                continue
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                      filter_string="params.x = '1'")
            if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
                break
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        pid_file.unlink()

    thread = threading.Thread(target=killer)
    thread.start()
    summary = env.launch(grid("waits_to_be_killed", out, [1, 2]), parallel=2)
    thread.join()
    trials, children = agree(env, summary)
    assert summary.counts["COMPLETE"] == 2 and summary.counts["FAIL"] == 1
    (lost,) = [c for c in children if c.info.status == "FAILED"]
    assert lost.data.params["x"] == "1" and lost.data.tags["sweeps.lost"] == "true"
    history = env.client().get_metric_history(lost.info.run_id, "loss")
    assert history  # what it reported before it died is kept
    # the node's recorder, which outlived the worker, ended the W&B run that holds what it reported, as lost
    (wb,) = [r for r in offline_runs(env.tmp) if r.name == lost.info.run_name and r.history]
    assert wb.exit_code == 1 and wb.summary["sweeps/lost"] is True and wb.summary["sweeps/state"] == "FAIL"
    assert [h["loss"] for h in wb.history if "loss" in h] == [m.value for m in history]


def test_what_a_trial_reported_reaches_the_store_within_a_second_while_it_goes_on(env) -> None:
    out = env.tmp / "marks"
    out.mkdir()
    seen: list[int] = []

    def killer() -> None:
        client = env.client()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out / "pid-1").exists():
            time.sleep(0.1)
        while time.monotonic() < deadline:  # the trainer reports nothing more: only the recorder's tick writes step 1
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()], filter_string="params.x = '1'")
            seen[:] = [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] if runs else []
            if seen == [0, 1]:
                break
            time.sleep(0.2)
        os.kill(int((out / "pid-1").read_text()), signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    summary = env.launch(grid("reports_then_waits", out, [1]), parallel=1)
    thread.join()
    assert seen == [0, 1]
    assert summary.counts == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1, "KILLED": 0}  # the lost attempt, then its re-run


def test_a_silent_worker_is_given_up_after_its_heartbeat_timeout(env) -> None:
    out = env.tmp / "marks"
    out.mkdir()
    summary = env.launch(grid("freezes_once", out, [1], "    heartbeat_timeout: 3\n"), parallel=1)
    trials, children = agree(env, summary)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"]
    assert trials[0].user_attrs["error"].startswith("no heartbeat for ")
    assert trials[1].user_attrs["retry_of"] == 0


def test_the_embedded_mlflow_store_loses_nothing_under_load(env) -> None:
    text = """
        name: load
        method: grid
        metric: {name: c}
        trainer: sweeps_test_trainers:chatty
        resources: {cpus: 0.5}
        parameters:
          x: {values: [0, 1, 2, 3, 4, 5, 6, 7]}
          steps: {value: 1000}
    """
    summary = env.launch(text, parallel=8)
    assert summary.counts == {"COMPLETE": 8, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
    _, children = env.runs(summary)
    client = env.client()
    for c in children:
        for key in ("a", "b", "c"):
            history = client.get_metric_history(c.info.run_id, key)
            assert len(history) == 1000, (key, len(history))
            assert sorted(m.step for m in history) == list(range(1000))


def test_random_search_in_a_finite_space_does_not_repeat_until_exhausted(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    text = """
        name: finite
        method: random
        metric: {name: loss}
        trainer: sweeps_test_trainers:quadratic
        parameters:
          x: {values: [0.0, 0.1, 0.2]}
          steps: {values: [1, 2]}
    """
    summary = env.launch(text, trials=10, parallel=2)
    _, children = env.runs(summary)
    configs = Counter((c.data.params["x"], c.data.params["steps"]) for c in children)
    assert len(children) == 6 and set(configs.values()) == {1}
    assert summary.record.stop_reason == "space exhausted"
    repeats = env.launch(text + "    allow_repeats: true\n", trials=10, parallel=2)
    _, children = env.runs(repeats)
    assert len(children) == 10


def _sweeps(*args: str, cwd: Path, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    argv = [*SWEEPS, *args]
    if wait:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _workdir(tmp: Path, n: int, sleep: float) -> Path:
    (tmp / "sleepy.py").write_text(
        "import time\n"
        "def train(config, report):\n"
        f"    time.sleep({sleep})\n"
        "    report(step=0, loss=float(config['x']))\n"
        "    return {'loss': float(config['x'])}\n")
    (tmp / "s.yaml").write_text(f"name: sub\nmethod: grid\nmetric: {{name: loss}}\ntrainer: sleepy:train\n"
                                f"parameters:\n  x: {{values: {list(range(n))}}}\n")
    return tmp


def _running(tmp: Path, sweep_id: str) -> int:
    return _count(tmp, sweep_id, "RUNNING")


def _count(tmp: Path, sweep_id: str, state: str) -> int:
    """The sweep's trials in ``state`` now, read from its study in this process (quick even on a loaded
    machine, where `sweeps status` takes seconds to start)."""
    if not (tmp / ".sweeps" / sweep_id / "study.log").exists():
        return 0
    try:
        study = open_study(tmp / ".sweeps" / sweep_id, sweep_id, "minimize", create=False)
    except KeyError:  # the log is there, the study's first record not yet
        return 0
    return sum(t.state.name == state for t in study.get_trials(deepcopy=False))


def _read_until(stream, text: str, timeout: float = 120) -> str:
    """What a running process wrote to ``stream`` up to the line holding ``text`` (read on a thread:
    a pipe's reader buffers lines that select would not see)."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in stream:
            lines.append(line)
            if text in line:
                found.set()
                return
        found.set()  # the process ended first

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout) and any(text in line for line in lines), f"no {text!r}: {''.join(lines)}"
    return "".join(lines)


def _wait_for(cond, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError("timed out")


def _mlflow_children(tmp: Path, sweep_id: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
    exp = client.get_experiment_by_name("sub")
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("sweeps.sweep_id") == sweep_id and r.data.tags.get("sweeps.role") == "trial"], \
        client


def test_a_killed_controller_is_resumed_and_a_second_one_is_refused(tmp_path: Path) -> None:
    work = _workdir(tmp_path, 6, 2.0)
    launch = _sweeps("launch", "s.yaml", "--parallel", "2", cwd=work, wait=False)
    sweep_id = launch.stdout.readline().strip().split(": ")[1]  # type: ignore[union-attr]
    _wait_for(lambda: _count(work, sweep_id, "COMPLETE") >= 2)
    refused = _sweeps("resume", sweep_id, cwd=work)
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith(f"sweep {sweep_id} is already being run by pid {launch.pid} on ")
    os.kill(launch.pid, signal.SIGKILL)  # the controller dies; its trials and Ray are left to their fate
    launch.wait(60)
    time.sleep(2)
    resumed = _sweeps("resume", sweep_id, "--no-progress", cwd=work)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming sweep {sweep_id}" in resumed.stderr
    detail = json.loads(_sweeps("status", sweep_id, "--json", cwd=work).stdout)
    complete = [t for t in detail["trials"] if t["state"] == "COMPLETE"]
    assert sorted(t["params"]["x"] for t in complete) == [0, 1, 2, 3, 4, 5]  # each point once, none repeated
    assert detail["sweep"]["status"] == "finished" and detail["sweep"]["resumed"] == 1
    children, client = _mlflow_children(work, sweep_id)
    assert all(c.info.status in ("FINISHED", "FAILED") for c in children)
    assert sorted(int(c.data.params["x"]) for c in children if c.info.status == "FINISHED") == [0, 1, 2, 3, 4, 5]
    parent = client.get_run(detail["sweep"]["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_loss"] == 0.0
    curve = client.get_metric_history(parent.info.run_id, "best_loss")
    assert max(m.step for m in curve) == len(detail["trials"])  # the best-so-far curve went on


def test_sigterm_or_ctrl_c_once_waits_for_running_trials_twice_stops_them_then_resume_finishes(tmp_path: Path) -> None:
    # 5 s trials: the second Ctrl-C must still find the resumed trials running
    work = _workdir(tmp_path, 4, 5.0)
    launch = _sweeps("launch", "s.yaml", "--parallel", "2", cwd=work, wait=False)
    sweep_id = launch.stdout.readline().strip().split(": ")[1]  # type: ignore[union-attr]
    _wait_for(lambda: _running(work, sweep_id) == 2)
    time.sleep(1.0)
    launch.send_signal(signal.SIGTERM)  # as a batch system stops a job: like one Ctrl-C
    out, err = launch.communicate(timeout=120)
    assert launch.returncode == 130, out + err
    assert "stopping: no new trials; waiting for 2 running" in err
    assert f"continue it with: sweeps resume {sweep_id}" in out
    children, client = _mlflow_children(work, sweep_id)
    assert len(children) == 2 and {c.info.status for c in children} == {"FINISHED"}  # they were let finish
    assert json.loads((work / ".sweeps" / sweep_id / "sweep.json").read_text())["status"] == "killed"

    second = _sweeps("resume", sweep_id, "--no-progress", cwd=work, wait=False)
    _wait_for(lambda: _running(work, sweep_id) == 2)  # the resumed sweep's trials run
    second.send_signal(signal.SIGINT)
    # as a user does: the second Ctrl-C once the first was taken (two signals that arrive before the
    # process runs its handler are one signal to it)
    first_taken = _read_until(second.stderr, "stopping: no new trials")
    second.send_signal(signal.SIGINT)
    out, err = second.communicate(timeout=120)
    err = first_taken + err
    assert second.returncode == 130 and "0 failed, 2 killed (interrupted)" in out, out + err
    children, client = _mlflow_children(work, sweep_id)
    stopped = {c.info.status for c in children if c.data.tags.get("sweeps.error") == "interrupted twice"}
    assert stopped == {"KILLED"}, (out, err, [(c.info.status, c.data.tags.get("sweeps.error")) for c in children])
    record = json.loads((work / ".sweeps" / sweep_id / "sweep.json").read_text())
    assert record["status"] == "killed"
    assert client.get_run(record["parent_run_id"]).info.status == "KILLED"

    final = _sweeps("resume", sweep_id, "--no-progress", cwd=work)
    assert final.returncode == 0, final.stdout + final.stderr
    children, client = _mlflow_children(work, sweep_id)
    assert sorted(int(c.data.params["x"]) for c in children if c.info.status == "FINISHED") == [0, 1, 2, 3]
    assert all(c.info.status != "RUNNING" for c in children)
    assert client.get_run(record["parent_run_id"]).info.status == "FINISHED"


def test_a_worker_that_dies_while_its_end_is_written_leaves_the_trial_lost_everywhere(env) -> None:
    # the recorder finishes writing the trial's end (FINISHED) after the controller has seen the worker
    # die; the controller's lost state must be the one that stays, in MLflow as in the study
    out = env.tmp / "marks"
    out.mkdir()
    db = env.tmp / "mlflow.db"
    summary = env.launch(grid("dies_while_recorded", out, [1], f'      db: {{value: "{db}"}}\n'), parallel=1)
    assert summary.counts == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 1, "KILLED": 0}
    trials, children = agree(env, summary)
    (lost,) = [c for c in children if c.info.status == "FAILED"]
    assert lost.data.tags["sweeps.lost"] == "true"
    assert env.client().get_metric_history(lost.info.run_id, "loss")  # what it reported is kept
