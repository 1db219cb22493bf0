"""Read W&B offline runs back, whole, with the package's own reader of W&B run files
(``sweeps.mirror.RunFile``: W&B 0.31 ships none)."""

from __future__ import annotations

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
