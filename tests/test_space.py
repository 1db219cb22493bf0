"""The search-space parser: W&B's meaning, our extensions, errors that point at the line."""

from __future__ import annotations

import json
import math
import textwrap
from collections import Counter
from pathlib import Path

import jsonschema
import numpy as np
import optuna
import pytest
from scipy import stats

from sweeps import ConfigError
from sweeps.space import load_spec, parse_spec, qround, schema

SPACES = Path(__file__).parent / "spaces"
CORPUS = sorted((SPACES / "wandb").glob("*.yaml"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _parse(text: str, **kw):
    return parse_spec(textwrap.dedent(text).lstrip("\n"), "f.yaml", **kw)


def _errors(text: str, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(text, **kw)
    return str(info.value).splitlines()


def _samples(spec, n: int, seed: int = 0, sampler=None) -> list[dict]:
    study = optuna.create_study(sampler=sampler or optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(spec.suggest(trial))
        study.tell(trial, 0.0)
    return out


# -- the corpus of W&B-style files ----------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_corpus_file_is_valid_and_matches_the_shipped_schema(path: Path) -> None:
    spec = load_spec(path)
    assert spec.params
    import yaml

    # the shipped JSON Schema accepts every valid file (editors rely on it)
    data = yaml.safe_load(path.read_text())
    jsonschema.Draft202012Validator(schema()).validate(data)


def test_schema_is_a_valid_json_schema_and_ships_in_the_package() -> None:
    import sweeps

    shipped = Path(sweeps.__file__).parent / "schema.json"
    jsonschema.Draft202012Validator.check_schema(json.loads(shipped.read_text()))


def test_bayes_basic_means_what_it_means_in_wandb() -> None:
    spec = load_spec(SPACES / "wandb" / "bayes_basic.yaml")
    assert spec.method == "bayes"
    assert spec.metric is not None and (spec.metric.name, spec.metric.goal) == ("val_loss", "minimize")
    dists = {p.name: p.distribution for p in spec.params}
    assert dists == {
        "learning_rate": "uniform",  # floats -> uniform
        "batch_size": "categorical",
        "optimizer": "categorical",
        "epochs": "constant",
    }
    assert spec.early_terminate is not None and spec.early_terminate.min_iter == 3
    assert spec.early_terminate.eta == 3 and spec.early_terminate.strict is True


@pytest.mark.parametrize(
    ("name", "distribution"),
    [
        ("c_const", "constant"), ("c_cat", "categorical"), ("c_catp", "categorical_w_probabilities"),
        ("i_uni", "int_uniform"), ("f_uni", "uniform"), ("q_uni", "q_uniform"), ("log_exp", "log_uniform"),
        ("log_val", "log_uniform_values"), ("q_log_exp", "q_log_uniform"), ("q_log_val", "q_log_uniform_values"),
        ("inv_exp", "inv_log_uniform"), ("inv_val", "inv_log_uniform_values"), ("normal", "normal"),
        ("q_normal", "q_normal"), ("log_normal", "log_normal"), ("q_log_normal", "q_log_normal"),
        ("beta", "beta"), ("q_beta", "q_beta"),
    ],
)
def test_every_wandb_distribution_is_read(name: str, distribution: str) -> None:
    spec = load_spec(SPACES / "wandb" / "every_distribution.yaml")
    assert spec.param(name).distribution == distribution


def test_defaults_are_wandbs() -> None:
    spec = load_spec(SPACES / "wandb" / "every_distribution.yaml")
    n, b = spec.param("defaults_normal"), spec.param("defaults_beta")
    assert (n.mu, n.sigma) == (0.0, 1.0)
    assert (b.a, b.b) == (1.0, 1.0)
    q = _parse("""
        method: random
        parameters: {x: {distribution: q_uniform, min: 0, max: 10}}
    """).param("x")
    assert q.q == 1.0 and isinstance(q.q, float)


# -- the mapping onto Optuna, table-driven ----------------------------------

# (parameter yaml, optuna distribution class, its low, high, log)
MAPPING = [
    ("{min: 1, max: 5}", optuna.distributions.IntDistribution, 1, 5, False),
    ("{min: 1.0, max: 5}", optuna.distributions.FloatDistribution, 1.0, 5.0, False),
    ("{distribution: q_uniform, min: 0, max: 10, q: 2}", optuna.distributions.FloatDistribution, 0.0, 10.0, False),
    ("{distribution: log_uniform, min: -2, max: 1}", optuna.distributions.FloatDistribution, math.exp(-2), math.e, True),
    ("{distribution: log_uniform_values, min: 0.001, max: 1}", optuna.distributions.FloatDistribution, 0.001, 1.0, True),
    ("{distribution: q_log_uniform_values, min: 1, max: 100, q: 1}", optuna.distributions.FloatDistribution, 1, 100, True),
    ("{distribution: inv_log_uniform, min: 1, max: 3}", optuna.distributions.FloatDistribution, math.exp(-3), math.exp(-1), True),
    ("{distribution: inv_log_uniform_values, min: 0.1, max: 10}", optuna.distributions.FloatDistribution, 0.1, 10.0, True),
    ("{distribution: normal}", optuna.distributions.FloatDistribution, 0.0, 1.0, False),
    ("{distribution: beta, a: 2, b: 2}", optuna.distributions.FloatDistribution, 0.0, 1.0, False),
    ("{values: [a, b], probabilities: [0.5, 0.5]}", optuna.distributions.FloatDistribution, 0.0, 1.0, False),
]


@pytest.mark.parametrize(("param", "cls", "low", "high", "log"), MAPPING, ids=[m[0] for m in MAPPING])
def test_each_distribution_maps_to_its_optuna_distribution(param, cls, low, high, log) -> None:
    spec = _parse(f"method: random\nparameters:\n  x: {param}\n")
    study = optuna.create_study()
    trial = study.ask()
    spec.suggest(trial)
    (dist,) = trial.distributions.values()
    assert isinstance(dist, cls)
    assert dist.low == pytest.approx(low) and dist.high == pytest.approx(high)
    assert dist.log is log


def test_categoricals_with_lists_are_searched_by_index_and_given_back_whole() -> None:
    spec = _parse("""
        method: random
        parameters:
          layers: {values: [[64, 64], [128], {width: 3}]}
          flag: {values: [1, 1.0, true]}
    """)
    seen = _samples(spec, 60)
    assert {json.dumps(s["layers"]) for s in seen} == {"[64, 64]", "[128]", '{"width": 3}'}
    assert {(type(s["flag"]).__name__, s["flag"]) for s in seen} == {("int", 1), ("float", 1.0), ("bool", True)}


# -- sampled values follow the declared distribution (seeded statistics) ----

N = 3000


def _ks(values, cdf) -> float:
    return stats.kstest(np.asarray(values, dtype=float), cdf).pvalue


CONTINUOUS = [
    ("{distribution: uniform, min: -1.5, max: 2.5}", stats.uniform(-1.5, 4).cdf),
    ("{distribution: log_uniform, min: -9.21, max: -2.3}", lambda x: stats.uniform(-9.21, 6.91).cdf(np.log(x))),
    ("{distribution: log_uniform_values, min: 0.0001, max: 0.1}", stats.loguniform(0.0001, 0.1).cdf),
    ("{distribution: inv_log_uniform, min: 0, max: 4.6}", lambda x: 1 - stats.uniform(0, 4.6).cdf(-np.log(x))),
    ("{distribution: inv_log_uniform_values, min: 0.01, max: 1.0}", stats.loguniform(0.01, 1.0).cdf),
    ("{distribution: normal, mu: 5, sigma: 2}", stats.norm(5, 2).cdf),
    ("{distribution: log_normal, mu: 0, sigma: 0.5}", stats.lognorm(s=0.5, scale=1.0).cdf),
    ("{distribution: beta, a: 2, b: 5}", stats.beta(2, 5).cdf),
    ("{distribution: beta, a: 0.5, b: 0.5}", stats.beta(0.5, 0.5).cdf),
]


@pytest.mark.parametrize(("param", "cdf"), CONTINUOUS, ids=[c[0] for c in CONTINUOUS])
def test_continuous_samples_follow_the_declared_distribution(param, cdf) -> None:
    spec = _parse(f"method: random\nparameters:\n  x: {param}\n")
    values = [s["x"] for s in _samples(spec, N, seed=1)]
    assert _ks(values, cdf) > 0.001


def _wandb_reference(param: dict, n: int, rng: np.random.Generator) -> list:
    """Draws the way W&B's engine draws (its ppf of a uniform), for comparison."""
    u = rng.uniform(size=n)
    d = param["distribution"]
    if d == "q_uniform":
        x = stats.uniform(param["min"], param["max"] - param["min"]).ppf(u)
    elif d == "q_log_uniform_values":
        x = np.exp(stats.uniform(np.log(param["min"]), np.log(param["max"]) - np.log(param["min"])).ppf(u))
    elif d == "q_normal":
        x = stats.norm(param["mu"], param["sigma"]).ppf(u)
    elif d == "q_beta":
        x = stats.beta(param["a"], param["b"]).ppf(u)
    else:
        raise AssertionError(d)
    return [qround(float(v), param["q"]) for v in x]


DISCRETE = [
    {"distribution": "q_uniform", "min": 0.1, "max": 1.0, "q": 0.25},
    {"distribution": "q_uniform", "min": 0, "max": 10, "q": 3},
    {"distribution": "q_log_uniform_values", "min": 16, "max": 1024, "q": 16},
    {"distribution": "q_normal", "mu": 10, "sigma": 3, "q": 2},
    {"distribution": "q_beta", "a": 0.5, "b": 0.5, "q": 0.1},
]


@pytest.mark.parametrize("param", DISCRETE, ids=lambda p: p["distribution"])
def test_quantized_samples_match_wandbs_own_draws(param) -> None:
    spec = _parse(f"method: random\nparameters:\n  x: {json.dumps(param)}\n")
    ours = Counter(s["x"] for s in _samples(spec, N, seed=2))
    ref = Counter(_wandb_reference(param, N, np.random.default_rng(3)))
    keys = sorted(set(ours) | set(ref))
    assert set(ours) <= set(ref) | {k for k in ours if ours[k] < 10}
    table = np.array([[ours[k] for k in keys], [ref[k] for k in keys]]) + 1
    assert stats.chi2_contingency(table).pvalue > 0.001
    # the result is an int only when q is written as an int
    assert all(isinstance(v, int) == isinstance(param["q"], int) for v in ours)


def test_int_uniform_is_uniform_over_every_integer() -> None:
    spec = _parse("method: random\nparameters:\n  x: {min: -3, max: 3}\n")
    counts = Counter(s["x"] for s in _samples(spec, N, seed=4))
    assert sorted(counts) == list(range(-3, 4))
    assert stats.chisquare([counts[k] for k in range(-3, 4)]).pvalue > 0.001


def test_categorical_w_probabilities_follows_the_probabilities() -> None:
    spec = _parse("method: random\nparameters:\n  x: {values: [a, b, c], probabilities: [0.6, 0.3, 0.1]}\n")
    counts = Counter(s["x"] for s in _samples(spec, N, seed=5))
    assert stats.chisquare([counts["a"], counts["b"], counts["c"]], [0.6 * N, 0.3 * N, 0.1 * N]).pvalue > 0.001


def test_zero_probability_value_is_never_drawn() -> None:
    spec = _parse("method: random\nparameters:\n  x: {values: [a, b, c], probabilities: [0.5, 0.5, 0.0]}\n")
    assert "c" not in {s["x"] for s in _samples(spec, 500)}


@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes", "qmc"])
def test_every_sampler_can_search_every_distribution(sampler: str) -> None:
    spec = load_spec(SPACES / "wandb" / "every_distribution.yaml")
    make = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=3),
        "gp": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=3),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=3),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=0),
    }[sampler]
    study = optuna.create_study(sampler=make())
    for i in range(8):
        trial = study.ask()
        config = spec.suggest(trial)
        assert set(config) == {p.name for p in spec.params}
        assert 0.0 <= config["beta"] <= 1.0 and config["c_catp"] in ("x", "y")
        study.tell(trial, float(config["f_uni"]) + i)


