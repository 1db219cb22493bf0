"""Orchestration overhead, side by side: sweeps against the peers on the same work.

    .venv/bin/python benchmarks/overhead.py [--workloads W1 W2] [--systems ...] [--repeats 3] [--ray-running]
                                            [--by-process]

Workloads (2 trials at a time, TPE over the same space where the system samples):
  W1  40 trials of an instant objective reported over 10 steps;
      space {x: uniform -10..10, y: log_uniform_values 1e-4..1, c: categorical a/b/c}
  W2  16 trials of the digits MLP (trainers/digits_mlp.py), 5 epochs

Systems, each run in a fresh process (its own Ray where it uses Ray), interleaved
(A B C ... A B C ...):
  sweeps        `Controller` as `sweeps launch` runs it: Ray worker actors, MLflow nested
                runs in sqlite, W&B offline runs
  sweeps-untracked  the same with tracking disabled (`sweeps launch --no-tracking`)
  sweeps-deterministic  the same in synchronous batches (`sweeps launch --deterministic`)
  hand          a loop written by hand: Optuna ask/tell, Ray tasks, an MLflow nested
                run and a W&B offline run per trial, one MLflow call per value
  tune          Ray Tune + OptunaSearch + MLflowLoggerCallback + WandbLoggerCallback
  optuna        Optuna alone, in memory, no tracking (the floor)
  optuna-mlflow Optuna + an MLflow nested run per trial in sqlite (no W&B)
  ray           the baseline for start-up: a local `ray.init` and one empty task
                (its "first running" is when that task starts; no trials)

With --ray-running, one Ray head is started first (`ray start --head`, as `sweeps head`
does on a cluster) and every system that uses Ray joins it instead of starting its own:
what a sweep costs where Ray is already up (sweeps ships the launch directory as Ray's
working_dir then, as on a cluster; MLflow stays in sqlite).

Prints per system the median total wall (process start to process end: what a user waits for,
the interpreter's own exit included, also shown apart as "exit s"; before the eighth
measurement in RESULTS.md the wall stopped when the work was done, before that exit), the time
to the first trial running and to the first trial result, the per-trial overhead (wall minus the trials' own
compute over the parallelism, divided by trials; "after start-up": from the
first result to the end; "steady": the median time a worker spends between one
trial's training and the next, leaving out start-up and the fixed cost at the
end, shown as "end s"), the peak memory of the process
tree, the machine's busy CPU seconds while the system ran ("CPU s": every core, every process,
so a quiet machine is assumed; with --ray-running it includes the running Ray's processes
and the workers it starts for the system, which are not in the process tree), and the ratio
of each peer's wall to sweeps' ("done / sweeps": the same with every wall stopped before the
interpreter's exit). Every trial must be recorded
(MLflow children, W&B runs) or the run fails loudly. Needs the `bench` extra
(ray[tune], psutil).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
PARALLEL = 2
WORKLOADS = {"W1": {"trials": 40, "steps": 10}, "W2": {"trials": 16, "epochs": 5}}
SYSTEMS = ["sweeps", "sweeps-untracked", "sweeps-deterministic", "hand", "tune", "optuna", "optuna-mlflow", "ray"]
#: the address of the Ray the benchmark started for every system (--ray-running), in the children's environment
ADDRESS_ENV = "BENCH_RAY_ADDRESS"

TRAINERS = '''
import json, os, time

def _log(start):
    # TIMES: written above this module by write_trainers (workers of a running Ray lack the launch's environment)
    with open(os.environ.get("BENCH_TIMES", TIMES), "a") as f:
        f.write(json.dumps({"start": start, "end": time.time(), "pid": os.getpid()}) + "\\n")

def w1(config, report):
    start = time.time()
    value = (config["x"] - 1.0) ** 2 + config["y"] + {"a": 0.0, "b": 0.5, "c": 1.0}[config["c"]]
    for step in range(10):
        report(step=step, loss=value + 1.0 / (step + 1))
    _log(start)
    return {"loss": value}

'''

# W2's module imports the trainer (and torch) at the top, as a real trainer module does
W2_TRAINER = '''
from trainers.digits_mlp import train as _digits

def w2(config, report):
    start = time.time()
    out = _digits({**config, "epochs": 5, "keep_model": False}, report)  # the peers keep no model either
    _log(start)
    return out
'''


# -- the systems, each run in a child process ---------------------------------------


def child(system: str, workload: str, work: Path, born: float) -> dict:
    """Run ``system`` on ``workload`` in this process; times are from ``born``, the moment the parent
    started this process (psutil's create_time rests on the whole-second boot time: up to 1 s off)."""
    os.chdir(work)
    sys.path[:0] = [str(work), str(ROOT)]
    os.environ.update(BENCH_TIMES=str(work / "times.jsonl"), WANDB_SILENT="true", WANDB_MODE="offline",
                      MLFLOW_LOGGING_LEVEL="WARNING", MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true",
                      RAY_USAGE_STATS_ENABLED="0", WANDB_DIR=str(work),
                      PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]))
    trials = WORKLOADS[workload]["trials"]
    uri = f"sqlite:///{work}/mlflow.db"
    {"sweeps": run_sweeps, "sweeps-untracked": run_sweeps_untracked, "sweeps-deterministic": run_sweeps_deterministic,
     "hand": run_hand, "tune": run_tune,
     "optuna": run_optuna, "optuna-mlflow": run_optuna_mlflow, "ray": run_ray}[system](workload, trials, uri, work)
    wall = time.time() - born
    times = [json.loads(line) for line in (work / "times.jsonl").read_text().splitlines()]
    return {"wall": wall, "running": min(t["start"] for t in times) - born, "first": min(t["end"] for t in times) - born,
            "last": max(t["end"] for t in times) - born, "steady": steady(times),
            "compute": sum(t["end"] - t["start"] for t in times), "trials_run": len(times),
            **recorded(system, uri, work, 0 if system == "ray" else trials)}


