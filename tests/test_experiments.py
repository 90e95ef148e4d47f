"""Experiments the DVC way, end to end on a tiny world: two queued experiments (`dvc exp run --queue`,
`dvc queue start`), compared with `dvc exp show`, `dvc metrics diff` and `dvc plots diff`, on the project's own
dvc.yaml, params.yaml and package. Slow (about 3 minutes on 2 cores): the whole pipeline runs twice."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "fetch_data": {"clevr_train": 12, "clevr_heldout": 6, "superclevr": 6, "clevr_max_count": 3,
                   "superclevr_max_count": 3},
    "fetch_model": {"pretrain_steps": 1, "pretrain_images": 4, "pretrain_batch": 4, "check_questions": 1,
                    "check_max_new_tokens": 4},
    "baseline_assess": {"n_questions": 4, "batch_size": 4},
    "train": {"steps": 3, "prompts_per_step": 2, "group_size": 2, "epochs": 1, "max_new_tokens": 4,
              "rolling_window": 2, "warmup_frac": 0.0, "kl_log_every": 10},
    "execution": {"checkpoint_every": 3},
    "injection_params": {},
    "eval": {"clevr_questions": 4, "batch_size": 4, "max_new_tokens": 4},
}


def _run(args: list[str], cwd: Path, timeout: int = 600) -> str:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp") / "p"
    root.mkdir()
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "requirements.lock"):
        shutil.copy(REPO / name, root / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(prompt_styles=["default"], seeds=[0])
    params["profiles"]["mini"] = TINY
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    _run(["git", "init", "-q"], root)
    _run(["dvc", "init", "-q"], root)
    _run([*git, "add", "-A"], root)
    _run([*git, "commit", "-qm", "tiny world"], root)
    return root


def _wait_for_queue(root: Path, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = _run(["dvc", "queue", "status"], root)
        if "Queued" not in status and "Running" not in status:
            assert "Failed" not in status, status + _run(["dvc", "queue", "logs", "--help"], root)
            return
        time.sleep(3)
    raise AssertionError("the queue did not finish in time")


@pytest.mark.slow
def test_two_queued_experiments_compare_by_metrics_and_plots(project):
    _run(["dvc", "exp", "run", "--queue", "-n", "stoch", "-S", "injection=stochastic"], project)
    _run(["dvc", "exp", "run", "--queue", "-n", "decay", "-S", "injection=decay"], project)
    _run(["dvc", "queue", "start", "-j", "1"], project)
    _wait_for_queue(project)
    # the workspace is untouched: nothing ran there
    assert not (project / "models").exists() and not (project / "reports").exists()
    assert _run(["git", "status", "--porcelain", "--untracked-files=no"], project).strip() == ""

    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    text = json.dumps(shown)
    assert "stoch" in text and "decay" in text

    diff = json.loads(_run(["dvc", "metrics", "diff", "stoch", "decay", "--json", "--all"], project))
    keys = set(diff["reports/summary.json"])
    # the same role-keyed metrics line up, whichever the strategy
    assert {"default.inject.clevr_acc", "default.none.clevr_acc", "default.inject.superclevr_acc"} <= keys
    none_acc = diff["reports/summary.json"]["default.none.clevr_acc"]
    assert none_acc["old"] == none_acc["new"]  # the `none` arm did not re-run (same params, run-cache)

    out = project / "plots_diff"
    _run(["dvc", "plots", "diff", "stoch", "decay", "-o", str(out)], project)
    page = (out / "index.html").read_text()
    for title in ("CLEVR accuracy while training", "Digit rate (format) while training"):
        assert title in page
    assert "stoch" in page and "decay" in page  # both runs' curves are on the page
