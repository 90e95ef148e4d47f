"""GPU memory options: activation checkpointing (same update, generation unchanged) and LoRA through peft (only
the adapters move, the adapters-off policy is the base model, the saved model is merged, a killed run resumes)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from stages import train as train_stage
from stages.config import ConfigError, config_from_dict, load_config
from stages.counting.questions import load_counting_split
from stages.training import lora as lora_module
from stages.training.loop import GRPOTrainer
from stages.vlm import qwen2vl as vlm


@pytest.fixture(scope="module")
def world(tmp_path_factory, make_tiny_world, repo_root):
    root = make_tiny_world(tmp_path_factory.mktemp("lora"), seed=7, n_train=8, n_heldout=2)
    cfg = load_config(repo_root / "params.yaml")
    small = dataclasses.replace(cfg.train, steps=2, prompts_per_step=2, group_size=4, epochs=1, max_new_tokens=8,
                                lr=1e-3, warmup_frac=0.0, rolling_window=2)
    cfg = dataclasses.replace(cfg, train=small, execution=dataclasses.replace(cfg.execution, checkpoint_every=1))
    model, processor = vlm.load_model(root / "base", "float32", "cpu")
    examples = load_counting_split(root / "data" / "clevr" / "train", "clevr")
    return root, cfg, model, processor, examples


def _trainer(world, **train) -> GRPOTrainer:
    _, cfg, model, processor, examples = world
    return GRPOTrainer(copy.deepcopy(model), None, processor, examples, "default", "stochastic",
                       dataclasses.replace(cfg.train, **train), cfg.injection_params, seed=0)


def _grads(trainer: GRPOTrainer) -> dict[str, torch.Tensor]:
    return {n: p.grad for n, p in trainer.policy.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------------------------------------------------
# activation checkpointing


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_gradient_checkpointing_gives_the_same_update_and_generation(world, lora_rank):
    """The training forward keeps its shared-prompt KV cache under checkpointing (transformers would drop it)."""
    plain = _trainer(world, lora_rank=lora_rank)
    ckpt = _trainer(world, lora_rank=lora_rank, gradient_checkpointing=True)
    assert ckpt.policy.is_activation_checkpointing and not plain.policy.is_activation_checkpointing
    rollout = plain.collect(0)
    a, b = plain.update(rollout, 0), ckpt.update(rollout, 0)
    assert a["skipped_update"] == 0.0
    assert b["loss"] == pytest.approx(a["loss"], abs=1e-7) and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-6)
    ga, gb = _grads(plain), _grads(ckpt)
    assert ga.keys() == gb.keys()
    for name, g in ga.items():
        torch.testing.assert_close(gb[name], g, atol=1e-6 * g.abs().max().item(), rtol=0, msg=name)
    # generation (eval mode, KV cache) still works with checkpointing on, and samples what the plain policy does
    assert ckpt.collect(1).texts == plain.collect(1).texts


# ---------------------------------------------------------------------------------------------------------
# LoRA


@pytest.fixture(scope="module")
def lora_trained(world):
    """A LoRA trainer after one update, and its frozen weights as they were before it."""
    trainer = _trainer(world, lora_rank=4)
    frozen = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in trainer.policy.named_parameters() if p.requires_grad}
    rec = trainer.train_step(0)
    assert rec["skipped_update"] == 0.0
    return trainer, frozen, adapters


def test_lora_adapts_the_language_model_and_moves_only_the_adapters(world, lora_trained):
    _, _, model, _, _ = world
    trainer, frozen, adapters = lora_trained
    names = [n for n, _ in trainer.policy.named_parameters()]
    trainable = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not any(".visual." in n for n in trainable)
    layers = model.config.get_text_config().num_hidden_layers
    assert len(trainable) == 2 * layers * 7  # A and B of q, k, v, o, gate, up, down in every decoder layer
    assert len(frozen) == sum(1 for _ in model.parameters()) == len(names) - len(trainable)
    assert sum(len(g["params"]) for g in trainer.opt.param_groups) == len(trainable)  # AdamW holds the adapters only
    now = dict(trainer.policy.named_parameters())
    assert all(torch.equal(now[n], w) for n, w in frozen.items())  # the base weights, bit for bit
    assert all(not torch.equal(now[n], w) for n, w in adapters.items() if ".lora_B." in n)  # B starts at 0, moved


def _batch(trainer: GRPOTrainer, step: int = 1):
    """A step's prompts and some completions of them (token ids, mask)."""
    mine = trainer.sample_prompts(step)
    batch = trainer.encode(mine)
    texts = ["<answer>3</answer>", "2", "There are four.", "<think>one</think><answer>1</answer>"] * len(mine)
    ids, mask = vlm.tokenize_completions(trainer.tok, texts)
    return batch, ids, mask


def test_reference_with_adapters_off_is_the_base_model(world, lora_trained):
    _, _, model, _, _ = world
    trainer, _, _ = lora_trained
    batch, ids, mask = _batch(trainer)
    G = trainer.p.group_size
    ref = trainer.reference_logprobs(batch, ids, mask, step=0)
    with torch.no_grad():
        base = vlm.completion_logprobs(model, batch, ids, mask, group_size=G)
        policy = vlm.completion_logprobs(trainer.policy, batch, ids, mask, group_size=G)
    torch.testing.assert_close(ref, base, atol=1e-6, rtol=0)
    assert (policy - base).abs().max() > 1e-3  # the adapters themselves are on again, and they matter


