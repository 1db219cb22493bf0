"""How good each search is: median normalized regret after 10, 25 and 50 trials, sequential and 4 at a time.

    .venv/bin/python benchmarks/search_quality.py [--seeds 10] [--budget 50] [--methods ...] [--problems ...]
                                                  [--jobs 2] [--write]

Methods: ``sobol-gp`` (ours: what `method: bayes` is), ``tpe`` (Optuna's TPESampler), ``tpe-reseeded``
(the same on other seeds: how often a method no better than TPE has a worse median than TPE's by chance),
``gp`` (Optuna's GPSampler), ``random``, and ``wandb`` (W&B's own engine: the
``sweeps`` package on PyPI, whose import name clashes with ours, so it runs in its own virtual
environment, ``benchmarks/.venv-wandb``, made on first use, and answers over a pipe).

Problems: synthetic functions with mixed float (linear and log), int, q-rounded, categorical and
conditional (`when:`) parameters, one of 60 parameters of which 50 are constants, and two small
scikit-learn models on data sets that ship with it (a table of every point of their discrete
spaces, computed once and cached in ``benchmarks/.cache``).

The metric: normalized regret = (best found - optimum) / (typical best of 10 random trials -
optimum), where "typical" is the median over 200 random searches of 10 trials; 0 is the optimum, 1
is what a 10-trial random search finds. The table holds the median over problems of each problem's
median over seeds. "4 at a time" simulates 4 workers: trials take a random (seeded) time, and a
worker asks for its next trial when its last one ends, seeing the ones still running as RUNNING.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# one BLAS thread per process (before NumPy loads it): the jobs run side by side, and Optuna's GP makes many small
# calls where OpenBLAS's threads contend with torch's (sobol-gp limits them itself; Optuna's GP would not)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
BUDGETS = (10, 25, 50)
METHODS = ["sobol-gp", "tpe", "tpe-reseeded", "gp", "random", "wandb"]
#: tpe-reseeded: Optuna TPE on these seeds plus this
RESEED = 1000
WANDB_VENV = HERE / ".venv-wandb"
CACHE = HERE / ".cache"


# -- problems --------------------------------------------------------------------------------------

@dataclass
class Problem:
    name: str
    parameters: str  # the file's `parameters:` block
    f: Callable[[dict], float]  # nested config -> value to minimize
    optimum: float | None = None  # None: the best of its table


def branin(c: dict) -> float:
    x1, x2 = c["x1"], c["x2"]
    return (x2 - 5.1 / (4 * math.pi ** 2) * x1 ** 2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


_H6A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                        [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann6(c: dict) -> float:
    x = np.array([c[f"x{i}"] for i in range(6)])
    return float(-np.sum(np.array([1.0, 1.2, 3.0, 3.2]) * np.exp(-np.sum(_H6A * (x - _H6P) ** 2, axis=1))))


def styblinski_mixed(c: dict) -> float:
    xs = [c["a"], c["b"], c["c"], c["i"], c["j"]]
    return sum((x ** 4 - 16 * x ** 2 + 5 * x) / 2 for x in xs)


def ackley_cat(c: dict) -> float:
    x = np.array([c[f"x{i}"] for i in range(4)])
    v = -20 * math.exp(-0.2 * math.sqrt(float(np.mean(x ** 2)))) - math.exp(float(np.mean(np.cos(2 * math.pi * x)))) + 20 + math.e
    return v + {"a": 1.5, "b": 0.0, "c": 0.8, "d": 2.0, "e": 3.0}[c["shift"]]


def training_like(c: dict) -> float:
    """An optimizer's learning rate, weight decay and batch size; momentum only for sgd."""
    best_lr = {"adam": -3.0, "sgd": -1.5, "rmsprop": -2.5}[c["optimizer"]]
    v = (math.log10(c["lr"]) - best_lr) ** 2 + 0.3 * (math.log10(c["wd"]) + 4) ** 2
    v += {16: 0.4, 32: 0.1, 64: 0.0, 128: 0.15, 256: 0.5}[c["batch"]]
    v += {"adam": 0.05, "sgd": 0.0, "rmsprop": 0.3}[c["optimizer"]]
    if c["optimizer"] == "sgd":
        v += 8 * (c["momentum"] - 0.92) ** 2
    return v


def model_choice(c: dict) -> float:
    """Two model families with their own parameters (conditional)."""
    if c["model"] == "linear":
        return 0.3 + 0.2 * (math.log10(c["C"]) - 1.2) ** 2 + {"l1": 0.1, "l2": 0.0}[c["penalty"]]
    return 0.1 + 0.02 * (c["depth"] - 7) ** 2 + 0.3 * (math.log2(c["leaf"]) - 2) ** 2


