"""One GRPO update through our code and through TRL's ``GRPOTrainer`` (the ``bench`` extra), on identical inputs.

The same tiny Qwen2-VL, the same 2 prompts (images, the default prompt style) and the same G = 4 fixed completions
per prompt (words, digits, a truncated one) go through:

- ours: :func:`group_advantages`, :func:`vlm.completion_logprobs` (the KV-cache fan-out of the prompt) and
  :func:`grpo_loss`;
- TRL 1.16: ``_generate_and_score_completions`` (its own prompt tokenisation, reward call, advantages and
  old-policy forward; only the sampling is replaced by our fixed completions) and ``compute_loss``.

The "old" policy is the model with its weights perturbed, so that ratios differ from 1 and some tokens clip. The
two must agree in fp32 on the prompt tokens, advantages, old log-probs, per-token ratios, clipped fraction, the loss
and every parameter's gradient. Differences that are kept on purpose are not part of one update (see README, "The
trainer against TRL"): the learning-rate warmup's granularity, AdamW's weight decay on biases and norms, and the
sampler.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from trl import GRPOTrainer  # the bench extra, pinned in requirements.lock: scripts/setup.sh installs it

from stages import prompts
from stages.bench import trl_config, trl_dataset, trl_reward
from stages.config import load_config
from stages.counting.questions import CountingExample
from stages.counting.sources import build_clevr_mini
from stages.grpo.advantages import group_advantages
from stages.grpo.loss import grpo_loss
from stages.grpo.rewards import count_reward
from stages.vlm import qwen2vl as vlm

G = 4
CLIP = 0.2
# per prompt: G completions with different lengths and rewards; the last of prompt 1 is cut (no end token)
COMPLETIONS = (
    ["3", "There are three objects.", "I see 2 things", "Many shapes"],
    ["2", "two", "I can see 5 objects on the floor", "The image shows objects arranged in the scene and more"],
)


def _perturbed(model, scale: float, seed: int):
    """A copy of ``model`` with every weight moved by scale x its own std: the "old" policy of the update."""
    old = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in old.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale * (p.float().std() if p.numel() > 1 else 1.0))
    return old


@pytest.fixture(scope="module")
def world(tiny_model, tiny_processor):
    split = build_clevr_mini(seed=11, n_train=2, n_heldout=1, min_count=1, max_count=4, size=112)["train"]
    examples = [CountingExample(image=split[i]["image"].convert("RGB"), question=split[i]["problem"],
                                answer=int(split[i]["solution"].split("<answer>")[1].split("</answer>")[0]), row=i)
                for i in range(2)]
    tok = tiny_processor.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    rows = []  # (N,) token ids per completion row, prompt by prompt
    for texts in COMPLETIONS:
        for k, text in enumerate(texts):
            ids = tok(text, add_special_tokens=False)["input_ids"]
            rows.append(ids if (texts is COMPLETIONS[1] and k == G - 1) else ids + [end])
    policy = copy.deepcopy(tiny_model).float().train()
    old = _perturbed(policy, scale=0.05, seed=3).eval()
    return examples, rows, policy, old


def _ours(world, processor):
    examples, rows, policy, old = world
    model = copy.deepcopy(policy)
    texts = [vlm.chat_prompt(processor, prompts.build_messages("default", ex.question)) for ex in examples]
    batch = dict(vlm.encode_prompts(processor, [ex.image for ex in examples], texts))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), processor.tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), True
    decoded = processor.tokenizer.batch_decode(ids.masked_fill(~mask, processor.tokenizer.pad_token_id),
                                               skip_special_tokens=True)
    rewards = [float(count_reward(t, ex.answer)) for t, ex in zip(decoded, [e for e in examples for _ in range(G)],
                                                                     strict=True)]
    adv = group_advantages(torch.tensor(rewards), G)
    with torch.no_grad():
        old_logp = vlm.completion_logprobs(old, batch, ids, mask, group_size=G)
    logp = vlm.completion_logprobs(model, batch, ids, mask, group_size=G)
    loss, stats = grpo_loss(logp, old_logp, adv, mask, clip_eps=CLIP)
    loss.backward()
    return dict(prompt_ids=batch["input_ids"], prompt_mask=batch["attention_mask"], rewards=torch.tensor(rewards),
                advantages=adv, old_logp=old_logp, logp=logp.detach(), mask=mask, ratio=torch.exp(logp - old_logp).detach(),
                loss=loss.detach(), clip_frac=stats["clip_frac"],
                grads={n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})


def _trl(world, processor, tmp_path, repo_root):
    examples, rows, policy, old = world
    model = copy.deepcopy(old)  # TRL's old-policy forward happens in _generate_and_score_completions
    ds = trl_dataset(examples)
    # the benchmark's TRL settings (stages/bench.py), at this test's batch: 2 prompts x G = 4, no truncation
    train = dataclasses.replace(load_config(repo_root / "params.yaml").train, prompts_per_step=len(examples),
                                group_size=G, clip_eps=CLIP, kl_coef=0.0, max_new_tokens=64)
    args = trl_config(train, processor, str(tmp_path / "trl"), steps=1, seed=0, device="cpu")
    reward = trl_reward()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=ds, processing_class=processor)
    # the sampling is the one part replaced: the fixed completions, each prompt's G in order
    trainer._generate_single_turn = lambda prompt_ids, *a, **k: ([list(r) for r in rows], None)
    inputs = [dict(ds[i]) for i in range(len(examples)) for _ in range(G)]  # RepeatSampler: each prompt G times
    trainer.model.train()
    out = trainer._generate_and_score_completions(inputs)
    with torch.no_grad():  # the policy being trained: the old policy's model takes the current weights
        for p, q in zip(trainer.model.parameters(), policy.parameters(), strict=True):
            p.copy_(q)
    trainer.model.zero_grad(set_to_none=True)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this update does not run
    input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
    logp, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, input_ids, torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1),
        out["completion_ids"].size(1), pixel_values=out["pixel_values"], image_grid_thw=out["image_grid_thw"],
        num_images=out["num_images"], mm_token_type_ids=out["mm_token_type_ids"])
    loss = trainer.compute_loss(trainer.model, out)
    loss.backward()
    mask = out["completion_mask"].bool()
    return dict(prompt_ids=out["prompt_ids"], prompt_mask=out["prompt_mask"], advantages=out["advantages"],
                old_logp=out["old_per_token_logps"].masked_fill(~mask, 0.0), logp=logp.detach().masked_fill(~mask, 0.0),
                mask=mask, loss=loss.detach(), clip_frac=trainer._metrics["train"]["clip_ratio/region_mean"][-1],
                rewards=torch.tensor(trainer._logs["rewards"]["reward"]),
                grads={n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None})


@pytest.fixture(scope="module")
def both(world, tiny_processor, tmp_path_factory, repo_root):
    return _ours(world, tiny_processor), _trl(world, tiny_processor, tmp_path_factory.mktemp("trl"), repo_root)


def test_the_same_prompt_tokens_and_completion_masks(both):
    ours, theirs = both
    # TRL holds the prompt once per row (N, P); ours once per prompt (B, P), fanned out to rows by the KV cache
    assert torch.equal(ours["prompt_ids"].repeat_interleave(G, 0), theirs["prompt_ids"])
    assert torch.equal(ours["prompt_mask"].bool().repeat_interleave(G, 0), theirs["prompt_mask"].bool())
    width = ours["mask"].shape[1]
    assert torch.equal(ours["mask"], theirs["mask"][:, :width]) and not theirs["mask"][:, width:].any()


def test_the_same_rewards_and_group_advantages(both):
    ours, theirs = both
    assert torch.equal(ours["rewards"], theirs["rewards"])
    assert len(set(ours["rewards"].tolist())) > 1  # the groups carry a signal
    torch.testing.assert_close(ours["advantages"], theirs["advantages"].float(), rtol=0, atol=1e-6)


def test_the_same_old_and_new_logprobs_and_ratios(both):
    ours, theirs = both
    width = ours["mask"].shape[1]
    torch.testing.assert_close(ours["old_logp"], theirs["old_logp"][:, :width], rtol=0, atol=2e-5)
    torch.testing.assert_close(ours["logp"], theirs["logp"][:, :width], rtol=0, atol=2e-5)
    ratio = torch.exp(theirs["logp"] - theirs["old_logp"])[:, :width]
    torch.testing.assert_close(ours["ratio"][ours["mask"]], ratio[ours["mask"]], rtol=0, atol=5e-5)
    assert (ours["ratio"][ours["mask"]] - 1).abs().max() > CLIP  # the perturbation makes some tokens clip


def test_the_same_loss_clip_fraction_and_gradients(both):
    ours, theirs = both
    assert 0 < float(ours["clip_frac"]) < 1
    assert float(ours["clip_frac"]) == pytest.approx(theirs["clip_frac"], abs=1e-6)
    torch.testing.assert_close(ours["loss"], theirs["loss"].float(), rtol=1e-5, atol=1e-7)
    assert ours["grads"].keys() == theirs["grads"].keys()
    scale = max(float(g.abs().max()) for g in ours["grads"].values())
    assert scale > 0
    for name, g in ours["grads"].items():
        torch.testing.assert_close(g, theirs["grads"][name], rtol=1e-4, atol=1e-5 * scale, msg=name)
