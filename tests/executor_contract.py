"""The executor contract (sweeps.executors.Executor), as a suite every executor passes.

A test module subclasses :class:`ExecutorContract` and gives ``make(plan)``, as Hydra's
``LauncherTestSuite`` does for launchers. Trials record nothing here (tracking off): what
is under test is where they run and how they come back."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from sweeps.executors import JudgeSpec, Plan
from sweeps.program import Program
from sweeps.space import EarlyTerminate
from sweeps.trial import Lost, LostCause, TrialRequest, TrialResult, TrialState


def request(number: int, trainer: str, config: dict[str, Any], *, stop_metric: str | None = None) -> TrialRequest:
    return TrialRequest(sweep_id="contract", run_name=f"contract-{number}", number=number, config=config,
                        params=config, seed=number, trainer=trainer, metric="loss", tracking_uri="none", run_id="",
                        stop_metric=stop_metric)


def collect(executor: Any, handles: list[Any], timeout: float = 120) -> dict[int, TrialResult | Lost]:
    """Wait for every one of ``handles``; their outcomes by trial number."""
    out: dict[int, TrialResult | Lost] = {}
    left, deadline = list(handles), time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        for handle, outcome in executor.wait(left, timeout=1.0):
            left.remove(handle)
            out[outcome.number] = outcome
    assert not left, f"{len(left)} trials did not end within {timeout} s"
    return out


class ExecutorContract:
    """What the loop relies on, whatever runs the trials."""

    def make(self, plan: Plan) -> Any:
        raise NotImplementedError

    def test_a_running_programs_last_line_is_there_for_the_live_view_and_a_cancel_stops_it(self, tmp_path: Path) -> None:
        (tmp_path / "talk.py").write_text("import time\nprint('warming up', flush=True)\ntime.sleep(1)\n"
                                          "print('epoch 1 of 9', flush=True)\ntime.sleep(60)\n")
        ex = self.make(Plan(tracking_uri="none", parallel=1))
        program = Program("talk.py", ("${interpreter}", "${program}"))
        try:
            handle = ex.submit(dataclasses.replace(request(0, "", {}), program=program, workdir=str(tmp_path)))
            deadline, seen = time.monotonic() + 60, []
            while time.monotonic() < deadline and (not seen or seen[-1] != "epoch 1 of 9"):
                ex.wait([handle], timeout=0.5)  # where the executor looks at its trials
                seen += [line for line in ex.lines([handle]).values() if not seen or line != seen[-1]]
            assert seen and seen[-1] == "epoch 1 of 9", seen
            ex.cancel(handle, "enough")
            got = collect(ex, [handle], timeout=30)
        finally:
            ex.shutdown()
        assert isinstance(got[0], Lost) and got[0].cause is LostCause.CANCELLED and got[0].reason == "enough"

    def test_a_trial_runs_and_comes_back_with_its_result(self) -> None:
        ex = self.make(Plan(tracking_uri="none", parallel=2))
        try:
            assert ex.capacity() >= 1
            handles = [ex.submit(request(i, "sweeps_test_trainers:quadratic", {"x": 0.1 * i})) for i in range(3)]
            got = collect(ex, handles)
        finally:
            ex.shutdown()
        assert sorted(got) == [0, 1, 2]
        for i, result in got.items():
            assert isinstance(result, TrialResult) and result.state is TrialState.COMPLETE
            assert result.value == (0.1 * i - 0.3) ** 2 and result.steps == 3

    def test_a_failing_trainer_is_a_failed_result_not_a_lost_trial(self) -> None:
        ex = self.make(Plan(tracking_uri="none", parallel=1))
        try:
            got = collect(ex, [ex.submit(request(0, "sweeps_test_trainers:fails_when_big", {"x": 9}))])
        finally:
            ex.shutdown()
        result = got[0]
        assert isinstance(result, TrialResult) and result.state is TrialState.FAIL
        assert result.error == "RuntimeError: x=9 is too big" and result.value is None

    def test_wait_returns_nothing_within_its_timeout_while_trials_run(self) -> None:
        ex = self.make(Plan(tracking_uri="none", parallel=1))
        try:
            handle = ex.submit(request(0, "sweeps_test_trainers:slow", {"x": 1, "sleep": 3.0}))
            assert ex.wait([handle], timeout=0.2) == []
            got = collect(ex, [handle])
        finally:
            ex.shutdown()
        assert got[0].state is TrialState.COMPLETE  # type: ignore[union-attr]

    def test_a_cancelled_trial_comes_back_cancelled_with_the_reason_queued_or_running(self) -> None:
        ex = self.make(Plan(tracking_uri="none", parallel=1, judge=JudgeSpec(EarlyTerminate(type="median"), "loss",
                                                                             "minimize")))
        try:
            slot = max(1, ex.capacity())
            config = {"curve": [1.0] * 600, "pause": 0.05}
            running = [ex.submit(request(i, "sweeps_test_trainers:curve", config, stop_metric="loss"))
                       for i in range(slot)]
            queued = ex.submit(request(slot, "sweeps_test_trainers:curve", config, stop_metric="loss"))
            time.sleep(1.0)
            for handle in [*running, queued]:
                ex.cancel(handle, "time budget reached")
            got = collect(ex, [*running, queued], timeout=60)
        finally:
            ex.shutdown()
        for outcome in got.values():
            assert isinstance(outcome, Lost) and outcome.cause is LostCause.CANCELLED, outcome
            assert outcome.cancelled and outcome.reason == "time budget reached"

    def test_the_judge_stops_a_losing_trial_on_the_report_that_decides_it(self) -> None:
        # W&B's hyperband, bands 1, 2, 4, ...: after three good trials, a worse one stops at its first report
        et = EarlyTerminate(type="hyperband", min_iter=1, eta=2.0)
        ex = self.make(Plan(tracking_uri="none", parallel=1, judge=JudgeSpec(et, "loss", "minimize")))
        try:
            for i in range(3):
                good = collect(ex, [ex.submit(request(i, "sweeps_test_trainers:curve", {"curve": [1.0, 0.5, 0.2]},
                                                      stop_metric="loss"))])
                assert good[i].state is TrialState.COMPLETE  # type: ignore[union-attr]
            bad = collect(ex, [ex.submit(request(3, "sweeps_test_trainers:curve", {"curve": [5.0, 4.0, 3.0]},
                                                 stop_metric="loss"))])
        finally:
            ex.shutdown()
        stopped = bad[3]
        assert isinstance(stopped, TrialResult) and stopped.state is TrialState.PRUNED
        assert stopped.curve == (5.0,) and stopped.pruned_reason.startswith("hyperband band 1")  # type: ignore[union-attr]

    def test_a_resumed_judge_knows_the_trials_before_it(self) -> None:
        et = EarlyTerminate(type="hyperband", min_iter=1, eta=2.0)
        history = tuple((i, (1.0, 0.5, 0.2), "COMPLETE", 0.2) for i in range(3))
        ex = self.make(Plan(tracking_uri="none", parallel=1, judge=JudgeSpec(et, "loss", "minimize", history)))
        try:
            bad = collect(ex, [ex.submit(request(3, "sweeps_test_trainers:curve", {"curve": [5.0, 4.0, 3.0]},
                                                 stop_metric="loss"))])
        finally:
            ex.shutdown()
        assert bad[3].state is TrialState.PRUNED  # type: ignore[union-attr]

    def test_shutdown_twice_is_harmless(self) -> None:
        ex = self.make(Plan(tracking_uri="none", parallel=1))
        collect(ex, [ex.submit(request(0, "sweeps_test_trainers:quadratic", {"x": 0.3}))])
        ex.shutdown()
        ex.shutdown()