def test_merged_model_saves_as_a_plain_model_with_the_adapted_logprobs(world, lora_trained, tmp_path):
    _, _, model, processor, _ = world
    trainer, _, _ = lora_trained
    batch, ids, mask = _batch(trainer)
    G = trainer.p.group_size
    peft_model = copy.deepcopy(trainer.policy)  # merging consumes it
    with torch.no_grad():
        adapted = vlm.completion_logprobs(peft_model, batch, ids, mask, group_size=G)
    vlm.save_model_dir(lora_module.merged_policy(peft_model), processor, tmp_path / "model")
    saved = load_file(tmp_path / "model" / "model.safetensors")
    assert saved.keys() == load_file(world[0] / "base" / "model.safetensors").keys()  # the base's weights, no lora_
    loaded, _ = vlm.load_model(tmp_path / "model", "float32", "cpu")
    with torch.no_grad():
        merged = vlm.completion_logprobs(loaded, batch, ids, mask, group_size=G)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=0)


def _run(world, out, cfg):
    root = world[0]
    return train_stage.main(cfg, "default-inject-0", "stochastic", root / "base", root / "data", out / "model",
                            out / "ckpt", out / "live", out / "metrics.json")


def test_lora_kill_and_resume_equals_a_straight_run(world, tmp_path, monkeypatch):
    """Checkpoints hold the adapters and their optimizer state; the stage writes the merged model."""
    cfg = world[1]
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lora_rank=4))
    _run(world, tmp_path / "straight", cfg)
    original = GRPOTrainer.train_step

    def dies(self, step):
        if step == 1:
            raise KeyboardInterrupt("killed")
        return original(self, step)

    monkeypatch.setattr(GRPOTrainer, "train_step", dies)
    with pytest.raises(KeyboardInterrupt):
        _run(world, tmp_path / "resumed", cfg)
    ckpt = tmp_path / "resumed" / "ckpt"
    assert sorted(p.name for p in ckpt.iterdir()) == ["adapters.safetensors", "optimizer.pt", "state.json"]
    assert all(".lora_" in k for k in load_file(ckpt / "adapters.safetensors"))
    monkeypatch.setattr(GRPOTrainer, "train_step", original)
    _run(world, tmp_path / "resumed", cfg)

    def records(out):
        return train_stage.read_records(out / "live", timings=False)

    assert records(tmp_path / "straight") == records(tmp_path / "resumed")
    assert all("kl" in r for r in records(tmp_path / "straight"))  # the adapters-off reference was used
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "model" / "model.safetensors")
    base = load_file(world[0] / "base" / "model.safetensors")
    assert a.keys() == b.keys() == base.keys()  # merged: a plain model, which the evals load as they are
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], base[k]) for k in a)

    # the eval stage reads the merged model as it reads a full fine-tune's
    from stages import evaluate

    small_eval = dataclasses.replace(cfg.eval, clevr_questions=2, batch_size=2, max_new_tokens=8, greedy=False)
    result = evaluate.main(dataclasses.replace(cfg, eval=small_eval), "clevr", "default",
                           tmp_path / "straight" / "model", world[0] / "data", tmp_path / "eval.json",
                           tmp_path / "answers.jsonl")
    assert json.loads((tmp_path / "eval.json").read_text())["n"] == 2 == len(
        (tmp_path / "answers.jsonl").read_text().splitlines())
    assert 0.0 <= result["accuracy"] <= 1.0


def test_rank_zero_is_the_full_fine_tune_without_peft(world, monkeypatch):
    def no_peft(*args, **kwargs):
        raise AssertionError("lora_rank 0 must not wrap the policy")

    monkeypatch.setattr(lora_module, "apply_lora", no_peft)
    trainer = _trainer(world)
    assert trainer.p.lora_rank == 0 and not trainer.lora and not hasattr(trainer.policy, "peft_config")
    params = list(trainer.policy.parameters())
    assert [p for g in trainer.opt.param_groups for p in g["params"]] == params  # AdamW over every weight, as before


# ---------------------------------------------------------------------------------------------------------
# params


def test_params_defaults_and_validation(repo_root):
    import yaml

    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    t = config_from_dict(raw).train
    assert (t.gradient_checkpointing, t.lora_rank, t.lora_alpha, t.lora_dropout) == (False, 0, 32.0, 0.0)
    assert t.lora_targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    bad = [("lora_rank", -1, "train.lora_rank = -1 is invalid: must be >= 0"),
           ("lora_targets", ["q_proj", "qkv"], "train.lora_targets = 'qkv' is invalid: must be one of q_proj"),
           ("lora_alpha", 0, "train.lora_alpha = 0.0 is invalid: must be > 0"),
           ("gradient_checkpointing", "yes", "train.gradient_checkpointing = 'yes' is invalid: must be true or false")]
    for key, value, words in bad:
        with pytest.raises(ConfigError) as err:
            config_from_dict({**raw, "train": {**raw["train"], key: value}})
        assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="train.lora_targets is empty"):
        config_from_dict({**raw, "train": {**raw["train"], "lora_rank": 8, "lora_targets": []}})


def test_checkpoint_fingerprint_covers_the_memory_options(world):
    from stages.training.checkpoints import fingerprint

    root, cfg, *_ = world
    first = fingerprint(train_stage.trainer_params(cfg), "default-none-0", root / "base", [], root)
    for change in ({"lora_rank": 8}, {"lora_alpha": 16.0}, {"lora_dropout": 0.1}, {"lora_targets": ["q_proj"]},
                   {"gradient_checkpointing": True}):
        other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **change))
        assert fingerprint(train_stage.trainer_params(other), "default-none-0", root / "base", [], root) != first