def steady(times: list[dict]) -> float:
    """Per-trial overhead in the steady state: the median time a worker process
    spends between the end of one trial's training and the start of its next
    (start-up and the fixed cost at the end left out). Where no process runs
    two trials, from the spacing of trial ends instead."""
    by_pid: dict[int, list[dict]] = {}
    for t in times:
        by_pid.setdefault(t.get("pid", 0), []).append(t)
    gaps = [b["start"] - a["end"] for ts in by_pid.values() if len(ts) > 1
            for a, b in zip(sorted(ts, key=lambda t: t["start"]), sorted(ts, key=lambda t: t["start"])[1:])]
    if gaps and len(gaps) >= len(times) // 2:
        return statistics.median(gaps)
    ends = sorted(t["end"] for t in times)
    later = ends[PARALLEL - 1:]
    if len(later) < 2:
        return float("nan")
    compute = statistics.mean(t["end"] - t["start"] for t in times)
    return (later[-1] - later[0]) / (len(later) - 1) * PARALLEL - compute


def recorded(system: str, uri: str, work: Path, trials: int) -> dict:
    """Count what each system really recorded; fail loudly when trials are missing."""
    out: dict = {}
    if system == "sweeps-untracked" and any((work / p).exists() for p in ("mlflow.db", "wandb")):
        raise SystemExit("sweeps-untracked: tracking was not disabled")
    if system in ("sweeps", "sweeps-deterministic", "hand", "tune", "optuna-mlflow"):
        from mlflow import MlflowClient

        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=10000)
        children = [r for r in runs if "mlflow.parentRunId" in r.data.tags] if system != "tune" else runs
        out["mlflow_runs"] = len(children)
        if len(children) != trials:
            raise SystemExit(f"{system}: {len(children)} MLflow trial runs recorded, expected {trials}")
    if system in ("sweeps", "sweeps-deterministic", "hand", "tune"):
        wandb_runs = list((work / "wandb").glob("offline-run-*"))
        n = len(wandb_runs) - (1 if system.startswith("sweeps") else 0)  # sweeps adds the sweep's own run
        out["wandb_runs"] = n
        if n != trials:
            raise SystemExit(f"{system}: {n} W&B trial runs recorded, expected {trials}")
    return out


