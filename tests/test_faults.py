"""Faults: SIGKILL at several points of each long stage, NaN losses, offline fetches.

Every stage is run as the CLI in a subprocess on a tiny world, killed with SIGKILL at several moments, and
run again; the outputs then equal those of an uninterrupted run, and no half-written file is ever left where
an output belongs.
"""

from __future__ import annotations

import copy
import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from stages import train as train_stage
from stages.vlm import qwen2vl as vlm

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _params(tmp: Path) -> Path:
    """params.yaml shrunk to a tiny world (validated by the CLI like any other)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw = copy.deepcopy(raw)
    raw["profiles"]["mini"] = {
        "fetch_data": {"clevr_train": 12, "clevr_heldout": 8, "superclevr": 8, "clevr_max_count": 4,
                       "superclevr_max_count": 4},
        "fetch_model": {"pretrain_steps": 30, "pretrain_images": 40, "pretrain_batch": 8, "check_questions": 4},
        "baseline_assess": {"n_questions": 8, "batch_size": 4},
        "train": {"steps": 8, "prompts_per_step": 2, "group_size": 4, "epochs": 2, "max_new_tokens": 8,
                  "lr": 1e-3, "warmup_frac": 0.0, "rolling_window": 2},
        "execution": {"checkpoint_every": 2},
        "eval": {"clevr_questions": 8, "batch_size": 2, "max_new_tokens": 8},
    }
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    root = make_tiny_world(tmp_path_factory.mktemp("faults"), seed=5, n_train=12, n_heldout=8, n_superclevr=8)
    return root, _params(root)


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.cli", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(args: list[str], cwd: Path) -> None:
    proc = _cli(args, cwd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]


def _kill_when(args: list[str], cwd: Path, ready, timeout: float = 120) -> bool:
    """Start the command, SIGKILL it as soon as ``ready()`` holds; True if it was killed before finishing."""
    proc = _cli(args, cwd)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.communicate(timeout=timeout)
    return False


def _no_temp_files(root: Path) -> None:
    """Nothing half-written is left under a name that could be taken as an output."""
    leftovers = [p for p in root.rglob("*") if ".tmp-" in p.name and not p.name.startswith(".")]
    assert not leftovers, leftovers


def _train_args(world, out: Path) -> list[str]:
    root, params = world
    return ["train", "default-inject-0", "--strategy", "stochastic", "--params", str(params), "--base", str(root / "base"),
            "--data", str(root / "data"), "--out", str(out / "model"), "--checkpoints", str(out / "ckpt"),
            "--live", str(out / "live"), "--metrics", str(out / "metrics.json")]


def _records(out: Path) -> list[dict]:
    """What a finished run logged (its checkpoint is deleted once its outputs are written), timings left out."""
    return train_stage.read_records(out / "live", timings=False)


def _next_step(out: Path) -> int:
    try:
        return json.loads((out / "ckpt" / "state.json").read_text())["next_step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_train_sigkill_at_several_points_then_resume_equals_straight_run(world, tmp_path):
    root, _ = world
    straight = tmp_path / "straight"
    _finish(_train_args(world, straight), root)

    killed = tmp_path / "killed"
    kills = 0
    for after_step in (2, 4, 6):  # kill right after these checkpoints have been written
        kills += _kill_when(_train_args(world, killed), root, lambda s=after_step: _next_step(killed) >= s)
        assert not (killed / "model").exists() or not (killed / "ckpt").exists()  # finished: checkpoint deleted
        _no_temp_files(killed)
        # one checkpoint, the newest; beside it at most the superseded copy (the kill fires as soon as the new
        # state.json is in place, which can be before the swap removed the old one) or the next one half-written
        leftovers = [p.name for p in killed.iterdir() if p.name.startswith(".ckpt.")]
        assert len(leftovers) <= 2 and all(n.startswith((".ckpt.old-", ".ckpt.tmp-")) for n in leftovers), leftovers
    assert kills >= 2
    _finish(_train_args(world, killed), root)
    assert not (killed / "ckpt").exists() and not (straight / "ckpt").exists()  # the outputs are written
    assert not [p.name for p in killed.iterdir() if p.name.startswith(".ckpt.")]  # and no copy of it is left

    assert _records(straight) == _records(killed)
    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary_a = json.loads((straight / "metrics.json").read_text())
    summary_b = json.loads((killed / "metrics.json").read_text())
    for key in ("steps", "steps_to_threshold", "final_rolling_accuracy", "mean_injected_frac"):
        assert summary_a[key] == summary_b[key]


def test_fetch_model_sigkill_leaves_no_model_then_rerun_is_identical(world, tmp_path):
    root, params = world
    data_args = ["--params", str(params)]

    def args(out):
        return ["fetch-model", *data_args, "--out", str(out / "base"), "--metrics", str(out / "m.json")]

    _finish(args(tmp_path / "a"), root)
    for delay in (3.0, 6.0):
        start = time.time()
        _kill_when(args(tmp_path / "b"), root, lambda d=delay, t=start: time.time() - t > d)
        assert not (tmp_path / "b" / "base").exists() or (tmp_path / "b" / "m.json").exists()
        _no_temp_files(tmp_path / "b")
    _finish(args(tmp_path / "b"), root)
    a = load_file(tmp_path / "a" / "base" / "model.safetensors")
    b = load_file(tmp_path / "b" / "base" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("delay", [4.0])  # mid-work (1 s would kill it while it is still importing)
def test_eval_and_report_sigkill_then_rerun(world, tmp_path, delay):
    root, params = world
    ev = ["eval", "clevr", "default", "--params", str(params), "--model", str(root / "base"),
          "--data", str(root / "data")]

    def eval_args(out):
        return [*ev, "--metrics", str(out / "m.json"), "--answers", str(out / "a.jsonl")]

    _finish(eval_args(tmp_path / "ref"), root)
    start = time.time()
    _kill_when(eval_args(tmp_path / "k"), root, lambda: time.time() - start > delay)
    for name in ("m.json", "a.jsonl"):  # either absent or complete, never truncated
        if (tmp_path / "k" / name).exists():
            assert filecmp.cmp(tmp_path / "ref" / name, tmp_path / "k" / name, shallow=False)
    _no_temp_files(tmp_path / "k")
    _finish(eval_args(tmp_path / "k"), root)
    assert json.loads((tmp_path / "ref" / "m.json").read_text()) == json.loads((tmp_path / "k" / "m.json").read_text())
    assert filecmp.cmp(tmp_path / "ref" / "a.jsonl", tmp_path / "k" / "a.jsonl", shallow=False)

    rep = ["report", "--params", str(params), "--metrics", str(tmp_path / "metrics"), "--live", str(tmp_path / "live")]
    (tmp_path / "metrics").mkdir()
    _finish([*rep, "--out", str(tmp_path / "r1"), "--summary", str(tmp_path / "r1" / "s.json")], root)
    start = time.time()
    _kill_when([*rep, "--out", str(tmp_path / "r2"), "--summary", str(tmp_path / "r2" / "s.json")], root,
               lambda: time.time() - start > delay)
    if (tmp_path / "r2" / "report.md").exists():
        assert filecmp.cmp(tmp_path / "r1" / "report.md", tmp_path / "r2" / "report.md", shallow=False)
    _no_temp_files(tmp_path / "r2")
    _finish([*rep, "--out", str(tmp_path / "r2"), "--summary", str(tmp_path / "r2" / "s.json")], root)
    assert filecmp.cmp(tmp_path / "r1" / "report.md", tmp_path / "r2" / "report.md", shallow=False)


def test_nan_loss_stops_training_and_keeps_the_checkpoint(world, tmp_path, monkeypatch):
    import dataclasses

    from stages.config import load_config
    from stages.training import loop as trainer_mod

    root, params = world
    cfg = load_config(params)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=4))
    real_loss = trainer_mod.grpo_loss
    calls = {"n": 0}

    def nan_after_two_steps(*args, **kw):
        loss, stats = real_loss(*args, **kw)
        calls["n"] += 1
        if calls["n"] > 2 * cfg.train.epochs:  # steps 0 and 1 are fine, step 2 explodes
            loss = loss * float("nan")
        return loss, stats

    monkeypatch.setattr(trainer_mod, "grpo_loss", nan_after_two_steps)
    out = tmp_path
    with pytest.raises(trainer_mod.NonFiniteError, match="step 2: the loss is not finite"):
        train_stage.main(cfg, "default-inject-0", "stochastic", root / "base", root / "data", out / "model", out / "ckpt",
                         out / "live", out / "m.json")
    assert not (out / "model").exists()
    assert _next_step(out) == 2  # the last good checkpoint is intact
    monkeypatch.setattr(trainer_mod, "grpo_loss", real_loss)
    summary = train_stage.main(cfg, "default-inject-0", "stochastic", root / "base", root / "data", out / "model", out / "ckpt",
                               out / "live", out / "m.json")
    assert summary["steps"] == 4


def test_blog_profile_offline_fails_with_what_to_download(tmp_path, monkeypatch):
    from stages import fetch_model
    from stages.config import load_config

    def offline(*args, **kw):
        raise ConnectionError("no network")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    cfg = load_config(REPO / "params.yaml")
    import dataclasses

    # no local copy either (a workspace may hold one under the default data/raw/...)
    cfg = dataclasses.replace(cfg, profile="blog",
                              fetch_model=dataclasses.replace(cfg.fetch_model, local_dir=str(tmp_path / "no-copy")))
    with pytest.raises(fetch_model.ModelUnavailableError) as err:
        fetch_model.main(cfg, tmp_path / "base", tmp_path / "m.json")
    message = str(err.value)
    assert "\n" not in message and "Qwen/Qwen2-VL-2B-Instruct" in message and "--local-dir" in message
    assert not (tmp_path / "base").exists()


def test_models_load_from_safetensors_without_remote_code(monkeypatch, tmp_path, tiny_model, tiny_processor):
    """The loader never runs code shipped with a model and never unpickles weights."""
    from transformers import AutoModelForImageTextToText

    vlm.save_model_dir(tiny_model, tiny_processor, tmp_path / "m")
    seen = {}
    real = AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **kw)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    vlm.load_model(tmp_path / "m")
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True
    # a pickled checkpoint beside the safetensors is ignored; without safetensors, loading refuses
    (tmp_path / "m" / "model.safetensors").rename(tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(OSError):
        vlm.load_model(tmp_path / "m")
