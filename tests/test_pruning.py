"""Early termination: W&B's hyperband exactly, Optuna's pruners, decided on every report."""

from __future__ import annotations

import math

import pytest

from sweeps.pruning import Judge, hyperband_bands
from sweeps.space import EarlyTerminate, parse_spec
from wandb_offline import offline_runs


def hb(**kw) -> EarlyTerminate:
    return EarlyTerminate(type="hyperband", **kw)


@pytest.mark.parametrize(("et", "bands"), [
    (hb(min_iter=3, eta=3), [3, 9, 27, 81]),
    (hb(min_iter=1, eta=2), [1, 2, 4, 8]),
    (hb(max_iter=27, s=2, eta=3), [3, 9]),
    (hb(max_iter=81, s=3, eta=3), [3, 9, 27]),
    (hb(max_iter=5, s=2, eta=2), [1, 2]),
    (hb(max_iter=5, s=5, eta=2), [1, 2]),  # stops once a band would fall below 1
])
def test_bands_are_wandbs(et, bands) -> None:
    assert hyperband_bands(et)[: len(bands)] == bands


def test_hyperband_hand_computed_sequence() -> None:
    """min_iter 1, eta 2: bands 1, 2, 4; the cut-off is sorted(values)[floor(n / 2)]."""
    j = Judge(hb(min_iter=1, eta=2), "loss", "minimize")
    assert j.report(0, 10) is None  # band 1: [10] -> cut-off 10
    assert j.report(1, 12) is None  # [10, 12] -> position 1 -> 12; 12 is not worse
    assert j.report(2, 11) is None  # [10, 11, 12] -> position 1 -> 11
    assert j.report(3, 13) == ("hyperband band 1: loss 13 is worse than the cut-off 12 "
                              "(position 2 of the 4 trials that reached the band)")
    assert j.report(0, 9) is None  # band 2: [9]
    assert j.report(1, 11) is None  # band 2: [9, 11] -> 11
    assert j.report(2, 10.5) is None  # [9, 10.5, 11] -> 10.5
    # B's third report is judged at band 2 again, by its value there (11), now
    # against [9, 10.5, 11]: the cut-off moved to 10.5 as C reached the band
    assert j.report(1, 8) == ("hyperband band 2: loss 11 is worse than the cut-off 10.5 "
                             "(position 1 of the 3 trials that reached the band)")
    # a stopped trial stays stopped, with its reason, whatever it reports after
    assert j.report(1, 0.0) == ("hyperband band 2: loss 11 is worse than the cut-off 10.5 "
                                "(position 1 of the 3 trials that reached the band)")


def test_hyperband_reproduces_wandbs_own_example() -> None:
    """W&B's doctest: a, e finished; b, c, d running; max_iter 5, eta 2, s 2: only b stops."""
    j = Judge(hb(max_iter=5, s=2, eta=2), "loss", "minimize")
    j.replay(0, [10, 9], "COMPLETE", 9)  # a
    j.replay(4, [10, 6, 6], "COMPLETE", 6)  # e
    assert [j.report(n, 10) for n in (1, 2, 3)] == [None, None, None]  # band 1: all 10
    assert j.report(2, 8) is None and j.report(3, 7) is None
    assert j.report(1, 10) == ("hyperband band 2: loss 10 is worse than the cut-off 8 "
                              "(position 2 of the 5 trials that reached the band)")
    assert j.report(2, 8) is None and j.report(3, 7) is None  # c passes band 2 at its cut-off


def test_strict_false_judges_the_best_value_so_far() -> None:
    for strict, expected in ((True, True), (False, False)):
        j = Judge(hb(min_iter=2, eta=2, strict=strict), "loss", "minimize")
        j.replay(0, [5, 5], "COMPLETE", 5)
        j.replay(1, [5, 5], "COMPLETE", 5)
        assert j.report(2, 1) is None  # a good first value ...
        stopped = j.report(2, 9) is not None  # ... and a bad one at band 2
        assert stopped is expected


def test_maximize_and_nan_values_do_not_count_as_iterations() -> None:
    j = Judge(hb(min_iter=1, eta=2), "acc", "maximize")
    j.replay(0, [0.9], "COMPLETE", 0.9)
    j.replay(1, [0.8], "COMPLETE", 0.8)
    assert j.report(2, float("nan")) is None  # no valid value yet: no band reached
    reason = j.report(2, 0.1)
    assert reason == "hyperband band 1: acc 0.1 is worse than the cut-off 0.8 (position 1 of the 3 trials that reached the band)"


def _et(text: str) -> EarlyTerminate:
    spec = parse_spec(f"method: random\nmetric: {{name: loss}}\nparameters: {{x: {{value: 1}}}}\nearly_terminate: {text}\n")
    assert spec.early_terminate is not None
    return spec.early_terminate


def test_threshold_stops_above_the_bound_and_on_nan() -> None:
    j = Judge(_et("{type: threshold, upper: 1.0}"), "loss", "minimize")
    assert j.report(0, 0.5) is None
    assert j.report(0, 2.0) is not None
    j2 = Judge(_et("{type: threshold, upper: 1.0}"), "loss", "minimize")
    assert j2.report(0, math.nan) == "threshold: loss is nan at report 1"


