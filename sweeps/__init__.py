"""sweeps: hyperparameter sweeps from W&B sweep files, searched by Optuna,
run on Ray, recorded in MLflow and mirrored to W&B.

Public names are imported lazily so that `import sweeps` stays cheap.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, FatalError, SweepsError, TrialError

__all__ = ["ConfigError", "FatalError", "SweepSpec", "SweepsError", "TrialError", "load", "load_spec", "parse_spec"]

_LAZY = {"SweepSpec": "space", "load_spec": "space", "parse_spec": "space", "load": "status"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sweeps' has no attribute {name!r}")
