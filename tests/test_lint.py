"""The package passes the project's ruff rules (pyproject's [tool.ruff]); pyflakes' undefined names among them.

A CLI command that handed its stage names it never defined (`vlm-grpo study-report`, a NameError found only
when the study's last stage ran) is what this catches in a second, before any pipeline runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "stages", "tests", "scripts"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