def space_yaml(workload: str) -> str:
    if workload == "W1":
        return """
            x: {min: -10.0, max: 10.0}
            y: {distribution: log_uniform_values, min: 0.0001, max: 1.0}
            c: {values: [a, b, c]}"""
    return """
            lr: {distribution: log_uniform_values, min: 0.001, max: 0.03}
            hidden: {values: [32, 64, 128]}"""


def suggest(trial, workload: str) -> dict:
    if workload == "W1":
        return {"x": trial.suggest_float("x", -10, 10), "y": trial.suggest_float("y", 1e-4, 1, log=True),
                "c": trial.suggest_categorical("c", ["a", "b", "c"])}
    return {"lr": trial.suggest_float("lr", 1e-3, 0.03, log=True), "hidden": trial.suggest_categorical("hidden", [32, 64, 128])}


def metric(workload: str) -> tuple[str, str]:
    return ("loss", "minimize") if workload == "W1" else ("val_acc", "maximize")


def ray_init(runtime_env: dict) -> None:
    """A local Ray of this system's own, or the one the benchmark started for every system (--ray-running)."""
    import ray

    address = os.environ.get(ADDRESS_ENV)
    if address:
        ray.init(address=address, log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
    else:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env=runtime_env)


def run_ray(workload: str, trials: int, uri: str, work: Path) -> None:
    import ray

    ray_init({"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"], "BENCH_TIMES": os.environ["BENCH_TIMES"]}})

    @ray.remote(num_cpus=1)
    def empty() -> None:
        import bench_trainers

        bench_trainers._log(time.time())

    ray.get(empty.remote())
    ray.shutdown()


def run_sweeps_untracked(workload: str, trials: int, uri: str, work: Path) -> None:
    run_sweeps(workload, trials, "none", work)


def run_sweeps_deterministic(workload: str, trials: int, uri: str, work: Path) -> None:
    run_sweeps(workload, trials, uri, work, deterministic=True)


def run_sweeps(workload: str, trials: int, uri: str, work: Path, deterministic: bool = False) -> None:
    from sweeps.controller import Controller, LaunchOptions
    from sweeps.space import parse_spec

    name, goal = metric(workload)
    text = textwrap.dedent(f"""
        name: bench
        method: bayes
        metric: {{name: {name}, goal: {goal}}}
        trainer: bench_trainers:{workload.lower()}
        seed: 0
        parameters:""") + textwrap.indent(textwrap.dedent(space_yaml(workload)), "  ") + "\n"
    spec = parse_spec(text, str(work / "bench.yaml"))
    Controller(spec, LaunchOptions(trials=trials, parallel=PARALLEL, tracking_uri=uri, wandb_dir=str(work),
                                   address=os.environ.get(ADDRESS_ENV),
                                   wandb_mode="disabled" if uri == "none" else "offline",
                                   state_dir=work / ".sweeps", workdir=work, progress=False,
                                   deterministic=deterministic)).run()


