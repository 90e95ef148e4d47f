#!/usr/bin/env bash
# Regenerates requirements.lock, the exact versions the committed results were produced with.
# Upgrading: edit the ranges in pyproject.toml if needed, run this script, run the tests and a full `dvc repro`,
# and commit the new lock together with the results it produced.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
. "$tmp/venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q "torch==2.13.0"   # the CPU build these machines provide; a range would pull a CUDA build
pip install -q ".[dev,bench]"   # bench: TRL, for the parity test and `vlm-grpo bench`
{
  echo "# Exact versions of every package (pip freeze), made by scripts/lock.sh; scripts/setup.sh installs these."
  echo "# torch is the CPU build (its local label +cpu is left out so that the same line fits a CUDA build)."
  pip freeze --exclude-editable | grep -v '^vlm-grpo' | sed -E 's/^(torch==[^+]+)\+.*/\1/'
} > requirements.lock.tmp
mv requirements.lock.tmp requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
