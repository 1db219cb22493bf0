"""A trainer that imports torch at module level, as trainers do, so the runner seeds it."""

from __future__ import annotations

import random

import numpy as np
import torch


def train(config, report):
    """Returns draws of random, numpy and torch after the runner seeded them."""
    return {"loss": 0.0, "r": random.random(), "n": float(np.random.rand()), "t": float(torch.rand(1))}
