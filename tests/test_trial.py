"""What a trial's record names of its environment (sweeps.trial)."""

from __future__ import annotations

import threading
from importlib import metadata

from sweeps import trial as runner


def test_the_package_scan_runs_once_when_a_warm_up_and_a_trial_ask_at_once(monkeypatch) -> None:
    scans = []
    real = metadata.distributions

    def counted(*args, **kwargs):  # the real scan, counted
        scans.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(metadata, "distributions", counted)
    runner._requirements.cache_clear()
    start = threading.Barrier(4)
    seen = []

    def ask() -> None:
        start.wait(10)
        seen.append(runner.requirements())

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(scans) == 1 and len(seen) == 4 and len(set(seen)) == 1
    digest, text = seen[0]
    # the installed packages as name==version, this project's among them
    lines = text.splitlines()[1:]
    assert f"sweeps-orchestrator=={metadata.version('sweeps-orchestrator')}" in lines
    assert all("==" in line for line in lines)
    runner._requirements.cache_clear()