def test_median_stops_a_trial_worse_than_the_median_of_finished_ones() -> None:
    j = Judge(_et("{type: median, n_startup_trials: 1, n_warmup_steps: 0}"), "loss", "minimize")
    j.replay(0, [1.0, 0.8, 0.6], "COMPLETE", 0.6)
    assert j.report(1, 0.9) is None
    assert j.report(1, 5.0) is not None


def test_patient_stops_after_its_patience_and_delays_a_wrapped_pruner() -> None:
    j = Judge(_et("{type: patient, patience: 1}"), "loss", "minimize")
    assert [j.report(0, v) for v in (3.0, 2.0, 1.0, 1.0)] == [None, None, None, None]  # improving, then flat
    j = Judge(_et("{type: patient, patience: 1}"), "loss", "minimize")
    assert [j.report(0, v) for v in (1.0, 2.0)] == [None, None]
    assert j.report(0, 3.0) is not None  # worse than before for more than 1 report
    # the threshold alone stops at once; wrapped, it waits for the patience to run out
    alone = Judge(_et("{type: threshold, upper: 0.5}"), "loss", "minimize")
    wrapped = Judge(_et("{type: patient, patience: 1, wrapped: {type: threshold, upper: 0.5}}"), "loss", "minimize")
    assert alone.report(0, 1.0) is not None
    assert [wrapped.report(0, v) for v in (1.0, 2.0)] == [None, None]
    assert wrapped.report(0, 3.0) is not None


def _stops_at(j: Judge, number: int, curve: list[float]) -> int | None:
    """The 1-based report at which the judge stops trial ``number`` reporting ``curve`` (None: never);
    the trial is ended as the trainer would end it."""
    for i, value in enumerate(curve):
        if j.report(number, value) is not None:
            j.end(number, "PRUNED")
            return i + 1
    j.end(number, "COMPLETE", curve[-1])
    return None


GOOD, WORSE, BETTER = [1.0, 1.0, 1.0, 1.0], [5.0, 5.0, 5.0, 5.0], [0.5, 0.5, 0.5, 0.5]
# each type on known curves, run one after another (minimize); the first trial at a rung or a percentile
# has no peers and goes on
KNOWN = [
    # rung 0 at the 2nd report (min_resource 1, steps from 0): the worse trial is not in the top half of {1, 5}
    ("{type: successive_halving, min_resource: 1, reduction_factor: 2}", [GOOD, WORSE, BETTER], [None, 2, None]),
    # min_resource 'auto' is learnt from the first finished trial (which is not judged: 1 step); rung 0 then
    # keeps the top quarter: of {1, 1, 1, 5}, the 5 stops
    ("{type: asha}", [GOOD, GOOD, GOOD, GOOD, WORSE, BETTER], [None, None, None, None, 2, None]),
    # worse than the 25th percentile of finished trials at the same report, from the first report on
    ("{type: percentile, percentile: 25.0, n_startup_trials: 1}", [GOOD, WORSE, BETTER], [None, 1, None]),
    ("{type: median, n_startup_trials: 1}", [GOOD, WORSE, BETTER], [None, 1, None]),
    # leaves [lower, upper] at the first report below 0.7
    ("{type: threshold, lower: 0.7}", [GOOD, WORSE, BETTER], [None, None, 1]),
]


@pytest.mark.parametrize(("text", "curves", "expected"), KNOWN, ids=[k[0] for k in KNOWN])
def test_each_extension_type_stops_the_trials_its_rule_says_on_known_curves(text: str, curves: list,
                                                                            expected: list) -> None:
    j = Judge(_et(text), "loss", "minimize")
    assert [_stops_at(j, n, c) for n, c in enumerate(curves)] == expected


def test_threshold_min_delta_of_patient_and_lower_bound_with_maximize() -> None:
    # lower: a maximised accuracy that falls below the bound stops at that report
    j = Judge(_et("{type: threshold, lower: 0.5}"), "acc", "maximize")
    assert _stops_at(j, 0, [0.6, 0.7, 0.4, 0.9]) == 3
    # patient: a loss worse than its best before the patience window stops it; min_delta tolerates that much
    exact = Judge(_et("{type: patient, patience: 1}"), "loss", "minimize")
    assert _stops_at(exact, 0, [1.0, 1.2, 1.3, 1.4]) == 3
    tolerant = Judge(_et("{type: patient, patience: 1, min_delta: 0.5}"), "loss", "minimize")
    assert _stops_at(tolerant, 0, [1.0, 1.2, 1.3, 1.4]) is None


