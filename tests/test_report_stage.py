"""The report stage on fixture metrics: every figure and table, and the flat summary keyed by role."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stages import report
from stages.analysis.curves import steps_to_reach
from stages.config import load_config
from stages.plots.render import FIGURE_FILES


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _fixture(root: Path, cfg) -> None:
    m = root / "metrics"
    _write(m / "baseline.json", {
        "prompts": {"default": {"digit_rate": 0.15, "accuracy": 0.12, "accuracy_given_digit": 0.8, "n": 100},
                    "r1v": {"digit_rate": 0.99, "accuracy": 0.6, "accuracy_given_digit": 0.61, "n": 100}},
        "decoding": {"do_sample": True, "temperature": 1.0, "top_p": 1.0}})
    rng = np.random.default_rng(0)
    for prompt, arm, seed in report.grid(cfg):
        cell = f"{prompt}-{arm}-{seed}"
        fast = arm != "none"
        _write(m / "train" / f"{cell}.json", {"steps": 60, "steps_to_threshold": 20 if fast else 45,
                                             "train_seconds": 30.0})
        _write(m / "eval" / "clevr" / f"{cell}.json", {"accuracy": 0.9, "digit_rate": 0.99})
        _write(m / "eval" / "superclevr" / f"{cell}.json", {"accuracy": 0.5 if fast else 0.6, "digit_rate": 0.9})
        live = root / "live" / cell / "plots" / "metrics" / "charts"
        live.mkdir(parents=True)
        steps = np.arange(60)
        curves = {"digit_rate": np.clip(0.15 + steps / (20 if fast else 40), 0, 1),
                  "accuracy": np.clip(0.1 + steps / (25 if fast else 50), 0, 0.95),
                  "mean_reward": rng.uniform(-1, 1, 60), "injected_frac": np.full(60, 0.5 if fast else 0.0)}
        for name, values in curves.items():
            lines = [f"step\t{name}"] + [f"{s}\t{v}" for s, v in zip(steps, values, strict=True)]
            (live / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    for prompt in cfg.prompt_styles:
        _write(m / "eval" / "clevr" / f"{prompt}-base.json", {"accuracy": 0.1, "digit_rate": 0.15})
        _write(m / "eval" / "superclevr" / f"{prompt}-base.json", {"accuracy": 0.08, "digit_rate": 0.12})


def test_report_renders_every_figure_and_table(tmp_path, repo_root):
    cfg = load_config(repo_root / "params.yaml")
    _fixture(tmp_path, cfg)
    summary = report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports",
                          tmp_path / "reports" / "summary.json")
    text = (tmp_path / "reports" / "report.md").read_text()
    for name in FIGURE_FILES.values():
        assert (tmp_path / "reports" / "figures" / name).stat().st_size > 5000
        assert f"figures/{name}" in text
    for heading in ("## Claims", "## Baseline", "## Learning speed", "## Transfer to SuperCLEVR", "## Complete results"):
        assert heading in text
    assert "14.5%" in text and "48%" in text  # the blog's numbers stand beside ours
    # the two-phase claim's boundary: curves.steps_to_reach on the logged digit rate, in steps trained
    digit = np.clip(0.15 + np.arange(60) / 40, 0, 1).tolist()
    boundary = steps_to_reach(digit, 0.9, cfg.train.rolling_window)
    assert boundary is not None and f"90% after {boundary} steps trained" in text
    assert summary["default.inject.superclevr_acc"] == 0.5
    assert summary["default.none.superclevr_acc"] == 0.6
    assert summary["r1v.base.clevr_acc"] == 0.1
    assert summary["default.inject.steps_to_threshold"] == 20
    on_disk = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert on_disk == summary


def test_report_copes_with_cells_not_run(tmp_path, repo_root):
    cfg = load_config(repo_root / "params.yaml")
    (tmp_path / "metrics").mkdir()
    report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports", tmp_path / "summary.json")
    assert (tmp_path / "reports" / "report.md").is_file()
    assert json.loads((tmp_path / "summary.json").read_text()) == {}
