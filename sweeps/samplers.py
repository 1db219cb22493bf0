"""Method -> Optuna sampler.

grid and random use Optuna's RandomSampler (a grid's points are enqueued by
the controller, each exactly once, so no sampler decides them); bayes is TPE
unless the file asks for GP; tpe, gp, cmaes and qmc name a sampler directly.
Every sampler is seeded from the sweep's seed.

GP's time per suggestion grows with the trials it models (on a 2-core CPU,
about 0.1 s at 50 trials, 0.25 s at 300, 0.4 s at 400: see
``benchmarks/sampler_time.py``), and the controller asks in its loop, so GP
suggests the first ``gp_trials`` trials (default 300) and TPE, over every
trial so far, the rest.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from .space import SAMPLER_TYPES, SweepSpec

#: trials GP suggests before TPE takes over (sampler option ``gp_trials``)
GP_TRIALS = 300

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
    gp_trials = int(options.pop("gp_trials", GP_TRIALS))
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
        sampler = cls(seed=seed, **options)
    if kind == "gp":
        return switching(sampler, optuna.samplers.TPESampler(seed=seed + 1), gp_trials)
    return sampler


def switching(first: optuna.samplers.BaseSampler, then: optuna.samplers.BaseSampler,
              at: int) -> optuna.samplers.BaseSampler:
    """A sampler that is ``first`` for trials numbered below ``at`` and ``then``
    from there on (``then`` sees every trial, ``first``'s included)."""
    import optuna

    class Switching(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self.first, self.then, self.at = first, then, at

        def _for(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.BaseSampler:
            return self.first if trial.number < self.at else self.then

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return self._for(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            return self._for(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
            return self._for(trial).sample_independent(study, trial, name, distribution)

        def before_trial(self, study: Any, trial: Any) -> None:
            self._for(trial).before_trial(study, trial)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self._for(trial).after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.first.reseed_rng()
            self.then.reseed_rng()

    return Switching()
