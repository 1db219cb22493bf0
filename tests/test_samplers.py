"""`sampler: {type: sobol-gp}` (sweeps/samplers.py: `sobol_gp`): correct, not good; how good it is, is
benchmarks/search_quality.py's. Seeded, resumable from its study, at home in conditional spaces,
and its GP models a bounded view of the study (what bounds its time per suggestion; the time itself
is measured by benchmarks/sampler_time.py, not asserted here)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import optuna
import pytest

from sweeps.samplers import STARTUP, TPE_EVERY, TPE_FROM, WARP_UNTIL, make_sampler, sampler_type, tpe_turn
from sweeps.samplers import sobol_gp as bayes
from sweeps.space import load_spec, parse_spec

SPACES = Path(__file__).parent / "spaces"
MIXED = load_spec(SPACES / "wandb" / "every_distribution.yaml")
CONDITIONAL = parse_spec(textwrap.dedent("""
    method: bayes
    metric: {name: loss}
    parameters:
      lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0}
      optimizer: {values: [adam, sgd]}
      momentum: {min: 0.5, max: 0.99, when: {optimizer: sgd}}
      beta: {min: 0.8, max: 0.999, when: {optimizer: adam}}
"""), "conditional.yaml")


def _loss(config: dict) -> float:
    return sum((float(v) if isinstance(v, (int, float)) else len(str(v))) ** 2 for v in config.values()) % 17


def _watch(sampler, monkeypatch) -> list[tuple[int, list[str]]]:
    """Each GP suggestion: the trial asked for, and the states of the trials in the view it modelled."""
    seen: list[tuple[int, list[str]]] = []
    real = sampler.gp.sample_relative

    def spy(view, trial, space):
        seen.append((len(seen), [t.state.name for t in view.get_trials(deepcopy=False)]))
        return real(view, trial, space)

    monkeypatch.setattr(sampler.gp, "sample_relative", spy)
    return seen


def _run(study: optuna.Study, spec, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        trial = study.ask()
        config = spec.suggest(trial)
        out.append(config)
        study.tell(trial, _loss(config))
    return out


def test_bayes_is_sobol_gp_with_the_files_options_and_tpe_is_a_sampler_type_away() -> None:
    text = "method: bayes\nmetric: {name: l}\nsampler: {type: sobol-gp, startup: 5, max_trials: 50, tpe_every: 0}\n"
    chosen = parse_spec(text + "parameters: {x: {min: 0.0, max: 1.0}}\n", "f")
    assert type(make_sampler(chosen, 0)).__name__ == "SobolGP" and sampler_type(chosen) == "sobol-gp"
    assert type(make_sampler(CONDITIONAL, 0)).__name__ == "SobolGP" and sampler_type(CONDITIONAL) == "sobol-gp"
    tpe = parse_spec("method: bayes\nmetric: {name: l}\nsampler: {type: tpe}\nparameters: {x: {min: 0.0, max: 1.0}}\n", "f")
    assert isinstance(make_sampler(tpe, 0), optuna.samplers.TPESampler) and sampler_type(tpe) == "tpe"
    with pytest.raises(Exception, match="sobol-gp has no option 'n_startup_trials'; did you mean"):
        parse_spec("method: bayes\nmetric: {name: l}\nsampler: {type: sobol-gp, n_startup_trials: 5}\n"
                   "parameters: {x: {min: 0.0, max: 1.0}}\n", "f")


def test_the_same_seed_gives_the_same_configs_and_another_seed_others(monkeypatch) -> None:
    runs = {}
    for seed in (3, 3, 4):
        sampler = bayes(seed)
        seen = _watch(sampler, monkeypatch)
        runs.setdefault(seed, []).append(_run(optuna.create_study(sampler=sampler), MIXED, STARTUP + 4))
        assert len(seen) == 4  # a space-filling start of STARTUP trials, then the GP
    assert runs[3][0] == runs[3][1] and runs[3][0] != runs[4][0]


def test_running_trials_are_pending_points_of_the_gp(monkeypatch) -> None:
    sampler = bayes(0)
    seen = _watch(sampler, monkeypatch)
    study = optuna.create_study(sampler=sampler)
    _run(study, MIXED, STARTUP)
    first = study.ask()
    MIXED.suggest(first)
    second = study.ask()  # asked while the first runs
    MIXED.suggest(second)
    assert seen[0][1] == ["COMPLETE"] * STARTUP + ["RUNNING"]  # the view: the complete ones, and the asking trial
    assert seen[1][1] == ["COMPLETE"] * STARTUP + ["RUNNING", "RUNNING"]  # the first, still running, is pending


def test_in_parallel_the_start_goes_on_until_startup_trials_are_complete(monkeypatch) -> None:
    sampler = bayes(0)
    seen = _watch(sampler, monkeypatch)
    study = optuna.create_study(sampler=sampler)
    running = []
    for _ in range(STARTUP + 3):  # the start's trials and three more asked while every one of them runs
        running.append(study.ask())
        MIXED.suggest(running[-1])
    for trial in running[:STARTUP - 1]:
        study.tell(trial, 1.0)
    MIXED.suggest(study.ask())  # one complete trial short of the start's
    assert seen == []
    study.tell(running[STARTUP - 1], 1.0)
    MIXED.suggest(study.ask())
    assert seen == [(0, ["COMPLETE"] * STARTUP + ["RUNNING"] * 5)]  # 4 still running (pending), and the asking one


def test_a_resumed_sweep_continues_from_its_study(tmp_path: Path, monkeypatch) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "study.log")))
    study = optuna.create_study(study_name="s", storage=storage, sampler=bayes(0))
    before = _run(study, MIXED, STARTUP + 2)
    again = bayes(0 + 10)  # as the controller makes it on resume: a new process, the seed moved on
    seen = _watch(again, monkeypatch)
    resumed = optuna.load_study(study_name="s", storage=storage, sampler=again)
    after = _run(resumed, MIXED, 2)
    assert [s[1].count("COMPLETE") for s in seen] == [STARTUP + 2, STARTUP + 3]  # modelled at once, on every trial
    assert after[0] not in before


def test_conditional_parameters_are_searched_only_where_their_condition_holds(monkeypatch) -> None:
    sampler = bayes(1)
    seen = _watch(sampler, monkeypatch)
    configs = _run(optuna.create_study(sampler=sampler), CONDITIONAL, STARTUP + 8)
    for config in configs:
        assert ("momentum" in config) == (config["optimizer"] == "sgd")
        assert ("beta" in config) == (config["optimizer"] == "adam")
    turns = sum(tpe_turn(n, TPE_EVERY) for n in range(STARTUP, STARTUP + 8))
    assert len(seen) == 8 - turns and {c["optimizer"] for c in configs} == {"adam", "sgd"}


def test_the_gp_models_conditional_parameters_too_at_values_drawn_where_they_were_inactive(monkeypatch) -> None:
    sampler = bayes(1, tpe_every=0)
    views: list[tuple[optuna.Study, dict]] = []
    real = sampler.gp.sample_relative
    monkeypatch.setattr(sampler.gp, "sample_relative",
                        lambda view, trial, space: views.append((view, space)) or real(view, trial, space))
    asked: dict[int, set[str]] = {}  # trial -> the parameters sample_relative proposed for it
    relative = sampler.sample_relative

    def spy(study, trial, space):
        asked[trial.number] = set(proposed := relative(study, trial, space))
        return proposed

    monkeypatch.setattr(sampler, "sample_relative", spy)
    by_tpe: list[tuple[int, str]] = []
    independent = sampler.tpe.sample_independent
    monkeypatch.setattr(sampler.tpe, "sample_independent", lambda study, trial, name, d: by_tpe.append(
        (trial.number, name)) or independent(study, trial, name, d))
    study = optuna.create_study(sampler=sampler)
    configs = _run(study, CONDITIONAL, STARTUP + 8)
    assert {c["optimizer"] for c in configs[:STARTUP]} == {"adam", "sgd"}  # so both branches are known to the GP
    for (view, space), again in zip(views[:-1], views[1:]):
        assert set(space) == {"lr", "optimizer", "momentum", "beta"}
        trials = study.trials[:len(view.trials) - 1]
        for name in ("momentum", "beta"):
            modelled = [v.params[name] for v in view.trials[:-1]]
            assert [m for m, t in zip(modelled, trials) if name in t.params] == [t.params[name] for t in trials
                                                                                  if name in t.params]
            drawn = [m for m, t in zip(modelled, trials) if name not in t.params]
            assert all(space[name].low <= m <= space[name].high for m in drawn) and len(set(drawn)) == len(drawn)
            assert [v.params[name] for v in again[0].trials[:len(modelled)]] == modelled  # the same draws each time
    gp_turns = [n for n, names in asked.items() if n >= STARTUP]
    assert gp_turns and all(asked[n] == {"lr", "optimizer", "momentum", "beta"} for n in gp_turns)
    assert not [(n, name) for n, name in by_tpe if n in gp_turns]  # the GP, not TPE, chose momentum and beta


def test_a_gp_proposal_that_would_run_an_asked_config_again_is_tpes_instead(monkeypatch) -> None:
    spec = parse_spec(textwrap.dedent("""
        method: bayes
        metric: {name: loss}
        parameters:
          units: {distribution: q_uniform, min: 0, max: 40, q: 10}
          act: {values: [relu, tanh]}
    """), "small.yaml")  # 10 configs; Optuna sees units as continuous, the config rounds it
    sampler = make_sampler(spec, 0)
    gp: list[int] = []
    real = sampler.gp.sample_relative
    monkeypatch.setattr(sampler.gp, "sample_relative",
                        lambda view, trial, space: gp.append(len(gp)) or real(view, trial, space))
    tpe: list[int] = []
    tpe_relative = sampler.tpe.sample_relative
    monkeypatch.setattr(sampler.tpe, "sample_relative",
                        lambda study, trial, space: tpe.append(trial.number) or tpe_relative(study, trial, space))
    study = optuna.create_study(sampler=sampler)
    configs = _run(study, spec, TPE_FROM)
    # every trial after the start is the GP's turn (none is TPE's before TPE_FROM), yet TPE proposed those
    # whose GP proposal was a config already run; each trial's config is the one its params make
    assert len(gp) == TPE_FROM - STARTUP and tpe and all(n >= STARTUP for n in tpe)
    assert [spec.config_of(t.params) for t in study.trials] == configs
    assert spec.config_of({"units": 0.3}) is None  # act is missing


def test_the_gp_models_at_most_max_trials_the_best_half_among_them(monkeypatch) -> None:
    sampler = bayes(0, max_trials=6, tpe_every=0)
    kept: list[list[float]] = []
    real = sampler.gp.sample_relative
    monkeypatch.setattr(sampler.gp, "sample_relative", lambda view, trial, space: kept.append(
        [t.value for t in view.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]) or real(view, trial, space))
    study = optuna.create_study(sampler=sampler)
    _run(study, MIXED, 16)
    values = sorted(t.value for t in study.trials[:-1])
    assert len(kept[-1]) == 6 and sorted(kept[-1])[:3] == values[:3]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_while_few_trials_are_complete_the_gp_models_their_values_on_a_log_scale_from_the_best(direction: str,
                                                                                               monkeypatch) -> None:
    sampler = bayes(0, tpe_every=0)
    seen: list[list[float]] = []
    real = sampler.gp.sample_relative
    monkeypatch.setattr(sampler.gp, "sample_relative", lambda view, trial, space: seen.append(
        [t.value for t in view.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]) or real(view, trial, space))
    study = optuna.create_study(sampler=sampler, direction=direction)
    sign = 1 if direction == "minimize" else -1
    told = [sign * v for v in (1.0, 2.0, 3.0, 101.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)]
    for value in told:
        trial = study.ask()
        MIXED.suggest(trial)
        study.tell(trial, value)
    # the 5th trial's view: 1 best, 2.5 the median, 101 a diverged run
    assert seen[0] == pytest.approx([sign * math.log1p((v - 1.0) / 1.5) for v in (1.0, 2.0, 3.0, 101.0)])
    assert seen[-1] == told[:WARP_UNTIL]  # from WARP_UNTIL complete trials on, the values as they are


@pytest.mark.parametrize("curves", [True, False])
def test_early_stopped_trials_count_at_their_last_value_when_their_curve_is_the_objective(curves: bool,
                                                                                          monkeypatch) -> None:
    sampler = bayes(0, curves=curves)
    seen = _watch(sampler, monkeypatch)
    study = optuna.create_study(sampler=sampler)
    _run(study, MIXED, STARTUP)
    stopped = study.ask()
    MIXED.suggest(stopped)
    stopped.report(5.0, 0)
    stopped.report(4.0, 1)
    study.tell(stopped, state=optuna.trial.TrialState.PRUNED)
    _run(study, MIXED, 1)
    assert seen[-1][1].count("COMPLETE") == STARTUP + (1 if curves else 0)  # the stopped one, at 4.0


def test_wide_ints_are_continuous_to_the_gp_and_its_proposals_ints_again(monkeypatch) -> None:
    spec = parse_spec(textwrap.dedent("""
        method: bayes
        metric: {name: loss}
        parameters:
          units: {distribution: int_uniform, min: 1, max: 1000}
          layers: {distribution: int_uniform, min: 1, max: 6}
          drop: {distribution: q_uniform, min: 0.0, max: 0.6, q: 0.05}
          batch: {values: [16, 32, 64]}
    """), "wide.yaml")
    sampler = bayes(0)
    spaces: list[dict] = []
    real = sampler.gp.sample_relative
    monkeypatch.setattr(sampler.gp, "sample_relative",
                        lambda view, trial, space: spaces.append(space) or real(view, trial, space))
    configs = _run(optuna.create_study(sampler=sampler), spec, STARTUP + 3)
    kinds = {name: type(d).__name__ for name, d in spaces[-1].items()}
    assert len(spaces) == 3 and kinds["units"] == "FloatDistribution" and kinds["layers"] == "IntDistribution"
    for config in configs[STARTUP:]:
        assert isinstance(config["units"], int) and 1 <= config["units"] <= 1000
        assert isinstance(config["layers"], int) and 1 <= config["layers"] <= 6
        assert round(config["drop"] / 0.05, 6) == round(config["drop"] / 0.05) and config["batch"] in (16, 32, 64)


@pytest.mark.parametrize("every", [3, 0])
def test_from_trial_ten_every_third_trial_is_tpes_unless_tpe_every_is_0(every: int, monkeypatch) -> None:
    sampler = bayes(0, tpe_every=every)
    gp = _watch(sampler, monkeypatch)
    tpe: list[int] = []
    real = sampler.tpe.sample_relative
    monkeypatch.setattr(sampler.tpe, "sample_relative",
                        lambda study, trial, space: tpe.append(trial.number) or real(study, trial, space))
    _run(optuna.create_study(sampler=sampler), MIXED, 20)
    turns = list(range(TPE_FROM + 2, 20, 3)) if every else []
    assert tpe == turns and len(gp) == 20 - STARTUP - len(turns)
    with pytest.raises(Exception, match=r"tpe_every: every how many trials TPE proposes one \(an integer >= 0"):
        parse_spec("method: bayes\nmetric: {name: l}\nsampler: {type: sobol-gp, tpe_every: -1}\n"
                   "parameters: {x: {min: 0.0, max: 1.0}}\n", "f")
