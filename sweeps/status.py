"""Reading sweeps back from their state directories (for `sweeps status`).

Read-only: the controller stays the only writer of a study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .state import SWEEP_FILE, SweepRecord, open_study, sweep_dir


def _best(study: Any) -> tuple[int | None, float | None]:
    try:
        t = study.best_trial
    except ValueError:  # no complete trial yet
        return None, None
    return t.number, t.value


def list_sweeps(root: Path) -> list[dict[str, Any]]:
    """One row per sweep in ``root``, newest first."""
    rows = []
    for d in sorted(root.glob(f"*/{SWEEP_FILE}")):
        rec = SweepRecord.load(d.parent)
        study = open_study(d.parent, rec.id, rec.goal, create=False)
        trials = study.get_trials(deepcopy=False)
        number, value = _best(study)
        rows.append({
            "id": rec.id, "name": rec.name, "status": rec.status, "method": rec.method, "metric": rec.metric,
            "goal": rec.goal, "created": rec.created, "trials_total": len(trials),
            "complete": sum(t.state.name == "COMPLETE" for t in trials), "best_trial": number, "best_value": value,
        })
    return sorted(rows, key=lambda r: r["created"], reverse=True)


def sweep_trials(root: Path, sweep_id: str) -> dict[str, Any]:
    """The sweep's record and a row per trial, with the best marked."""
    directory = sweep_dir(root, sweep_id)
    rec = SweepRecord.load(directory)
    study = open_study(directory, rec.id, rec.goal, create=False)
    number, value = _best(study)
    trials = [
        {
            "number": t.number, "state": t.state.name, "value": t.value,
            "params": t.user_attrs.get("config", {}), "duration_s": t.user_attrs.get("duration_s"),
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"), "error": t.user_attrs.get("error"),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    from dataclasses import asdict

    return {"sweep": asdict(rec), "best_trial": number, "best_value": value, "trials": trials}
