"""The DVC pipeline's shape: one train stage per grid cell, named by role, and `-S injection=...` reaches only the
inject cells."""

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


def _param_readers(repo: Path, tmp: Path, key: str) -> list[str]:
    """Stages that declare params key ``key``, as DVC resolves them (these re-run when it changes)."""
    _stage_names(repo, tmp)
    from dvc.repo import Repo

    with Repo(str(tmp / "p")) as dvc:
        return sorted(stage.addressing.split(":")[-1] for stage in dvc.index.stages
                      if any(key in dep.params for dep in stage.deps if hasattr(dep, "params")))


def test_injection_switch_reaches_only_the_injection_cells(repo_root, tmp_path):
    """`-S injection=decay` re-runs the inject cells (and the report), never the none cells; outputs keep their
    paths, and the value is not interpolated into any command (a bad one must fail in our validation)."""
    readers = _param_readers(repo_root, tmp_path / "a", "injection")
    seeds = yaml.safe_load((repo_root / "params.yaml").read_text())["seeds"]
    assert readers == ["report", *sorted(f"train_inject@{p}-{s}" for p in ("default", "r1v") for s in seeds)]
    assert "${injection}" not in (repo_root / "dvc.yaml").read_text()
