"""Sampler time per suggestion as a sweep grows: `sobol-gp` (`bayes`: its GP models at most 200
trials), TPE, `method: gp` as sweeps runs it (GP for the first `gp_trials`, then TPE), and GP
alone, uncapped.

    .venv/bin/python benchmarks/sampler_time.py [--trials 2000] [--gp-alone 500] [--window 100]
                                                [--samplers sobol-gp tpe gp gp-alone]
    .venv/bin/python benchmarks/sampler_time.py --problem wide60 --parallel 4 --trials 320 --window 40

``--problem`` takes the space of one of benchmarks/search_quality.py's problems (in memory, its
objective, ``--parallel`` trials running at a time: the running ones are pending points of the GP).

Each sampler asks and is told in a study on the controller's own storage (an
Optuna journal file), over the W1 space of benchmarks/overhead.py
{x: uniform -10..10, y: log_uniform_values 1e-4..1, c: categorical a/b/c}
with an instant objective. Prints the median time of ask + suggest per window of
trials, and the total sampler time per trial.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

SPACE = """
    name: sampler-time
    method: bayes
    metric: {name: loss, goal: minimize}
    parameters:
      x: {min: -10.0, max: 10.0}
      y: {distribution: log_uniform_values, min: 0.0001, max: 1.0}
      c: {values: [a, b, c]}
"""


def run(label: str, sampler_yaml: str, trials: int, window: int, directory: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sweeps.samplers import make_sampler
    from sweeps.space import parse_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_spec(textwrap.dedent(SPACE) + sampler_yaml, "sampler-time.yaml")
    storage = JournalStorage(JournalFileBackend(str(directory / f"{label}.log")))
    study = optuna.create_study(storage=storage, sampler=make_sampler(spec, 0), study_name=label)
    times: list[float] = []
    for _ in range(trials):
        t0 = time.perf_counter()
        trial = study.ask()
        config = spec.suggest(trial)
        times.append(time.perf_counter() - t0)
        study.tell(trial, (config["x"] - 1.0) ** 2 + config["y"] + {"a": 0.0, "b": 0.5, "c": 1.0}[config["c"]])
    print(f"{label:>10}: median ms per suggestion by trials  " + _windows(times, window, slowest=False))
    print(f"{'':>10}  {trials} trials, sampler time {sum(times):.1f} s in all, {1000 * sum(times) / trials:.1f} ms per trial",
          flush=True)


def run_problem(name: str, trials: int, window: int, parallel: int) -> None:
    import heapq
    import sys

    import optuna

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import search_quality as sq
    from sweeps.samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    problem = next(p for p in sq.PROBLEMS if p.name == name)
    spec = sq.spec_of(problem)  # method: bayes
    study = optuna.create_study(sampler=make_sampler(spec, 0))
    running: list[tuple[int, int, optuna.trial.Trial, float]] = []  # (ends at, order, trial, value)
    times: list[float] = []
    for i in range(trials):
        if len(running) == parallel:
            _, _, done, value = heapq.heappop(running)
            study.tell(done, value)
        t0 = time.perf_counter()
        trial = study.ask()
        config = spec.suggest(trial)
        times.append(time.perf_counter() - t0)
        heapq.heappush(running, (i + (i * 7919) % parallel, i, trial, problem.f(spec.nest(config))))
    print(f"{name}, {parallel} at a time: median ms per suggestion by trials  " + _windows(times, window, slowest=True),
          flush=True)


def _windows(times: list[float], window: int, slowest: bool) -> str:
    """The median ms per suggestion of each ``window`` of trials (and the slowest, with ``slowest``)."""
    cells = []
    for start in range(0, len(times), window):
        chunk = times[start:start + window]
        cell = f"{start + 1}-{start + len(chunk)}: {1000 * statistics.median(chunk):6.1f}"
        cells.append(cell + (f" (max {1000 * max(chunk):5.0f})" if slowest else ""))
    return " | ".join(cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--gp-alone", type=int, default=500, help="trials for GP without the switch to TPE")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--samplers", nargs="+", default=["sobol-gp", "tpe", "gp", "gp-alone"])
    ap.add_argument("--problem", choices=["branin", "hartmann6", "styblinski_mixed", "ackley_cat", "training_like",
                                          "model_choice", "wide60", "q_rounded", "svc_digits", "tree_cancer"],
                    help="a problem of benchmarks/search_quality.py, with `bayes` (sobol-gp)")
    ap.add_argument("--parallel", type=int, default=1, help="with --problem: trials running at a time")
    args = ap.parse_args()
    if args.problem:
        run_problem(args.problem, args.trials, args.window, args.parallel)
        return
    runs = {"sobol-gp": ("sampler: {type: sobol-gp}\n", args.trials), "tpe": ("", args.trials),
            "gp": ("sampler: {type: gp}\n", args.trials),
            "gp-alone": (f"sampler: {{type: gp, gp_trials: {args.gp_alone + 1}}}\n", args.gp_alone)}
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.samplers:
            run(label, runs[label][0], runs[label][1], args.window, Path(tmp))


if __name__ == "__main__":
    main()
