# Sourced by scripts/demo.sh and scripts/test.sh: create or reuse .venv at the
# repo root and install the package with what the demo and the tests need.
# Reinstalls only when pyproject.toml or the constraints change.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV"
  "$PY" -m venv "$VENV"
fi
constraints=()
if ! command -v nvidia-smi >/dev/null 2>&1; then
  constraints=(-c "$ROOT/scripts/constraints-cpu.txt")
fi
stamp="$VENV/.sweeps-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/constraints-cpu.txt" | sha256sum | cut -d' ' -f1) ${#constraints[@]}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing sweeps and its dependencies into $VENV (a few minutes the first time)"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet ${constraints[@]+"${constraints[@]}"} -e "$ROOT[examples,test,bench]"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
