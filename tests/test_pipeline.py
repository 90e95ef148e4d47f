"""The DVC pipeline's shape: one train stage per grid cell, and `-S injection=...` renames only those cells."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml


def _stage_names(repo: Path, tmp: Path, injection: str | None = None) -> list[str]:
    work = tmp / "p"
    work.mkdir()
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
    assert {"train@default-none-0", "train@default-stochastic-0", "train@r1v-none-0", "train@r1v-stochastic-0"} <= set(names)
    assert {"eval_clevr@default-stochastic-0", "eval_superclevr@r1v-none-0", "eval_clevr_base@default"} <= set(names)


def test_injection_switch_changes_only_the_injection_cells(repo_root, tmp_path):
    names = _stage_names(repo_root, tmp_path, injection="decay")
    trains = sorted(n for n in names if n.startswith("train@"))
    assert trains == ["train@default-decay-0", "train@default-none-0", "train@r1v-decay-0", "train@r1v-none-0"]