def run_hand(workload: str, trials: int, uri: str, work: Path) -> None:
    import mlflow
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray_init({"env_vars": {k: os.environ[k] for k in ("PYTHONPATH", "BENCH_TIMES", "WANDB_SILENT", "WANDB_DIR",
                                                       "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT")}})
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    name, goal = metric(workload)
    with mlflow.start_run(run_name="parent") as parent:
        parent_id = parent.info.run_id

    @ray.remote(num_cpus=1)
    def one(config: dict, number: int) -> float:
        import bench_trainers
        import mlflow
        import wandb

        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(parent_run_id=parent_id, run_name=f"trial-{number}", experiment_id=mlflow.get_experiment_by_name("bench").experiment_id):
            mlflow.log_params(config)
            run = wandb.init(project="bench", group="hand", config=config, mode="offline", dir=str(work), reinit="create_new")

            def report(step: int, **metrics: float) -> None:
                for k, v in metrics.items():
                    mlflow.log_metric(k, v, step=step)
                run.log(metrics, step=step)

            out = getattr(bench_trainers, workload.lower())(config, report)
            run.finish()
        return out[name]

    study = optuna.create_study(direction=goal, sampler=optuna.samplers.TPESampler(seed=0))
    running: dict = {}
    started = 0
    while started < trials or running:
        while started < trials and len(running) < PARALLEL:
            t = study.ask()
            running[one.remote(suggest(t, workload), t.number)] = t
            started += 1
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            study.tell(running.pop(ref), ray.get(ref))
    ray.shutdown()


def run_tune(workload: str, trials: int, uri: str, work: Path) -> None:
    import optuna
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.air.integrations.wandb import WandbLoggerCallback
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray_init({"env_vars": {k: os.environ[k] for k in ("PYTHONPATH", "BENCH_TIMES", "WANDB_SILENT", "WANDB_DIR")}})
    name, goal = metric(workload)

    def trainable(config: dict) -> None:
        import bench_trainers

        def report(step: int, **metrics: float) -> None:
            tune.report(metrics)

        getattr(bench_trainers, workload.lower())(config, report)

    if workload == "W1":
        space = {"x": tune.uniform(-10, 10), "y": tune.loguniform(1e-4, 1), "c": tune.choice(["a", "b", "c"])}
    else:
        space = {"lr": tune.loguniform(1e-3, 0.03), "hidden": tune.choice([32, 64, 128])}
    mode = "min" if goal == "minimize" else "max"
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(search_alg=OptunaSearch(metric=name, mode=mode, seed=0), num_samples=trials,
                                    max_concurrent_trials=PARALLEL, metric=name, mode=mode),
        run_config=tune.RunConfig(storage_path=str(work / "tune"), verbose=0, callbacks=[
            MLflowLoggerCallback(tracking_uri=uri, experiment_name="bench"),
            WandbLoggerCallback(project="bench", mode="offline", dir=str(work)),
        ]),
    )
    tuner.fit()
    ray.shutdown()


def run_optuna(workload: str, trials: int, uri: str, work: Path) -> None:
    import optuna

    import bench_trainers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name, goal = metric(workload)

    def objective(trial: optuna.Trial) -> float:
        def report(step: int, **metrics: float) -> None:
            trial.report(metrics[name], step)

        return getattr(bench_trainers, workload.lower())(suggest(trial, workload), report)[name]

    optuna.create_study(direction=goal, sampler=optuna.samplers.TPESampler(seed=0)).optimize(objective, n_trials=trials, n_jobs=PARALLEL)


def run_optuna_mlflow(workload: str, trials: int, uri: str, work: Path) -> None:
    import mlflow
    import optuna

    import bench_trainers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("bench")
    parent = client.create_run(exp).info.run_id
    name, goal = metric(workload)

    def objective(trial: optuna.Trial) -> float:
        config = suggest(trial, workload)
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id
        for k, v in config.items():
            client.log_param(run, k, v)

        def report(step: int, **metrics: float) -> None:
            for k, v in metrics.items():
                client.log_metric(run, k, v, step=step)

        out = getattr(bench_trainers, workload.lower())(config, report)
        client.set_terminated(run)
        return out[name]

    optuna.create_study(direction=goal, sampler=optuna.samplers.TPESampler(seed=0)).optimize(objective, n_trials=trials, n_jobs=PARALLEL)


# -- the parent: run each system in a fresh process, measure, compare ----------------------


