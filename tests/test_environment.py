"""The environment is pinned: the installed packages are exactly requirements.lock (what produced the results)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def torch_own_packages(lock: dict[str, str]) -> set[str]:
    """What a CUDA build of torch brings that the lock (made with the CPU build) does not name: the packages torch
    requires (nvidia-*, triton, ...) and theirs, transitively. Empty for a CPU build."""
    from importlib import metadata

    import torch

    if torch.version.cuda is None:
        return set()
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    seen, todo = set(), ["torch"]
    while todo:
        try:
            reqs = metadata.requires(todo.pop()) or []
        except metadata.PackageNotFoundError:
            continue
        for req in reqs:
            if "extra ==" in req:
                continue
            name = norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
            if name not in lock and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def test_installed_packages_match_the_lock():
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    installed = {k: v for k, v in _pins(frozen).items() if k != "vlm-grpo"}
    extra = torch_own_packages(lock)  # a CUDA torch on a GPU box: its own packages, and nothing else
    wrong = {k: (lock.get(k), installed.get(k)) for k in lock.keys() | installed.keys()
             if lock.get(k) != installed.get(k) and k not in extra}
    assert not wrong, f"(lock, installed) differ: {wrong}; run scripts/setup.sh, or scripts/lock.sh to upgrade"


def test_a_cpu_torch_allows_no_extra_package():
    import torch

    if torch.version.cuda is not None:
        pytest.skip("a CUDA build: its packages are allowed")
    assert torch_own_packages(_pins((REPO / "requirements.lock").read_text().splitlines())) == set()


def test_lock_pins_the_projects_direct_dependencies():
    """Every dependency named in pyproject.toml (and its dev and bench extras) has an exact version in the lock."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["dev"] + extras["bench"]
    names = {re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", w).group(0)).lower() for w in wanted}
    lock = _pins((REPO / "requirements.lock").read_text().splitlines())
    assert names <= lock.keys(), sorted(names - lock.keys())
