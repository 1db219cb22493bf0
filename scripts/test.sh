#!/usr/bin/env bash
# Set up .venv (first run) and run the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k grid (-n 0: one process, no xdist)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
# W&B must never prompt or reach the network in tests; Ray must not ask either.
export WANDB_MODE=offline WANDB_SILENT=true WANDB_DISABLE_GIT=true RAY_USAGE_STATS_ENABLED=0
# Two test processes, each with its own Ray; the cluster tests all run in one of them
# (xdist_group "cluster"), which starts one `sweeps head` for them.
exec python -m pytest -q -p no:cacheprovider -n 2 --dist loadgroup "$@"
