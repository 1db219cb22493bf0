"""Read W&B offline runs back, whole, with the package's own reader of W&B run files
(``sweeps.mirror.RunFile``: W&B 0.31 ships none)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.mirror import RunFile


@dataclass
class OfflineRun:
    path: Path
    name: str = ""
    group: str = ""
    job_type: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    exit_code: int | None = None


def read_run(path: Path) -> OfflineRun:
    update = RunFile(str(path)).read()
    run = OfflineRun(path, update.run.get("name", ""), update.run.get("group", ""), update.run.get("job_type", ""),
                     summary=update.summary, artifacts=update.artifacts, exit_code=update.exit_code)
    run.history = [{**row, "_step": step} for step, row in update.history]
    run.config = {k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in update.config.items()
                  if not k.startswith("_")}
    return run


def offline_runs(wandb_dir: Path) -> list[OfflineRun]:
    """Every offline run under ``wandb_dir/wandb``."""
    return [read_run(p) for p in sorted((wandb_dir / "wandb").glob("offline-run-*/run-*.wandb"))]


def ended_runs(wandb_dir: Path, count: int, job_type: str, names: set[str] | None = None,
               timeout: float = 30.0) -> list[OfflineRun]:
    """The runs of ``job_type`` (named in ``names``) under ``wandb_dir/wandb`` that W&B has ended (an exit
    record), once there are ``count`` of them, or what there is after ``timeout`` s: W&B writes a run's last
    records after ``run.finish()`` returns (an offline run read at once lacked them 1 time in 30 on a loaded
    machine, and had them 2 s later)."""
    deadline = time.monotonic() + timeout
    while True:
        ended = [r for r in offline_runs(wandb_dir) if r.job_type == job_type and r.exit_code is not None
                 and (names is None or r.name in names)]
        if len(ended) >= count or time.monotonic() > deadline:
            return ended
        time.sleep(0.2)
