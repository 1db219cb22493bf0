"""Method -> Optuna sampler.

grid and random use Optuna's RandomSampler (a grid's points are enqueued by
the controller, each exactly once, so no sampler decides them); bayes is
:func:`sobol_gp`, ours, composed from Optuna's QMC, GP and TPE samplers, unless
the file names `sampler: {type: tpe | gp}`; tpe, gp, cmaes and qmc name Optuna's
sampler directly. Every sampler is seeded from the sweep's seed.

Optuna's GP costs more per suggestion the more trials it models and the more
integer values it searches one by one (see ``benchmarks/sampler_time.py``), and
the controller asks in its loop: sobol-gp models at most ``max_trials`` and
gives wide ints to the GP as continuous ranges; `method: gp` suggests the first
``gp_trials`` trials (default 300) and TPE, over every trial so far, the rest.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Callable

from .space import SAMPLER_TYPES, SweepSpec

#: trials GP suggests before TPE takes over (sampler option ``gp_trials``)
GP_TRIALS = 300
#: sobol-gp: the space-filling start, in trials (sampler option ``startup``)
STARTUP = 4
#: sobol-gp: the most complete trials its GP models, the best half and the most recent half (``max_trials``)
MAX_MODEL_TRIALS = 200
#: sobol-gp: an int of more values than this is continuous to the GP, and its proposals rounded
MAX_LEVELS = 16
#: sobol-gp: from this trial on (numbered from 0), every ``tpe_every``-th trial is TPE's (sampler option)
TPE_FROM = 10
TPE_EVERY = 3
#: sobol-gp: while fewer trials than this are complete, the GP models their values on a log scale (:func:`warped`)
WARP_UNTIL = 10

if TYPE_CHECKING:
    import optuna


def sampler_type(spec: SweepSpec) -> str:
    """The Optuna sampler a sweep uses, by our short name."""
    if spec.sampler is not None:
        return spec.sampler.type
    return {"grid": "random", "random": "random", "bayes": "sobol-gp"}.get(spec.method, spec.method)


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    kind = sampler_type(spec)
    options: dict[str, Any] = dict(spec.sampler.options) if spec.sampler else {}
    if kind == "sobol-gp":
        et = spec.early_terminate
        return sobol_gp(seed, startup=int(options.get("startup", STARTUP)),
                        max_trials=int(options.get("max_trials", MAX_MODEL_TRIALS)),
                        tpe_every=int(options.get("tpe_every", TPE_EVERY)),
                        curves=et is not None and et.metric in (None, spec.metric.name if spec.metric else None),
                        config=spec.config_of)
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


def sobol_gp(seed: int, startup: int = STARTUP, max_trials: int = MAX_MODEL_TRIALS, curves: bool = False,
             tpe_every: int = TPE_EVERY, config: Callable[[dict], Any] | None = None) -> optuna.samplers.BaseSampler:
    """`sampler: {type: sobol-gp}`: a Sobol start, then Optuna's GP over a view of the study, with TPE's turns.

    - Scrambled Sobol points (Optuna's ``QMCSampler``) until ``startup`` trials are complete: the first
      ``startup`` ones, and in parallel those asked while they run (a GP fitted on fewer proposes corners).
    - Then Optuna's ``GPSampler`` proposes, its running trials pending points (Optuna's qLogEI), fitted
      on :func:`model_view` (at most ``max_trials``; with ``curves``, early-stopped trials too).
      While fewer than ``WARP_UNTIL`` trials are complete, it models their values on a log scale (:func:`warped`).
    - TPE's turns (:func:`tpe_turn`): the GP settles in the basin it found first; TPE, modelling each group
      of parameters apart, takes the search to other basins, where the GP refines what it finds.
    - The GP models conditional parameters (`when:`) too (:class:`UnionSpace`), where inactive at a value drawn
      for the trial (:func:`inactive`); one not active in any complete trial yet comes from TPE.
    - With ``config`` (Optuna's params -> the trainer's config), a GP proposal that would run a config again
      (:class:`Asked`: q-rounded or discrete spaces) is TPE's turn instead.
    """
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial, TrialState

    class SobolGP(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.start = optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False,
                                                        warn_asynchronous_seeding=False)
                self.tpe = optuna.samplers.TPESampler(seed=seed + 1, multivariate=True, group=True, constant_liar=True)
                self.gp = optuna.samplers.GPSampler(seed=seed + 2, n_startup_trials=0, warn_independent_sampling=False)
            self.space = UnionSpace()
            self.asked = Asked(config) if config is not None else None
            self._decided: tuple[int, Any] = (-1, None)  # the trial being asked for, and whose turn it is

        def _turn(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
            """Who proposes this trial (decided once per trial): the start until ``startup`` trials (two at
            least) are complete, the trials running in parallel meanwhile too; then the GP, except TPE's turns."""
            if self._decided[0] != trial.number:
                done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
                if done < max(startup, 2):
                    self._decided = (trial.number, self.start)
                else:
                    self._decided = (trial.number, self.tpe if tpe_turn(trial.number, tpe_every) else self.gp)
            return self._decided[1]

        def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
            turn = self._turn(study, trial)
            if turn is not self.gp:
                return turn.infer_relative_search_space(study, trial)
            return self.space.calculate(study)

        def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                            search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
            if not search_space:
                return {}
            if (turn := self._turn(study, trial)) is not self.gp:
                return turn.sample_relative(study, trial, search_space)
            proposed = gp_proposal(self.gp, study, search_space, max_trials, curves)
            if self.asked is not None and self.asked.again(study, proposed):  # TPE's instead of a config run again
                own = self.tpe.sample_relative(study, trial, self.tpe.infer_relative_search_space(study, trial))
                return {name: v for name, v in own.items() if name in search_space}
            return proposed

        def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                               param_distribution: BaseDistribution) -> Any:
            sampler = self.start if self._turn(study, trial) is self.start else self.tpe
            return sampler.sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
            self.start.before_trial(study, trial)
            self.tpe.before_trial(study, trial)

        def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Any) -> None:
            self.start.after_trial(study, trial, state, values)
            self.tpe.after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            for s in (self.start, self.tpe, self.gp):
                s.reseed_rng()

    return SobolGP()


