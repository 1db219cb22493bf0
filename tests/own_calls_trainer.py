"""A trainer that calls MLflow and W&B itself, as users' trainers do (imported at the top)."""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import mlflow
import numpy as np
import wandb


def train(config: dict[str, Any], report: Callable[..., None]) -> dict[str, float]:
    x = float(config["x"])
    mlflow.set_tag("own_tag", f"x={x}")
    mlflow.log_param("own_param", x)
    mlflow.log_param("worker_pid", os.getpid())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"notes-{x:g}.txt")
        with open(path, "w") as f:
            f.write(f"trial with x={x}\n")
        mlflow.log_artifact(path)
    loss = 0.0
    for step in range(3):
        loss = (x - 2) ** 2 + 1 / (step + 1)
        mlflow.log_metric("loss", loss, step=step)  # logged by the trainer itself first ...
        wandb.log({"loss": loss, "own_metric": x * 10 + step})
        picture = np.full((4, 4), step * 50, dtype=np.uint8)
        report(step=step, loss=loss, reported_only=step, picture=picture)  # ... and reported: kept once in each
    wandb.run.summary["own_summary"] = x
    return {"loss": loss}
