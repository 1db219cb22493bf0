#!/usr/bin/env bash
# Start a sweep cluster's head on this machine: a Ray head and an MLflow tracking
# server (artifacts served over HTTP). Sets up .venv on first use.
# Usage: scripts/start_head.sh [--host IP] [--port 6379] [--mlflow-port 5000]
#          [--backend-store-uri postgresql://user:pw@db/mlflow] [--cpus 0] ...
# It prints the addresses, the token location and the command for each GPU node.
# As a service: scripts/sweeps-head.service (systemd; the database password in an environment file).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
cd "$ROOT"
exec sweeps head "$@"