def gp_proposal(gp: optuna.samplers.GPSampler, study: optuna.Study, search_space: dict[str, Any], max_trials: int,
                curves: bool) -> dict[str, Any]:
    """What Optuna's GP proposes for ``search_space``, fitted on :func:`model_view` (wide ints relaxed, then
    snapped back)."""
    from threadpoolctl import threadpool_limits

    space = {name: relax(d) for name, d in search_space.items()}
    view, asking = model_view(study, max_trials, curves, space)
    # one BLAS thread: NumPy's and SciPy's OpenBLAS threads otherwise contend with torch's over the GP's many
    # small operations (Optuna limits torch's itself, and OpenBLAS's only by an environment variable read at import)
    with threadpool_limits(1):
        proposed = gp.sample_relative(view, asking, space)
    return {name: snap(search_space[name], v) for name, v in proposed.items()}


class Asked:
    """Whether a proposal would run again a config that a trial ran or runs (failed ones aside), by
    ``config``: Optuna's params -> the trainer's config (`SweepSpec.config_of`); each finished trial's is
    worked out once."""

    def __init__(self, config: Callable[[dict], Any]) -> None:
        self.config = config
        self.known: dict[int, Any] = {}

    def again(self, study: optuna.Study, proposed: dict[str, Any]) -> bool:
        from optuna.trial import TrialState

        mine = self.config(proposed)
        if mine is None:  # the proposal lacks a parameter its config needs, and so is no config yet
            return False
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        return any(self._of(t) == mine for t in study.get_trials(deepcopy=False, states=states))

    def _of(self, t: optuna.trial.FrozenTrial) -> Any:
        from optuna.trial import TrialState

        if t.state == TrialState.RUNNING:  # its params may still grow: not kept
            return self.config(t.params)
        if t.number not in self.known:
            self.known[t.number] = self.config(t.params)
        return self.known[t.number]


def tpe_turn(number: int, tpe_every: int) -> bool:
    """Whether sobol-gp's trial ``number`` (from 0) is TPE's: from trial ``TPE_FROM`` on, every
    ``tpe_every``-th (0: never)."""
    n = number - TPE_FROM
    return tpe_every > 0 and n >= 0 and n % tpe_every == tpe_every - 1


def relax(d: Any) -> Any:
    """An int of more than ``MAX_LEVELS`` values as a continuous range, for the GP.

    Optuna's GP searches a discrete dimension of many values one value at a time (a line search per
    start point and round), which made a suggestion cost seconds on spaces with a few wide ints; as
    a continuous dimension it is searched by gradient with the rest, and the proposal is rounded
    (:func:`snap`). Few values (a number of layers) stay discrete, where Optuna's search of every
    value is cheap and exact. (q-rounded parameters are continuous to Optuna already: the space
    rounds them.)"""
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(d, IntDistribution) and (d.high - d.low) // d.step + 1 > MAX_LEVELS:
        return FloatDistribution(d.low, d.high, log=d.log)
    return d


