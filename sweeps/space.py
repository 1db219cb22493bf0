"""Search-space files: parse, validate, and map each parameter onto Optuna.

A file becomes a frozen :class:`SweepSpec` or a :class:`ConfigError` that
lists every problem at once, each as ``file:LINE: path: what; what instead``.
This module knows nothing of Ray, MLflow or W&B; it uses Optuna only through
the ``trial.suggest_*`` calls of the trial it is handed.

Every W&B distribution is searchable by every Optuna sampler: those Optuna
lacks (normal, log_normal, beta, weighted categoricals) are suggested as a
quantile ``u`` in [0, 1] and turned into a value by the inverse CDF.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import _yaml
from .errors import ConfigError, Problem

if TYPE_CHECKING:
    import optuna

__all__ = ["Param", "SweepSpec", "load_spec", "parse_spec", "schema"]

#: distribution -> (required keys, optional keys with W&B's defaults)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {}),
    "categorical_w_probabilities": (("values", "probabilities"), {}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
#: early_terminate type -> its options
_SH = ("min_resource", "reduction_factor", "min_early_stopping_rate", "bootstrap_count")
ET_KEYS: dict[str, tuple[str, ...]] = {
    "hyperband": ("min_iter", "max_iter", "s", "eta", "strict"),
    "successive_halving": _SH,
    "asha": _SH,
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "percentile": ("percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "threshold": ("lower", "upper", "n_warmup_steps", "interval_steps"),
    "patient": ("patience", "min_delta", "wrapped"),
}
GRIDABLE = ("constant", "categorical", "int_uniform", "q_uniform")
#: bounds written as natural-log exponents (W&B's v1 log distributions)
EXPONENT_FORM = ("log_uniform", "q_log_uniform", "inv_log_uniform")
#: bounds written as values; both must be positive
VALUE_LOGS = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")
#: no Optuna twin: suggested as a quantile and mapped by the inverse CDF
QUANTILE_FORM = ("categorical_w_probabilities", "normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")

METHODS = ("grid", "random", "bayes", "tpe", "gp", "cmaes", "qmc")
#: methods that learn from results and so need a metric
MODEL_METHODS = ("bayes", "tpe", "gp", "cmaes")
SAMPLER_TYPES = {"tpe": "TPESampler", "gp": "GPSampler", "cmaes": "CmaEsSampler", "qmc": "QMCSampler", "random": "RandomSampler",
                 "sobol-gp": "GPSampler"}  # sobol-gp: ours (samplers.sobol_gp), from Optuna's QMC, GP and TPE
_TRIALS = "a number of trials (an integer >= 1)"
#: the integer options of our samplers: (sampler type, option) -> (its least value, what it is)
INT_OPTIONS = {("sobol-gp", "startup"): (1, _TRIALS), ("sobol-gp", "max_trials"): (1, _TRIALS),
               ("sobol-gp", "tpe_every"): (0, "every how many trials TPE proposes one (an integer >= 0; 0: never)"),
               ("gp", "gp_trials"): (1, _TRIALS)}
#: the options of `sampler: {type: sobol-gp}`: all of them integers
SOBOL_GP_OPTIONS = tuple(key for kind, key in INT_OPTIONS if kind == "sobol-gp")
W_AND_B_ONLY = ("apiVersion", "kind", "job", "image_uri", "scheduler")
_PARAM_KEYS = {"value", "values", "probabilities", "distribution", "min", "max", "q", "mu", "sigma", "a", "b", "when"}
_QUANTILE_EPS = 1e-12
_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*([dhms])\s*)+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def schema() -> dict[str, Any]:
    """The JSON Schema of the file format (also shipped as ``sweeps/schema.json``)."""
    return json.loads(resources.files("sweeps").joinpath("schema.json").read_text())


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def qround(x: float, q: float | int) -> float | int:
    """W&B's quantization, ``round(x / q) * q`` counted from 0.

    The result is an int only when ``q`` is an int; a float ``q`` gives the
    decimal the user would write (0.3, not 0.30000000000000004).
    """
    k = round(x / q)
    if _is_int(q):
        return int(k * q)
    return float(Decimal(k) * Decimal(repr(float(q))))


def _is_primitive(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


@dataclass(frozen=True)
class Param:
    """One parameter: its place in the config and its distribution.

    ``name`` is the dotted path (``optimizer.lr`` for a nested one), the key
    used in MLflow params and in ``when`` conditions.
    """

    name: str
    path: tuple[str, ...]
    distribution: str
    line: int | None = None
    value: Any = None
    values: tuple[Any, ...] = ()
    probabilities: tuple[float, ...] = ()
    min: float | int | None = None
    max: float | int | None = None
    q: float | int | None = None
    mu: float = 0.0
    sigma: float = 1.0
    a: float = 1.0
    b: float = 1.0
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    # -- the Optuna side ----------------------------------------------------

    @property
    def optuna_name(self) -> str:
        """Name of the Optuna parameter; ``~u`` marks a quantile in [0, 1]."""
        return f"{self.name}~u" if self.distribution in QUANTILE_FORM else self.name

    @cached_property
    def _choices(self) -> tuple[Any, ...]:
        # Optuna's categorical choices must be primitive and distinct; lists,
        # dicts and mixed duplicates (1 and 1.0 and True) are searched by index.
        keys = [(type(v), v) for v in self.values] if all(_is_primitive(v) for v in self.values) else None
        if keys is not None and len(set(keys)) == len(keys) and len({v for v in self.values}) == len(keys):
            return self.values
        return tuple(range(len(self.values)))

    def _by_index(self) -> bool:
        return self._choices is not self.values

    def _float_bounds(self) -> tuple[float, float, bool]:
        lo, hi = float(self.min), float(self.max)  # type: ignore[arg-type]
        d = self.distribution
        if d in ("log_uniform", "q_log_uniform"):
            return math.exp(lo), math.exp(hi), True
        if d == "inv_log_uniform":  # exp(-U(min, max))
            return math.exp(-hi), math.exp(-lo), True
        if d in VALUE_LOGS:
            return lo, hi, True
        return lo, hi, False

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask ``trial`` for this parameter and return its value in the config."""
        d = self.distribution
        if d == "constant":
            return self.value
        if d == "categorical":
            return self.decode(trial.suggest_categorical(self.optuna_name, self._choices))
        if d == "int_uniform":
            return trial.suggest_int(self.optuna_name, int(self.min), int(self.max))  # type: ignore[arg-type]
        if d in QUANTILE_FORM:
            return self.decode(trial.suggest_float(self.optuna_name, 0.0, 1.0))
        lo, hi, log = self._float_bounds()
        return self.decode(trial.suggest_float(self.optuna_name, lo, hi, log=log))

    def decode(self, internal: Any) -> Any:
        """Optuna's value of this parameter -> the value the trainer sees."""
        d = self.distribution
        if d == "constant":
            return self.value
        if d == "categorical":
            return self.values[internal] if self._by_index() else internal
        if d == "int_uniform":
            return int(internal)
        if d in QUANTILE_FORM:
            return self._from_quantile(float(internal))
        x = float(internal)
        return qround(x, self.q) if d.startswith("q_") else x  # type: ignore[arg-type]

    def encode(self, value: Any) -> dict[str, Any]:
        """A grid value -> the Optuna params that produce it (for enqueueing)."""
        d = self.distribution
        if d == "constant":
            return {}
        if d == "categorical_w_probabilities":
            # the middle of the value's quantile band
            acc = 0.0
            for v, p in zip(self.values, self.probabilities):
                if _same(v, value):
                    return {self.optuna_name: acc + p / 2}
                acc += p
            raise ValueError(f"{self.name}: {value!r} is not one of its values")
        if d == "categorical":
            idx = next(i for i, v in enumerate(self.values) if _same(v, value))
            return {self.optuna_name: idx if self._by_index() else self.values[idx]}
        if d == "int_uniform":
            return {self.optuna_name: int(value)}
        if d == "q_uniform":
            # a grid point k*q may lie just outside [min, max] (rounding counts
            # from 0); the bound inside the same rounding cell yields it.
            return {self.optuna_name: min(max(float(value), float(self.min)), float(self.max))}  # type: ignore[arg-type]
        raise ValueError(f"{self.name}: {d} cannot be gridded")

    def _from_quantile(self, u: float) -> Any:
        d = self.distribution
        if d == "categorical_w_probabilities":
            acc = 0.0
            for value, p in zip(self.values, self.probabilities):
                acc += p
                if u < acc:
                    return value
            return next(v for v, p in zip(reversed(self.values), reversed(self.probabilities)) if p > 0)
        u = min(max(u, _QUANTILE_EPS), 1.0 - _QUANTILE_EPS)
        if d in ("normal", "q_normal"):
            x = statistics.NormalDist(self.mu, self.sigma).inv_cdf(u) if self.sigma > 0 else self.mu
        elif d in ("log_normal", "q_log_normal"):
            z = statistics.NormalDist(self.mu, self.sigma).inv_cdf(u) if self.sigma > 0 else self.mu
            x = math.exp(z)
        else:  # beta, q_beta
            from scipy.special import betaincinv

            x = float(betaincinv(self.a, self.b, u))
        return qround(x, self.q) if d.startswith("q_") else x  # type: ignore[arg-type]

    # -- the grid -----------------------------------------------------------

    def grid_values(self) -> list[Any]:
        """Every value this parameter can take, for a grid; only for GRIDABLE ones."""
        d = self.distribution
        if d == "constant":
            return [self.value]
        if d == "categorical":
            return list(self.values)
        if d == "int_uniform":
            return list(range(int(self.min), int(self.max) + 1))  # type: ignore[arg-type]
        if d == "q_uniform":
            q = self.q
            lo, hi = round(float(self.min) / q), round(float(self.max) / q)  # type: ignore[arg-type,operator]
            return [qround(k * q, q) for k in range(lo, hi + 1)]  # type: ignore[operator,arg-type]
        raise ValueError(f"{self.name}: {d} cannot be gridded")

    def weighted_values(self) -> list[tuple[Any, float]]:
        """Each value of a finite parameter with its probability under random search."""
        d = self.distribution
        if d == "categorical_w_probabilities":
            return list(zip(self.values, self.probabilities))
        values = self.grid_values()
        if d != "q_uniform":
            return [(v, 1.0 / len(values)) for v in values]
        # W&B's q_uniform: x uniform in [min, max], rounded; each value gets its cell's share
        lo, hi, q = float(self.min), float(self.max), float(self.q)  # type: ignore[arg-type]
        return [(v, max(0.0, min(hi, (float(v) / q + 0.5) * q) - max(lo, (float(v) / q - 0.5) * q)) / (hi - lo))
                for v in values]

    def describe(self) -> str:
        """A short human reading of the distribution and its range."""
        d = self.distribution
        if d == "constant":
            return f"constant {self.value!r}"
        if d == "categorical":
            return f"categorical {list(self.values)!r}"
        if d == "categorical_w_probabilities":
            return "categorical " + ", ".join(f"{v!r}: {p:g}" for v, p in zip(self.values, self.probabilities))
        if d in ("normal", "q_normal", "log_normal", "q_log_normal"):
            text = f"{d} mu={self.mu:g} sigma={self.sigma:g}"
        elif d in ("beta", "q_beta"):
            text = f"{d} a={self.a:g} b={self.b:g}"
        elif d in EXPONENT_FORM:
            lo, hi, _ = self._float_bounds()
            text = f"{d} [{lo:.4g}, {hi:.4g}] (exponents {self.min:g}..{self.max:g})"
        else:
            text = f"{d} [{self.min:g}, {self.max:g}]"
        if d.startswith("q_"):
            text += f" q={self.q!r}"
        if self.distribution in GRIDABLE:
            text += f" ({len(self.grid_values())} values)"
        return text

    def active(self, chosen: dict[str, Any]) -> bool:
        """Whether this parameter's ``when`` holds for the values chosen so far."""
        for other, allowed in self.when:
            if other not in chosen or not any(_same(chosen[other], a) for a in allowed):
                return False
        return True