_WIDE_W = np.random.default_rng(0).uniform(0.5, 3.0, 10)


def wide60(c: dict) -> float:
    xs = [c[f"p{i}"] for i in range(6)] + [c[f"n{i}"] / 10 for i in range(4)]
    return float(sum(w * (x - 0.3 * (k % 3)) ** 2 for k, (w, x) in enumerate(zip(_WIDE_W, xs))))


def q_rounded(c: dict) -> float:
    x, units, drop = c["x"], c["units"], c["dropout"]
    return (x - 3.5) ** 2 / 4 + (math.log2(units) - 7.3) ** 2 + 10 * (drop - 0.2) ** 2 + 0.5 * math.sin(3 * x) ** 2


def _table(name: str, build: Callable[[], dict[str, float]]) -> dict[str, float]:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"{name}.json"
    if not path.exists():
        t0 = time.monotonic()
        path.write_text(json.dumps(build()))
        print(f"table {name}: {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return json.loads(path.read_text())


SVC_C = [round(10 ** e, 6) for e in np.linspace(-2, 3, 21)]
SVC_GAMMA = [round(10 ** e, 8) for e in np.linspace(-5, -1, 21)]


def _svc_table() -> dict[str, float]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    x, y = load_digits(return_X_y=True)
    x, y = x[:600], y[:600]
    return {f"{c}|{g}": 1 - float(cross_val_score(SVC(C=c, gamma=g), x, y, cv=3).mean()) for c in SVC_C for g in SVC_GAMMA}


def svc_digits(c: dict) -> float:
    table = _table("svc_digits", _svc_table)
    near = lambda v, grid: min(grid, key=lambda g: abs(math.log(g) - math.log(v)))  # noqa: E731
    return table[f"{near(c['C'], SVC_C)}|{near(c['gamma'], SVC_GAMMA)}"]


TREE_DEPTH = list(range(1, 16))
TREE_LEAF = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]


def _tree_table() -> dict[str, float]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_breast_cancer(return_X_y=True)
    out = {}
    for d in TREE_DEPTH:
        for leaf in TREE_LEAF:
            for crit in ("gini", "entropy"):
                for mf in ("sqrt", "log2", "all"):
                    m = DecisionTreeClassifier(max_depth=d, min_samples_leaf=leaf, criterion=crit,
                                               max_features=None if mf == "all" else mf, random_state=0)
                    out[f"{d}|{leaf}|{crit}|{mf}"] = 1 - float(cross_val_score(m, x, y, cv=5).mean())
    return out


def tree_cancer(c: dict) -> float:
    table = _table("tree_cancer", _tree_table)
    leaf = min(TREE_LEAF, key=lambda g: abs(math.log(g) - math.log(c["leaf"])))
    return table[f"{c['depth']}|{leaf}|{c['criterion']}|{c['max_features']}"]


def _floats(names: list[str], lo: float, hi: float) -> str:
    return "".join(f"  {n}: {{min: {lo}, max: {hi}}}\n" for n in names)


