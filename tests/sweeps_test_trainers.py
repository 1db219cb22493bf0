"""Trainers for the tests (importable by Ray workers through PYTHONPATH)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def quadratic(config, report):
    """A known curve: the loss falls towards (x - 0.3)^2 over `steps` reports."""
    x = float(config["x"])
    steps = int(config.get("steps", 3))
    for step in range(steps):
        report(step=step, loss=(x - 0.3) ** 2 + 1.0 / (step + 1), x_seen=x)
    return {"loss": (x - 0.3) ** 2}


def config_only(config):
    """No report, as Ray Tune's function trainables: what it returns is all there is."""
    return {"loss": (float(config["x"]) - 1) ** 2, "x_seen": float(config["x"])}


def objective_only(config, report):
    """Returns the objective's value alone, as Optuna's objectives do."""
    report(step=0, half=float(config["x"]) / 2)
    return (float(config["x"]) - 1) ** 2


def reports_only(config, report):
    """Returns nothing: the objective is the last reported value."""
    for step in range(3):
        report(step=step, score=float(config["x"]) * (step + 1))


def fails_when_big(config, report):
    report(step=0, loss=1.0)
    if config["x"] > 5:
        raise RuntimeError(f"x={config['x']} is too big")
    return {"loss": float(config["x"])}


def nan_metric(config, report):
    return {"loss": float("nan")}


def probe_gpus(config, report):
    """Records the GPUs it was given and when it ran, to a file per trial."""
    start = time.time()
    time.sleep(float(config.get("sleep", 0.5)))
    out = Path(config["out"]) / f"{os.getpid()}-{start}.json"
    out.write_text(json.dumps({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start, "end": time.time()}))
    return {"loss": 0.0}


def curve(config, report):
    """Reports a curve known in advance, one value per step, `pause` seconds apart."""
    for value in config["curve"]:
        time.sleep(float(config.get("pause", 0.0)))
        report(loss=value)
    return {"loss": config["curve"][-1]}


def swallows_stop(config, report):
    """Catches every exception around report() and returns normally anyway."""
    for value in config["curve"]:
        try:
            report(loss=value)
        except Exception:  # noqa: BLE001 - the point of this trainer
            pass
    return {"loss": config["curve"][-1]}


def _first_time(config, what: str) -> bool:
    """True the first time this config gets here (a marker file per config)."""
    marker = Path(config["out"]) / f"{what}-{config['x']}"
    if marker.exists():
        return False
    marker.write_text(str(os.getpid()))
    return True


def flaky(config, report):
    """Raises on the first attempt of each config, succeeds after."""
    report(step=0, loss=float(config["x"]))
    if _first_time(config, "flaky"):
        raise RuntimeError(f"flaky failure for x={config['x']}")
    return {"loss": float(config["x"])}


def always_fails(config, report):
    raise ValueError("this trainer always fails")


def dies_once(config, report):
    """Kills its own worker process (kill -9) on the first attempt of each config."""
    import signal

    report(step=0, loss=float(config["x"]))
    if _first_time(config, "dies"):
        os.kill(os.getpid(), signal.SIGKILL)
    return {"loss": float(config["x"])}


def freezes_once(config, report):
    """Stops its own process (SIGSTOP: alive to Ray, silent) on the first attempt."""
    import signal

    if _first_time(config, "freezes"):
        os.kill(os.getpid(), signal.SIGSTOP)
    return {"loss": float(config["x"])}


def waits_to_be_killed(config, report):
    """Writes its pid, then works slowly; the test kills the worker from outside. The first attempt
    of x=1, the one the test kills, goes on for a minute: the kill lands while it runs, however slow
    the machine is to record its first reports."""
    Path(config["out"], f"pid-{config['x']}").write_text(str(os.getpid()))
    steps = 240 if config["x"] == 1 and _first_time(config, "victim") else int(config.get("steps", 20))
    for step in range(steps):
        time.sleep(0.25)
        report(step=step, loss=float(config["x"]))
    return {"loss": float(config["x"])}


def chatty(config, report):
    """Many steps of three metrics: a load on the MLflow store."""
    for step in range(int(config["steps"])):
        report(step=step, a=step * 1.0, b=-step * 1.0, c=float(config["x"]))
    return {"c": float(config["x"])}


def slow(config, report):
    time.sleep(float(config.get("sleep", 1.0)))
    report(step=0, loss=float(config["x"]))
    return {"loss": float(config["x"])}


def where_am_i(config, report):
    """Reports its process id and the GPU it sees; fails when x is negative."""
    report(step=0, pid=os.getpid(), gpu=float(os.environ.get("CUDA_VISIBLE_DEVICES") or -1))
    if config["x"] < 0:
        raise RuntimeError("x < 0")
    return {"loss": float(config["x"])}


def reports_then_waits(config, report):
    """Reports two steps at once; the first time, writes its pid and works a long
    time without reporting (the test kills it)."""
    report(step=0, loss=1.0)
    report(step=1, loss=0.5)
    if _first_time(config, "waits"):
        Path(config["out"], f"pid-{config['x']}").write_text(str(os.getpid()))
        time.sleep(60)
    return {"loss": float(config["x"])}


