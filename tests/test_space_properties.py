"""Laws that hold for every input (hypothesis): bounds, q grids, grid points once."""

from __future__ import annotations

import json
import math

import optuna
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeps.space import parse_spec, qround

optuna.logging.set_verbosity(optuna.logging.WARNING)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e4, allow_nan=False, allow_infinity=False)
steps = st.one_of(st.integers(min_value=1, max_value=50), st.floats(min_value=1e-3, max_value=100))


def _draw(param: dict, n: int, seed: int) -> list:
    spec = parse_spec(f"method: random\nparameters:\n  x: {json.dumps(param)}\n")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [spec.suggest(study.ask())["x"] for _ in range(n)]


@SETTINGS
@given(lo=finite, width=st.floats(min_value=1e-3, max_value=1e4), seed=st.integers(0, 1000))
def test_uniform_stays_in_bounds(lo: float, width: float, seed: int) -> None:
    hi = lo + width
    for x in _draw({"distribution": "uniform", "min": lo, "max": hi}, 5, seed):
        assert lo <= x <= hi


@SETTINGS
@given(lo=st.integers(-1000, 1000), width=st.integers(1, 1000), seed=st.integers(0, 1000))
def test_int_uniform_stays_in_bounds_and_integral(lo: int, width: int, seed: int) -> None:
    for x in _draw({"min": lo, "max": lo + width}, 5, seed):
        assert isinstance(x, int) and lo <= x <= lo + width


@SETTINGS
@given(lo=finite, width=st.floats(min_value=1e-3, max_value=1e4), q=steps, seed=st.integers(0, 1000))
def test_q_uniform_lands_on_the_q_grid_within_the_rounded_bounds(lo, width, q, seed) -> None:
    hi = lo + width
    for x in _draw({"distribution": "q_uniform", "min": lo, "max": hi, "q": q}, 5, seed):
        k = x / q
        assert math.isclose(k, round(k), abs_tol=1e-6)
        assert qround(lo, q) - 1e-9 <= x <= qround(hi, q) + 1e-9
        assert isinstance(x, int) == isinstance(q, int)


@SETTINGS
@given(lo=positive, ratio=st.floats(min_value=1.001, max_value=1e4), seed=st.integers(0, 1000))
def test_log_uniform_values_stay_in_bounds(lo: float, ratio: float, seed: int) -> None:
    hi = lo * ratio
    for dist in ("log_uniform_values", "inv_log_uniform_values"):
        for x in _draw({"distribution": dist, "min": lo, "max": hi}, 3, seed):
            assert lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9)


@SETTINGS
@given(mu=st.floats(-100, 100), sigma=st.floats(0.01, 50), q=steps, seed=st.integers(0, 1000))
def test_q_normal_lands_on_the_q_grid(mu, sigma, q, seed) -> None:
    for x in _draw({"distribution": "q_normal", "mu": mu, "sigma": sigma, "q": q}, 3, seed):
        assert math.isclose(x / q, round(x / q), abs_tol=1e-6)


@SETTINGS
@given(a=st.floats(0.1, 10), b=st.floats(0.1, 10), seed=st.integers(0, 1000))
def test_beta_stays_in_the_unit_interval(a: float, b: float, seed: int) -> None:
    for x in _draw({"distribution": "beta", "a": a, "b": b}, 3, seed):
        assert 0.0 <= x <= 1.0


@SETTINGS
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=4),
    cond=st.booleans(),
)
def test_grid_yields_every_point_exactly_once(sizes: list[int], cond: bool) -> None:
    params = {f"p{i}": {"values": list(range(n))} for i, n in enumerate(sizes)}
    expected = math.prod(sizes)
    if cond and len(sizes) > 1:
        # the last parameter only exists when p0 == 0
        params[f"p{len(sizes) - 1}"]["when"] = {"p0": 0}
        rest = math.prod(sizes[1:-1])
        expected = rest * (sizes[-1] + sizes[0] - 1)
    spec = parse_spec(json.dumps({"method": "grid", "parameters": params}))
    points = [json.dumps(p, sort_keys=True) for p in spec.grid()]
    assert len(points) == len(set(points)) == expected == spec.grid_size