PROBLEMS = [
    Problem("branin", _floats(["x1"], -5.0, 10.0) + _floats(["x2"], 0.0, 15.0), branin, 0.397887),
    Problem("hartmann6", _floats([f"x{i}" for i in range(6)], 0.0, 1.0), hartmann6, -3.32237),
    Problem("styblinski_mixed", _floats(["a", "b", "c"], -5.0, 5.0) + "  i: {min: -5, max: 5}\n  j: {min: -5, max: 5}\n",
            styblinski_mixed, 3 * -39.16599 + 2 * -39.0),
    Problem("ackley_cat", _floats([f"x{i}" for i in range(4)], -5.0, 5.0) + "  shift: {values: [a, b, c, d, e]}\n",
            ackley_cat, 0.0),
    Problem("training_like", textwrap.dedent("""\
          lr: {distribution: log_uniform_values, min: 1.0e-5, max: 1.0}
          wd: {distribution: log_uniform_values, min: 1.0e-6, max: 0.1}
          batch: {values: [16, 32, 64, 128, 256]}
          optimizer: {values: [adam, sgd, rmsprop]}
          momentum: {min: 0.5, max: 0.99, when: {optimizer: sgd}}
        """), training_like, 0.0),
    Problem("model_choice", textwrap.dedent("""\
          model: {values: [linear, tree]}
          C: {distribution: log_uniform_values, min: 0.001, max: 1000.0, when: {model: linear}}
          penalty: {values: [l1, l2], when: {model: linear}}
          depth: {distribution: int_uniform, min: 1, max: 20, when: {model: tree}}
          leaf: {distribution: q_log_uniform_values, min: 1, max: 64, q: 1, when: {model: tree}}
        """), model_choice, 0.1),
    Problem("wide60", _floats([f"p{i}" for i in range(6)], -2.0, 2.0)
            + "".join(f"  n{i}: {{distribution: int_uniform, min: -20, max: 20}}\n" for i in range(4))
            + "".join(f"  const{i}: {{value: {i}}}\n" for i in range(50)), wide60, 0.0),
    Problem("q_rounded", textwrap.dedent("""\
          x: {distribution: q_uniform, min: 0, max: 10, q: 0.5}
          units: {distribution: q_log_uniform_values, min: 8, max: 1024, q: 8}
          dropout: {distribution: q_uniform, min: 0.0, max: 0.6, q: 0.05}
        """), q_rounded, None),
    Problem("svc_digits", textwrap.dedent("""\
          C: {distribution: log_uniform_values, min: 0.01, max: 1000.0}
          gamma: {distribution: log_uniform_values, min: 1.0e-5, max: 0.1}
        """), svc_digits, None),
    Problem("tree_cancer", textwrap.dedent("""\
          depth: {distribution: int_uniform, min: 1, max: 15}
          leaf: {distribution: q_log_uniform_values, min: 1, max: 32, q: 1}
          criterion: {values: [gini, entropy]}
          max_features: {values: [sqrt, log2, all]}
        """), tree_cancer, None),
]


def spec_of(p: Problem, method: str = "bayes") -> Any:
    from sweeps.space import parse_spec

    block = textwrap.indent(textwrap.dedent(p.parameters), "  ")
    text = f"method: {method}\nmetric: {{name: loss}}\ntrainer: none:none\nparameters:\n{block}"
    return parse_spec(text, f"{p.name}.yaml")


def optimum(p: Problem) -> float:
    if p.optimum is not None:
        return p.optimum
    if p.name == "svc_digits":
        return min(_table("svc_digits", _svc_table).values())
    if p.name == "tree_cancer":
        return min(_table("tree_cancer", _tree_table).values())
    assert p.name == "q_rounded"
    return min(q_rounded({"x": x / 2, "units": u, "dropout": d / 20}) for x in range(21) for u in range(8, 1025, 8)
               for d in range(13))


def random_reference(p: Problem, runs: int = 200) -> float:
    """The median best of ``runs`` random searches of 10 trials."""
    bests = [min(run_search(p, "random", seed, 10, 1)) for seed in range(10_000, 10_000 + runs)]
    return statistics.median(bests)


# -- searching ----------------------------------------------------------------------------------

def sampler_for(method: str, spec: Any, seed: int) -> Any:
    import optuna

    from sweeps.samplers import make_sampler

    if method == "sobol-gp":
        return make_sampler(spec, seed)  # what `method: bayes` is
    if method in ("tpe", "tpe-reseeded"):
        extra = {"multivariate": True, "group": True} if spec.has_conditions else {}
        return optuna.samplers.TPESampler(seed=seed + (RESEED if method == "tpe-reseeded" else 0), **extra)
    if method == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(method)


def run_search(p: Problem, method: str, seed: int, budget: int, parallel: int) -> list[float]:
    """The best value so far after each finished trial (in the order they finished)."""
    if method == "wandb":
        return _run_wandb(p, seed, budget, parallel)
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    spec = spec_of(p)
    study = optuna.create_study(sampler=sampler_for(method, spec, seed), direction="minimize")
    clock = np.random.default_rng(seed + 777)
    running: list[tuple[float, Any, float]] = []  # (ends at, trial, value)
    now, asked, curve, best = 0.0, 0, [], math.inf
    while len(curve) < budget:
        while len(running) < parallel and asked < budget:
            trial = study.ask()
            value = p.f(spec.nest(spec.suggest(trial)))
            running.append((now + float(clock.exponential(1.0)), trial, value))
            asked += 1
        running.sort(key=lambda r: r[0])
        now, trial, value = running.pop(0)
        study.tell(trial, value)
        best = min(best, value)
        curve.append(best)
    return curve


