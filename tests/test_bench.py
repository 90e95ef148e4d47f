"""`vlm-grpo bench` (ours only; TRL is an optional extra): the report a user reads has consistent numbers."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_bench_without_trl_writes_consistent_results(tmp_path, make_tiny_world, repo_root):
    root = make_tiny_world(tmp_path / "world", seed=5, n_train=8, n_heldout=2)
    out_json, out_md = tmp_path / "reports" / "benchmarks.json", tmp_path / "reports" / "benchmarks.md"
    out_json.parent.mkdir()
    out_json.write_text('{"gpu": {"ours_s_per_step": 1.5}}')  # an earlier GPU run stays in the file
    proc = subprocess.run(
        [sys.executable, "-m", "stages.cli", "bench", "--no-trl", "--repeats", "2", "--base", str(root / "base"),
         "--data", str(root / "data"), "--out", str(out_json), "--md", str(out_md),
         "--params", str(repo_root / "params.yaml")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from stages.io import read_json

    res = read_json(out_json)
    assert res["gpu"] == {"ours_s_per_step": 1.5}
    cpu = res["cpu"]
    assert cpu["ours"]["n"] == 2 and cpu["ours"]["min"] <= cpu["ours_s_per_step"] <= cpu["ours"]["max"]
    # the phases and "other" add up to the step; overhead is the "other" share
    assert sum(cpu["ours_breakdown_s"].values()) == pytest.approx(cpu["ours_s_per_step"], rel=1e-6)
    assert cpu["overhead_frac"] == pytest.approx(cpu["ours_breakdown_s"]["other"] / cpu["ours_s_per_step"])
    assert cpu["ours_breakdown_s"]["generation"] > 0 and cpu["ours_breakdown_s"]["train_forward_backward"] > 0
    assert cpu["ours_peak_mib"] > 0 and "ratio" not in cpu
    md = out_md.read_text()
    assert "| ours |" in md and "bench --no-trl --repeats 2" in md and "Overhead" in md

