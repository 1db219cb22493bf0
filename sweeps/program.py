"""A W&B program as a trial: the file's ``program`` and ``command``, run as W&B's agent runs them.

The command line is rendered with W&B's own functions (``mirror.render_command``) and run
without a shell, in a process group of its own that dies with its worker. The script gets
the environment W&B's agent gives a run (``WANDB_RUN_ID``, ``WANDB_SWEEP_PARAM_PATH``, the
run's group and name), so its own ``wandb.init()`` makes the trial's W&B run with the
trial's config; ``MLFLOW_TRACKING_URI`` and ``MLFLOW_RUN_ID`` make its own MLflow calls land
in the trial's child run. What it logs with ``wandb.log`` is read from its run's file while
it runs and handed to ``report`` (early termination judges each value; MLflow records it).
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable

from .mirror import FLUSH_ENV, RunFile, WandbSettings, find_run_file, render_command, write_param_file

#: how long a script that early termination stops has between SIGTERM and SIGKILL
STOP_GRACE_S = 10.0
#: how often the script's run file and process are looked at
POLL_S = 0.5
#: how long a script that exited may take for its run file to show its end
EXIT_WAIT_S = 10.0
#: the lines of stderr a failed script's error shows
STDERR_LINES = 15

#: started ahead of the program on Linux: the program gets SIGKILL when the worker that started it
#: dies (``prctl(PR_SET_PDEATHSIG)``; set in the new process before it becomes the program)
_GUARD = ("import ctypes,os,signal,sys\n"
          "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
          "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"
          "os.execvp(sys.argv[2], sys.argv[2:])\n")


#: W&B's macro for an environment variable's value in a command line
_ENVVAR = re.compile(r"\$\{envvar:([^}]+)\}")
#: what a masked value reads as in what sweeps records of a program
MASK = "***"


@dataclass(frozen=True)
class Program:
    """A W&B file's ``program`` (a path from the launch directory) and ``command`` (W&B's macros); or a
    trainer (``function``, `module:function`) that runs as W&B's agent runs a function (``path``: its file)."""

    path: str
    command: tuple[str, ...] = ()
    function: str = ""

    def passed_values(self) -> list[str]:
        """The values its command takes from the environment (``${envvar:NAME}``): often a key or a
        token, they are masked in what sweeps records of the program (its output, its error, its
        last line), longest first so that one value inside another is masked whole."""
        names = {m for chunk in self.command for m in _ENVVAR.findall(str(chunk))}
        return sorted({v for n in names if len(v := os.environ.get(n, "")) >= 4}, key=len, reverse=True)


class ProgramFailed(Exception):
    """The script exited with an error, or never logged the metric."""