def snap(d: Any, value: Any) -> Any:
    """A proposal for a :func:`relax` ed int back on its values: the nearest step, within bounds."""
    from optuna.distributions import IntDistribution

    if isinstance(d, IntDistribution):
        k = min(max(round((float(value) - d.low) / d.step), 0), (d.high - d.low) // d.step)
        return int(d.low + k * d.step)
    return value


class UnionSpace:
    """Every parameter of a study's complete trials that is not a constant, conditional ones too, by name (a
    name whose distribution differs between trials is left out, to TPE); each trial is read once."""

    def __init__(self) -> None:
        self.space: dict[str, Any] = {}
        self.clash: set[str] = set()
        self.read: set[int] = set()

    def calculate(self, study: optuna.Study) -> dict[str, Any]:
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.number not in self.read:
                self.read.add(t.number)
                for name, d in t.distributions.items():
                    if self.space.setdefault(name, d) != d:
                        self.clash.add(name)
        return {name: d for name, d in sorted(self.space.items()) if name not in self.clash and not d.single()}


def inactive(d: Any, number: int, name: str) -> Any:
    """The value the GP's view gives parameter ``name`` in trial ``number``, where it was inactive: a value of
    its range drawn from the trial's number and the name (so the same every time). Drawn, not a constant: the
    trials where it was inactive then spread over its range with values that do not depend on it, which tells
    the GP that it does not matter there; a constant would leave the GP unsure of the rest of the range and
    make it propose such trials again with the parameter elsewhere, where it has no effect."""
    import random

    from optuna.distributions import CategoricalDistribution, IntDistribution

    draw = random.Random(f"{number}:{name}")
    if isinstance(d, CategoricalDistribution):
        return draw.choice(d.choices)
    u = draw.random()
    x = math.exp(math.log(d.low) + u * math.log(d.high / d.low)) if d.log else d.low + u * (d.high - d.low)
    if isinstance(d, IntDistribution):
        return snap(d, x)
    return min(d.high, d.low + round((x - d.low) / d.step) * d.step) if d.step else x


def model_view(study: optuna.Study, max_trials: int, curves: bool,
               space: dict[str, Any]) -> tuple[optuna.Study, optuna.trial.FrozenTrial]:
    """What sobol-gp's GP models, as an in-memory study over ``space``: at most ``max_trials`` complete trials
    (the best half and the most recent), the running ones (pending points), with ``curves`` the early-stopped
    ones at their last reported value; and a running trial of its own to ask for. Each trial carries every
    parameter of ``space``, as its distribution there (:func:`relax`), at :func:`inactive` where it had none."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    def trial(t: optuna.trial.FrozenTrial, **kw: Any) -> optuna.trial.FrozenTrial:
        params = {name: inactive(d, t.number, name) if name not in t.params
                  else float(t.params[name]) if isinstance(d, FloatDistribution) else t.params[name]
                  for name, d in space.items()}
        return create_trial(params=params, distributions=space, **kw)

    minimize = study.direction.name == "MINIMIZE"
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete = len(done)
    if complete > max_trials:
        ranked = sorted(done, key=lambda t: t.value if minimize else -t.value)
        best = {t.number for t in ranked[:max_trials // 2]}
        recent = [t for t in done if t.number not in best][-(max_trials - len(best)):]
        done = [t for t in done if t.number in best] + recent
    stopped = [(t, t.intermediate_values[max(t.intermediate_values)])
               for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
               if curves and t.intermediate_values and t.params]
    warp = warped([t.value for t in done] + [v for _, v in stopped], minimize, complete + len(stopped))
    view = optuna.create_study(direction=study.direction)
    for t in done:
        view.add_trial(trial(t, value=warp(t.value)))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.params:
            view.add_trial(trial(t, state=TrialState.RUNNING))
    for t, value in stopped:
        view.add_trial(trial(t, value=warp(value)))
    view.add_trial(create_trial(state=TrialState.RUNNING))
    return view, view.get_trials(deepcopy=False)[-1]


def warped(values: list[float], minimize: bool, trials: int) -> Callable[[float], float]:
    """What the GP models a value as while fewer than ``WARP_UNTIL`` ``trials`` are complete (early-stopped ones
    with their curves counted): its distance from the best of ``values``, in medians of their distances, on a
    log scale (``log1p``); mirrored for a maximized metric. The order of values is kept, and so is the best.
    Early, a few bad values (a diverged run, a wall of the space) would otherwise set the scale of the GP's fit
    and flatten the region of the best; later, the values as they are let it refine. The values as they are,
    too, where they have no spread to scale by."""
    import statistics

    sign = 1.0 if minimize else -1.0
    xs = [sign * v for v in values] if trials < WARP_UNTIL else []
    best = min(xs, default=0.0)
    scale = statistics.median(xs) - best if xs else 0.0
    if not 0 < scale < math.inf:
        return lambda v: v
    return lambda v: sign * math.log1p((sign * v - best) / scale)
