"""The digits MLP of ``digits_mlp``, keeping its trained model with MLflow's own call.

A trainer calls MLflow as it would anywhere: inside a trial, ``mlflow.pytorch.log_model``
logs into the trial's child run (sweeps makes it MLflow's active run), so every trial's
model is an MLflow logged model of its run, found from the sweep's parent run.
"""

from __future__ import annotations

from typing import Any, Callable

import mlflow
import torch

from trainers.digits_mlp import fit


def train(config: dict[str, Any], report: Callable[..., None]) -> dict[str, float]:
    model, metrics = fit(config, report)
    example = torch.zeros(2, 64)  # a batch of 2: the exported model takes any batch size (1 would fix it at 1)
    mlflow.pytorch.log_model(model.cpu(), name="model", input_example=example.numpy(),
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
    return metrics
