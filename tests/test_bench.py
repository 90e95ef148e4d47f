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



def test_bench_learning_trains_both_and_reports_steps_per_seed(tmp_path, make_tiny_world, repo_root):
    """`vlm-grpo bench-learning` (TRL is the bench extra): both trainers run the same number of steps per seed and
    the JSON holds learning_vs_trl with the steps to the threshold (here never reached: 2 steps, window 20)."""
    root = make_tiny_world(tmp_path / "world", seed=5, n_train=8, n_heldout=2)
    out_json, out_md = tmp_path / "benchmarks.json", tmp_path / "learning.md"
    out_json.write_text('{"cpu": {"ours_s_per_step": 0.2}}')  # the step benchmark's results stay
    proc = subprocess.run(
        [sys.executable, "-m", "stages.cli", "bench-learning", "--seed", "3", "--steps", "2",
         "--base", str(root / "base"), "--data", str(root / "data"), "--out", str(out_json), "--md", str(out_md),
         "--params", str(repo_root / "params.yaml")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from stages.io import read_json

    res = read_json(out_json)
    assert res["cpu"] == {"ours_s_per_step": 0.2}
    r = res["learning_vs_trl"]
    assert r["seeds"] == [3] and r["ours"] == [None] and r["trl"] == [None]
    for name in ("ours", "trl"):
        curves = r["accuracy_per_step"][name]
        assert set(curves) == {"3"} and all(len(c) == 2 and all(0 <= a <= 1 for a in c) for c in curves.values())
    assert r["settings"]["steps"] == 2 and r["settings"]["warmup_steps"] == 0 and set(r["differences"]) >= {"warmup"}
    md = out_md.read_text()
    assert "| TRL GRPOTrainer | never |" in md and "bench-learning --seed 3" in md


def test_bench_learning_without_a_base_fails_in_one_line(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "bench-learning", "--base", str(tmp_path / "none"),
                           "--params", str(repo_root / "params.yaml")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'none'}: no base model; run `dvc repro fetch_model` first (or pass --base)"]
