"""Early termination: ``early_terminate`` -> an Optuna pruner, judged on every report.

``hyperband`` is W&B's rule, reproduced exactly (``WandbHyperbandPruner``): an
"iteration" is the Nth reported value of the metric; the bands are
``min_iter * eta**k``, or ``int(max_iter / eta**k)`` for k = 1..s; at a band
the cut-off is the value at position ``floor(n / eta)`` among the n trials
(of any state) that reached it, best first; a running trial past a band stops
when its value at the band (strict, the default) or its best value so far
(strict: false) is worse than the cut-off of the last band it passed.

The other types are Optuna's pruners with their own options. The
:class:`Judge` keeps an in-memory Optuna study that mirrors the sweep's
reports, so that every pruner sees every trial as Optuna would.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

from .space import EarlyTerminate

if TYPE_CHECKING:
    import optuna

#: type -> the Optuna pruner it is (its options: ``space.ET_KEYS``)
PRUNER_CLASSES = {
    "successive_halving": "SuccessiveHalvingPruner",
    "asha": "SuccessiveHalvingPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "threshold": "ThresholdPruner",
}


def hyperband_bands(et: EarlyTerminate) -> list[int]:
    """W&B's bands, in iterations (1-based counts of reported values)."""
    eta = et.eta
    if et.min_iter is not None:
        return [int(et.min_iter * eta**k) for k in range(100) if et.min_iter * eta**k < 2**62]
    bands = []
    band = float(et.max_iter or 0)
    for _ in range(int(et.s or 0)):
        band /= eta
        if band < 1:
            break
        bands.append(int(band))
    return sorted(bands)


def _history(trial: optuna.trial.FrozenTrial, sign: float) -> list[float]:
    """The trial's reported values in order, finite only, negated to 'lower is better'."""
    return [sign * v for _, v in sorted(trial.intermediate_values.items()) if math.isfinite(v)]


def _make_base() -> type:
    import optuna

    class WandbHyperbandPruner(optuna.pruners.BasePruner):
        """W&B's hyperband stopping rule as an Optuna pruner (see the module doc)."""

        def __init__(self, bands: list[int], eta: float, strict: bool, metric: str) -> None:
            if not bands:
                raise ValueError("hyperband has no bands: increase s or max_iter, or lower eta")
            self.bands, self.eta, self.strict, self.metric = bands, eta, strict, metric
            self.last_reason: str | None = None

        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
            mine = _history(trial, sign)
            passed = [b for b in self.bands if b <= len(mine)]
            if not passed:
                return False
            band = passed[-1]
            values = sorted(h[band - 1] for h in (_history(t, sign) for t in study.get_trials(deepcopy=False)) if len(h) >= band)
            position = int((1.0 / self.eta) * len(values))
            cutoff = values[position]
            value = mine[band - 1] if self.strict else min(mine)
            if value > cutoff:
                self.last_reason = (
                    f"hyperband band {band}: {self.metric} {sign * value:.6g} is worse than the cut-off "
                    f"{sign * cutoff:.6g} (position {position} of the {len(values)} trials that reached the band)"
                )
                return True
            return False

    return WandbHyperbandPruner


_HYPERBAND_CLASS: type | None = None


def hyperband_pruner(et: EarlyTerminate, metric: str) -> Any:
    global _HYPERBAND_CLASS
    if _HYPERBAND_CLASS is None:
        _HYPERBAND_CLASS = _make_base()
    return _HYPERBAND_CLASS(hyperband_bands(et), et.eta, et.strict, metric)


def make_pruner(et: EarlyTerminate, metric: str) -> optuna.pruners.BasePruner:
    """``early_terminate`` -> its pruner."""
    import optuna

    if et.type == "hyperband":
        return hyperband_pruner(et, metric)
    options = dict(et.options)
    if et.type == "patient":
        wrapped = options.pop("wrapped", None)
        inner = make_pruner(EarlyTerminate(type=wrapped["type"], options=tuple((k, v) for k, v in wrapped.items() if k != "type")), metric) if wrapped else None
        with warnings.catch_warnings():  # experimental in Optuna; chosen knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.pruners.PatientPruner(inner, **options)
    return getattr(optuna.pruners, PRUNER_CLASSES[et.type])(**options)


class Judge:
    """Decides on every report whether a running trial stops.

    Holds an in-memory Optuna study that mirrors the sweep: each trial's
    reported values of the stopping metric as intermediate values (step =
    iteration), and each ended trial's state. The controller's study on disk
    stays the source of truth; a resumed sweep rebuilds the judge from it.
    """

    def __init__(self, et: EarlyTerminate, metric: str, goal: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.metric = metric
        self.kind = et.type
        self.pruner = make_pruner(et, metric)
        self.study = optuna.create_study(direction=goal, pruner=self.pruner,
                                         sampler=optuna.samplers.RandomSampler(seed=0))
        self._trials: dict[int, optuna.trial.Trial] = {}
        self._counts: dict[int, int] = {}
        self._stopped: dict[int, str] = {}

    def _trial(self, number: int) -> optuna.trial.Trial:
        if number not in self._trials:
            self._trials[number] = self.study.ask()
            self._counts[number] = 0
        return self._trials[number]

    def report(self, number: int, value: float) -> str | None:
        """Record the trial's next value; the reason to stop it, or None to go on."""
        if number in self._stopped:
            return self._stopped[number]
        trial = self._trial(number)
        step = self._counts[number]
        self._counts[number] += 1
        trial.report(float(value), step)
        if getattr(self.pruner, "last_reason", None) is not None:
            self.pruner.last_reason = None  # type: ignore[attr-defined]
        if not trial.should_prune():
            return None
        reason = getattr(self.pruner, "last_reason", None) or self._reason(value, step)
        self._stopped[number] = reason
        return reason

    def _reason(self, value: float, step: int) -> str:
        if self.kind == "threshold" and not math.isfinite(value):
            return f"threshold: {self.metric} is {value} at report {step + 1}"
        return f"{self.kind}: {self.metric} {value:.6g} at report {step + 1} is worse than its peers allow"

    def end(self, number: int, state: str, value: float | None = None) -> None:
        """A trial ended: COMPLETE (with its value), PRUNED or FAIL."""
        import optuna

        trial = self._trial(number)
        if state == "COMPLETE" and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        elif state == "PRUNED":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self._stopped.pop(number, None)

    def replay(self, number: int, values: list[float], state: str, value: float | None) -> None:
        """Rebuild a past trial (on resume): its reported values, then its end."""
        for v in values:
            trial = self._trial(number)
            trial.report(float(v), self._counts[number])
            self._counts[number] += 1
        self.end(number, state, value)
