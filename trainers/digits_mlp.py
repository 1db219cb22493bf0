"""A torch MLP on scikit-learn's bundled digits (8x8 images, 10 classes).

Deterministic under the seed the sweep sets (torch's global seed); runs on the
GPU Ray assigned when there is one, otherwise on the CPU with as many threads
as CPUs were given to the trial (Ray sets OMP_NUM_THREADS to that).
Reports val_acc and val_loss after every epoch, and keeps the trained model.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

_DATA: dict[str, Any] = {}


def _data(device: torch.device) -> tuple[torch.Tensor, ...]:
    if "cpu" not in _DATA:
        x, y = load_digits(return_X_y=True)
        x_tr, x_va, y_tr, y_va = train_test_split(x / 16.0, y, test_size=0.25, random_state=0, stratify=y)
        _DATA["cpu"] = (
            torch.tensor(x_tr, dtype=torch.float32), torch.tensor(y_tr),
            torch.tensor(x_va, dtype=torch.float32), torch.tensor(y_va),
        )
    return tuple(t.to(device) for t in _DATA["cpu"])


def build(config: dict[str, Any]) -> nn.Module:
    arch = {**config, **config.get("model", {})}  # architecture keys may be nested under `model`
    hidden, layers, dropout = int(arch.get("hidden", 64)), int(arch.get("layers", 1)), float(arch.get("dropout", 0.0))
    act = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[config.get("activation", "relu")]
    blocks: list[nn.Module] = []
    width = 64
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), act(), nn.Dropout(dropout)]
        width = hidden
    blocks.append(nn.Linear(width, 10))
    return nn.Sequential(*blocks)


def train(config: dict[str, Any], report: Any) -> dict[str, float]:
    """Fit, and keep the trained model with ``report.model`` (``keep_model: false`` in the config skips it;
    so does a ``report`` that is a plain function, as other tools pass)."""
    model, metrics = fit(config, report)
    if config.get("keep_model", True) and hasattr(report, "model"):
        example = _data(torch.device("cpu"))[2][:2]  # two validation images: the model takes any batch size
        report.model(model.cpu(), example=example.numpy())
    return metrics


def fit(config: dict[str, Any], report: Callable[..., None]) -> tuple[nn.Module, dict[str, float]]:
    """Train the model, reporting every epoch; the trained model and its last metrics."""
    if torch.cuda.is_available() and os.environ.get("CUDA_VISIBLE_DEVICES"):
        device = torch.device("cuda")
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    x_tr, y_tr, x_va, y_va = _data(device)
    model = build(config).to(device)
    lr, wd = float(config.get("lr", 1e-3)), float(config.get("weight_decay", 0.0))
    opt_name = config.get("optimizer", "adam")
    if opt_name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(config.get("momentum", 0.9)), weight_decay=wd)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    loss_fn = nn.CrossEntropyLoss()
    batch = int(config.get("batch_size", 64))
    gen = torch.Generator().manual_seed(torch.initial_seed())
    metrics: dict[str, float] = {}
    for epoch in range(int(config.get("epochs", 5))):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen).to(device)
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            logits = model(x_va)
            metrics = {
                "train_loss": total / len(x_tr),
                "val_loss": float(loss_fn(logits, y_va)),
                "val_acc": float((logits.argmax(1) == y_va).float().mean()),
            }
        report(step=epoch, **metrics)
    return model, metrics