def write_trainers(work: Path, workload: str) -> None:
    """The benchmark's trainer module in ``work``, where each trial logs its times, and for W2 a copy of
    the repo's ``trainers`` package: on a running Ray (--ray-running) a sweep's workers see the launch
    directory only, shipped as Ray's working_dir."""
    header = f"TIMES = {str(work / 'times.jsonl')!r}\n"
    (work / "bench_trainers.py").write_text(header + TRAINERS + (W2_TRAINER if workload == "W2" else ""))
    if workload == "W2":
        shutil.copytree(ROOT / "trainers", work / "trainers", ignore=shutil.ignore_patterns("__pycache__"))


def measure(system: str, workload: str, base: Path) -> dict:
    import psutil

    work = Path(tempfile.mkdtemp(prefix=f"{system}-{workload}-", dir=base))
    write_trainers(work, workload)
    result = work / "result.json"
    born = time.time()
    proc = subprocess.Popen([sys.executable, __file__, "--child", system, workload, str(work), str(result), repr(born)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    busy = machine_busy_s()
    root = psutil.Process(proc.pid)
    seen: dict[int, tuple[str, float]] = {}  # by pid: what the process is, its CPU seconds when last seen
    while True:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            tree = []
        for p in tree:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                seen[p.pid] = (process_kind(p), t.user + t.system)
        try:
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            pass
    ended = time.time()  # the process is gone, the interpreter's exit included: what a user waits for
    busy = machine_busy_s() - busy
    output = proc.stdout.read()  # type: ignore[union-attr]
    if proc.returncode != 0 or not result.exists():
        raise SystemExit(f"{system} on {workload} failed:\n{output[-3000:]}")
    done = json.loads(result.read_text())
    by_kind: dict[str, float] = {}
    for kind, cpu in seen.values():
        by_kind[kind] = by_kind.get(kind, 0.0) + cpu
    return {**done, "done": done["wall"], "wall": ended - born, "peak_mb": peak / 2**20, "cpu": busy, "by_process": by_kind}


def process_kind(p) -> str:
    """What a process of a system's tree is: the system's own process, a Ray actor or task by its class,
    a Ray or W&B service by its program (its CPU time is read while it lives: a process that lives
    less than the 0.2 s between two looks is missed)."""
    cmd = " ".join(p.cmdline())
    if "--child" in cmd:
        return "the system's process"
    if cmd.startswith("ray::"):
        return cmd.split()[0].split(".")[0]
    return Path(p.cmdline()[1] if p.name().startswith("python") and len(p.cmdline()) > 1 else p.name()).name


def machine_busy_s() -> float:
    """CPU seconds the machine has spent busy since boot, over all cores (psutil's system-wide times;
    on Linux guest time is already in user time)."""
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


@contextlib.contextmanager
def ray_head(start: bool, tmp: Path) -> Iterator[None]:
    """With ``start``: a Ray head for the whole run, its address in ``ADDRESS_ENV`` for the children."""
    if not start:
        yield
        return
    import socket

    from sweeps.cluster import start_ray_head, stop_ray_head

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp / "head").mkdir()
    head = start_ray_head("127.0.0.1", port, None, None, tmp / "head", dict(os.environ, RAY_USAGE_STATS_ENABLED="0"))
    os.environ[ADDRESS_ENV] = address = f"127.0.0.1:{port}"
    os.environ["RAY_AUTH_MODE"] = "token"  # as `sweeps launch --address` sets it: `ray start` clusters use tokens
    print(f"a Ray head runs at {address} for every system", flush=True)
    try:
        yield
    finally:
        os.environ.pop(ADDRESS_ENV, None)
        stop_ray_head(head, address)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ray-running", action="store_true",
                    help="start one Ray head first (`ray start --head`, as `sweeps head` does on a cluster) and have every "
                         "system that uses Ray join it, instead of starting a local Ray of its own")
    ap.add_argument("--by-process", action="store_true",
                    help="also print each system's CPU seconds by kind of process (medians), the largest first")
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        system, workload, work, out, born = args.child
        Path(out).write_text(json.dumps(child(system, workload, Path(work), float(born))))
        return
    with tempfile.TemporaryDirectory() as tmp, ray_head(args.ray_running, Path(tmp)):
        for workload in args.workloads:
            trials = WORKLOADS[workload]["trials"]
            runs: dict[str, list[dict]] = {s: [] for s in args.systems}
            for rep in range(args.repeats):
                for system in args.systems:
                    r = measure(system, workload, Path(tmp))
                    runs[system].append(r)
                    print(f"{workload} #{rep + 1} {system:>16}: wall {r['wall']:7.1f} s (exit {r['wall'] - r['done']:.1f} s), first running {r['running']:5.1f} s, "
                          f"first result {r['first']:5.1f} s, "
                          f"peak {r['peak_mb']:6.0f} MB, CPU {r['cpu']:5.1f} s, recorded {({k: v for k, v in r.items() if k in ('mlflow_runs', 'wandb_runs')})}",
                          flush=True)
            print(f"\n{workload}: {trials} trials, {PARALLEL} at a time; medians of {args.repeats}")
            print(f"{'system':>16} {'wall s':>8} {'running s':>9} {'first s':>8} {'overhead/trial s':>17} {'after start-up':>15} "
                  f"{'steady':>7} {'end s':>6} {'exit s':>6} {'peak MB':>8} {'CPU s':>6} {'wall / sweeps':>14} {'done / sweeps':>14} "
                  f"{'CPU / sweeps':>13}")
            def median(rs: list[dict], key: str) -> float:
                return statistics.median(r[key] for r in rs)

            # each ratio against sweeps' median; "done": the walls stopped before the interpreter's exit
            # (as before the eighth measurement)
            base = {k: median(runs["sweeps"], k) for k in ("wall", "done", "cpu")} if "sweeps" in runs else {}

            def ratio(value: float, key: str) -> str:
                return f"x{value / base[key]:.2f}" if base.get(key) else "-"

            for system, rs in runs.items():
                running, cpu = median(rs, "running"), median(rs, "cpu")
                if system == "ray":
                    what = "joining the running Ray" if args.ray_running else "local Ray start-up: ray.init"
                    print(f"{system:>16} {'-':>8} {running:9.2f}   ({what} and one task running; {cpu:.1f} s of CPU to the end "
                          f"of its process)")
                    continue
                wall, done, first, compute = median(rs, "wall"), median(rs, "done"), median(rs, "first"), median(rs, "compute")
                per = (wall - compute / PARALLEL) / trials
                after = (wall - first - compute / PARALLEL * (trials - 1) / trials) / max(trials - 1, 1)
                exit_s = statistics.median(r["wall"] - r["done"] for r in rs)
                print(f"{system:>16} {wall:8.1f} {running:9.2f} {first:8.1f} {per:17.3f} {after:15.3f} {median(rs, 'steady'):7.3f} "
                      f"{wall - median(rs, 'last'):6.1f} {exit_s:6.1f} {median(rs, 'peak_mb'):8.0f} {cpu:6.1f} "
                      f"{ratio(wall, 'wall'):>14} {ratio(done, 'done'):>14} {ratio(cpu, 'cpu'):>13}")
            print()
            if args.by_process:
                print_by_process(runs)


def print_by_process(runs: dict[str, list[dict]]) -> None:
    """Each system's CPU seconds by kind of process, medians over the repeats (0 where a run lacked it)."""
    for system, rs in runs.items():
        kinds = {k for r in rs for k in r["by_process"]}
        cpu = {k: statistics.median(r["by_process"].get(k, 0.0) for r in rs) for k in kinds}
        print(f"{system}: CPU s by process, medians of {len(rs)} (total {sum(cpu.values()):.1f} s)")
        for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            if seconds >= 0.05:
                print(f"  {seconds:6.2f}  {kind}")
    print()


if __name__ == "__main__":
    main()