def _same(x: Any, y: Any) -> bool:
    """Equality that keeps 1, 1.0 and True apart, as a user would."""
    return type(x) is type(y) and x == y if _is_primitive(x) and _is_primitive(y) else x == y


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str = "minimize"
    target: float | None = None

    @property
    def direction(self) -> str:
        return self.goal


@dataclass(frozen=True)
class EarlyTerminate:
    """``early_terminate``: W&B's hyperband fields, or an Optuna pruner's options."""

    type: str
    min_iter: int | None = None
    max_iter: int | None = None
    s: int | None = None
    eta: float = 3.0
    strict: bool = True
    options: tuple[tuple[str, Any], ...] = ()
    metric: str | None = None
    goal: str | None = None


@dataclass(frozen=True)
class Resources:
    cpus: float = 1.0
    gpus: float = 0.0
    agents_only: bool = False
    #: one long-lived worker process per slot (False: a fresh process per trial)
    reuse_workers: bool = True


@dataclass(frozen=True)
class Budget:
    trials: int | None = None
    time_s: float | None = None
    target: float | None = None


@dataclass(frozen=True)
class FaultPolicy:
    """What a sweep does when trials fail or nodes misbehave."""

    retries: int = 0
    max_failures: int | None = None
    max_failure_fraction: float | None = None
    node_failure_limit: int | None = None
    heartbeat_timeout_s: float = 60.0

    def failure_limit(self, finished: int) -> int | None:
        """Failures allowed with ``finished`` trials done (a fraction counts at least 10)."""
        if self.max_failures is not None:
            return self.max_failures
        if self.max_failure_fraction is not None:
            return int(self.max_failure_fraction * max(finished, 10))
        return None