BAD_ET = [
    ("{type: median, min_iter: 3}", "f.yaml:4: early_terminate.min_iter: 'min_iter' is not an option of median (its options: n_startup_trials, n_warmup_steps, interval_steps, n_min_trials)"),
    ("{type: hyperband}", "f.yaml:4: early_terminate: hyperband needs min_iter, or max_iter together with s"),
    ("{type: hyperband, max_iter: 2, s: 1, eta: 3}", "f.yaml:4: early_terminate: hyperband has no bands: max_iter 2 / eta 3 is below 1"),
    ("{type: percentile}", "f.yaml:4: early_terminate: percentile needs `percentile` (0..100): trials below it at a report stop"),
    ("{type: threshold}", "f.yaml:4: early_terminate: threshold needs `lower` or `upper` (or both): the bounds a value must stay within"),
    ("{type: patient, patience: 2, wrapped: {type: hyperband}}", "f.yaml:4: early_terminate.wrapped.type: wrapped type must be one of: successive_halving, asha, median, percentile, threshold"),
    ("{type: median, goal: maximize}", "f.yaml:4: early_terminate.goal: `goal` goes with `metric`, the metric to judge by when it is not metric.name"),
    ("{type: hyperbnad, min_iter: 1}", "f.yaml:4: early_terminate.type: 'hyperbnad' is not valid; use one of: hyperband, successive_halving, asha, median, percentile, threshold, patient (did you mean 'hyperband'?)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_ET, ids=[b[0] for b in BAD_ET])
def test_bad_early_terminate_gets_its_exact_message(text: str, message: str) -> None:
    from sweeps import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_spec(f"method: random\nmetric: {{name: loss}}\nparameters: {{x: {{value: 1}}}}\nearly_terminate: {text}\n", "f.yaml")
    assert str(info.value).splitlines() == [message]


# -- through real Ray, MLflow and W&B -------------------------------------------

CURVES = """
    name: hb
    method: grid
    metric: {{name: loss, goal: minimize}}
    trainer: sweeps_test_trainers:{trainer}
    early_terminate: {{type: hyperband, min_iter: 1, eta: 2}}
    parameters:
      curve:
        values:
          - [10, 9, 8, 7, 6, 5]
          - [10, 9, 8, 7, 6, 5.5]
          - [12, 12, 12, 12, 12, 12]
          - [10, 11, 11, 11, 11, 11]
      pause: {{value: 0.5}}
"""


def test_known_curves_stop_at_the_expected_band_with_the_reason(env) -> None:
    summary = env.launch(CURVES.format(trainer="curve"), parallel=1)
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 2, "FAIL": 0, "KILLED": 0}
    _, children = env.runs(summary)
    by_trial = {int(c.data.tags["sweeps.trial"]): c for c in children}
    assert [by_trial[i].info.status for i in range(4)] == ["FINISHED", "FINISHED", "KILLED", "KILLED"]
    assert by_trial[2].data.tags["sweeps.pruned"] == "true"
    assert by_trial[2].data.tags["sweeps.pruned_reason"] == (
        "hyperband band 1: loss 12 is worse than the cut-off 10 (position 1 of the 3 trials that reached the band)")
    assert by_trial[3].data.tags["sweeps.pruned_reason"] == (
        "hyperband band 2: loss 11 is worse than the cut-off 9 (position 1 of the 3 trials that reached the band)")
    history = {i: env.client().get_metric_history(by_trial[i].info.run_id, "loss") for i in range(4)}
    # nothing reported is lost: the stopped trials keep every value up to the decision
    assert [m.value for m in history[2]] == [12]
    assert [m.value for m in history[3]] == [10, 11]
    # the study knows them as pruned, with their curves
    from sweeps.state import open_study

    study = open_study(summary.state_dir, summary.id, "minimize", create=False)
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert trials[3].intermediate_values == {0: 10.0, 1: 11.0}
    # W&B has the stopped runs, marked, with the same values
    wb = {r.name: r for r in offline_runs(env.tmp) if r.job_type == "trial"}
    stopped = wb[by_trial[3].info.run_name]
    assert stopped.summary["sweeps/pruned"] is True and stopped.summary["sweeps/state"] == "PRUNED"
    assert [h["loss"] for h in stopped.history if "loss" in h] == [10, 11]


def test_a_trainer_that_swallows_the_stop_is_still_recorded_as_stopped(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    summary = env.launch(CURVES.format(trainer="swallows_stop").replace("pause: {value: 0.5}", "pause: {value: 0.0}"), parallel=1)
    assert summary.counts["PRUNED"] == 2


def test_early_termination_can_judge_another_metric_than_the_objective(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    text = """
        name: other-metric
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:quadratic
        early_terminate: {type: threshold, metric: x_seen, goal: minimize, upper: 0.5}
        parameters:
          x: {values: [0.1, 0.9, 0.3]}
    """
    summary = env.launch(text, parallel=1)
    _, children = env.runs(summary)
    states = {float(c.data.params["x"]): c.info.status for c in children}
    assert states == {0.1: "FINISHED", 0.9: "KILLED", 0.3: "FINISHED"}


def test_a_trainer_that_only_returns_still_works_with_early_termination(local_env) -> None:
    env = local_env  # the loop's behaviour: the local executor (no Ray)
    text = """
        name: no-reports
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:nan_metric
        early_terminate: {type: hyperband, min_iter: 1}
        parameters:
          x: {values: [1]}
    """
    summary = env.launch(text.replace("nan_metric", "fails_when_big"))
    assert summary.counts == {"COMPLETE": 1, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
