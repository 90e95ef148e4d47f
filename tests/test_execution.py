"""Execution knobs (params.yaml ``execution``: device, process count, checkpoint cadence) change how a stage runs,
never what it computes: no stage declares them, so finished cells stay cached when they change, and no checkpoint
fingerprint holds them, so a killed cell resumes. The device is one decision (stages/devices.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from stages import train as train_stage
from stages.config import load_config
from stages.devices import CudaStatus, DeviceError, choose_device
from stages.training.loop import GRPOTrainer

REPO = Path(__file__).resolve().parents[1]
CELL = "train_none@default-0"


def _declared_params(dvc_yaml: Path) -> set[str]:
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = set()
    for stage in stages.values():
        body = stage.get("do", stage)
        for p in body.get("params", []):
            out.update(p if isinstance(p, dict) else [p])
    return out


def test_no_stage_of_either_pipeline_declares_an_execution_knob():
    for dvc_yaml in (REPO / "dvc.yaml", REPO / "study" / "dvc.yaml"):
        declared = _declared_params(dvc_yaml)
        assert declared and not [p for p in declared if "execution" in p], dvc_yaml


def _run(args, cwd):
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr[-1500:]
    return proc.stdout


@pytest.fixture
def committed_cell(tmp_path):
    """A DVC project whose train cell default-none-0 is recorded as done (dvc commit of its deps and outputs)."""
    shutil.copytree(REPO / "stages", tmp_path / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(prompt_styles=["default"], seeds=[0])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for d in ("models/base", "data/datasets/clevr", "data/datasets/superclevr", "models/default-none-0",
              "dvclive/train/default-none-0"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "f").write_text(d)
    (tmp_path / "metrics/train").mkdir(parents=True)
    (tmp_path / "metrics/train/default-none-0.json").write_text("{}")
    _run(["git", "init", "-q"], tmp_path)
    _run(["dvc", "init", "-q"], tmp_path)
    _run(["dvc", "commit", "-f", "-q", CELL], tmp_path)
    return tmp_path


def _status(project: Path) -> dict:
    return json.loads(_run(["dvc", "status", CELL, "--json"], project) or "{}")


def _set(project: Path, section: str, key: str, value) -> None:
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw[section][key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_changing_execution_knobs_keeps_a_finished_cell_cached(committed_cell):
    assert _status(committed_cell) == {}
    for key, value in (("checkpoint_every", 7), ("num_processes", 4), ("device", "cpu")):
        _set(committed_cell, "execution", key, value)
        assert _status(committed_cell) == {}, key
    _set(committed_cell, "train", "lr", 2e-5)  # a knob that changes numbers re-runs the cell
    assert _status(committed_cell) == {CELL: [{"changed deps": {"params.yaml": {"train": "modified"}}}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    root = make_tiny_world(tmp_path_factory.mktemp("exec"), seed=3, n_train=12, n_heldout=4)
    cfg = load_config(REPO / "params.yaml")
    small = dataclasses.replace(cfg.train, steps=4, prompts_per_step=2, group_size=4, epochs=1, max_new_tokens=8,
                                lr=1e-3, warmup_frac=0.0, rolling_window=2)
    return root, dataclasses.replace(cfg, train=small, execution=dataclasses.replace(cfg.execution, checkpoint_every=1))


def _train(world, cfg, out):
    root = world[0]
    return train_stage.main(cfg, "default-none-0", "none", root / "base", root / "data", out / "model", out / "ckpt",
                            out / "live", out / "metrics.json")


def test_a_killed_cell_resumes_after_the_execution_knobs_change(world, tmp_path, monkeypatch):
    _, cfg = world
    _train(world, cfg, tmp_path / "straight")
    original = GRPOTrainer.train_step

    def dies(self, step):
        if step == 2:
            raise KeyboardInterrupt("killed")
        return original(self, step)

    monkeypatch.setattr(GRPOTrainer, "train_step", dies)
    with pytest.raises(KeyboardInterrupt):
        _train(world, cfg, tmp_path / "resumed")
    monkeypatch.setattr(GRPOTrainer, "train_step", original)
    resumed_from = []
    real_resume = train_stage.resume_checkpoint
    monkeypatch.setattr(train_stage, "resume_checkpoint",
                        lambda *a, **k: resumed_from.append(state := real_resume(*a, **k)) or state)
    other = dataclasses.replace(cfg, execution=dataclasses.replace(cfg.execution, checkpoint_every=3, device="cpu"))
    _train(world, other, tmp_path / "resumed")
    assert resumed_from[0] is not None and resumed_from[0]["next_step"] == 2  # not started afresh
    assert train_stage.read_records(tmp_path / "straight" / "live", timings=False) == \
        train_stage.read_records(tmp_path / "resumed" / "live", timings=False)
    assert not (tmp_path / "resumed" / "ckpt").exists()  # the cell is done: its checkpoint is deleted


# ------------------------------------------------------------------------------------------------------------
# the device decision, on hand-made CUDA states
NO_CUDA = CudaStatus(False, False, "this torch is a CPU build")
OLD_DRIVER = CudaStatus(False, False, "CUDA initialization: The NVIDIA driver on your system is too old")
GPU = CudaStatus(True, True, "")
GPU_NO_BF16 = CudaStatus(True, False, "")


@pytest.mark.parametrize(("requested", "profile", "bf16", "status", "rank", "device"), [
    ("auto", "mini", False, NO_CUDA, 0, "cpu"),  # a laptop: the CPU, silently the right choice
    ("auto", "mini", False, GPU, 0, "cuda:0"),
    ("auto", "blog", True, GPU, 3, "cuda:3"),  # under a launcher: this process's own GPU
    ("cpu", "blog", True, OLD_DRIVER, 0, "cpu"),  # the explicit way to run the blog profile on a CPU
    ("cpu", "mini", False, GPU, 0, "cpu"),
    ("auto", "mini", False, GPU_NO_BF16, 0, "cuda:0"),  # fp32 needs no bf16
])
def test_choose_device(requested, profile, bf16, status, rank, device):
    assert choose_device(requested, profile, bf16, status, local_rank=rank) == device


@pytest.mark.parametrize(("requested", "profile", "bf16", "status", "says"), [
    ("auto", "blog", True, OLD_DRIVER, "the blog profile needs a usable CUDA GPU"),
    ("cuda", "mini", False, NO_CUDA, "execution.device=cuda needs a usable CUDA GPU"),
    ("auto", "blog", True, GPU_NO_BF16, "this GPU has no bf16"),
])
def test_unusable_cuda_stops_with_one_line_naming_the_fix(requested, profile, bf16, status, says):
    with pytest.raises(DeviceError) as err:
        choose_device(requested, profile, bf16, status, local_rank=0)
    message = str(err.value)
    assert says in message and "\n" not in message
    assert ("execution.device=cpu" in message) or ("train.precision=fp32" in message)
    if status.reason:
        assert status.reason in message  # torch's own reason (an old driver) reaches the user


def test_the_blog_profile_on_a_machine_without_cuda_stops_before_loading_weights(world, tmp_path):
    """This CPU machine: the baseline stage of the blog profile exits 1 with one line naming execution.device=cpu;
    the model it would load is not even a model (it is never read)."""
    import sys

    if __import__("torch").cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = "blog"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    (tmp_path / "not-a-model").mkdir()
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "baseline-assess", "--params", str(params),
                           "--base", str(tmp_path / "not-a-model"), "--data", str(world[0] / "data"),
                           "--metrics", str(tmp_path / "m.json"), "--table", str(tmp_path / "t.md")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: the blog profile needs a usable CUDA GPU") and "execution.device=cpu" in lines[-1]
    assert not (tmp_path / "m.json").exists()