def test_same_seed_same_configs() -> None:
    spec = load_spec(SPACES / "wandb" / "every_distribution.yaml")
    assert _samples(spec, 20, seed=7) == _samples(spec, 20, seed=7)
    assert _samples(spec, 20, seed=7) != _samples(spec, 20, seed=8)


# -- nested parameters and conditions ---------------------------------------


def test_nested_parameters_give_nested_dicts_and_dotted_names_stay_flat() -> None:
    spec = load_spec(SPACES / "wandb" / "nested.yaml")
    names = [p.name for p in spec.params]
    assert names == ["optimizer.name", "optimizer.lr", "optimizer.schedule.warmup", "model.depth", "seed"]
    config = spec.nest(_samples(spec, 1)[0])
    assert set(config) == {"optimizer", "model.depth", "seed"}
    assert set(config["optimizer"]) == {"name", "lr", "schedule"}
    assert config["optimizer"]["schedule"]["warmup"] in (0, 100, 1000)
    assert config["seed"] == 1
    assert spec.metric is not None and spec.metric.target == 0.05
    assert spec.budget.trials == 20 and spec.budget.target == 0.05


def test_conditional_parameter_only_present_when_its_condition_holds() -> None:
    spec = load_spec(SPACES / "wandb" / "extensions.yaml")
    seen = _samples(spec, 200)
    for s in seen:
        assert ("hidden" in s) == (s["model"] == "mlp") == ("layers" in s)
    assert {s["model"] for s in seen} == {"mlp", "linear"}


