#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it at the exact versions of requirements.lock (those
# that produced the committed results). Safe to run again: it only adds what is missing or changed.
# torch is installed first, pinned to the CPU build that these machines provide, unless a torch is importable.
# To upgrade the lock: scripts/lock.sh (see README, "Environment").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch" >/dev/null 2>&1; then
  # a GPU box: install the CUDA build of torch into .venv first (README, "The blog profile"); it is kept
  echo "setup: no torch in .venv: installing torch==2.13.0 (a CPU build where this machine's pip provides one)"
  pip install -q "torch==2.13.0"
fi
if ! python -c "import stages, dvc, pytest, xdist, hypothesis" >/dev/null 2>&1 || [ pyproject.toml -nt .venv/.installed ] \
   || [ requirements.lock -nt .venv/.installed ]; then
  echo "setup: installing requirements.lock and the project into .venv"
  pip install -q -r requirements.lock
  pip install -q --no-deps -e .
  touch .venv/.installed
fi
python -c "import torch; cuda = torch.version.cuda; print(f'setup: .venv has torch {torch.__version__}, ' + (f'a CUDA {cuda} build; GPUs visible: {torch.cuda.device_count()}' if cuda else 'a CPU build'))"
# `dvc plots show` pages that render without network (vega inlined from npm; optional)
bash scripts/offline_plots.sh || echo "setup: no offline plot template; dvc plots pages will load vega from a CDN"
