"""A bad matrix param is met by DVC first, while it expands the grid, with a message that names no key: the
README says what each message means, and `vlm-grpo check-params` names the key and the allowed values."""

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


@pytest.mark.parametrize(("key", "value", "dvc_says", "we_say"), [
    ("seeds", "zero", "'Value' object is not iterable", "seeds = 'zero' is invalid: must be a list of integers"),
    ("injection", ["stochastic", "decay"], "Cannot interpolate data of type 'list'",
     "injection = ['stochastic', 'decay'] is invalid: must be a string"),
])
def test_dvc_message_is_in_the_readme_and_check_params_names_the_key(project, key, value, dvc_says, we_say):
    _set(project, key, value)
    dvc = subprocess.run(["dvc", "status"], cwd=project, capture_output=True, text=True)
    assert dvc.returncode != 0 and dvc_says in dvc.stdout + dvc.stderr
    readme = (REPO / "README.md").read_text()
    assert dvc_says in readme and "vlm-grpo check-params" in readme
    ours = subprocess.run([sys.executable, "-m", "stages.cli", "check-params"], cwd=project, capture_output=True,
                          text=True)
    assert ours.returncode == 2
    lines = ours.stderr.strip().splitlines()
    assert len(lines) == 1 and we_say in lines[0]
