"""A trainer that imports torch at module level, as trainers do, so the runner seeds it."""

from __future__ import annotations

import random

import numpy as np
import torch


def train(config, report):
    """Returns draws of random, numpy and torch after the runner seeded them."""
    return {"loss": 0.0, "r": random.random(), "n": float(np.random.rand()), "t": float(torch.rand(1))}


def fit(config, report):
    """A small torch regression that seeds nothing itself: its losses repeat only when the runner's seeding does."""
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=float(config["lr"]))
    for step in range(int(config.get("steps", 4))):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        report(step=step, loss=float(loss), noise=random.random())
    return {"loss": float(loss)}