def imports_seen(config, report):
    """Reports which tracking libraries its process has imported."""
    import sys

    report(step=0, **{f"has_{m}": float(m in sys.modules) for m in ("mlflow", "wandb", "sqlalchemy")})
    report(step=1, loss=float(config["x"]))
    return {"loss": float(config["x"])}


def _kill_named_actors(prefix: str) -> None:
    """Kill the actors whose names start with ``prefix`` (waiting up to a minute for one to exist) and
    wait until they are dead."""
    import ray

    deadline = time.monotonic() + 60
    while not (names := [n for n in ray.util.list_named_actors() if n.startswith(prefix)]):
        assert time.monotonic() < deadline, f"no {prefix}* actor to kill"
        time.sleep(0.1)  # its starter may start it after this trial started
    for name in names:
        actor = ray.get_actor(name)
        ray.kill(actor, no_restart=True)
        while True:  # until it is dead: the trial must not end before
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=30)
            except ray.exceptions.RayActorError:
                break
            time.sleep(0.1)


def kills_the_recorder(config, report):
    """The first trial of the sweep kills its node's recorder (the process writing its record), then ends
    normally; every other trial just ends."""
    report(step=0, loss=float(config["x"]))
    if _first_time({**config, "x": "any"}, "recorder"):
        _kill_named_actors("sweeps-recorder-")
    return {"loss": float(config["x"])}


def kills_the_wandb_process(config, report):
    """The first trial of the sweep kills its node's W&B process, then ends normally; every other
    trial takes a second (time for Ray to tell the recorder that the process died), then ends."""
    report(step=0, loss=float(config["x"]))
    if _first_time({**config, "x": "any"}, "wandb"):
        _kill_named_actors("sweeps-wandb-")
    else:
        time.sleep(1.0)
    return {"loss": float(config["x"])}


def dies_while_recorded(config, report):
    """The first attempt reports 20,000 values in a burst and returns; its process is killed once the node's
    recorder has written some of them to the store (``config["db"]``, sqlite) but not all: the worker dies
    while the recorder still writes the trial's values and its end. Later attempts just end."""
    import signal
    import sqlite3
    import threading

    def kill_midway() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with sqlite3.connect(config["db"], timeout=0.05) as db:
                    written = db.execute("SELECT COUNT(*) FROM metrics WHERE key = 'loss'").fetchone()[0]
                if written >= 2_000:
                    break
            except sqlite3.Error:  # the recorder holds the write lock: look again
                pass
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGKILL)

    if _first_time(config, "burst"):
        for step in range(20_000):
            report(step=step, loss=float(config["x"]))
        threading.Thread(target=kill_midway, daemon=True).start()
    else:
        report(step=0, loss=float(config["x"]))
    return {"loss": float(config["x"])}


def always_dies(config, report):
    """Kills its own worker process (kill -9) every time."""
    import signal

    report(step=0, loss=float(config["x"]))
    os.kill(os.getpid(), signal.SIGKILL)


def keeps_a_model(config, report):
    """A scikit-learn model kept with report.model, and a file and a folder with report.save (removed at
    once after: report copies them)."""
    import shutil
    import tempfile

    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    x, y = load_breast_cancer(return_X_y=True)
    model = LogisticRegression(C=float(config["c"]), max_iter=200).fit(x / x.max(axis=0), y)
    acc = float(model.score(x / x.max(axis=0), y))
    uri = report.model(model)
    tmp = tempfile.mkdtemp()
    with open(f"{tmp}/notes.txt", "w") as f:
        f.write(f"c={config['c']} model={uri}\n")
    os.makedirs(f"{tmp}/plots")
    with open(f"{tmp}/plots/a.csv", "w") as f:
        f.write("x,y\n1,2\n")
    report.save(f"{tmp}/notes.txt")
    report.save(f"{tmp}/plots")
    import pandas as pd

    report.dataset("breast_cancer", pd.DataFrame(x))  # the same data in every trial: the same digest
    report.dataset("plots", f"{tmp}/plots")
    shutil.rmtree(tmp)
    return {"acc": acc}


def reports_media(config, report):
    """Reports an image (a numpy array), a matplotlib figure and a pandas table beside its metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd

    for step in range(2):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([0, 1], [0, step])
        report(step=step, loss=1.0 / (step + 1), picture=np.full((8, 8), step * 100, dtype=np.uint8), curve=fig,
               table=pd.DataFrame({"a": [step], "b": [2 * step]}))
        plt.close(fig)
    return {"loss": 0.5}


def jittery(config, report):
    """Ends after a random wait that no seed repeats: parallel trials end in a different order every run."""
    time.sleep(int.from_bytes(os.urandom(1), "big") / 255 * 0.3)
    return {"loss": (float(config["x"]) - 0.3) ** 2 + abs(float(config["y"]))}