@dataclass(frozen=True)
class SamplerSpec:
    type: str
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TrackingSpec:
    experiment: str | None = None
    tracking_uri: str | None = None
    wandb_mode: str | None = None
    wandb_project: str | None = None
    wandb_entity: str | None = None


@dataclass(frozen=True)
class SweepSpec:
    """A validated search-space file. Everything downstream trusts it."""

    file: str
    text: str
    method: str
    params: tuple[Param, ...]
    metric: Metric | None = None
    early_terminate: EarlyTerminate | None = None
    name: str | None = None
    description: str | None = None
    program: str | None = None
    command: tuple[str, ...] = ()
    trainer: str | None = None
    parallel: int | None = None
    resources: Resources = field(default_factory=Resources)
    seed: int | None = None
    budget: Budget = field(default_factory=Budget)
    sampler: SamplerSpec | None = None
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    faults: FaultPolicy = field(default_factory=FaultPolicy)
    allow_repeats: bool = False
    #: keep the models of this many best trials (None: every trial's)
    keep_models: int | None = None
    warnings: tuple[Problem, ...] = ()

    @property
    def has_conditions(self) -> bool:
        return any(p.when for p in self.params)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Ask ``trial`` for every active parameter; returns the flat config."""
        flat: dict[str, Any] = {}
        for p in self.params:
            if p.active(flat):
                flat[p.name] = p.suggest(trial)
        return flat

    def config_of(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """The flat config Optuna's ``params`` make (what :meth:`suggest` returns for a trial that has them);
        None where they lack one it needs."""
        import optuna

        try:
            return self.suggest(optuna.trial.FixedTrial(params))
        except ValueError:
            return None

    def nest(self, flat: dict[str, Any]) -> dict[str, Any]:
        """Flat ``{dotted name: value}`` -> the nested config the trainer gets."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in flat:
                node = out
                for part in p.path[:-1]:
                    node = node.setdefault(part, {})
                node[p.path[-1]] = flat[p.name]
        return out

    def flatten(self, nested: dict[str, Any]) -> dict[str, Any]:
        """The nested config a trainer got -> flat ``{dotted name: value}`` (``nest`` undone)."""
        out: dict[str, Any] = {}
        for p in self.params:
            node: Any = nested
            for part in p.path:
                if not isinstance(node, dict) or part not in node:
                    break
                node = node[part]
            else:
                out[p.name] = node
        return out

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every grid point once, as a flat config of the active parameters."""

        def walk(i: int, chosen: dict[str, Any]) -> Iterator[dict[str, Any]]:
            if i == len(self.params):
                yield dict(chosen)
                return
            p = self.params[i]
            if not p.active(chosen):
                yield from walk(i + 1, chosen)
                return
            for v in p.grid_values():
                chosen[p.name] = v
                yield from walk(i + 1, chosen)
            del chosen[p.name]

        return walk(0, {})

    @property
    def gridable(self) -> bool:
        return all(p.distribution in GRIDABLE for p in self.params)

    @cached_property
    def grid_size(self) -> int | None:
        """Number of distinct grid points, or None when the space is not finite."""
        if not self.gridable:
            return None
        if not self.has_conditions:
            return math.prod(len(p.grid_values()) for p in self.params)
        return sum(1 for _ in self.grid())

    def finite_points(self, limit: int) -> tuple[list[dict[str, Any]], list[float]] | None:
        """Every point of a finite space with its probability under random
        search, or None when the space is continuous or has over ``limit`` points."""
        if not all(p.distribution in GRIDABLE or p.distribution == "categorical_w_probabilities" for p in self.params):
            return None
        points: list[dict[str, Any]] = []
        weights: list[float] = []

        def walk(i: int, chosen: dict[str, Any], weight: float) -> None:
            if len(points) > limit:
                return
            if i == len(self.params):
                points.append(dict(chosen))
                weights.append(weight)
                return
            p = self.params[i]
            if not p.active(chosen):
                walk(i + 1, chosen, weight)
                return
            for v, w in p.weighted_values():
                if w > 0:
                    chosen[p.name] = v
                    walk(i + 1, chosen, weight * w)
            chosen.pop(p.name, None)

        walk(0, {}, 1.0)
        return None if len(points) > limit else (points, weights)

    def optuna_params(self, flat: dict[str, Any]) -> dict[str, Any]:
        """A grid point -> the Optuna params to enqueue for it."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in flat:
                out.update(p.encode(flat[p.name]))
        return out


