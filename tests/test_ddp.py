"""Two processes under Accelerate (gloo, CPU) give the same training as one process for the same global batch,
for the `none` arm at cold start as for `stochastic`, including a step where one rank holds only constant groups
(it must still join the gradient all-reduce, or the other rank waits for it for good); and two processes resume a
killed run from rank 0's checkpoint when the other rank cannot read it (a node without a shared filesystem)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from stages.train import read_records

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world):
    root = make_tiny_world(tmp_path_factory.mktemp("ddp"), seed=9, n_train=16, n_heldout=4)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profiles"]["mini"]["train"] = {"steps": 3, "prompts_per_step": 4, "group_size": 4, "epochs": 2,
                                        "max_new_tokens": 8, "lr": 1e-3, "warmup_frac": 0.0, "rolling_window": 2}
    raw["profiles"]["mini"]["execution"] = {"checkpoint_every": 1}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return root


# The train command, with step 1's rewards forced: the prompts at even global positions (rank 0's share under
# 2 processes) get constant groups, the others a signal. Same rewards under 1 process, so the runs compare.
LAUNCHER = """
import sys
from stages.training import loop

generate = loop.GRPOTrainer.generate


def forced(self, batch, mine, step):
    samples = generate(self, batch, mine, step)
    if step == 1:
        G = self.p.group_size
        for g, (pos, _) in enumerate(mine):
            samples.rewards[g * G:(g + 1) * G] = [-1] * G if pos % 2 == 0 else [1] + [-1] * (G - 1)
    return samples


loop.GRPOTrainer.generate = forced

# a kill (every rank at once) at step KILL_AT_STEP, and ranks other than 0 on a node that cannot see rank 0's
# checkpoint folder (CKPT_RANK0_ONLY): theirs is empty
import os

kill_at = int(os.environ.get("KILL_AT_STEP", "-1"))
train_step = loop.GRPOTrainer.train_step


def killed(self, step):
    if step == kill_at:
        raise SystemExit(3)
    return train_step(self, step)


loop.GRPOTrainer.train_step = killed
if os.environ.get("CKPT_RANK0_ONLY") and os.environ.get("RANK", "0") != "0":
    at = sys.argv.index("--checkpoints")
    sys.argv[at + 1] += f"-rank{os.environ['RANK']}"