class Pulse:
    """When a trial last showed a sign of life, and the last line it printed. A script shows one
    when it writes output or W&B records, or uses CPU time; a worker's heartbeat says how long ago
    that was, so a script that hangs goes silent to the controller although its worker is alive."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._started = False  # idle counts from the program's start: setting it up is the worker's work
        self.line = ""
        #: set by an executor that cannot kill the trial's process itself (the local one)
        self.cancelled = False

    def beat(self, line: str = "") -> None:
        self._last = time.monotonic()
        self._started = True
        if line:
            self.line = line

    def idle(self) -> float:
        return time.monotonic() - self._last if self._started else 0.0


@dataclass(frozen=True)
class Target:
    """Where a trial's records go, as the script's environment names them."""

    number: int
    seed: int
    run_name: str
    group: str
    wandb: WandbSettings | None
    wandb_id: str
    tracking_uri: str
    run_id: str
    workdir: str


class ProgramRun:
    """Runs a program for one trial; called as a trainer, ``run(config, report) -> final metrics``
    (the numbers of the run's summary). ``files`` are what the trial's run keeps (its output);
    ``cleanup`` removes them once they are kept."""

    def __init__(self, program: Program, target: Target, pulse: Pulse | None = None) -> None:
        self.program, self.target, self.pulse = program, target, pulse or Pulse()
        self.tmp = tempfile.mkdtemp(prefix=f"sweeps-trial-{target.number}-")
        self.output = os.path.join(self.tmp, "output.log")
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._masked = [v.encode() for v in program.passed_values()]
        self._lock = threading.Lock()
        mirroring = target.wandb is not None and target.wandb.mode != "disabled"
        # without W&B the script's run is still read, from a folder of the trial's own that goes with it
        self.wandb = target.wandb if mirroring else WandbSettings(mode="offline", dir=self.tmp)

    def files(self) -> tuple[str, ...]:
        return (self.output,) if os.path.exists(self.output) else ()

    def cleanup(self) -> None:
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def argv(self, config: dict[str, Any]) -> list[str]:
        """The command line, and the files its macros name, written into the trial's folder."""
        args_json = os.path.join(self.tmp, "args.json")
        Path(args_json).write_text(json.dumps(config))
        return render_command(self.program.command, config, interpreter=sys.executable, program=self.program.path,
                              args_json_file=args_json, project=self.wandb.project, entity=self.wandb.entity)

    def environment(self, config: dict[str, Any]) -> dict[str, str]:
        """The environment W&B's agent gives a run, and MLflow's for the trial's child run."""
        t, w = self.target, self.wandb
        params = os.path.join(self.tmp, "config.yaml")
        write_param_file(params, config)
        env = {**os.environ, **FLUSH_ENV, "WANDB_RUN_ID": t.wandb_id, "WANDB_SWEEP_PARAM_PATH": params,
               "WANDB_MODE": w.mode, "WANDB_DIR": w.dir or os.getcwd(), "WANDB_RUN_GROUP": t.group,
               "WANDB_JOB_TYPE": "trial", "WANDB_NAME": t.run_name, "WANDB_PROJECT": w.project or "sweeps",
               "SWEEPS_TRIAL": str(t.number), "SWEEPS_SEED": str(t.seed)}
        if w.entity:
            env["WANDB_ENTITY"] = w.entity
        if t.tracking_uri != "none":
            env.update(MLFLOW_TRACKING_URI=t.tracking_uri, MLFLOW_RUN_ID=t.run_id)
        if self._masked:
            # W&B's run metadata records the command line, with the values ${envvar:} put in it, and its
            # console capture what the script prints; output.log has it, masked
            env.update(WANDB_X_DISABLE_META="true", WANDB_CONSOLE="off")
        return env

    def cwd(self) -> str:
        """The launch directory where the program is there (on this machine, or as Ray's copy of it)."""
        here = os.getcwd()
        return self.target.workdir if os.path.exists(os.path.join(self.target.workdir, self.program.path)) else here

    def __call__(self, config: dict[str, Any], report: Callable[..., None]) -> dict[str, float]:
        argv = self.argv(config)
        if sys.platform.startswith("linux"):
            argv = [sys.executable, "-I", "-c", _GUARD, str(os.getpid()), *argv]
        proc = subprocess.Popen(argv, cwd=self.cwd(), env=self.environment(config), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.pulse.beat()  # it started: from now on, no sign of life for heartbeat_timeout is a hang
        with open(self.output, "wb") as log:
            readers = [threading.Thread(target=self._read, args=(stream, log, err), daemon=True)
                       for stream, err in ((proc.stdout, False), (proc.stderr, True))]
            for r in readers:
                r.start()
            try:
                summary = self._follow(proc, report)
            except BaseException:
                self._stop(proc)
                raise
            finally:
                for r in readers:
                    r.join(5)
        if proc.returncode != 0:
            raise ProgramFailed(f"{self.program.path} {_how(proc.returncode)}; the last lines of its stderr:\n"
                                + "".join(self._stderr).rstrip())
        return {k: float(v) for k, v in _metrics(summary).items()}

    def _read(self, stream: IO[bytes], log: IO[bytes], err: bool) -> None:
        for raw in iter(stream.readline, b""):
            for value in self._masked:
                raw = raw.replace(value, MASK.encode())
            with self._lock:
                log.write(raw)
                log.flush()
            line = raw.decode(errors="replace")
            if err:
                self._stderr.append(line)
            self.pulse.beat(line.strip()[:200])

    def _follow(self, proc: subprocess.Popen[bytes], report: Callable[..., None]) -> dict[str, Any]:
        """Hand each history row the script's run gains to ``report`` while the script runs; its summary
        once it has exited."""
        runfile: RunFile | None = None
        summary: dict[str, Any] = {}
        cpu, ended = -1.0, None
        while True:
            code = proc.poll()
            if code is not None and ended is None:
                ended = time.monotonic()
            if runfile is None:
                path = find_run_file(self.wandb.dir or os.getcwd(), self.target.wandb_id)
                runfile = RunFile(path) if path else None
            update = runfile.read() if runfile is not None else None
            if update is not None:
                if update.history or update.summary:
                    self.pulse.beat()
                summary.update(update.summary)
                files = os.path.join(os.path.dirname(runfile.path), "files")
                for step, row in update.history:
                    numbers, media = _metrics(row), _media(row, files)
                    if numbers or media:
                        report(step=step, **numbers, **media)
                if update.exit_code is not None:
                    proc.wait()
                    return summary
            if ended is not None and (runfile is None or time.monotonic() - ended > EXIT_WAIT_S):
                return summary  # no run, or one that never wrote its end
            if self.pulse.cancelled and ended is None:
                self._stop(proc)
                continue
            used = _cpu_seconds(proc.pid)
            if used > cpu:
                cpu = used
                self.pulse.beat()
            time.sleep(POLL_S)

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM to the script's process group, SIGKILL after ``STOP_GRACE_S``."""
        if proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _typed(row: dict[str, Any]) -> dict[str, str]:
    """The keys of a row that hold a W&B data type (an image, a table, a histogram...), by their type:
    W&B logs one as a dict of fields (``picture._type``, ``picture.path``, ``picture.width``...)."""
    return {k[:-len("._type")]: v for k, v in row.items() if k.endswith("._type") and isinstance(v, str)}


def _metrics(row: dict[str, Any]) -> dict[str, Any]:
    """A row's numbers, but for the fields of its W&B data types (an image's width is no metric)."""
    typed = tuple(f"{k}." for k in _typed(row))
    return {k: v for k, v in row.items() if not k.startswith(("_", *typed)) and _is_number(v)}


def _media(row: dict[str, Any], files: str) -> dict[str, Any]:
    """A row's images and tables as ``report()`` takes them (a PIL image, a pandas table), read from the
    run's files, where W&B wrote them when the script logged them. Other data types stay in the W&B run."""
    out: dict[str, Any] = {}
    for key, kind in _typed(row).items():
        path = row.get(f"{key}.path")
        if kind not in ("image-file", "table-file") or not isinstance(path, str):
            continue
        try:
            if kind == "image-file":
                from PIL import Image

                with Image.open(os.path.join(files, path)) as image:
                    image.load()
                    out[key] = image.copy()
            else:
                import pandas as pd

                table = json.loads(Path(files, path).read_text())
                out[key] = pd.DataFrame(table["data"], columns=table["columns"])
        except (OSError, ValueError, KeyError) as exc:
            print(f"sweeps: {key} at this step not recorded in MLflow: {exc}", file=sys.stderr)
    return out


def _cpu_seconds(pid: int) -> float:
    """CPU time the process and its waited-for children used (Linux; elsewhere always 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