# ---------------------------------------------------------------------------
# Parsing


def load_spec(path: str | Path, *, strict: bool = False) -> SweepSpec:
    """Read and validate a search-space file; raises ConfigError with every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the file is not UTF-8 text") from None
    return parse_spec(text, str(path), strict=strict)


def parse_spec(text: str, file: str = "<string>", *, strict: bool = False) -> SweepSpec:
    """Validate YAML ``text``; ``strict`` turns warnings into errors."""
    doc = _yaml.load(text, file)
    spec = None
    if doc.data is not None:
        if not isinstance(doc.data, dict):
            doc.add("error", (), f"the top level must be a mapping of keys (method, metric, parameters, ...), not a {_kind(doc.data)}")
        else:
            _check_schema(doc)
            spec = _Builder(doc, text).build()
    if strict:
        doc.problems = [
            Problem("error", p.file, p.line, p.path, p.message) if p.level == "warning" else p for p in doc.problems
        ]
    errors = [p for p in doc.problems if p.level == "error"]
    if errors or spec is None:
        raise ConfigError(sorted(errors, key=lambda p: (p.line or 0)))
    return _replace_warnings(spec, tuple(p for p in doc.problems if p.level != "error"))


def _replace_warnings(spec: SweepSpec, warnings: tuple[Problem, ...]) -> SweepSpec:
    import dataclasses

    return dataclasses.replace(spec, warnings=tuple(sorted(warnings, key=lambda p: (p.line or 0))))


def _kind(x: Any) -> str:
    if isinstance(x, dict):
        return "mapping"
    if isinstance(x, list):
        return "list"
    if isinstance(x, bool):
        return "boolean"
    if _is_num(x):
        return "number"
    if x is None:
        return "null"
    return "string" if isinstance(x, str) else type(x).__name__


def _did_you_mean(word: Any, options: Any) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'?" if match else "valid keys: " + ", ".join(sorted(map(str, options)))


_TYPE_WORDS = {"number": "a number", "integer": "an integer", "string": "a string", "object": "a mapping",
               "array": "a list", "boolean": "true or false", "null": "null"}


def _check_schema(doc: _yaml.Located) -> None:
    """Structural checks with the shipped JSON Schema, in our message style."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    for err in validator.iter_errors(doc.data):
        path = tuple(err.absolute_path)
        v, inst, sch = err.validator, err.instance, err.schema
        if v == "additionalProperties" and isinstance(inst, dict):
            allowed = list(sch.get("properties", {}))
            for extra in [k for k in inst if k not in allowed]:
                if path and path[-1] in ("parameters",) and not allowed:
                    continue
                what = "unknown key" if path[:1] != ("parameters",) else "unknown key in a parameter"
                doc.add("error", path + (extra,), f"{what} '{extra}'; {_did_you_mean(extra, allowed)}")
        elif v == "type":
            types = sch["type"] if isinstance(sch["type"], list) else [sch["type"]]
            want = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
            doc.add("error", path, f"must be {want}, not {_kind(inst)} {inst!r}")
        elif v == "enum":
            options = sch["enum"]
            hint = _did_you_mean(inst, options) if isinstance(inst, str) else ""
            text = f"'{inst}' is not valid; use one of: {', '.join(map(str, options))}"
            if hint.startswith("did you mean"):
                text += f" ({hint})"
            doc.add("error", path, text)
        elif v == "required":
            missing = [k for k in err.validator_value if k not in inst]
            for key in missing:
                doc.add("error", path, f"missing required key '{key}'")
        elif v in ("minimum", "exclusiveMinimum", "maximum"):
            op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[v]
            doc.add("error", path, f"must be {op} {err.validator_value}, not {inst!r}")
        elif v in ("minItems", "minProperties"):
            doc.add("error", path, "must not be empty")
        elif v == "pattern" and path[-1:] == ("trainer",):
            doc.add("error", path, f"'{inst}' is not module:function (e.g. trainers.digits_mlp:train)")
        elif v == "pattern":  # from propertyNames: `inst` is a parameter's name
            doc.add(
                "error",
                path + (inst,),
                f"bad parameter name '{inst}': a name is made of letters, digits, _, -, / and :, in parts joined by single dots",
            )
        else:  # pragma: no cover - every validator the schema uses is handled above
            doc.add("error", path, err.message)