from stages.cli import app
sys.exit(app())
"""


def _train(root: Path, out: Path, processes: int, cell: str, strategy: str, via_params: bool = False,
           env: dict | None = None, returncode: int = 0) -> None:
    """Train ``cell`` on ``processes`` processes: through torchrun, or (``via_params``) through params
    execution.num_processes, which makes the train command relaunch itself."""
    launcher = root / "launch_train.py"
    launcher.write_text(LAUNCHER)
    params = root / "params.yaml"
    if via_params:
        raw = yaml.safe_load(params.read_text())
        raw["profiles"]["mini"]["execution"]["num_processes"] = processes
        params = out / "params.yaml"
        out.mkdir(parents=True, exist_ok=True)
        params.write_text(yaml.safe_dump(raw))
    args = [str(launcher), "train", cell, "--strategy", strategy, "--params", str(params),
            "--base", str(root / "base"), "--data", str(root / "data"), "--out", str(out / "model"),
            "--checkpoints", str(out / "ckpt"), "--live", str(out / "live"), "--metrics", str(out / "m.json")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    if processes == 1 or via_params:
        cmd = [sys.executable, *args]
    else:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
        cmd = [torchrun, f"--nproc_per_node={processes}", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", *args]
    try:  # a rank waiting in the all-reduce for good shows as a time-out, not as a hung test session
        proc = subprocess.run(cmd, cwd=root, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                              timeout=240)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"{processes} process(es) made no progress for 240 s (a rank left waiting?)") from err
    assert (proc.returncode == 0) == (returncode == 0), proc.stderr[-3000:]


@pytest.fixture(scope="module")
def two_none(world, tmp_path_factory) -> Path:
    """default-none-0 trained uninterrupted on 2 processes through torchrun (shared by two tests)."""
    out = tmp_path_factory.mktemp("two-none")
    _train(world, out, 2, "default-none-0", "none")
    return out


@pytest.mark.parametrize(("cell", "strategy", "via_params"), [("default-none-0", "none", False),
                                                             ("default-inject-0", "stochastic", True)])
def test_two_processes_equal_one(world, tmp_path, two_none, cell, strategy, via_params):
    _train(world, tmp_path / "one", 1, cell, strategy)
    two_dir = two_none if cell == "default-none-0" else tmp_path / "two"
    if cell != "default-none-0":
        _train(world, two_dir, 2, cell, strategy, via_params)
    one, two = read_records(tmp_path / "one" / "live"), read_records(two_dir / "live")
    assert one[1]["skipped_update"] == two[1]["skipped_update"] == 0.0  # rank 0 had nothing, rank 1 had a signal
    _same_training(one, two)
    _same_weights(world, tmp_path / "one", two_dir)


def _same_training(one: list[dict], two: list[dict]) -> None:
    for a, b in zip(one, two, strict=True):
        # what was sampled, scored and injected over the global batch is identical, and so is every logged
        # metric gathered over ranks (loss and clip fraction up to float rounding of the reduction)
        for key in ("digit_rate", "accuracy", "mean_reward", "policy_reward", "frac_reward_zero_std",
                    "injected_frac", "completion_length", "skipped_update"):
            assert a[key] == b[key], key
        for key in ("loss", "clip_frac", "kl", "ratio_mean"):
            if key in a:
                assert a[key] == pytest.approx(b[key], abs=1e-5, nan_ok=True), key


def _same_weights(world: Path, one: Path, two: Path) -> None:
    wa = load_file(one / "model" / "model.safetensors")
    wb = load_file(two / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    base = load_file(world / "base" / "model.safetensors")
    moved = max((wa[k] - base[k]).abs().max().item() for k in wa)
    assert moved > 1e-3  # training did move the weights (3 steps x 2 epochs at lr 1e-3)
    for k in wa:
        # gradients summed in another order (all-reduce) differ by float rounding, which AdamW can blow up to a
        # good part of lr on a weight whose gradient is near zero (m / sqrt(v) of two tiny numbers): compare
        # each tensor's disagreement with how far training moved it
        moved_k = (wa[k] - base[k]).norm()
        assert (wa[k] - wb[k]).norm() <= 0.05 * moved_k + 1e-6, k


def test_two_processes_resume_from_rank_0s_checkpoint_when_rank_1_cannot_read_it(world, tmp_path, two_none):
    """Killed at step 2 (checkpoint after step 2), resumed on 2 processes where rank 1's checkpoint folder is empty:
    rank 0 reads its checkpoint and sends weights, optimizer state and records to rank 1, so the run equals an
    uninterrupted one (rank 1 starting from the base would sample other completions and pull the weights apart)."""
    cell, strategy = "default-none-0", "none"
    killed = tmp_path / "killed"
    _train(world, killed, 2, cell, strategy, env={"KILL_AT_STEP": "2"}, returncode=1)
    assert json.loads((killed / "ckpt" / "state.json").read_text())["next_step"] == 2
    _train(world, killed, 2, cell, strategy, env={"CKPT_RANK0_ONLY": "1"})
    assert not (killed / "ckpt-rank1").exists() or not any((killed / "ckpt-rank1").iterdir())
    assert not (killed / "ckpt").exists()  # the cell is done: its checkpoint is deleted
    straight, resumed = (read_records(d / "live", timings=False) for d in (two_none, killed))
    assert [r["step"] for r in resumed] == [0, 1, 2]
    _same_training(straight, resumed)
    _same_weights(world, two_none, killed)