def test_conditions_are_ordered_after_what_they_depend_on() -> None:
    spec = _parse("""
        method: random
        parameters:
          momentum: {values: [0.9, 0.99], when: {opt: sgd}}
          opt: {values: [adam, sgd]}
    """)
    assert [p.name for p in spec.params] == ["opt", "momentum"]


def test_extensions_are_read() -> None:
    spec = load_spec(SPACES / "wandb" / "extensions.yaml")
    assert spec.trainer == "trainers.digits_mlp:train"
    assert spec.parallel == 2 and spec.seed == 42
    assert (spec.resources.cpus, spec.resources.gpus) == (1.0, 0.25)
    assert (spec.budget.trials, spec.budget.time_s, spec.budget.target) == (30, 5400.0, 0.99)
    assert spec.sampler is not None and spec.sampler.type == "gp"
    assert dict(spec.sampler.options) == {"n_startup_trials": 5}
    assert spec.tracking.experiment == "digits" and spec.tracking.wandb_mode == "offline"


# -- grids ------------------------------------------------------------------


def test_grid_is_the_product_of_every_gridable_parameter_each_point_once() -> None:
    spec = load_spec(SPACES / "wandb" / "grid_basic.yaml")
    points = list(spec.grid())
    # lr 3 x layers 3 x width {32, 64, 96, 128} x constant
    assert spec.grid_size == len(points) == 36
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 36
    assert {p["width"] for p in points} == {32, 64, 96, 128}
    assert all(p["activation"] == "relu" for p in points)


