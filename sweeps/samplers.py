"""Method -> Optuna sampler.

grid and random use Optuna's RandomSampler (a grid's points are enqueued by
the controller, each exactly once, so no sampler decides them); bayes is TPE
unless the file asks for GP; tpe, gp, cmaes and qmc name a sampler directly.
Every sampler is seeded from the sweep's seed.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .space import SAMPLER_TYPES, SweepSpec

if TYPE_CHECKING:
    import optuna


def sampler_type(spec: SweepSpec) -> str:
    """The Optuna sampler a sweep uses, by our short name."""
    if spec.sampler is not None:
        return spec.sampler.type
    return {"grid": "random", "random": "random", "bayes": "tpe"}.get(spec.method, spec.method)


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    kind = sampler_type(spec)
    options: dict[str, Any] = dict(spec.sampler.options) if spec.sampler else {}
    if kind == "tpe" and spec.has_conditions:
        # conditional spaces: TPE splits the space into groups of parameters
        # that appear together, instead of falling back to independent sampling
        options.setdefault("multivariate", True)
        options.setdefault("group", True)
    if kind == "qmc":
        options.setdefault("scramble", True)  # so that the seed matters
    if kind == "cmaes":
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            from .errors import ConfigError

            raise ConfigError("method cmaes needs the cmaes package: pip install cmaes")
    cls = getattr(optuna.samplers, SAMPLER_TYPES[kind])
    with warnings.catch_warnings():
        # group=True and QMCSampler are marked experimental; we chose them knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(seed=seed, **options)
