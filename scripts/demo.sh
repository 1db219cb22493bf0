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
read -r id name < <(sweeps status --json | "$VENV/bin/python" -c "import json, sys; s = json.load(sys.stdin)[0]; print(s['id'], s['name'])")
echo
echo "Where to look:"
row() { printf '  %-52s # %s\n' "$1" "$2"; }
row "sweeps status $id" "its trials; sweeps status lists every sweep here"
row "sweeps best $id" "the best trial, its model and how to load it (--download DIR)"
row "sweeps report $id" "one HTML page of what the search learned (opens offline)"
row "sweeps promote $id --model $name" "the best model into MLflow's registry as $name@champion"
row "mlflow ui --backend-store-uri sqlite:///mlflow.db" "http://127.0.0.1:5000: the parent run, its trials nested under it"
row "ls wandb/" "W&B offline runs; upload them with: wandb sync --sync-all"
