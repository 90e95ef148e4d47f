#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it. Safe to run again: it only adds what is missing.
# torch is installed first, pinned to the CPU build that these machines provide, unless a torch is importable.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0 (CPU)"
  pip install -q "torch==2.13.0"
fi
if ! python -c "import stages, dvc, pytest, hypothesis" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: installing the project and its dependencies into .venv"
  pip install -q -e ".[dev]"
  touch .venv/.installed
fi
