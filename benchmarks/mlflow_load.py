"""The embedded MLflow store (sqlite) under load: 8 trials at once, each logging
N steps of 3 metrics, written the way sweeps writes them (batched: every 200
values or every second, log_batch) against one MLflow call per value.

    .venv/bin/python benchmarks/mlflow_load.py [--trials 8] [--steps 250] [--repeats 2]
                                               [--postgres postgresql://user:pw@host:port]

With --postgres (a server's URL without a database; each run makes a database of its own), the
same load runs on PostgreSQL too, and the stores are compared.

Prints, per mode, the wall time, the errors raised ("database is locked" and
others) and the values that reached the store; then the ratio. Runs in one
process tree, modes interleaved (A B A B), in a temporary directory.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _writer(args: tuple[str, str, str, int]) -> int:
    uri, run_id, mode, steps = args
    from mlflow import MlflowClient

    from sweeps import tracking

    errors = 0
    if mode == "batched":
        buf = tracking.MetricBuffer(uri, run_id)
        for step in range(steps):
            try:
                buf.add(step, {"a": step * 1.0, "b": -step * 1.0, "c": 1.0})
            except Exception:  # noqa: BLE001 - counted, not hidden
                errors += 1
        try:
            buf.flush()
        except Exception:  # noqa: BLE001
            errors += 1
    else:
        client = MlflowClient(uri)
        for step in range(steps):
            for key, value in (("a", step * 1.0), ("b", -step * 1.0), ("c", 1.0)):
                try:
                    client.log_metric(run_id, key, value, step=step)
                except Exception:  # noqa: BLE001
                    errors += 1
    return errors


def run(mode: str, trials: int, steps: int, work: Path, postgres: str | None = None) -> tuple[float, int, int]:
    from mlflow import MlflowClient

    name = f"load{time.monotonic_ns()}"
    if postgres:
        import psycopg

        with psycopg.connect(postgres + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        uri = f"{postgres}/{name}"
    else:
        uri = f"sqlite:///{work}/{mode}-{name}.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("load")
    runs = [client.create_run(exp).info.run_id for _ in range(trials)]
    with mp.get_context("spawn").Pool(trials) as pool:
        pool.map(_writer, [(uri, r, "warm", 0) for r in runs])  # start and import in every process first
        t0 = time.perf_counter()
        errors = sum(pool.map(_writer, [(uri, r, mode, steps) for r in runs]))
        wall = time.perf_counter() - t0
    values = sum(len(client.get_metric_history(r, k)) for r in runs for k in "abc")
    return wall, errors, values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--postgres", help="a PostgreSQL server's URL without a database: compare it with sqlite")
    args = ap.parse_args()
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    expected = args.trials * args.steps * 3
    stores = {"sqlite": None, **({"postgres": args.postgres} if args.postgres else {})}
    results: dict[tuple[str, str], list[tuple[float, int, int]]] = {
        (store, mode): [] for store in stores for mode in ("batched", "per-value")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for store, mode in results:
                r = run(mode, args.trials, args.steps, Path(tmp), stores[store])
                results[(store, mode)].append(r)
                print(f"{store:>8} {mode:>9}: {r[0]:7.2f} s, {r[1]} errors, {r[2]}/{expected} values recorded", flush=True)
    med = {k: statistics.median(w for w, _, _ in rs) for k, rs in results.items()}
    base = med[("sqlite", "batched")]
    print(f"median wall ({args.trials} writers x {args.steps} steps x 3 metrics = {expected} values):")
    for (store, mode), wall in med.items():
        print(f"  {store:>8} {mode:>9}: {wall:7.2f} s  x{wall / base:.2f} of sqlite batched")
    lost = [f"{s} {m}" for (s, m), rs in results.items() if any(e or v != expected for _, e, v in rs)]
    print("values lost or errors in:", ", ".join(lost) if lost else "none")


if __name__ == "__main__":
    main()
