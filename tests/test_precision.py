"""Mixed precision done right: bf16-mixed keeps fp32 master weights, so lr 1e-5 updates land as in fp32;
pure bf16 weights are refused, since there AdamW's steps round away."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from stages.config import PRECISIONS, ConfigError, config_from_dict, load_config
from stages.counting.questions import load_counting_split
from stages.training.loop import GRPOTrainer
from stages.vlm import qwen2vl as vlm


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_tiny_world, repo_root):
    root = make_tiny_world(tmp_path_factory.mktemp("precision"), seed=5, n_train=8, n_heldout=2)
    cfg = load_config(repo_root / "params.yaml")
    train = dataclasses.replace(cfg.train, steps=3, prompts_per_step=2, group_size=4, epochs=2, max_new_tokens=8,
                                lr=1e-5, warmup_frac=0.0)
    model, processor = vlm.load_model(root / "base", "float32", "cpu")
    return cfg, train, model, processor, load_counting_split(root / "data" / "clevr" / "train", "clevr")


def _trainer(setup, precision: str) -> GRPOTrainer:
    cfg, train, model, processor, examples = setup
    params = dataclasses.replace(train, precision=precision)
    return GRPOTrainer(copy.deepcopy(model), None, processor, examples, "default", "stochastic", params,
                       cfg.injection_params, seed=0)


def _moved(before: dict, model) -> tuple[float, torch.Tensor]:
    """Fraction of weights that changed, and the flattened update."""
    after = {k: v.detach() for k, v in model.named_parameters()}
    delta = torch.cat([(after[k].float() - before[k].float()).flatten() for k in before])
    return float((delta != 0).float().mean()), delta


def test_bf16_mixed_moves_weights_like_fp32(setup):
    _, _, model, _, _ = setup
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    fp32, mixed = _trainer(setup, "fp32"), _trainer(setup, "bf16-mixed")
    for step in range(3):
        rollout = fp32.collect(step)  # the same experience for both: only the update's precision differs
        fp32.update(rollout, step)
        mixed.update(rollout, step)
    assert all(p.dtype == torch.float32 for p in mixed.policy.parameters())  # master weights stay fp32
    frac_fp32, d_fp32 = _moved(before, fp32.policy)
    frac_mixed, d_mixed = _moved(before, mixed.policy)
    assert frac_fp32 > 0.95 and frac_mixed > 0.95
    cosine = torch.nn.functional.cosine_similarity(d_fp32, d_mixed, dim=0)
    assert cosine > 0.8, f"bf16-mixed updates point elsewhere than fp32's (cosine {cosine:.3f})"
    assert float(d_mixed.norm()) == pytest.approx(float(d_fp32.norm()), rel=0.2)


def test_pure_bf16_adamw_at_blog_lr_leaves_weights_unchanged_and_is_refused(setup):
    """What bf16-mixed avoids: AdamW at lr 1e-5 on bf16 weights of scale ~0.02 mostly rounds away."""
    torch.manual_seed(0)
    weights = (torch.randn(20_000) * 0.02).to(torch.bfloat16).requires_grad_()
    start = weights.detach().clone()
    opt = torch.optim.AdamW([weights], lr=1e-5, weight_decay=0.01)
    for _ in range(10):
        opt.zero_grad()
        (weights.float() * torch.randn(20_000)).sum().backward()
        opt.step()
    assert (weights.detach() == start).float().mean() > 0.5
    cfg, train, model, processor, examples = setup
    with pytest.raises(ValueError, match="load them in float32"):
        GRPOTrainer(copy.deepcopy(model).to(torch.bfloat16), None, processor, examples, "default", "none", train,
                    cfg.injection_params, seed=0)


def test_config_offers_no_pure_bf16_training(repo_root):
    import yaml

    assert PRECISIONS == ("fp32", "bf16-mixed")
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    assert config_from_dict(raw).train.precision == "fp32"
    raw["profile"] = "blog"
    assert config_from_dict(raw).train.precision == "bf16-mixed"  # the real study trains bf16-mixed
    raw["train"]["precision"] = "bfloat16"
    with pytest.raises(ConfigError, match="train.precision"):
        config_from_dict(raw)
    raw["train"]["precision"] = "fp32"
    raw["train"]["dtype"] = "bfloat16"  # the old knob is gone, not silently ignored
    with pytest.raises(ConfigError, match="unknown key train.dtype"):
        config_from_dict(raw)
