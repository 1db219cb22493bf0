"""What `sweeps launch --deterministic` costs in wall time: trials in synchronous batches wait for each
batch's slowest trial.

    .venv/bin/python benchmarks/deterministic.py [--trials 32] [--parallel 4] [--repeats 3]

The workload: a bayes (TPE) sweep whose trials sleep for a duration the sampler picks (log-uniform
0.1 to 1.5 s, in 5 reports), so trials of one batch differ in length as real trials of different
model sizes do. Sleeping trials use no CPU, so 4 at a time on 2 cores measure the batching alone.
Trials run in threads of this process (the local executor), without tracking: what is measured is
the loop. Both modes run in this process, interleaved; prints the median walls and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

SPACE = """
name: batches
method: bayes
metric: {name: loss}
trainer: deterministic_bench:sleepy
seed: 0
parameters:
  t: {distribution: log_uniform_values, min: 0.1, max: 1.5}
  x: {min: -1.0, max: 1.0}
"""

TRAINER = '''
import math, time

def sleepy(config, report):
    for step in range(5):
        time.sleep(config["t"] / 5)
        report(step=step, loss=math.log(config["t"] / 0.5) ** 2 + config["x"] ** 2)
'''


def run(work: Path, trials: int, parallel: int, deterministic: bool) -> tuple[float, float]:
    """(wall, the trials' own time over the parallelism: the wall of a loop that never idles)"""
    from sweeps.controller import Controller, LaunchOptions
    from sweeps.space import parse_spec

    spec = parse_spec(textwrap.dedent(SPACE), str(work / "batches.yaml"))
    t0 = time.monotonic()
    summary = Controller(spec, LaunchOptions(trials=trials, parallel=parallel, tracking_uri="none", wandb_mode="disabled",
                                   state_dir=work / ".sweeps", workdir=work, progress=False, executor="local",
                                   deterministic=deterministic)).run()
    wall = time.monotonic() - t0
    from sweeps.state import open_study

    study = open_study(summary.state_dir, summary.id, "minimize", create=False)
    return wall, sum(t.params["t"] for t in study.get_trials()) / parallel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweeps-det-"))
    (work / "deterministic_bench.py").write_text(TRAINER)
    sys.path.insert(0, str(work))
    walls: dict[bool, list[float]] = {False: [], True: []}
    busy: dict[bool, list[float]] = {False: [], True: []}
    for i in range(args.repeats):
        for mode in (False, True):
            wall, work_s = run(work, args.trials, args.parallel, mode)
            walls[mode].append(wall)
            busy[mode].append(wall / work_s)
            print(f"#{i + 1} {'deterministic' if mode else 'default':>13}: {wall:.1f} s, "
                  f"{wall / work_s:.2f} x the trials' own time / {args.parallel}", flush=True)
    base, det = statistics.median(walls[False]), statistics.median(walls[True])
    print(f"\n{args.trials} trials, {args.parallel} at a time; medians of {args.repeats}")
    print("mode            wall s  wall / default  wall / (trials' time / parallel)")
    for name, mode, wall in (("default", False, base), ("deterministic", True, det)):
        print(f"{name:>13} {wall:8.1f}  x{wall / base:13.2f}  x{statistics.median(busy[mode]):.2f}")


if __name__ == "__main__":
    main()
