"""A W&B program for the tests, written as W&B users write theirs: argparse defaults, wandb.init,
wandb.log. ``--mode`` picks what it does; it writes what it saw to ``seen/<trial>.json`` in its
working directory (the launch directory)."""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--mode", default="ok")  # ok | fail | silent | mlflow | hang_once | media
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--config-json")  # a command's ${args_json_file}
args, _ = parser.parse_known_args()
defaults = {k: v for k, v in vars(args).items() if k != "config_json"}
if args.config_json:
    defaults.update(json.loads(Path(args.config_json).read_text()))
run = wandb.init(config={**defaults, "default_only": 7})
config = dict(run.config)
seen = Path("seen")
seen.mkdir(exist_ok=True)
(seen / f"{os.environ['SWEEPS_TRIAL']}.json").write_text(json.dumps(
    {"config": config, "argv": sys.argv[1:], "pid": os.getpid(), "run_id": run.id, "group": run.group}))
print("the script started with", " ".join(sys.argv[1:]), flush=True)  # a token on its command line too
mode = config["mode"]
if mode == "hang_once" and not (seen / "hung").exists():
    (seen / "hung").touch()
    time.sleep(3600)  # no output, no W&B record, no CPU: hung
if mode == "mlflow":
    import mlflow

    mlflow.start_run()  # MLFLOW_RUN_ID names the trial's child run
    mlflow.log_param("from_the_script", "yes")
for step in range(int(config["steps"])):
    loss = (config["x"] - 1) ** 2 + 1 / (step + 1)
    if mode == "media":  # a nested dict, an image and a histogram: W&B logs each as a dict of fields
        shade = np.full((4, 6, 3), 60 * step, dtype=np.uint8)
        wandb.log({"loss": loss, "val": {"acc": step / 4}, "picture": wandb.Image(shade), "hist": wandb.Histogram([1, 2, 2])})
    elif mode != "silent":
        wandb.log({"loss": loss, "step_seen": step})
    if mode == "mlflow":
        mlflow.log_metric("loss", loss, step=step)  # also logged with wandb.log: kept once
    time.sleep(config["sleep"])
if mode == "mlflow":
    mlflow.end_run()
if mode == "media":
    wandb.log({"table": wandb.Table(columns=["a", "b"], data=[[1, "x"], [2, "y"]])})
if mode == "fail":
    print("CUDA out of memory (not really)", file=sys.stderr)
    sys.exit(3)
run.finish()