_WANDB_SERVER = """
import json, sys, random
import numpy as np
from sweeps import next_run, SweepRun, RunState
for line in sys.stdin:
    msg = json.loads(line)
    if "seed" in msg:
        np.random.seed(msg["seed"]); random.seed(msg["seed"]); continue
    runs = [SweepRun(config={k: {"value": v} for k, v in r["config"].items()},
                     state=RunState.finished if r["value"] is not None else RunState.running,
                     summary_metrics={"loss": r["value"]} if r["value"] is not None else {}) for r in msg["runs"]]
    nxt = next_run(msg["config"], runs, validate=False)
    print(json.dumps({k: v["value"] for k, v in nxt.config.items()}, default=lambda x: x.item()), flush=True)
"""

_server: subprocess.Popen | None = None


def _wandb_ask(message: dict) -> dict | None:
    global _server
    if _server is None:
        _ensure_wandb_venv()
        # -I: neither the current directory nor PYTHONPATH, where our own `sweeps` would shadow W&B's
        _server = subprocess.Popen([str(WANDB_VENV / "bin" / "python"), "-I", "-c", _WANDB_SERVER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, stderr=subprocess.DEVNULL)
    assert _server.stdin is not None and _server.stdout is not None
    _server.stdin.write(json.dumps(message) + "\n")
    _server.stdin.flush()
    return None if "seed" in message else json.loads(_server.stdout.readline())


def _ensure_wandb_venv() -> None:
    if not (WANDB_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(WANDB_VENV)], check=True)
        subprocess.run([str(WANDB_VENV / "bin" / "pip"), "install", "-q", "sweeps==0.3.0"], check=True)


def _wandb_config(p: Problem) -> dict:
    """The problem as a W&B sweep config: W&B has no `when:`, so conditional parameters are always drawn."""
    import yaml

    params = yaml.safe_load(textwrap.dedent(p.parameters))
    for v in params.values():
        v.pop("when", None)
        if "min" in v and "distribution" not in v:
            v["distribution"] = "int_uniform" if isinstance(v["min"], int) and isinstance(v["max"], int) else "uniform"
    return {"method": "bayes", "metric": {"name": "loss", "goal": "minimize"}, "parameters": params}


def _run_wandb(p: Problem, seed: int, budget: int, parallel: int) -> list[float]:
    config = _wandb_config(p)
    _wandb_ask({"seed": seed})
    clock = np.random.default_rng(seed + 777)
    runs: list[dict] = []
    running: list[tuple[float, int, float]] = []
    now, curve, best = 0.0, [], math.inf
    while len(curve) < budget:
        while len(running) < parallel and len(runs) < budget:
            cfg = _wandb_ask({"config": config, "runs": runs})
            runs.append({"config": cfg, "value": None})
            running.append((now + float(clock.exponential(1.0)), len(runs) - 1, p.f(cfg)))
        running.sort(key=lambda r: r[0])
        now, index, value = running.pop(0)
        runs[index]["value"] = value
        best = min(best, value)
        curve.append(best)
    return curve


# -- the table ---------------------------------------------------------------------------------------

def one(job: tuple[str, str, int, int, int]) -> tuple[str, str, int, int, list[float], float]:
    name, method, seed, budget, parallel = job
    p = next(q for q in PROBLEMS if q.name == name)
    t0 = time.monotonic()
    curve = run_search(p, method, seed, budget, parallel)
    return name, method, seed, parallel, curve, time.monotonic() - t0


