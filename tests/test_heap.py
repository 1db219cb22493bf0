"""The collector during start-up work, after it, and at a command's exit (sweeps.heap)."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time

import pytest

from sweeps import heap


@pytest.fixture(autouse=True)
def _collector_as_found():
    was = gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable() if was else gc.disable()


def _cycle() -> list:
    a: list = []
    a.append(a)
    return a


def test_start_up_pauses_the_collector_and_freezes_what_it_leaves_alive() -> None:
    gc.unfreeze()
    assert gc.isenabled()
    with heap.start_up():
        assert not gc.isenabled()
        kept = _cycle()
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    # frozen: a collection passes over it (not in any generation the collector walks)
    assert not any(o is kept for o in gc.get_objects())
    heap.thaw()
    assert gc.get_freeze_count() == 0 and any(o is kept for o in gc.get_objects())


def test_overlapping_start_ups_end_with_the_last_one() -> None:
    gc.unfreeze()
    first_in, second_out = threading.Event(), threading.Event()

    def other() -> None:
        with heap.start_up():
            first_in.set()
            second_out.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert first_in.wait(10)
    with heap.start_up():
        pass
    # this one ended, the other thread's goes on: still paused, nothing frozen yet, thaw waits too
    assert not gc.isenabled() and gc.get_freeze_count() == 0
    heap.thaw()
    second_out.set()
    t.join(10)
    assert gc.isenabled() and gc.get_freeze_count() > 0


def test_a_collector_the_program_turned_off_stays_off() -> None:
    gc.disable()
    with heap.start_up():
        pass
    assert not gc.isenabled()


def test_a_start_up_that_fails_still_hands_the_collector_back() -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        heap.starting_up(boom)()
    assert gc.isenabled()


def test_freeze_at_exit_leaves_the_last_collections_nothing_to_walk_and_exit_handlers_still_run() -> None:
    # a cycle with a finalizer: the interpreter's last collection finalizes it, unless it is frozen first
    code = """
import atexit, gc
from sweeps import heap
class Cycle:
    def __del__(self):
        print("collected at exit", flush=True)
c = Cycle(); c.me = c; del c
gc.disable()  # keep it for the exit
%s
atexit.register(lambda: print("handler ran", flush=True))
"""
    plain = subprocess.run([sys.executable, "-c", code % ""], capture_output=True, text=True, timeout=60)
    frozen = subprocess.run([sys.executable, "-c", code % "heap.freeze_at_exit(); heap.freeze_at_exit()"],
                            capture_output=True, text=True, timeout=60)
    assert plain.returncode == frozen.returncode == 0, plain.stderr + frozen.stderr
    assert plain.stdout.splitlines() == ["handler ran", "collected at exit"]
    assert frozen.stdout.splitlines() == ["handler ran"]


def test_a_program_that_froze_objects_itself_keeps_them_frozen() -> None:
    code = """
import gc
from sweeps import heap
kept = [[] for _ in range(100)]
gc.freeze()
before = gc.get_freeze_count()
with heap.start_up():
    more = [[] for _ in range(100)]
heap.thaw()
print(before > 0, gc.get_freeze_count() >= before + 100, gc.isenabled())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True"]


def test_a_start_up_that_outlasts_the_limit_gets_the_collector_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # a warm-up stuck on an unreachable store must not keep a worker's trials running uncollected
    monkeypatch.setattr(heap, "PAUSE_LIMIT_S", 0.2)
    gc.unfreeze()
    with heap.start_up():
        assert not gc.isenabled()
        deadline = time.monotonic() + 10
        while not gc.isenabled() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gc.isenabled()
        with heap.start_up():  # one more start-up, while overdue: the collector stays on
            assert gc.isenabled()
        kept = _cycle()
    # the end freezes all the same, and the next start-up pauses again
    assert gc.isenabled() and not any(o is kept for o in gc.get_objects())
    monkeypatch.setattr(heap, "PAUSE_LIMIT_S", 30.0)
    with heap.start_up():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_limit_leaves_a_collector_the_program_turned_off_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "PAUSE_LIMIT_S", 0.05)
    gc.disable()
    with heap.start_up():
        time.sleep(0.3)
        assert not gc.isenabled()
    assert not gc.isenabled()