def test_grid_with_conditions_skips_inactive_parameters() -> None:
    spec = _parse("""
        method: grid
        parameters:
          opt: {values: [adam, sgd]}
          momentum: {values: [0.0, 0.9], when: {opt: sgd}}
          lr: {values: [0.1, 0.01]}
    """)
    points = list(spec.grid())
    assert spec.grid_size == len(points) == 6
    assert sum("momentum" in p for p in points) == 4


def test_grid_points_reach_optuna_unchanged_when_enqueued() -> None:
    spec = _parse("""
        method: grid
        parameters:
          w: {distribution: q_uniform, min: 0.1, max: 1.0, q: 0.5}
          l: {values: [[1, 2], [3]]}
          n: {min: 1, max: 2}
    """)
    study = optuna.create_study()
    for point in spec.grid():
        study.enqueue_trial(spec.optuna_params(point))
        trial = study.ask()
        assert spec.suggest(trial) == point
        study.tell(trial, 0.0)
    assert [p["w"] for p in spec.grid()][:3] == [0.0, 0.0, 0.0]  # 0.0, 0.5 and 1.0 are reachable
    assert sorted({p["w"] for p in spec.grid()}) == [0.0, 0.5, 1.0]


# -- warnings and notes -----------------------------------------------------


def test_yaml11_strings_are_numbers_here_with_a_note() -> None:
    spec = _parse("""
        method: random
        parameters:
          lr: {distribution: log_uniform_values, min: 1e-5, max: 1.0e1}
    """)
    p = spec.param("lr")
    assert p.min == 1e-5 and p.max == 10.0
    notes = [str(w) for w in spec.warnings]
    assert notes == [
        "f.yaml:3: note: parameters.lr.min: W&B (YAML 1.1) reads 1e-5 as the string '1e-5'; here it is the number 1e-05",
        "f.yaml:3: note: parameters.lr.max: W&B (YAML 1.1) reads 1.0e1 as the string '1.0e1'; here it is the number 10.0",
    ]


