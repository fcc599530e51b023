#!/usr/bin/env bash
# Create .venv (once) and install Outpost with its dev tools into it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.outpost-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # constraints.txt pins the versions the suite last passed with; `make constraints` refreshes it.
  .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
  touch "$stamp"
fi
