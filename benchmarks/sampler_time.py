"""Sampler time per suggestion as a sweep grows: `sobol-gp` (ours: its GP models at most 300
trials), TPE (`bayes`), `method: gp` as sweeps runs it (GP for the first `gp_trials`, then TPE), and GP
alone, uncapped.

    .venv/bin/python benchmarks/sampler_time.py [--trials 2000] [--gp-alone 500] [--window 100]
                                                [--samplers sobol-gp tpe gp gp-alone]

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
    cells = []
    for start in range(0, trials, window):
        chunk = times[start:start + window]
        cells.append(f"{start + 1}-{start + len(chunk)}: {1000 * statistics.median(chunk):6.1f}")
    print(f"{label:>10}: median ms per suggestion by trials  " + " | ".join(cells))
    print(f"{'':>10}  {trials} trials, sampler time {sum(times):.1f} s in all, {1000 * sum(times) / trials:.1f} ms per trial",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--gp-alone", type=int, default=500, help="trials for GP without the switch to TPE")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--samplers", nargs="+", default=["sobol-gp", "tpe", "gp", "gp-alone"])
    args = ap.parse_args()
    runs = {"sobol-gp": ("sampler: {type: sobol-gp}\n", args.trials), "tpe": ("", args.trials),
            "gp": ("sampler: {type: gp}\n", args.trials),
            "gp-alone": (f"sampler: {{type: gp, gp_trials: {args.gp_alone + 1}}}\n", args.gp_alone)}
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.samplers:
            run(label, runs[label][0], runs[label][1], args.window, Path(tmp))


if __name__ == "__main__":
    main()