def test_integer_zero_one_bounds_warn_and_strict_makes_it_an_error() -> None:
    text = """
        method: random
        parameters:
          dropout: {min: 0, max: 1}
    """
    spec = _parse(text)
    assert spec.param("dropout").distribution == "int_uniform"
    (w,) = spec.warnings
    assert str(w) == (
        "f.yaml:3: warning: parameters.dropout: min: 0 and max: 1 are both integers, so this is int_uniform over "
        "{0, 1} (as in W&B); for a float between 0 and 1 write min: 0.0, max: 1.0"
    )
    assert _errors(text, strict=True) == [str(w).replace("warning: ", "")]


def test_exponent_form_log_bounds_that_look_like_values_warn() -> None:
    spec = _parse("""
        method: random
        parameters:
          lr: {distribution: log_uniform, min: 0.0001, max: 0.1}
    """)
    (w,) = spec.warnings
    assert "gives values from 1.0001 to 1.10517" in str(w) and "use log_uniform_values" in str(w)


def test_wandb_only_keys_are_accepted_with_a_warning() -> None:
    spec = load_spec(SPACES / "wandb" / "wandb_only_keys.yaml")
    warned = {w.path for w in spec.warnings}
    assert {"apiVersion", "kind", "job", "image_uri", "scheduler", "controller", "metric.impute"} <= warned


# -- errors: golden messages -------------------------------------------------

