"""Worker processes: one per slot for the sweep, holding its GPUs; fresh ones where asked."""

from __future__ import annotations

from collections import defaultdict

from wandb_offline import offline_runs


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
    wb = {r.name: r for r in offline_runs(env.tmp) if r.job_type == "trial"}
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
