"""The environment is pinned: the installed packages are exactly requirements.lock (what produced the results)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or "==" not in line:
            continue
        name, version = line.split("==", 1)
        out[re.sub(r"[-_.]+", "-", name).lower()] = version.split("+")[0]  # torch 2.13.0+cpu is torch 2.13.0
    return out


def test_installed_packages_match_the_lock():
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    installed = {k: v for k, v in _pins(frozen).items() if k != "vlm-grpo"}
    wrong = {k: (lock.get(k), installed.get(k)) for k in lock.keys() | installed.keys() if lock.get(k) != installed.get(k)}
    assert not wrong, f"(lock, installed) differ: {wrong}; run scripts/setup.sh, or scripts/lock.sh to upgrade"


def test_lock_pins_the_projects_direct_dependencies():
    """Every dependency named in pyproject.toml (and its dev extra) has an exact version in the lock."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", w).group(0)).lower() for w in wanted}
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    assert names <= lock.keys(), sorted(names - lock.keys())
