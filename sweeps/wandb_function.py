"""A trainer run as W&B's agent runs a function: ``python -m sweeps.wandb_function MODULE FUNCTION METRIC ARGS_JSON``.

:func:`sweeps.trial.wandb_function` picks the trainers that run this way (a function that calls
``wandb.init()`` itself and takes no ``report``); :class:`sweeps.program.ProgramRun` starts this in a
process of its own for each trial, with the environment W&B's agent gives a run, and reads the run the
function makes as it reads a W&B program's. Here: the trial's seed, as for every trainer; then
``FUNCTION()``, or ``FUNCTION(config)`` where it needs an argument; then the run finished if the function
left it open, as W&B's agent does, with what the function returned in its summary.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
from typing import Any


def main(argv: list[str]) -> None:
    module, name, metric, args_json = argv
    train = getattr(importlib.import_module(module), name)
    from .trial import _final, _is_number, seed_everything

    seed_everything(int(os.environ["SWEEPS_SEED"]))  # after the import, as for every trainer: torch is seeded too
    params = inspect.signature(train).parameters.values()
    if any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        with open(args_json) as f:
            returned: Any = train(json.load(f))
    else:
        returned = train()
    wandb = sys.modules.get("wandb")
    run = wandb.run if wandb is not None else None
    if run is not None:
        if returned is None or isinstance(returned, dict) or _is_number(returned):
            run.summary.update(_final(returned, metric))
        run.finish()


if __name__ == "__main__":
    main(sys.argv[1:])