def seeds_won(results: dict[tuple[str, str, int], list[list[float]]], problem: str, parallel: int,
              budget: int) -> tuple[int, int]:
    """On how many seeds sobol-gp's best at ``budget`` is lower than Optuna TPE's, and on how many higher."""
    pairs = [(a[budget - 1], b[budget - 1])
             for a, b in zip(results[(problem, "sobol-gp", parallel)], results[(problem, "tpe", parallel)])]
    return sum(a < b for a, b in pairs), sum(a > b for a, b in pairs)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test: how likely a split at least this uneven is between two equal methods (ties left out)."""
    from scipy.stats import binomtest

    return binomtest(losses, wins + losses, 0.5).pvalue if wins + losses else 1.0


def paired(split: dict[str, tuple[int, int]]) -> str:
    """sobol-gp against TPE on the same seeds, from each problem's :func:`seeds_won`: a median over problems moves
    with whichever problem sits at the median (and a problem's median with one or two seeds where its regrets take
    few values); a count of the seeds each one wins does not. Each problem where it loses more seeds than it wins
    is named, with the sign test's p."""
    behind = [f"{name} {w}-{lost} p={sign_test(w, lost):.2f}" for name, (w, lost) in split.items() if lost > w]
    wins, losses = sum(w for w, _ in split.values()), sum(lost for _, lost in split.values())
    return f"{wins}-{losses}" + (f" ({', '.join(behind)})" if behind else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--problems", nargs="+", default=[p.name for p in PROBLEMS])
    ap.add_argument("--parallel", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="Append the table to benchmarks/RESULTS.md.")
    args = ap.parse_args()
    problems = [p for p in PROBLEMS if p.name in args.problems]
    budgets = [b for b in BUDGETS if b <= args.budget]
    t0 = time.monotonic()
    refs = {p.name: (optimum(p), random_reference(p)) for p in problems}
    if "wandb" in args.methods:
        _ensure_wandb_venv()
    jobs = [(p.name, m, s, args.budget, k) for k in args.parallel for p in problems for m in args.methods
            for s in range(args.seeds)]
    results: dict[tuple[str, str, int], list[list[float]]] = {}
    seconds: dict[str, float] = {}
    with ProcessPoolExecutor(args.jobs) as pool:
        for i, (name, method, seed, parallel, curve, took) in enumerate(pool.map(one, jobs), 1):
            results.setdefault((name, method, parallel), []).append(curve)
            seconds[method] = seconds.get(method, 0.0) + took
            print(f"[{i}/{len(jobs)}] {name} {method} seed {seed}, {parallel} at a time: {took:.1f} s", file=sys.stderr,
                  flush=True)
    lines = [f"{len(problems)} problems x {args.seeds} seeds; median normalized regret (0: the optimum, 1: a typical "
             f"10-trial random search), {time.monotonic() - t0:.0f} s", ""]
    columns = [(k, b) for k in args.parallel for b in budgets if not (k > 1 and b == 10)]  # 4 at a time @10: none
    header = "| method | " + " | ".join(f"{'seq' if k == 1 else f'{k} at a time'} @{b}" for k, b in columns) + " |"
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    per_problem: dict[tuple[str, int, int], dict[str, float]] = {}
    for method in args.methods:
        cells = []
        for k, b in columns:
            medians = []
            for p in problems:
                opt, ref = refs[p.name]
                regrets = [max(0.0, (c[b - 1] - opt) / (ref - opt)) if ref > opt else 0.0
                           for c in results[(p.name, method, k)]]
                medians.append(statistics.median(regrets))
                per_problem.setdefault((p.name, k, b), {})[method] = medians[-1]
            cells.append(f"{statistics.median(medians):.2f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    for method in [m for m in ("sobol-gp", "tpe-reseeded") if m in args.methods and "tpe" in args.methods]:
        worse = {f"{k}@{b}": sum(per_problem[(p.name, k, b)][method] > per_problem[(p.name, k, b)]["tpe"] + 1e-12
                                 for p in problems) for k, b in columns}
        lines += ["", f"problems where {method}'s median is worse than Optuna TPE's: "
                  + ", ".join(f"{k}: {n}/{len(problems)}" for k, n in worse.items())]
    if {"sobol-gp", "tpe"} <= set(args.methods):
        splits = {f"{k}@{b}": {p.name: seeds_won(results, p.name, k, b) for p in problems} for k, b in columns}
        lines += ["", "seed by seed, sobol-gp against Optuna TPE (seeds with a lower regret - seeds with a higher one, "
                  "over every problem; the problems where it is higher on more seeds): "
                  + ", ".join(f"{c}: " + paired(split) for c, split in splits.items())]
        beyond = {c: sum(lost > w and sign_test(w, lost) < 0.05 for w, lost in split.values())
                  for c, split in splits.items()}
        lines += ["", "problems where sobol-gp loses to Optuna TPE seed by seed beyond chance (more seeds lost than "
                  "won, two-sided sign test p < 0.05): "
                  + ", ".join(f"{c}: {n}/{len(problems)}" for c, n in beyond.items())]
    lines += ["", "seconds of search per method (all runs): " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items())]
    detail = ["", "per problem (seq @25 / seq @50 / 4 at a time @50):"]
    for p in problems:
        row = []
        for m in args.methods:
            cells = [per_problem.get((p.name, k, b), {}).get(m) for k, b in ((1, 25), (1, 50), (4, 50))]
            row.append(f"{m} " + "/".join("-" if c is None else f"{c:.2f}" for c in cells))
        detail.append(f"- {p.name}: " + "; ".join(row))
    text = "\n".join(lines + detail)
    print(text)
    if args.write:
        with open(HERE / "RESULTS.md", "a") as f:
            f.write(f"\n## Search quality ({time.strftime('%Y-%m-%d')})\n\nCommand: `{' '.join(['.venv/bin/python', *sys.argv])}`\n\n{text}\n")


if __name__ == "__main__":
    main()
