"""Worker processes: one per slot for the sweep, holding its GPUs; fresh ones where asked."""

from __future__ import annotations

from collections import defaultdict

from wandb_offline import ended_runs, offline_runs


def _sweep(values: list[int], resources: str) -> str:
    return f"""
        name: workers
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:where_am_i
        resources: {resources}
        parameters:
          x: {{values: {values}}}
    """


def _seen(env, summary) -> dict[int, tuple[int, float, str]]:
    """x -> (pid, GPU id seen, status) of each trial."""
    _, children = env.runs(summary)
    return {int(c.data.params["x"]): (int(c.data.metrics["pid"]), c.data.metrics["gpu"], c.info.status) for c in children}


def test_each_slot_runs_its_trials_in_one_process_that_keeps_its_gpu(env) -> None:
    summary = env.launch(_sweep(list(range(8)), "{gpus: 1, cpus: 1}"), parallel=2)
    seen = _seen(env, summary)
    assert len(seen) == 8 and all(status == "FINISHED" for _, _, status in seen.values())
    gpus_of = defaultdict(set)
    for pid, gpu, _ in seen.values():
        gpus_of[pid].add(gpu)
    # two slots, two processes; a process never sees its GPU change under it
    assert len(gpus_of) == 2
    assert all(len(g) == 1 for g in gpus_of.values())
    assert set().union(*gpus_of.values()) == {0.0, 1.0}


def test_a_failed_gpu_trial_gets_a_fresh_worker(env) -> None:
    summary = env.launch(_sweep([-1, 1, 2], "{gpus: 1, cpus: 1}"), parallel=1)
    seen = _seen(env, summary)
    assert seen[-1][2] == "FAILED" and seen[1][2] == seen[2][2] == "FINISHED"
    # the failed trial's process is replaced; the next ones share the new one
    assert seen[-1][0] not in (seen[1][0], seen[2][0])
    assert seen[1][0] == seen[2][0]


def test_reuse_workers_false_gives_every_trial_a_fresh_process(env) -> None:
    summary = env.launch(_sweep([1, 2, 3], "{cpus: 1, reuse_workers: false}"), parallel=1)
    seen = _seen(env, summary)
    assert len({pid for pid, _, _ in seen.values()}) == 3
    assert {gpu for _, gpu, _ in seen.values()} == {-1.0}
    # each worker finished its trial's W&B run (on its W&B thread) before it ended
    _, children = env.runs(summary)
    wb = {r.name: r for r in ended_runs(env.tmp, len(children), "trial")}
    for c in children:
        run = wb[c.info.run_name]
        assert run.exit_code == 0 and run.summary["sweeps/state"] == "COMPLETE", c.info.run_name
        assert [h["loss"] for h in run.history if "loss" in h] == [c.data.metrics["loss"]]


def test_the_wandb_thread_runs_calls_in_order_and_drain_waits_for_them() -> None:
    import threading

    from sweeps import mirror

    seen: list[int] = []
    gate = threading.Event()
    mirror.later(gate.wait)  # holds the thread until the test lets it go
    for i in range(100):
        mirror.later(lambda i=i: seen.append(i))
    mirror.later(lambda: 1 / 0)  # an error is logged; the calls after it still run
    mirror.later(lambda: seen.append(100))
    assert not mirror.drain(timeout=0.2) and seen == []
    gate.set()
    assert mirror.drain(timeout=10)
    assert seen == list(range(101))


def test_workers_import_neither_mlflow_nor_wandb_their_nodes_recorder_writes_every_run(env) -> None:
    summary = env.launch("""
        name: recorded-by-the-node
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:imports_seen
        parameters:
          x: {values: [1, 2, 3, 4]}
    """, parallel=2)
    _, children = env.runs(summary)
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    for c in children:
        # the trainer ran in a worker that imported neither; its record is whole all the same
        assert {k: v for k, v in c.data.metrics.items() if k.startswith("has_")} == \
            {"has_mlflow": 0.0, "has_wandb": 0.0, "has_sqlalchemy": 0.0}, c.info.run_name
        assert c.data.metrics["loss"] == float(c.data.params["x"]) and c.data.tags["sweeps.packages"]
    wb = {r.name: r for r in ended_runs(env.tmp, len(children), "trial")}
    assert sorted(wb) == sorted(c.info.run_name for c in children)
    for c in children:
        run = wb[c.info.run_name]
        assert run.exit_code == 0 and run.summary["sweeps/state"] == "COMPLETE"
        assert run.summary["sweeps/mlflow_run_id"] == c.info.run_id
        assert [h["loss"] for h in run.history if "loss" in h] == [c.data.metrics["loss"]]


