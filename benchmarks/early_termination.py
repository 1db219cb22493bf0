"""Early termination, measured: a bayes sweep of the digits MLP with and without
W&B-style hyperband, same seed and trial budget, side by side in one process.

    .venv/bin/python benchmarks/early_termination.py [--trials 40] [--epochs 12] [--seeds 0 1 2 3 4]

Prints, per seed and as medians, the best validation accuracy and the total
epochs trained of each sweep, and their ratios. The target: the best accuracy
within 1 point of the sweep without early termination, for at most half the
epochs. Full tracking as a user runs it (MLflow sqlite, W&B offline), in a
temporary directory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPACE = """
    name: {name}
    method: bayes
    metric: {{name: val_acc, goal: maximize}}
    trainer: trainers.digits_mlp:train
    resources: {{cpus: 1}}
    parameters:
      lr: {{distribution: log_uniform_values, min: 0.0001, max: 0.1}}
      hidden: {{values: [16, 32, 64, 128]}}
      layers: {{values: [1, 2]}}
      dropout: {{distribution: uniform, min: 0.0, max: 0.5}}
      batch_size: {{values: [32, 64, 128]}}
      optimizer: {{values: [adam, sgd]}}
      epochs: {{value: {epochs}}}
      keep_model: {{value: false}}
"""
HYPERBAND = "    early_terminate: {type: hyperband, min_iter: 1, eta: 3}\n"


def run(work: Path, name: str, text: str, trials: int, seed: int, parallel: int) -> tuple[float, int, float]:
    from mlflow import MlflowClient

    from sweeps.controller import Controller, LaunchOptions
    from sweeps.space import parse_spec

    path = work / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    spec = parse_spec(path.read_text(), str(path))
    opts = LaunchOptions(trials=trials, parallel=parallel, seed=seed, tracking_uri=f"sqlite:///{work}/mlflow.db",
                         wandb_dir=str(work), state_dir=work / ".sweeps", workdir=ROOT, progress=False)
    t0 = time.perf_counter()
    summary = Controller(spec, opts).run()
    wall = time.perf_counter() - t0
    client = MlflowClient(f"sqlite:///{work}/mlflow.db")
    runs = client.search_runs([summary.record.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{summary.record.parent_run_id}'", max_results=10000)
    if len(runs) != trials:
        raise SystemExit(f"{name}: {len(runs)} trials recorded in MLflow, expected {trials}")
    epochs = sum(len(client.get_metric_history(r.info.run_id, "val_acc")) for r in runs)
    return float(summary.best_value or 0.0), epochs, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import ray

    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "WANDB_SILENT": "true"}})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for seed in args.seeds:  # interleaved: baseline, then hyperband, per seed
            base = run(work, f"base-{seed}", SPACE.format(name=f"base-{seed}", epochs=args.epochs), args.trials, seed, args.parallel)
            hb = run(work, f"hb-{seed}", SPACE.format(name=f"hb-{seed}", epochs=args.epochs) + HYPERBAND,
                     args.trials, seed, args.parallel)
            rows.append((seed, base, hb))
            print(f"seed {seed}: no early termination: best val_acc {base[0]:.4f}, {base[1]} epochs, {base[2]:.1f} s | "
                  f"hyperband: best val_acc {hb[0]:.4f}, {hb[1]} epochs, {hb[2]:.1f} s | "
                  f"accuracy {100 * (hb[0] - base[0]):+.2f} points, epochs x{hb[1] / base[1]:.2f}, wall x{hb[2] / base[2]:.2f}",
                  flush=True)
    ray.shutdown()
    d_acc = statistics.median(100 * (hb[0] - base[0]) for _, base, hb in rows)
    r_ep = statistics.median(hb[1] / base[1] for _, base, hb in rows)
    r_wall = statistics.median(hb[2] / base[2] for _, base, hb in rows)
    print(f"median over {len(rows)} seeds ({args.trials} trials of {args.epochs} epochs, {args.parallel} at a time): "
          f"best accuracy {d_acc:+.2f} points, epochs x{r_ep:.2f}, wall x{r_wall:.2f}")
    ok = d_acc >= -1.0 and r_ep <= 0.5
    print("target (within 1 point, at most half the epochs):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
