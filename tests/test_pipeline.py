"""The DVC pipeline's shape: one train stage per grid cell, named by role, and `-S injection=...` changes only the
inject cells' commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml


def _stage_names(repo: Path, tmp: Path, injection: str | None = None) -> list[str]:
    work = tmp / "p"
    work.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(repo / name, work / name)
    if injection:
        params = yaml.safe_load((work / "params.yaml").read_text())
        params["injection"] = injection
        (work / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=work, check=True)
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=work, check=True, capture_output=True, text=True)
    return out.stdout.split()


def test_grid_of_stages(repo_root, tmp_path):
    names = _stage_names(repo_root, tmp_path)
    assert {"fetch_data", "fetch_model", "baseline_assess", "report"} <= set(names)
    assert {"train_none@default-0", "train_inject@default-0", "train_none@r1v-0", "train_inject@r1v-0"} <= set(names)
    assert {"eval_clevr@default-inject-0", "eval_superclevr@r1v-none-0", "eval_clevr_base@default"} <= set(names)


def _commands(repo: Path, tmp: Path, injection: str | None = None) -> dict[str, str]:
    """Every stage's resolved command, as DVC runs it."""
    _stage_names(repo, tmp, injection)
    from dvc.repo import Repo

    with Repo(str(tmp / "p")) as dvc:
        return {stage.addressing.split(":")[-1]: stage.cmd for stage in dvc.index.stages}


def test_injection_switch_changes_only_the_injection_cells(repo_root, tmp_path):
    """`-S injection=decay` changes the commands of the inject cells alone; their outputs keep their paths."""
    before = _commands(repo_root, tmp_path / "a")
    after = _commands(repo_root, tmp_path / "b", injection="decay")
    assert before.keys() == after.keys()  # same stages, same output paths
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["train_inject@default-0", "train_inject@r1v-0"]
    assert "--strategy decay" in after["train_inject@default-0"]
