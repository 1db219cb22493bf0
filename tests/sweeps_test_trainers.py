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


def seeded(config, report):
    """Returns draws of random, numpy and torch after the runner seeded them."""
    import random

    import numpy as np
    import torch

    return {"loss": 0.0, "r": random.random(), "n": float(np.random.rand()), "t": float(torch.rand(1))}


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