def _one_at_a_time(env, name: str, trainer: str, xs: list[int]):
    """A grid sweep over ``xs``, one trial at a time, whose trainer keeps marks in ``env.tmp/marks``."""
    out = env.tmp / "marks"
    out.mkdir()
    return env.launch(f"""
        name: {name}
        method: grid
        metric: {{name: loss}}
        trainer: sweeps_test_trainers:{trainer}
        parameters:
          out: {{value: "{out}"}}
          x: {{values: {xs}}}
    """, parallel=1)


def test_a_dead_recorder_loses_the_trial_it_was_writing_and_a_new_one_records_its_rerun(env) -> None:
    summary = _one_at_a_time(env, "recorder-dies", "kills_the_recorder", [1, 2])
    assert summary.counts == {"COMPLETE": 2, "PRUNED": 0, "FAIL": 1, "KILLED": 0}
    _, children = env.runs(summary)
    (lost,) = [c for c in children if c.info.status == "FAILED"]
    assert lost.data.tags["sweeps.lost"] == "true" and "recorder" in lost.data.tags["sweeps.error"]
    done = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(float(c.data.params["x"]) for c in done) == [1.0, 2.0]
    assert all(c.data.metrics["loss"] == float(c.data.params["x"]) for c in done)
    # the re-run and the trial after it were written by a new recorder, W&B runs included
    finished = {r.name: r for r in ended_runs(env.tmp, len(done), "trial", {c.info.run_name for c in done})
                if r.exit_code == 0}
    assert all(c.info.run_name in finished for c in done)
    # and the sweep's own W&B run, which the dead recorder's W&B process wrote, goes on in the new one
    ended = [r for r in ended_runs(env.tmp, 1, "sweep") if r.exit_code == 0]
    assert len(ended) == 1 and ended[0].summary["trials_complete"] == 2 and ended[0].summary["trials_fail"] == 1


def test_with_mlflow_off_the_recorder_still_tells_apart_the_trials_it_mirrors_to_wandb(env) -> None:
    # every trial's MLflow run id is empty here: records keyed by it collided, and trials at once were lost
    summary = env.launch("""
        name: wandb-only
        method: grid
        metric: {name: loss}
        trainer: sweeps_test_trainers:slow
        parameters:
          sleep: {value: 0.3}
          x: {values: [1, 2, 3, 4, 5, 6]}
    """, parallel=2, tracking_uri="none")  # two trials at once, each one running while the other ends
    assert summary.counts == {"COMPLETE": 6, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
    assert not (env.tmp / "mlflow.db").exists()
    wb = ended_runs(env.tmp, 6, "trial")
    assert sorted(r.name for r in wb) == [f"wandb-only-{n}" for n in range(6)]
    for run in wb:
        assert run.exit_code == 0 and run.summary["sweeps/state"] == "COMPLETE", run.name
        assert [h["loss"] for h in run.history if "loss" in h] == [float(run.config["x"])], run.name


def test_a_dead_wandb_process_fails_no_trial_and_a_new_one_mirrors_the_next_ones(env) -> None:
    summary = _one_at_a_time(env, "wandb-dies", "kills_the_wandb_process", [1, 2, 3, 4])
    # W&B never fails a trial: every trial is recorded in MLflow as it ran
    assert summary.counts == {"COMPLETE": 4, "PRUNED": 0, "FAIL": 0, "KILLED": 0}
    _, children = env.runs(summary)
    assert sorted(float(c.data.params["x"]) for c in children if c.info.status == "FINISHED") == [1.0, 2.0, 3.0, 4.0]
    # the W&B process that took over mirrors the trials after the death is noticed (at most a trial later)
    by_x = {float(c.data.params["x"]): c.info.run_name for c in children}
    finished = {r.name: r for r in ended_runs(env.tmp, 2, "trial", {by_x[3.0], by_x[4.0]}) if r.exit_code == 0}
    for x in (3.0, 4.0):
        run = finished[by_x[x]]
        assert run.summary["sweeps/state"] == "COMPLETE" and [h["loss"] for h in run.history if "loss" in h] == [x]
    # the sweep's own W&B run (the controller's) ends with the sweep
    ended = [r for r in ended_runs(env.tmp, 1, "sweep") if r.exit_code == 0]
    assert len(ended) == 1 and ended[0].summary["trials_finished"] == 4
    assert ended[0].summary["best_loss"] == 1.0
