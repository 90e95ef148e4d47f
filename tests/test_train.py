"""End-to-end GRPO on a tiny model: parameters move, logs are written, kill and resume equals a straight run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stages import train as train_stage
from stages.config import load_config
from stages.training.loop import GRPOTrainer, lr_multiplier, merge_completions


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world, repo_root):
    root = make_tiny_world(tmp_path_factory.mktemp("world"), seed=3, n_train=12, n_heldout=4)
    cfg = load_config(repo_root / "params.yaml")
    small = dataclasses.replace(cfg.train, steps=4, prompts_per_step=2, group_size=4, epochs=2, max_new_tokens=8,
                                lr=1e-3, warmup_frac=0.0, rolling_window=2)
    return root, dataclasses.replace(cfg, train=small, execution=dataclasses.replace(cfg.execution, checkpoint_every=2))


def _run(world, out, cell="default-inject-0"):
    root, cfg = world
    strategy = "stochastic" if "-inject-" in cell else "none"
    return train_stage.main(cfg, cell, strategy, root / "base", root / "data", out / "model", out / "ckpt", out / "live",
                            out / "metrics.json")


def _records(out):
    """What a finished run logged (its checkpoint is deleted once its outputs are written), timings left out."""
    return train_stage.read_records(out / "live", timings=False)


def test_training_changes_parameters_and_writes_logs(world, tmp_path):
    root, _ = world
    summary = _run(world, tmp_path)
    assert summary["steps"] == 4
    before = load_file(root / "base" / "model.safetensors")
    after = load_file(tmp_path / "model" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["cell"], metrics["arm"], metrics["strategy"]) == ("default-inject-0", "inject", "stochastic")
    tsv = tmp_path / "live" / "plots" / "metrics" / "charts" / "injected_frac.tsv"
    lines = tsv.read_text().splitlines()
    assert len(lines) == 1 + 4
    # stochastic injection replaces 1..G-1 of every group: never 0, never all
    fracs = [float(line.split("\t")[-1]) for line in lines[1:]]
    assert all(0 < f < 1 for f in fracs)


def test_same_seed_same_logs(world, tmp_path):
    _run(world, tmp_path / "a", "default-none-0")
    _run(world, tmp_path / "b", "default-none-0")
    assert _records(tmp_path / "a") == _records(tmp_path / "b")


def _dies_at_step(monkeypatch, killed_at: int):
    """Make training raise KeyboardInterrupt at step ``killed_at``; returns the real train_step."""
    original = GRPOTrainer.train_step

    def dies(self, step):
        if step == killed_at:
            raise KeyboardInterrupt("killed")
        return original(self, step)

    monkeypatch.setattr(GRPOTrainer, "train_step", dies)
    return original


def test_kill_and_resume_equals_an_uninterrupted_run(world, tmp_path, monkeypatch):
    _run(world, tmp_path / "straight")
    original = _dies_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _run(world, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "model").exists()  # no half-finished model taken as output
    assert json.loads((tmp_path / "resumed" / "ckpt" / "state.json").read_text())["next_step"] == 2
    monkeypatch.setattr(GRPOTrainer, "train_step", original)
    _run(world, tmp_path / "resumed")

    assert _records(tmp_path / "straight") == _records(tmp_path / "resumed")
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = (tmp_path / "resumed" / "live" / "plots" / "metrics" / "charts" / "accuracy.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in steps[1:]] == ["0", "1", "2", "3"]  # no step logged twice


def test_merge_completions_puts_injected_rows_in_place():
    gen = torch.tensor([[5, 6, 2], [7, 2, 0]])
    gmask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    inj = torch.tensor([[9, 9, 9, 2]])
    imask = torch.ones(1, 4, dtype=torch.bool)
    ids, mask = merge_completions(gen, gmask, [1], inj, imask, pad_id=0)
    assert ids.tolist() == [[5, 6, 2, 0], [9, 9, 9, 2]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_lr_warmup():
    # 100 steps, 10% warmup: step 0 -> 1/10, step 4 -> 5/10, from step 9 on -> 1
    assert lr_multiplier(0, 100, 0.1) == pytest.approx(0.1)
    assert lr_multiplier(4, 100, 0.1) == pytest.approx(0.5)
    assert lr_multiplier(50, 100, 0.1) == 1.0
    assert lr_multiplier(0, 100, 0.0) == 1.0


def test_checkpoint_fingerprint_follows_weights_bytes_and_source(world, tmp_path):
    """A checkpoint is resumed only by the same params, base weights (content, not size) and trainer source."""
    import shutil

    from stages.training.checkpoints import fingerprint

    root, cfg = world
    base = tmp_path / "base"
    shutil.copytree(root / "base", base)
    src = tmp_path / "src"
    (src / "grpo").mkdir(parents=True)
    loss = src / "grpo" / "loss.py"
    loss.write_text("x = 1\n")
    params = train_stage.trainer_params(cfg)

    def fp(cell="default-none-0", params=params):
        return fingerprint(params, cell, base, [loss], src)

    first = fp()
    assert fp() == first
    assert fp("default-inject-0") != first
    assert fp(params={**params, "strategy": "decay"}) != first  # an inject cell's strategy is part of it
    assert fp(params=train_stage.trainer_params(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=2e-5)))) != first
    decay = dataclasses.replace(cfg.injection_params, decay_fraction=0.5)
    assert fp(params=train_stage.trainer_params(dataclasses.replace(cfg, injection_params=decay))) != first
    loss.write_text("x = 2\n")
    assert fp() != first
    loss.write_text("x = 1\n")
    weights = base / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size, other bytes
    weights.write_bytes(bytes(data))
    assert fp() != first


def test_training_code_is_the_train_stage_closure_and_leaves_figures_out(repo_root):
    """The fingerprint hashes what the train stage runs: the loss is in it, figures and tables are not, so
    editing a figure leaves a killed run resuming from its checkpoint."""
    from stages.training.checkpoints import training_sources

    names = {p.relative_to(repo_root).as_posix() for p in training_sources()}
    assert {"stages/train.py", "stages/training/loop.py", "stages/grpo/loss.py", "stages/vlm/qwen2vl.py"} <= names
    assert not any(n.startswith(("stages/plots/", "stages/report")) or n == "stages/analysis/tables.py" for n in names)


def test_figure_edit_keeps_resuming_and_loss_edit_restarts(world, tmp_path, monkeypatch):
    """Kill a run, edit a figure module (a copy of the package), rerun: it resumes. Edit the loss: it restarts."""
    import shutil

    from stages.training import checkpoints

    pkg = tmp_path / "pkg" / "stages"
    shutil.copytree(repo_root_of(train_stage) / "stages", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    from stages.source_closure import import_closure

    monkeypatch.setattr(checkpoints, "training_sources", lambda: import_closure("stages.train", pkg))
    monkeypatch.setattr(checkpoints, "PACKAGE_DIR", pkg)
    original = _dies_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _run(world, tmp_path / "run")
    monkeypatch.setattr(GRPOTrainer, "train_step", original)
    figures = next((pkg / "plots").glob("*.py"))
    figures.write_text(figures.read_text() + "\n# a figure tweak\n")
    started = []
    monkeypatch.setattr(GRPOTrainer, "train_step", lambda self, step: started.append(step) or original(self, step))
    _run(world, tmp_path / "run")
    assert started == [2, 3]  # resumed from the checkpoint at step 2

    (pkg / "grpo" / "loss.py").write_text((pkg / "grpo" / "loss.py").read_text() + "\n# a loss change\n")
    started.clear()
    _run(world, tmp_path / "run")
    assert started and started[0] == 0  # other training code: the finished checkpoint is not resumed


def repo_root_of(module) -> Path:
    return Path(module.__file__).resolve().parents[1]


def test_fixed_injection_with_policy_shaping_trains_through_the_stage(world, tmp_path):
    """LUFFY's recipe end to end: 1 injected sample of every group of 4, its tokens policy-shaped; the shaping
    changes the update: the weights differ from the same run without it."""
    import dataclasses

    root, cfg = world
    runs = {}
    for gamma in (0.0, 0.1):
        c = dataclasses.replace(cfg, injection_params=dataclasses.replace(cfg.injection_params, fixed_count=1,
                                                                          shaping_gamma=gamma))
        out = tmp_path / f"gamma{gamma}"
        train_stage.main(c, "default-inject-0", "fixed", root / "base", root / "data", out / "model", out / "ckpt",
                         out / "live", out / "metrics.json")
        lines = (out / "live" / "plots" / "metrics" / "charts" / "injected_frac.tsv").read_text().splitlines()[1:]
        assert [float(line.split("\t")[-1]) for line in lines] == [0.25] * 4  # 1 of G = 4, every step
        runs[gamma] = load_file(out / "model" / "model.safetensors")
    assert any(not torch.equal(runs[0.0][k], runs[0.1][k]) for k in runs[0.0])


def test_superclevr_probe_is_logged_every_n_steps_and_leaves_training_unchanged(world, make_tiny_world, tmp_path):
    import dataclasses

    _, cfg = world
    root = make_tiny_world(tmp_path / "w", seed=3, n_train=12, n_heldout=4, n_superclevr=6)
    runs = {}
    for every in (0, 2):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, probe_every=every, probe_questions=5))
        out = tmp_path / f"every{every}"
        train_stage.main(c, "default-none-0", "none", root / "base", root / "data", out / "model", out / "ckpt",
                         out / "live", out / "metrics.json")
        runs[every] = out
    charts = runs[2] / "live" / "plots" / "metrics" / "probe"
    for name in ("superclevr_digit_rate", "superclevr_accuracy"):
        lines = (charts / f"{name}.tsv").read_text().splitlines()[1:]
        assert [int(line.split("\t")[0]) for line in lines] == [1, 3]  # after steps 2 and 4 (0-based 1, 3)
        assert all(0.0 <= float(line.split("\t")[-1]) <= 1.0 for line in lines)
    assert not (runs[0] / "live" / "plots" / "metrics" / "probe").exists()
    # the probe samples in a forked RNG and never trains: the CLEVR curves and weights are those of a run without it
    strip = lambda recs: [{k: v for k, v in r.items() if not k.startswith("probe_")} for r in recs]  # noqa: E731
    assert strip(_records(runs[2])) == strip(_records(runs[0]))
    a, b = (load_file(r / "model" / "model.safetensors") for r in (runs[0], runs[2]))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_chord_sft_term_decays_is_logged_and_trains_when_every_advantage_is_zero(world, tmp_path, monkeypatch):
    """train.sft_coef > 0 (CHORD): its weight falls 0.5, 0.25, 0, 0 over 4 steps (decay over half of them) and is
    logged; with a constant reward every advantage is zero, so the plain GRPO run never updates while the SFT run
    updates at the steps whose weight is > 0 (on the expert answers) and ends with other weights."""
    import dataclasses

    from stages.training import loop

    monkeypatch.setattr(loop, "get_reward", lambda name: lambda text, truth: 0)  # every group constant
    root, cfg = world
    runs = {}
    for coef in (0.0, 0.5):
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, sft_coef=coef, sft_decay_fraction=0.5))
        out = tmp_path / f"coef{coef}"
        train_stage.main(c, "default-none-0", "none", root / "base", root / "data", out / "model", out / "ckpt",
                         out / "live", out / "metrics.json")
        runs[coef] = out
    plain, sft = _records(runs[0.0]), _records(runs[0.5])
    assert all(r["frac_reward_zero_std"] == 1.0 for r in plain + sft)
    assert [r["skipped_update"] for r in plain] == [1.0] * 4
    assert not any("sft_weight" in r or "sft_loss" in r for r in plain)
    assert [r["sft_weight"] for r in sft] == [0.5, 0.25, 0.0, 0.0]
    assert [r["skipped_update"] for r in sft] == [0.0, 0.0, 1.0, 1.0]
    assert all(r["sft_loss"] > 0 for r in sft[:2]) and not any("sft_loss" in r for r in sft[2:])
    tsv = runs[0.5] / "live" / "plots" / "metrics" / "losses" / "sft_weight.tsv"
    assert [float(line.split("\t")[-1]) for line in tsv.read_text().splitlines()[1:]] == [0.5, 0.25, 0.0, 0.0]
    base = load_file(root / "base" / "model.safetensors")
    a, b = (load_file(r / "model" / "model.safetensors") for r in (runs[0.0], runs[0.5]))
    assert all(torch.equal(base[k], a[k]) for k in base)
    assert any(not torch.equal(a[k], b[k]) for k in a)
