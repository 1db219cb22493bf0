"""Scale: a sweep of many instant trials, 8 at a time, with full tracking, against the same sweep
untracked, both through `sweeps launch` as a user runs it.

    .venv/bin/python benchmarks/scale.py [--trials 2000] [--parallel 8] [--repeats 1]

The W1 space and trainer of benchmarks/overhead.py (an instant objective reported over 10
steps), `method: bayes` (TPE), seed 0, `resources: {cpus: 0.25}` so that 8 trials share 2
cores. Each run is a fresh `sweeps launch FILE --trials N --parallel P --no-progress` in a
directory of its own (MLflow in its `mlflow.db`, W&B offline); the untracked run adds
`--no-tracking`. Runs alternate (tracked, untracked, tracked, ...).

Prints per run the wall time, the time per trial, the controller's peak memory (the
`sweeps launch` process alone, sampled every 0.2 s) and the whole process tree's, and
checks that every trial was recorded: as many MLflow child runs as trials, all FINISHED,
each with its 3 params, and one W&B offline run per trial (plus the sweep's own). A run
that is missing one fails loudly. Ends with the medians and the ratio tracked / untracked.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from overhead import recorded, space_yaml, write_trainers  # noqa: E402

SWEEPS = Path(sys.executable).parent / "sweeps"


def sweep_file(work: Path) -> Path:
    write_trainers(work, "W1")
    path = work / "scale.yaml"
    path.write_text(textwrap.dedent("""
        name: scale
        method: bayes
        metric: {name: loss, goal: minimize}
        trainer: bench_trainers:w1
        seed: 0
        resources: {cpus: 0.25}
        parameters:""") + textwrap.indent(textwrap.dedent(space_yaml("W1")), "  ") + "\n")
    return path


def launch(work: Path, trials: int, parallel: int, tracked: bool) -> dict:
    import psutil

    cmd = [str(SWEEPS), "launch", str(sweep_file(work)), "--trials", str(trials), "--parallel", str(parallel),
           "--no-progress", *([] if tracked else ["--no-tracking"])]
    env = {**os.environ, "BENCH_TIMES": str(work / "times.jsonl"), "WANDB_SILENT": "true",
           "WANDB_MODE": "offline", "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_TRACKING_URI": ""}
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(proc.pid)
    controller = tree = 0
    while proc.poll() is None:
        try:
            controller = max(controller, root.memory_info().rss)
            tree = max(tree, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)] if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.monotonic() - start
    output = proc.stdout.read()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"sweeps launch failed ({proc.returncode}):\n{output[-3000:]}")
    if f"{trials} complete" not in output:
        raise SystemExit(f"not every trial completed:\n{output[-3000:]}")
    out = {"wall": wall, "controller_mb": controller / 2**20, "tree_mb": tree / 2**20}
    if tracked:
        uri = f"sqlite:///{work}/mlflow.db"
        out.update(recorded("sweeps", uri, work, trials))  # counts MLflow children and W&B runs, or exits
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=50000)
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        incomplete = [r.info.run_name for r in children if r.info.status != "FINISHED" or len(r.data.params) != 3]
        if incomplete:
            raise SystemExit(f"{len(incomplete)} trial runs not FINISHED with their 3 params: {incomplete[:5]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for tracked in (True, False):
                work = Path(tempfile.mkdtemp(prefix="tracked-" if tracked else "untracked-", dir=tmp))
                r = launch(work, args.trials, args.parallel, tracked)
                runs[tracked].append(r)
                what = "tracked  " if tracked else "untracked"
                seen = f", recorded {r['mlflow_runs']} MLflow runs (all FINISHED), {r['wandb_runs']} W&B runs" \
                    if tracked else ""
                print(f"#{rep + 1} {what}: wall {r['wall']:6.1f} s, {r['wall'] / args.trials * 1000:5.1f} ms per trial, "
                      f"controller peak {r['controller_mb']:5.0f} MB, tree peak {r['tree_mb']:6.0f} MB{seen}", flush=True)
    wall = {k: statistics.median(r["wall"] for r in v) for k, v in runs.items()}
    peak = statistics.median(r["controller_mb"] for r in runs[True])
    print(f"\n{args.trials} trials, {args.parallel} at a time; medians of {args.repeats}: tracked {wall[True]:.1f} s, "
          f"untracked {wall[False]:.1f} s, tracked / untracked x{wall[True] / wall[False]:.2f}; "
          f"controller peak (tracked) {peak:.0f} MB")


if __name__ == "__main__":
    main()