class _Checks:
    """Semantic checks of a parsed file: each problem is added to the document with its line."""

    def __init__(self, doc: _yaml.Located) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data

    def err(self, path: tuple[Any, ...], msg: str) -> None:
        self.doc.add("error", path, msg)

    def warn(self, path: tuple[Any, ...], msg: str) -> None:
        self.doc.add("warning", path, msg)


class _Builder(_Checks):
    """The top-level sections, and construction of the frozen spec."""

    def __init__(self, doc: _yaml.Located, text: str) -> None:
        super().__init__(doc)
        self.text = text

    def build(self) -> SweepSpec | None:
        d = self.data
        for key in W_AND_B_ONLY:
            if key in d:
                self.warn((key,), "a W&B key with no effect here; accepted and ignored")
        if isinstance(d.get("controller"), dict):
            self.warn(("controller",), "no effect here: the sweeps controller runs inside `sweeps launch`")
        method = d.get("method") if d.get("method") in METHODS else None
        metric = self._metric(method)
        params = _Params(self.doc).read()
        if method == "grid" and params is not None:
            for p in params:
                if p.distribution not in GRIDABLE:
                    hint = (
                        "drop the probabilities for a grid"
                        if p.distribution == "categorical_w_probabilities"
                        else "list the points with `values`, or use int_uniform or q_uniform with `q`"
                    )
                    self.err(
                        ("parameters",) + _file_path(p),
                        f"a grid cannot enumerate a {p.distribution} parameter; {hint}",
                    )
        budget = self._budget(metric)
        trainer = d.get("trainer") if isinstance(d.get("trainer"), str) else None
        if method is None or params is None:
            return None
        resources = d.get("resources") if isinstance(d.get("resources"), dict) else {}
        gpus = resources.get("gpus", 0)
        if _is_num(gpus) and gpus > 1 and not float(gpus).is_integer():
            self.err(("resources", "gpus"), f"{gpus} GPUs cannot be shared: use a whole number, or a fraction below 1")
        tracking = self._tracking()
        return SweepSpec(
            file=self.doc.file,
            text=self.text,
            method=method,
            params=params,
            metric=metric,
            early_terminate=self._early_terminate(metric),
            name=d.get("name"),
            description=d.get("description"),
            program=d.get("program"),
            command=tuple(d.get("command") or ()),
            trainer=trainer,
            parallel=d.get("parallel"),
            resources=Resources(cpus=float(resources.get("cpus", 1)), gpus=float(gpus) if _is_num(gpus) else 0.0,
                                agents_only=resources.get("agents_only") is True,
                                reuse_workers=resources.get("reuse_workers") is not False),
            seed=d.get("seed"),
            budget=budget,
            sampler=self._sampler(method),
            tracking=tracking,
            faults=self._faults(),
            allow_repeats=d.get("allow_repeats") is True,
            keep_models=d["keep"].get("models") if isinstance(d.get("keep"), dict) and _is_int(d["keep"].get("models"))
            else None,
        )

    # -- top-level sections ---------------------------------------------

    def _metric(self, method: str | None) -> Metric | None:
        m = self.data.get("metric")
        if m is None:
            if method in MODEL_METHODS:
                self.err(("method",), f"method {method} learns from results and needs a metric: add metric: {{name: ..., goal: minimize|maximize}}")
            return None
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            return None
        for key in ("impute", "impute_while_running"):
            if key in m:
                self.warn(("metric", key), "a W&B key with no effect here: failed trials are never imputed, they are FAILED")
        goal = m.get("goal", "minimize")
        target = m.get("target")
        return Metric(name=m["name"], goal=goal if goal in ("minimize", "maximize") else "minimize",
                      target=float(target) if _is_num(target) else None)

    def _budget(self, metric: Metric | None) -> Budget:
        d = self.data
        b = d.get("budget") if isinstance(d.get("budget"), dict) else {}
        trials = b.get("trials") if _is_int(b.get("trials")) else None
        run_cap = d.get("run_cap") if _is_int(d.get("run_cap")) else None
        if trials is not None and run_cap is not None and trials != run_cap:
            self.err(("budget", "trials"), f"budget.trials ({trials}) and run_cap ({run_cap}) disagree; keep one")
        time_s = self._duration(b.get("time")) if "time" in b else None
        target = b.get("target") if _is_num(b.get("target")) else None
        if target is not None and metric is None:
            self.err(("budget", "target"), "a target needs a metric: add metric: {name: ..., goal: ...}")
        if target is not None and metric is not None and metric.target is not None and metric.target != target:
            self.err(("budget", "target"), f"budget.target ({target}) and metric.target ({metric.target}) disagree; keep one")
        if target is None and metric is not None:
            target = metric.target
        return Budget(trials=trials if trials is not None else run_cap, time_s=time_s, target=target)

    def _duration(self, value: Any) -> float | None:
        path = ("budget", "time")
        if _is_num(value):
            if value <= 0:
                self.err(path, f"must be > 0 seconds, not {value!r}")
                return None
            return float(value)
        if isinstance(value, str):
            if _DURATION.match(value):
                secs = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
                if secs > 0:
                    return secs
            self.err(path, f"'{value}' is not a duration; write seconds (3600) or e.g. 90s, 30m, 2h, 1h30m")
        return None

    def _early_terminate(self, metric: Metric | None) -> EarlyTerminate | None:
        et = self.data.get("early_terminate")
        if not isinstance(et, dict) or et.get("type") not in ET_KEYS:
            return None
        path = ("early_terminate",)
        kind = et["type"]
        ok = True
        for key in et:
            if key not in ET_KEYS[kind] and key not in ("type", "metric", "goal"):
                self.err(path + (key,), f"'{key}' is not an option of {kind} (its options: {', '.join(ET_KEYS[kind])})")
                ok = False
        if metric is None:
            self.err(path, "early termination needs a metric to judge by: add metric: {name: ..., goal: ...}")
            ok = False
        if "goal" in et and "metric" not in et:
            self.err(path + ("goal",), "`goal` goes with `metric`, the metric to judge by when it is not metric.name")
            ok = False
        if kind == "hyperband":
            has_min = "min_iter" in et
            if not has_min and not ("max_iter" in et and "s" in et):
                self.err(path, "hyperband needs min_iter, or max_iter together with s")
                ok = False
            elif has_min and "max_iter" in et:
                self.warn(path + ("max_iter",), "min_iter is given, so max_iter and s are ignored (as in W&B)")
            elif not has_min and int(et["max_iter"] / float(et.get("eta", 3))) < 1:
                self.err(path, f"hyperband has no bands: max_iter {et['max_iter']} / eta {et.get('eta', 3)} is below 1")
                ok = False
        if kind == "percentile" and "percentile" not in et:
            self.err(path, "percentile needs `percentile` (0..100): trials below it at a report stop")
            ok = False
        if kind == "threshold" and "lower" not in et and "upper" not in et:
            self.err(path, "threshold needs `lower` or `upper` (or both): the bounds a value must stay within")
            ok = False
        if kind == "patient" and "patience" not in et:
            self.err(path, "patient needs `patience`: how many reports without improvement to allow")
            ok = False
        wrapped = et.get("wrapped")
        if isinstance(wrapped, dict):
            if wrapped.get("type") not in ET_KEYS or wrapped.get("type") in ("hyperband", "patient"):
                valid = [k for k in ET_KEYS if k not in ("hyperband", "patient")]
                self.err(path + ("wrapped", "type"), f"wrapped type must be one of: {', '.join(valid)}")
                ok = False
            else:
                for key in wrapped:
                    if key != "type" and key not in ET_KEYS[wrapped["type"]]:
                        self.err(path + ("wrapped", key), f"'{key}' is not an option of {wrapped['type']} (its options: {', '.join(ET_KEYS[wrapped['type']])})")
                        ok = False
        if not ok:
            return None
        options = tuple((k, v) for k, v in et.items() if k in ET_KEYS[kind] and kind != "hyperband")
        return EarlyTerminate(
            type=kind, min_iter=et.get("min_iter"), max_iter=et.get("max_iter"), s=et.get("s"),
            eta=float(et.get("eta", 3)), strict=bool(et.get("strict", True)), options=options,
            metric=et.get("metric"), goal=et.get("goal"),
        )

    def _sampler(self, method: str) -> SamplerSpec | None:
        s = self.data.get("sampler")
        if not isinstance(s, dict) or s.get("type") not in SAMPLER_TYPES:
            return None
        kind = s["type"]
        path = ("sampler", "type")
        allowed = {"bayes": ("tpe", "gp", "sobol-gp"), "grid": (), "random": ("random",)}.get(method, (method,))
        if kind not in allowed:
            if method == "grid":
                self.err(("sampler",), "a grid has no sampler options: remove `sampler`, or use another method")
            else:
                self.err(path, f"method {method} takes sampler type {' or '.join(allowed)}, not {kind}")
            return None
        options = {k: v for k, v in s.items() if k != "type"}
        if options:
            self._check_sampler_options(kind, options)
        return SamplerSpec(type=kind, options=tuple(options.items()))

    def _check_sampler_options(self, kind: str, options: dict[str, Any]) -> None:
        import inspect

        import optuna.samplers

        cls = getattr(optuna.samplers, SAMPLER_TYPES[kind])
        sig = inspect.signature(cls.__init__)
        valid = [n for n, p in sig.parameters.items() if n not in ("self", "seed") and p.kind is p.KEYWORD_ONLY or (
            n not in ("self", "seed") and p.kind is p.POSITIONAL_OR_KEYWORD)]
        if kind == "sobol-gp":
            valid = list(SOBOL_GP_OPTIONS)
        for key in options:
            if (kind, key) in INT_OPTIONS:
                least, what = INT_OPTIONS[kind, key]
                if not _is_int(options[key]) or options[key] < least:
                    self.err(("sampler", key), f"{what}, not {options[key]!r}")
            elif key == "seed":
                self.err(("sampler", key), "set the sweep's `seed` at the top level; each sampler is seeded from it")
            elif key not in valid:
                name = "sobol-gp" if kind == "sobol-gp" else SAMPLER_TYPES[kind]
                self.err(("sampler", key), f"{name} has no option '{key}'; {_did_you_mean(key, valid)}")

    def _faults(self) -> FaultPolicy:
        d = self.data
        retries = d.get("retries") if isinstance(d.get("retries"), dict) else {}
        count, fraction = None, None
        mf = d.get("max_failures")
        path = ("max_failures",)
        if _is_int(mf):
            if mf < 0:
                self.err(path, f"must be >= 0, not {mf}")
            count = mf
        elif isinstance(mf, float):
            if not 0 < mf < 1:
                self.err(path, f"a fraction is between 0 and 1, not {mf!r}; for a count write an integer")
            fraction = mf
        elif isinstance(mf, str):
            m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", mf)
            if m and 0 < float(m.group(1)) < 100:
                fraction = float(m.group(1)) / 100
            else:
                self.err(path, f"'{mf}' is not a count, a fraction or a percentage; write e.g. 5, 0.25 or '25%'")
        timeout = d.get("heartbeat_timeout")
        return FaultPolicy(
            retries=retries.get("max", 0) if _is_int(retries.get("max")) else 0,
            max_failures=count, max_failure_fraction=fraction,
            node_failure_limit=d.get("node_failure_limit") if _is_int(d.get("node_failure_limit")) else None,
            heartbeat_timeout_s=float(timeout) if _is_num(timeout) else 60.0,
        )

    def _tracking(self) -> TrackingSpec:
        d = self.data
        ml = d.get("mlflow") if isinstance(d.get("mlflow"), dict) else {}
        wb = d.get("wandb") if isinstance(d.get("wandb"), dict) else {}
        return TrackingSpec(
            experiment=ml.get("experiment"),
            tracking_uri=ml.get("tracking_uri"),
            wandb_mode=wb.get("mode"),
            wandb_project=wb.get("project", d.get("project")),
            wandb_entity=wb.get("entity", d.get("entity")),
        )


