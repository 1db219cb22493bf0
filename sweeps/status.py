"""Reading sweeps back from their state directories (for `sweeps status`).

Read-only: the controller stays the only writer of a study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ConfigError
from .state import SWEEP_FILE, SweepRecord, open_study, sweep_dir, trial_state


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
            "number": t.number, "state": trial_state(t), "value": t.value,
            "params": t.user_attrs.get("config", {}), "duration_s": t.user_attrs.get("duration_s"),
            "mlflow_run_id": t.user_attrs.get("mlflow_run_id"), "error": t.user_attrs.get("error"),
        }
        for t in study.get_trials(deepcopy=False)
    ]
    from dataclasses import asdict

    return {"sweep": asdict(rec), "best_trial": number, "best_value": value, "trials": trials}


def best_trial(root: Path, sweep_id: str, trial: int | None = None) -> dict[str, Any]:
    """The sweep's best complete trial (or trial ``trial``) as the study records it: its number, value,
    params, MLflow run id and W&B run id, and where the sweep's records are. ConfigError when there is
    none, naming what there is."""
    directory = sweep_dir(root, sweep_id)
    rec = SweepRecord.load(directory)
    study = open_study(directory, rec.id, rec.goal, create=False)
    trials = study.get_trials(deepcopy=False)
    if trial is not None:
        found = [t for t in trials if t.number == trial]
        if not found or found[0].state.name != "COMPLETE":
            complete = [t.number for t in trials if t.state.name == "COMPLETE"]
            raise ConfigError(f"sweep {rec.id} has no complete trial {trial} (complete trials: "
                              f"{', '.join(map(str, complete)) or 'none'})")
        t = found[0]
    else:
        number, _ = _best(study)
        if number is None:
            states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(_count(trials).items())) or "no trials"
            raise ConfigError(f"sweep {rec.id} has no complete trial yet ({states}); `sweeps status {rec.id}` shows them")
        t = next(t for t in trials if t.number == number)
    from . import tracking

    run_id = t.user_attrs.get("mlflow_run_id")
    models = tracking.logged_models(rec.tracking_uri, rec.experiment_id, run_id or "")
    return {"sweep": rec.id, "name": rec.name, "metric": rec.metric, "goal": rec.goal, "trial": t.number,
            "value": t.value, "params": t.user_attrs.get("config", {}), "run_id": run_id,
            "wandb_run_id": t.user_attrs.get("wandb_id"), "tracking_uri": rec.tracking_uri,
            "experiment_id": rec.experiment_id, "parent_run_id": rec.parent_run_id, "wandb_mode": rec.wandb_mode,
            "wandb_project": rec.wandb_project, "wandb_entity": rec.wandb_entity,
            "models": models, "model_uri": models.get("model") or next(iter(models.values()), None)}


def trial_run_id(root: Path, sweep_id: str, number: int) -> str:
    """The MLflow run of the sweep's trial ``number``, whatever its state; ConfigError naming the trials
    there are when it has none."""
    directory = sweep_dir(root, sweep_id)
    rec = SweepRecord.load(directory)
    trials = open_study(directory, rec.id, rec.goal, create=False).get_trials(deepcopy=False)
    found = [t.user_attrs.get("mlflow_run_id") for t in trials if t.number == number]
    if not found or not found[0]:
        recorded = [str(t.number) for t in trials if t.user_attrs.get("mlflow_run_id")]
        raise ConfigError(f"sweep {rec.id} has no recorded trial {number} (trials: {', '.join(recorded) or 'none'})")
    return found[0]


def _count(trials: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in map(trial_state, trials):
        counts[state] = counts.get(state, 0) + 1
    return counts


def load(sweep: str, state_dir: str | Path = ".sweeps") -> Any:
    """A sweep's trials as a pandas DataFrame, one row per trial: ``number``, ``state``, ``value``,
    ``params.<name>``, the final value of every metric its MLflow run holds (``metrics.<name>``),
    ``duration_s``, ``mlflow_run_id``, ``wandb_run_id``, and why a trial failed or stopped early.

    >>> import sweeps
    >>> df = sweeps.load("3f2a9c1d")          # in the directory the sweep was launched from
    >>> df.sort_values("value").head()
    """
    from . import tracking
    from .state import trials_frame

    directory = sweep_dir(Path(state_dir), sweep)
    rec = SweepRecord.load(directory)
    frame = trials_frame(open_study(directory, rec.id, rec.goal, create=False))
    finals = tracking.final_metrics(rec.tracking_uri, rec.experiment_id, rec.id)
    names = sorted({k for metrics in finals.values() for k in metrics})
    at = frame.columns.get_loc("duration_s") if len(frame) else 0
    for offset, name in enumerate(names):
        frame.insert(at + offset, f"metrics.{name}", [finals.get(r, {}).get(name) for r in frame.get("mlflow_run_id", [])])
    return frame
