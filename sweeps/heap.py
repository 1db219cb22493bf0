"""Python's cyclic garbage collector and what a process keeps for its whole life.

Each full collection walks every object the collector tracks. A sweep's
processes import MLflow, Ray, Optuna, W&B or torch: some 300,000 objects that
live until the process ends, walked again on every full collection. In the
launch of a W1 sweep (benchmarks/overhead.py) that was 7 full collections and
1.4 s of CPU while Ray started, and 1.2 s more at the interpreter's exit, on a
machine whose 2 cores the sweep keeps busy.

So start-up work (imports, opening stores) runs with the collector paused, and
what it leaves alive is frozen (``gc.freeze``): later collections, and the one
at exit, pass over it. Refcounting still frees frozen objects as usual; only
garbage cycles among them are never collected, the ones the start-up itself
left included (2,708 objects, 0.96 MB, after importing MLflow, Ray, Optuna and
pandas; 9,566 objects, 1.8 MB, with torch, scikit-learn and W&B too). The ``sweeps`` command also
freezes everything at exit (``freeze_at_exit``): the process is ending, and
the operating system takes its memory back at once.

A pause is bounded: start-up work still running after ``PAUSE_LIMIT_S`` (a
warm-up waiting on an unreachable tracking server, say, while a trial runs
beside it) gets the collector back, and what it leaves is frozen at its end
all the same.
"""

from __future__ import annotations

import atexit
import gc
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_LOCK = threading.Lock()
_paused = 0  # start-ups under way in this process
_was_enabled = True  # the collector's state before the first of them
_program_froze: bool | None = None  # objects were frozen before our first start-up (None: none yet)
#: how long start-ups may keep the collector paused (seconds)
PAUSE_LIMIT_S = 30.0
_overdue = False  # the running start-ups outlasted PAUSE_LIMIT_S: the collector runs again
_timer: threading.Timer | None = None


@contextmanager
def start_up() -> Iterator[None]:
    """Work whose objects mostly live as long as the process: the collector pauses for it, and what is
    alive at its end is frozen. Overlapping start-ups (threads, nesting) end together, with the last
    one; a collector the program had turned off stays off."""
    global _paused, _was_enabled, _program_froze, _overdue, _timer
    with _LOCK:
        if _program_froze is None:
            _program_froze = gc.get_freeze_count() > 0
        if _paused == 0:
            _was_enabled = gc.isenabled()
            _timer = threading.Timer(PAUSE_LIMIT_S, _resume)
            _timer.daemon = True  # never keeps a process from exiting
            _timer.start()
        _paused += 1
        if not _overdue:
            gc.disable()
    try:
        yield
    finally:
        with _LOCK:
            _paused -= 1
            if _paused == 0:
                if _timer is not None:
                    _timer.cancel()
                    _timer = None
                _overdue = False
                gc.freeze()
                if _was_enabled:
                    gc.enable()


def _resume() -> None:
    """The start-ups under way outlasted ``PAUSE_LIMIT_S``: the collector runs again until they end."""
    global _overdue
    with _LOCK:
        if _paused > 0 and threading.current_thread() is _timer:
            _overdue = True
            if _was_enabled:
                gc.enable()


def starting_up(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run as a :func:`start_up` (a warm-up thread's target)."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with start_up():
            return fn(*args, **kwargs)
    return run


def thaw() -> None:
    """Hand what start-ups froze back to the collector: a process that goes on after its sweep (a
    notebook, a test session) collects the sweep's cycles again. Nothing is thawed while another
    start-up runs, nor in a program that had frozen objects itself before (``gc.unfreeze`` would
    hand those back too)."""
    with _LOCK:
        if _paused == 0 and not _program_froze:
            gc.unfreeze()


_AT_EXIT = False


def freeze_at_exit() -> None:
    """Freeze everything once this process begins to exit (after the exit handlers registered later):
    the interpreter's last collections then skip it. For a command's own process, never a library's."""
    global _AT_EXIT
    if not _AT_EXIT:
        atexit.register(gc.freeze)
        _AT_EXIT = True
