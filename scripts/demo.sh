#!/usr/bin/env bash
# Set up .venv (first run) and run a real example sweep on the embedded defaults:
# a local Ray, MLflow in ./mlflow.db, W&B offline in ./wandb.
# Usage: scripts/demo.sh [search-space file] [extra `sweeps launch` options]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
export RAY_USAGE_STATS_ENABLED=0 WANDB_SILENT=true
file="${1:-search_spaces/digits_mlp_bayes.yaml}"
shift || true
sweeps validate "$file"
echo
sweeps launch "$file" "$@"
cat <<TXT

Where to look:
  sweeps status                                      # every sweep here, then: sweeps status <id>
  mlflow ui --backend-store-uri sqlite:///mlflow.db  # open http://127.0.0.1:5000: the sweep's parent run, its trials nested under it
  ls wandb/                                          # W&B offline runs; upload them with: wandb sync --sync-all
TXT