BAD = [
    (
        "goal",
        "method: bayes\nmetric: {name: acc, goal: maximise}\nparameters: {x: {values: [1]}}\n",
        ["f.yaml:2: metric.goal: 'maximise' is not valid; use one of: minimize, maximize (did you mean 'maximize'?)"],
    ),
    (
        "bayes without metric",
        "method: bayes\nparameters: {x: {values: [1]}}\n",
        ["f.yaml:1: method: method bayes learns from results and needs a metric: add metric: {name: ..., goal: minimize|maximize}"],
    ),
    (
        "min >= max",
        "method: random\nparameters:\n  optimizer:\n    parameters:\n      lr: {min: 0.1, max: 0.01}\n",
        ["f.yaml:5: parameters.optimizer.parameters.lr.min: min (0.1) must be below max (0.01)"],
    ),
    (
        "non-positive value bounds",
        "method: random\nparameters:\n  lr:\n    distribution: log_uniform_values\n    min: 0\n    max: 1\n",
        ["f.yaml:5: parameters.lr.min: log_uniform_values bounds are values and must be > 0, not 0; for natural-log exponents use log_uniform"],
    ),
    (
        "q <= 0",
        "method: random\nparameters:\n  w:\n    distribution: q_uniform\n    min: 0\n    max: 8\n    q: -2\n",
        ["f.yaml:7: parameters.w.q: must be > 0, not -2"],
    ),
    (
        "empty values",
        "method: random\nparameters:\n  a: {values: []}\n",
        ["f.yaml:3: parameters.a.values: must not be empty"],
    ),
    (
        "probabilities length",
        "method: random\nparameters:\n  a:\n    values: [1, 2, 3]\n    probabilities: [0.5, 0.5]\n",
        ["f.yaml:5: parameters.a.probabilities: 2 probabilities for 3 values; give one per value"],
    ),
    (
        "probabilities sum",
        "method: random\nparameters:\n  a:\n    values: [1, 2]\n    probabilities: [0.5, 0.6]\n",
        ["f.yaml:5: parameters.a.probabilities: probabilities sum to 1.1; they must sum to 1"],
    ),
    (
        "unknown distribution",
        "method: random\nparameters:\n  a:\n    distribution: log_normall\n",
        ["f.yaml:4: parameters.a.distribution: 'log_normall' is not valid; use one of: constant, categorical, "
         "categorical_w_probabilities, int_uniform, uniform, q_uniform, log_uniform, log_uniform_values, q_log_uniform, "
         "q_log_uniform_values, inv_log_uniform, inv_log_uniform_values, normal, q_normal, log_normal, q_log_normal, "
         "beta, q_beta (did you mean 'log_normal'?)"],
    ),
    (
        "extra key inside a parameter",
        "method: random\nparameters:\n  a:\n    min: 0.0\n    max: 1.0\n    q: 0.1\n",
        ["f.yaml:6: parameters.a.q: 'q' is not a key of a uniform parameter (its keys: min, max); for steps of q use distribution: q_uniform"],
    ),
    (
        "unknown key inside a parameter",
        "method: random\nparameters:\n  a:\n    vaules: [1, 2]\n",
        ["f.yaml:4: parameters.a.vaules: unknown key in a parameter 'vaules'; did you mean 'values'?"],
    ),
    (
        "bad parameter name",
        "method: random\nparameters:\n  2fast: {value: 1}\n  bad..name: {value: 1}\n  x y: {value: 2}\n",
        ["f.yaml:4: parameters.bad..name: bad parameter name 'bad..name': a name is made of letters, digits, _, -, / and :, in parts joined by single dots",
         "f.yaml:5: parameters.x y: bad parameter name 'x y': a name is made of letters, digits, _, -, / and :, in parts joined by single dots"],
    ),
    (
        "duplicate keys",
        "method: random\nparameters:\n  a: {value: 1}\n  a: {value: 2}\n",
        ["f.yaml:4: parameters.a: duplicate key (first written at line 3); keep one"],
    ),
    (
        "yaml syntax",
        "method: random\nparameters:\n  a: {value: 1\n",
        ["f.yaml:4: YAML syntax error: while parsing a flow mapping expected ',' or '}', but got '<stream end>'"],
    ),
    (
        "top level not a mapping",
        "- method: random\n",
        ["f.yaml:1: the top level must be a mapping of keys (method, metric, parameters, ...), not a list"],
    ),
    (
        "empty file",
        "# nothing\n",
        ["f.yaml:1: the file is empty; expected a mapping with method and parameters"],
    ),
    (
        "unknown top-level key",
        "method: random\nparamters: {a: {value: 1}}\nparameters: {a: {value: 1}}\n",
        ["f.yaml:2: paramters: unknown key 'paramters'; did you mean 'parameters'?"],
    ),
    (
        "keep needs a positive count of models",
        "method: random\nkeep: {models: 0}\nparameters: {a: {value: 1}}\n",
        ["f.yaml:2: keep.models: must be >= 1, not 0"],
    ),
    (
        "unknown key under keep",
        "method: random\nkeep: {modls: 2}\nparameters: {a: {value: 1}}\n",
        ["f.yaml:2: keep.modls: unknown key 'modls'; did you mean 'models'?"],
    ),
    (
        "cannot grid",
        "method: grid\nparameters:\n  lr: {min: 0.0, max: 1.0}\n",
        ["f.yaml:3: parameters.lr: a grid cannot enumerate a uniform parameter; list the points with `values`, "
         "or use int_uniform or q_uniform with `q`"],
    ),
    (
        "missing method",
        "parameters: {a: {value: 1}}\n",
        ["f.yaml:1: missing required key 'method'"],
    ),
    (
        "cannot infer",
        "method: random\nparameters:\n  a: {min: 1}\n",
        ["f.yaml:3: parameters.a: cannot tell the distribution: give `value`, `values`, `min` and `max`, or a `distribution`"],
    ),
    (
        "condition on unknown parameter",
        "method: random\nparameters:\n  opt: {values: [a, b]}\n  m:\n    values: [1]\n    when: {otp: a}\n",
        ["f.yaml:6: parameters.m.when.otp: no parameter named 'otp'; did you mean 'opt'?"],
    ),
    (
        "condition on a value never taken",
        "method: random\nparameters:\n  opt: {values: [adam, sgd]}\n  m:\n    values: [1]\n    when: {opt: rmsprop}\n",
        ["f.yaml:6: parameters.m.when.opt: opt never takes the value 'rmsprop'; it takes ['adam', 'sgd']"],
    ),
    (
        "unknown sampler option",
        "method: bayes\nmetric: {name: l}\nsampler: {type: tpe, n_startup_trails: 5}\nparameters: {a: {min: 0.0, max: 1.0}}\n",
        ["f.yaml:3: sampler.n_startup_trails: TPESampler has no option 'n_startup_trails'; did you mean 'n_startup_trials'?"],
    ),
    (
        "budget duration",
        "method: random\nbudget: {time: 2 hours}\nparameters: {a: {value: 1}}\n",
        ["f.yaml:2: budget.time: '2 hours' is not a duration; write seconds (3600) or e.g. 90s, 30m, 2h, 1h30m"],
    ),
    (
        "trainer",
        "method: random\ntrainer: train.py\nparameters: {a: {value: 1}}\n",
        ["f.yaml:2: trainer: 'train.py' is not module:function (e.g. trainers.digits_mlp:train)"],
    ),
]


