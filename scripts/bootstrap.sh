#!/usr/bin/env bash
# Create .venv (once) and install Outpost into it, editable.
#   scripts/bootstrap.sh          runtime dependencies only (what `make server` needs)
#   scripts/bootstrap.sh dev      plus the test and lint tools (`make test`, `make lint`)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
extras=${1:-runtime}
case "$extras" in
  runtime) spec='.' ;;
  dev) spec='.[dev]' ;;
  *) echo "usage: $0 [runtime|dev]" >&2; exit 2 ;;
esac
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ] && [ ! constraints.txt -nt "$1" ]; }
# A dev install covers the runtime one.
if fresh .venv/.outpost-installed-dev || { [ "$extras" = runtime ] && fresh .venv/.outpost-installed-runtime; }; then
  exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt pins the versions the suite last passed with; `make constraints` refreshes it.
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"
touch ".venv/.outpost-installed-$extras"