class _Params(_Checks):
    """``parameters``: every parameter, nested or conditional, checked and in the order they are sampled."""

    def read(self) -> tuple[Param, ...] | None:
        raw = self.data.get("parameters")
        if not isinstance(raw, dict) or not raw:
            return None
        params: list[Param] = []
        self._collect(raw, (), (), params)
        names: dict[str, Param] = {}
        for p in params:
            if p.name in names:
                self.err(("parameters",) + _file_path(p), f"'{p.name}' names two parameters (a nested one and a dotted one); rename one")
            names[p.name] = p
        if not params:
            return None
        return self._order_by_conditions(params, names)

    def _collect(self, raw: dict[str, Any], prefix: tuple[str, ...], names: tuple[str, ...], out: list[Param]) -> None:
        for key, spec in raw.items():
            if not isinstance(key, str) or not isinstance(spec, dict):
                continue  # reported by the schema
            path = prefix + (key,)
            where = ("parameters",) + path
            if "parameters" in spec:
                extra = [k for k in spec if k not in ("parameters", "when")]
                if extra:
                    self.err(where + (extra[0],), "a parameter holding nested `parameters` takes no distribution keys; move them into a nested parameter")
                if "when" in spec:
                    self.err(where + ("when",), "`when` goes on each nested parameter, not on the group")
                if isinstance(spec["parameters"], dict):
                    self._collect(spec["parameters"], path + ("parameters",), names + (key,), out)
                continue
            param = self._param(spec, names + (key,), where)
            if param is not None:
                out.append(param)

    def _param(self, spec: dict[str, Any], name_path: tuple[str, ...], where: tuple[Any, ...]) -> Param | None:
        if set(spec) - _PARAM_KEYS:
            return None  # an unknown key, reported by the schema
        dist = spec.get("distribution")
        if dist is None:
            dist = self._infer(spec, where)
            if dist is None:
                return None
        elif dist not in DISTRIBUTIONS:
            return None  # reported by the schema
        required, optional = DISTRIBUTIONS[dist]
        ok = True
        for key in spec:
            if key not in required and key not in optional and key not in ("distribution", "when"):
                keys = ", ".join(list(required) + list(optional))
                self.err(where + (key,), f"'{key}' is not a key of a {dist} parameter (its keys: {keys or 'none'}){_dist_hint(dist, key)}")
                ok = False
        for key in required:
            if key not in spec:
                self.err(where, f"a {dist} parameter needs '{key}'")
                ok = False
        if not ok:
            return None
        vals = {**optional, **{k: spec[k] for k in spec if k in optional or k in required}}
        if not self._check_values(dist, vals, where):
            return None
        when = self._when(spec.get("when"), where)
        return Param(
            name=".".join(name_path),
            path=name_path,
            distribution=dist,
            line=self.doc.line_of(where),
            value=vals.get("value"),
            values=tuple(vals.get("values", ())),
            probabilities=tuple(float(p) for p in vals.get("probabilities", ())),
            min=vals.get("min"),
            max=vals.get("max"),
            q=vals.get("q"),
            mu=float(vals.get("mu", 0.0)),
            sigma=float(vals.get("sigma", 1.0)),
            a=float(vals.get("a", 1.0)),
            b=float(vals.get("b", 1.0)),
            when=when,
        )

    def _infer(self, spec: dict[str, Any], where: tuple[Any, ...]) -> str | None:
        """W&B's inference of the distribution from the keys present."""
        if "value" in spec:
            return "constant"
        if "values" in spec:
            return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
        if "min" in spec and "max" in spec:
            lo, hi = spec["min"], spec["max"]
            if _is_int(lo) and _is_int(hi):
                if lo == 0 and hi == 1:
                    self.warn(where, "min: 0 and max: 1 are both integers, so this is int_uniform over {0, 1} (as in W&B); "
                              "for a float between 0 and 1 write min: 0.0, max: 1.0")
                return "int_uniform"
            return "uniform"
        self.err(where, "cannot tell the distribution: give `value`, `values`, `min` and `max`, or a `distribution`")
        return None

    def _check_values(self, dist: str, v: dict[str, Any], where: tuple[Any, ...]) -> bool:
        ok = True
        numeric = [k for k in ("min", "max", "q", "mu", "sigma", "a", "b") if k in v]
        for k in numeric:
            if not _is_num(v[k]):
                return False  # reported by the schema
            if not math.isfinite(v[k]):
                self.err(where + (k,), f"must be a finite number, not {v[k]!r}")
                ok = False
        if not ok:
            return False
        if dist == "int_uniform":
            for k in ("min", "max"):
                if not _is_int(v[k]):
                    if isinstance(v[k], float) and v[k].is_integer():
                        v[k] = int(v[k])
                    else:
                        self.err(where + (k,), f"int_uniform bounds are integers, not {v[k]!r}; for floats use uniform")
                        ok = False
        if "min" in v and ok and not v["min"] < v["max"]:
            self.err(where + ("min",), f"min ({v['min']!r}) must be below max ({v['max']!r})")
            ok = False
        if dist in VALUE_LOGS and ok:
            for k in ("min", "max"):
                if v[k] <= 0:
                    self.err(where + (k,), f"{dist} bounds are values and must be > 0, not {v[k]!r}; "
                             f"for natural-log exponents use {dist.removesuffix('_values')}")
                    ok = False
        if dist in EXPONENT_FORM and ok:
            lo, hi = float(v["min"]), float(v["max"])
            if hi > 700 or lo < -700:
                self.err(where, f"{dist} bounds are natural-log exponents: exp({hi:g}) does not fit a float; "
                         f"for bounds given as values use {dist}_values")
                return False
            if lo > 0 and (hi <= 1 or hi > 20):
                a, b = (math.exp(lo), math.exp(hi)) if dist != "inv_log_uniform" else (math.exp(-hi), math.exp(-lo))
                self.warn(where, f"{dist} bounds are natural-log exponents, so this gives values from {a:.6g} to {b:.6g}; "
                          f"for values between {lo:g} and {hi:g} use {dist}_values")
        if v.get("q", 1) <= 0 or v.get("sigma", 0) < 0 or v.get("a", 1) <= 0 or v.get("b", 1) <= 0:
            ok = False  # reported by the schema
        if "values" in v:
            if not isinstance(v["values"], list) or not v["values"]:
                return False  # reported by the schema
            if dist == "categorical_w_probabilities":
                probs = v["probabilities"]
                if not isinstance(probs, list) or not all(_is_num(p) for p in probs):
                    return False  # reported by the schema
                if len(probs) != len(v["values"]):
                    self.err(where + ("probabilities",), f"{len(probs)} probabilities for {len(v['values'])} values; give one per value")
                    ok = False
                elif any(p < 0 for p in probs):
                    ok = False  # reported by the schema
                elif abs(sum(probs) - 1.0) > 1e-6:
                    self.err(where + ("probabilities",), f"probabilities sum to {sum(probs):g}; they must sum to 1")
                    ok = False
            seen: list[Any] = []
            for i, val in enumerate(v["values"]):
                if any(_same(val, s) for s in seen):
                    self.warn(where + ("values", i), f"{val!r} is listed twice; a grid runs it twice and samplers weigh it double")
                seen.append(val)
        return ok

    def _when(self, raw: Any, where: tuple[Any, ...]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if not isinstance(raw, dict):
            return ()
        out = []
        for other, allowed in raw.items():
            allowed = tuple(allowed) if isinstance(allowed, list) else (allowed,)
            out.append((str(other), allowed))
        return tuple(out)

    def _order_by_conditions(self, params: list[Param], names: dict[str, Param]) -> tuple[Param, ...] | None:
        """Check every `when`, and order parameters so conditions come first."""
        ok = True
        for p in params:
            where = ("parameters",) + _file_path(p) + ("when",)
            for other, allowed in p.when:
                if other == p.name:
                    self.err(where + (other,), "a parameter cannot depend on itself")
                    ok = False
                    continue
                if other not in names:
                    self.err(where + (other,), f"no parameter named '{other}'; {_did_you_mean(other, names)}")
                    ok = False
                    continue
                target = names[other]
                if target.distribution in GRIDABLE or target.distribution == "categorical_w_probabilities":
                    possible = target.grid_values() if target.distribution in GRIDABLE else list(target.values)
                    for a in allowed:
                        if not any(_same(a, x) for x in possible):
                            self.err(where + (other,), f"{other} never takes the value {a!r}; it takes {possible[:10]!r}")
                            ok = False
        if not ok:
            return None
        # stable topological order: file order, except a parameter waits for its conditions
        ordered: list[Param] = []
        placed: set[str] = set()
        pending = list(params)
        while pending:
            progress = False
            for p in list(pending):
                if all(o in placed for o, _ in p.when):
                    ordered.append(p)
                    placed.add(p.name)
                    pending.remove(p)
                    progress = True
                    break
            if not progress:
                cycle = ", ".join(p.name for p in pending)
                self.err(("parameters",) + _file_path(pending[0]) + ("when",), f"conditions form a cycle among: {cycle}")
                return None
        return tuple(ordered)


def _file_path(p: Param) -> tuple[str, ...]:
    """A parameter's path in the file (with the `parameters` levels of nesting)."""
    out: list[str] = []
    for i, part in enumerate(p.path):
        if i:
            out.append("parameters")
        out.append(part)
    return tuple(out)


def _dist_hint(dist: str, key: str) -> str:
    if key == "q" and f"q_{dist}" in DISTRIBUTIONS:
        return f"; for steps of q use distribution: q_{dist}"
    if key == "probabilities" and dist == "categorical":
        return "; drop `distribution: categorical` (or write categorical_w_probabilities)"
    if key in ("min", "max") and dist in ("categorical", "constant"):
        return "; a range and a list of values do not go together"
    if key == "values" and dist not in ("categorical", "categorical_w_probabilities"):
        return "; with `values` drop the `distribution` (or write categorical)"
    return ""
