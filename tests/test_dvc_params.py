"""Bad top-level params. A matrix input (`seeds`) is met by DVC first, while it expands the grid, with a message that
names no key: the README says what it means, and `vlm-grpo check-params` names the key. `injection` is not
interpolated anywhere, so DVC takes any value and the first stage's command stops on one line naming the key."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True)
    return tmp_path


def _set(project: Path, key: str, value) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params))


def _one_line_error(args: list[str], cwd: Path) -> str:
    ours = subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True)
    assert ours.returncode == 2
    lines = ours.stderr.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_a_bad_matrix_input_is_dvc_s_message_in_the_readme_and_check_params_names_the_key(project):
    _set(project, "seeds", "zero")
    dvc = subprocess.run(["dvc", "status"], cwd=project, capture_output=True, text=True)
    dvc_says = "'Value' object is not iterable"
    assert dvc.returncode != 0 and dvc_says in dvc.stdout + dvc.stderr
    readme = (REPO / "README.md").read_text()
    assert dvc_says in readme and "vlm-grpo check-params" in readme
    assert "seeds = 'zero' is invalid: must be a list of integers" in _one_line_error(["check-params"], project)


def test_a_list_injection_passes_dvc_and_the_first_stage_names_the_key(project):
    _set(project, "injection", ["stochastic", "decay"])
    dvc = subprocess.run(["dvc", "status"], cwd=project, capture_output=True, text=True)
    assert dvc.returncode == 0, dvc.stderr  # nothing of ours interpolates it: DVC parses the pipeline
    we_say = "injection = ['stochastic', 'decay'] is invalid: must be a string"
    # the first stage dvc repro would run, as dvc.yaml runs it, and the inject cell's command
    assert we_say in _one_line_error(["fetch-data", "--out", str(project / "data")], project)
    assert we_say in _one_line_error(["train", "default-inject-0"], project)
    assert not (project / "data").exists()