@pytest.mark.parametrize(("case", "text", "expected"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_exact_message(case: str, text: str, expected: list[str]) -> None:
    assert _errors(text) == expected


def test_every_problem_is_reported_in_one_go() -> None:
    lines = _errors("""
        method: bayes
        metric: {name: acc, goal: maximise}
        parameters:
          lr: {min: 0.1, max: 0.01}
          bs: {values: []}
          p: {values: [1, 2], probabilities: [0.1, 0.1]}
    """)
    assert [line.split(":")[1] for line in lines] == ["2", "4", "5", "6"]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_spec(tmp_path / "missing.yaml")


def test_gp_suggests_the_first_gp_trials_then_tpe_takes_over(monkeypatch) -> None:
    from sweeps.samplers import make_sampler

    spec = _parse("""
        method: bayes
        metric: {name: loss}
        sampler: {type: gp, gp_trials: 4, n_startup_trials: 2}
        parameters:
          x: {min: 0.0, max: 1.0}
    """)
    sampler = make_sampler(spec, seed=0)
    used = []
    for name, inner in (("gp", sampler.first), ("tpe", sampler.then)):
        real = inner.sample_relative
        monkeypatch.setattr(inner, "sample_relative",
                            lambda study, trial, space, real=real, name=name: used.append((trial.number, name)) or real(study, trial, space))
    assert isinstance(sampler.first, optuna.samplers.GPSampler) and isinstance(sampler.then, optuna.samplers.TPESampler)
    study = optuna.create_study(sampler=sampler)
    for _ in range(7):
        trial = study.ask()
        study.tell(trial, (spec.suggest(trial)["x"] - 0.3) ** 2)
    assert used == [(0, "gp"), (1, "gp"), (2, "gp"), (3, "gp"), (4, "tpe"), (5, "tpe"), (6, "tpe")]


def test_sobol_gp_options_are_integers_each_with_its_least_value_and_no_other_option() -> None:
    text = ("method: bayes\nmetric: {name: l}\nsampler:\n  type: sobol-gp\n  startup: 0\n  max_trials: 2.5\n"
            "  tpe_every: -1\n  tpe_evry: 3\nparameters: {x: {min: 0.0, max: 1.0}}\n")
    assert _errors(text) == [
        "f.yaml:5: sampler.startup: a number of trials (an integer >= 1), not 0",
        "f.yaml:6: sampler.max_trials: a number of trials (an integer >= 1), not 2.5",
        "f.yaml:7: sampler.tpe_every: every how many trials TPE proposes one (an integer >= 0; 0: never), not -1",
        "f.yaml:8: sampler.tpe_evry: sobol-gp has no option 'tpe_evry'; did you mean 'tpe_every'?"]
    ok = "method: bayes\nmetric: {name: l}\nsampler: {type: sobol-gp, tpe_every: 0}\nparameters: {x: {min: 0.0, max: 1.0}}\n"
    assert dict(parse_spec(ok, "f.yaml").sampler.options) == {"tpe_every": 0}  # 0 is allowed there: never


def test_gp_trials_must_be_a_positive_integer_and_only_for_gp() -> None:
    assert _errors("method: bayes\nmetric: {name: l}\nsampler: {type: gp, gp_trials: 0}\nparameters: {x: {min: 0.0, max: 1.0}}\n") == [
        "f.yaml:3: sampler.gp_trials: a number of trials (an integer >= 1), not 0"]
    assert "TPESampler has no option 'gp_trials'" in _errors(
        "method: bayes\nmetric: {name: l}\nsampler: {type: tpe, gp_trials: 5}\nparameters: {x: {min: 0.0, max: 1.0}}\n")[0]


def test_reuse_workers_must_be_a_boolean() -> None:
    assert _errors("method: random\nresources: {cpus: 1, reuse_workers: 'yes'}\nparameters:\n  a: {min: 0.0, max: 1.0}\n") == [
        "f.yaml:2: resources.reuse_workers: must be true or false, not string 'yes'"]
    assert _parse("method: random\nresources: {reuse_workers: false}\nparameters:\n  a: {min: 0.0, max: 1.0}\n").resources.reuse_workers is False
