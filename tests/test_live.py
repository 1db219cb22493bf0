"""The live view renders a snapshot (sweeps/live.py)."""

from __future__ import annotations

import time

from sweeps.live import LiveView, Progress


def test_the_running_trials_show_the_last_line_a_program_printed(capsys) -> None:
    now = time.monotonic()
    progress = Progress(sweep_id="abc", metric="loss", total=4, finished=1, counts={"COMPLETE": 1},
                        running=((1, now - 5, {"lr": 0.01}, "epoch 3/10 loss 0.41"), (2, now - 1, {"lr": 0.1}, "")))
    with LiveView(progress, enabled=True) as show:
        show(progress)
    err = capsys.readouterr().err
    assert "last output" in err and "epoch 3/10 loss 0.41" in err and "lr=0.01" in err
    assert "1 complete, 0 stopped early, 0 failed, 2 running" in err


def test_trainers_without_output_get_no_output_column(capsys) -> None:
    progress = Progress(sweep_id="abc", metric="loss", total=None, running=((0, time.monotonic(), {"x": 1}, ""),))
    with LiveView(progress, enabled=True):
        pass
    assert "last output" not in capsys.readouterr().err
