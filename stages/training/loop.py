"""The GRPO loop with guidance injection (blog 001_*, "The GRPO Training Loop" and the appendix).

One step:
  1. sample ``prompts_per_step`` questions (B); each gets a group of G completion rows;
  2. generate G completions per prompt (temperature 1, top_p 1); old-policy log-probs come from the
     generation pass itself (they equal the training forward's to ~1e-6 with left padding);
     every forward runs each prompt (and its image) once and shares it with the G rows through the KV cache;
  3. score them (+1 / 0 / -1), then let the injection strategy replace some completions of each group by the
     correct answer in the prompt style's format (injected rows get old log-probs from a no-grad forward,
     since the policy did not sample them);
  4. group-relative advantages; then ``epochs`` clipped passes, one AdamW update each.

Everything random in a step is seeded from (seed, step), so a run resumed from a checkpoint replays exactly
what an uninterrupted run would have done.  The loop runs under Accelerate: one CPU, one GPU, or several
processes with ``accelerate launch`` (each takes B / world prompts; DDP averages the gradients).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import deque
from dataclasses import dataclass

import torch

from stages import prompts
from stages.config import TrainParams
from stages.counting.questions import CountingExample
from stages.grpo import (
    GroupContext,
    InjectionParams,
    choose_injected,
    count_reward,
    frac_zero_std_groups,
    group_advantages,
    grpo_loss,
    k3_kl,
    masked_mean,
)
from stages.vlm import qwen2vl as vlm

log = logging.getLogger(__name__)


class PhaseTimer:
    """Seconds spent per phase of a step (generation, reference forward, training passes, optimizer)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start

    def reset(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


class NonFiniteError(RuntimeError):
    """A NaN or infinite loss or gradient; the last good checkpoint stays intact."""


def step_seed(seed: int, step: int, salt: int = 0) -> int:
    """A distinct, reproducible seed for each (run seed, step, purpose)."""
    return (seed * 1_000_003 + step) * 7 + salt


def lr_multiplier(step: int, total_steps: int, warmup_frac: float) -> float:
    """Linear warmup over the first ``warmup_frac`` of steps, then constant (the blog states no decay)."""
    warmup = int(total_steps * warmup_frac)
    return 1.0 if warmup == 0 else min(1.0, (step + 1) / warmup)


def merge_completions(gen_ids: torch.Tensor, gen_mask: torch.Tensor, rows: list[int],
                      inj_ids: torch.Tensor, inj_mask: torch.Tensor, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Put injected completions (k, Ti) into ``rows`` of the generated ones (N, Tg) -> (N, max(Tg, Ti))."""
    width = max(gen_ids.shape[1], inj_ids.shape[1] if len(rows) else 0)
    ids = torch.full((gen_ids.shape[0], width), pad_id, dtype=gen_ids.dtype)
    mask = torch.zeros((gen_ids.shape[0], width), dtype=torch.bool)
    ids[:, : gen_ids.shape[1]] = gen_ids
    mask[:, : gen_mask.shape[1]] = gen_mask
    for k, row in enumerate(rows):
        ids[row] = pad_id
        mask[row] = False
        ids[row, : inj_ids.shape[1]] = inj_ids[k]
        mask[row, : inj_mask.shape[1]] = inj_mask[k]
    return ids, mask


@dataclass
class Rollout:
    """One step's experience, N = B*G rows (this process's share)."""

    batch: dict  # the B prompts, not expanded (row r continues prompt r // G): input_ids (B, P), ..., pixel_values
    completion_ids: torch.Tensor  # (N, T)
    completion_mask: torch.Tensor  # (N, T)
    old_logp: torch.Tensor  # (N, T)
    ref_logp: torch.Tensor | None  # (N, T)
    advantages: torch.Tensor  # (N,)
    rewards: list[int]  # after injection
    policy_rewards: list[int]  # before injection (what the policy itself earned)
    is_injected: list[bool]
    texts: list[str]  # after injection


class GRPOTrainer:
    def __init__(self, model, ref_model, processor, examples: list[CountingExample], style: str, strategy: str,
                 params: TrainParams, seed: int, accelerator=None):
        from accelerate import Accelerator

        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.p = params
        self.style = style
        self.strategy = strategy
        self.seed = seed
        self.examples = examples
        self.processor = processor
        self.tok = processor.tokenizer
        self.ref_model = ref_model.eval().requires_grad_(False) if ref_model is not None else None
        opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        self.model, self.opt = self.acc.prepare(model, opt)
        self.gen_config = vlm.sampling_config(self.tok, max_new_tokens=params.max_new_tokens,
                                              temperature=params.temperature, top_p=params.top_p)
        self.injection_params = InjectionParams(
            decay_initial_rate=params.decay_initial_rate, decay_final_rate=params.decay_final_rate,
            decay_fraction=params.decay_fraction, adaptive_threshold=params.adaptive_threshold,
        )
        self.digit_history: deque[float] = deque(maxlen=params.rolling_window)
        self.timer = PhaseTimer()
        if params.prompts_per_step % self.acc.num_processes:
            raise ValueError(f"train.prompts_per_step ({params.prompts_per_step}) must be a multiple of the "
                             f"number of processes ({self.acc.num_processes})")

    @property
    def policy(self):
        return self.acc.unwrap_model(self.model)

    # ------------------------------------------------------------------------------------------------------
    def sample_prompts(self, step: int) -> list[tuple[int, CountingExample]]:
        """This process's share of the step's B questions, with their position in the global batch.

        The global batch and every draw tied to a prompt are seeded from (seed, step, global position), so one
        process and N processes sample, inject and update identically.
        """
        rng = random.Random(step_seed(self.seed, step, 1))
        chosen = rng.sample(range(len(self.examples)), self.p.prompts_per_step)
        positions = range(self.acc.process_index, len(chosen), self.acc.num_processes)
        return [(pos, self.examples[chosen[pos]]) for pos in positions]

    def collect(self, step: int) -> Rollout:
        G = self.p.group_size
        mine = self.sample_prompts(step)
        exs = [ex for _, ex in mine]
        texts = [vlm.chat_prompt(self.processor, prompts.build_messages(self.style, ex.question)) for ex in exs]
        batch = dict(vlm.encode_prompts(self.processor, [ex.image for ex in exs], texts))
        row_seeds = [step_seed(self.seed, step, 1000 + pos * G + i) for pos, _ in mine for i in range(G)]
        policy = self.policy
        policy.eval()
        with self.timer("generation"):
            gen = vlm.generate(policy, self.processor, batch, self.gen_config, want_logprobs=True,
                               row_seeds=row_seeds, group_size=G)
        policy_rewards = [count_reward(t, ex.answer) for t, ex in zip(gen.texts, [e for e in exs for _ in range(G)], strict=True)]

        # guidance injection, group by group
        rolling = sum(self.digit_history) / len(self.digit_history) if self.digit_history else 0.0
        rows, inj_texts = [], []
        for g, (pos, ex) in enumerate(mine):
            rng = random.Random(step_seed(self.seed, step, 100_000 + pos))
            group_rewards = tuple(policy_rewards[g * G : (g + 1) * G])
            ctx = GroupContext(step=step, total_steps=self.p.steps, group_size=G, rewards=group_rewards,
                               rolling_digit_rate=rolling)
            for i in choose_injected(self.strategy, ctx, self.injection_params, rng):
                rows.append(g * G + i)
                inj_texts.append(prompts.injected_completion(self.style, ex.answer))
        texts_out = list(gen.texts)
        rewards = list(policy_rewards)
        is_injected = [False] * len(texts_out)
        completion_ids, completion_mask, old_logp = gen.completion_ids, gen.completion_mask, gen.logprobs
        if rows:
            inj_ids, inj_mask = vlm.tokenize_completions(self.tok, inj_texts)
            completion_ids, completion_mask = merge_completions(
                gen.completion_ids, gen.completion_mask, rows, inj_ids, inj_mask, self.tok.pad_token_id)
            old = torch.zeros(completion_ids.shape, dtype=torch.float32)
            old[:, : gen.logprobs.shape[1]] = gen.logprobs
            with torch.no_grad(), self.timer("injected_forward"):
                inj_logp = vlm.completion_logprobs(policy, batch, completion_ids[rows], completion_mask[rows],
                                                   group_size=G, rows=rows)
            old[rows] = inj_logp.float().cpu()
            old_logp = old.masked_fill(~completion_mask, 0.0)
            for row, text in zip(rows, inj_texts, strict=True):
                texts_out[row] = text
                is_injected[row] = True
                rewards[row] = count_reward(text, exs[row // G].answer)

        ref_logp = None
        if self.ref_model is not None and (self.p.kl_coef > 0 or step % self.p.kl_log_every == 0):
            with torch.no_grad(), self.timer("reference_forward"):
                ref_logp = vlm.completion_logprobs(self.ref_model, batch, completion_ids, completion_mask,
                                                   group_size=G).float().cpu()
        advantages = group_advantages(torch.tensor(rewards, dtype=torch.float32), G)
        return Rollout(batch, completion_ids, completion_mask, old_logp, ref_logp, advantages, rewards,
                       policy_rewards, is_injected, texts_out)

    # ------------------------------------------------------------------------------------------------------
    def update(self, ro: Rollout, step: int) -> dict[str, float]:
        """``epochs`` clipped passes over the rollout, one optimizer step each."""
        mult = lr_multiplier(step, self.p.steps, self.p.warmup_frac)
        for group in self.opt.param_groups:
            group["lr"] = self.p.lr * mult
        stats = {"clip_frac": [], "grad_norm": [], "loss": [], "ratio_mean": []}
        if not bool((ro.advantages != 0).any()) and self.p.kl_coef == 0:
            return {"skipped_update": 1.0, "lr": self.p.lr * mult}  # every group constant: nothing to learn
        self.model.train()
        dev = self.acc.device
        for _ in range(self.p.epochs):
            with self.timer("train_forward_backward"):
                logp = vlm.completion_logprobs(self.model, ro.batch, ro.completion_ids, ro.completion_mask,
                                               group_size=self.p.group_size)
                ref = None if ro.ref_logp is None or self.p.kl_coef == 0 else ro.ref_logp.to(dev)
                loss, st = grpo_loss(logp, ro.old_logp.to(dev), ro.advantages.to(dev), ro.completion_mask.to(dev),
                                     clip_eps=self.p.clip_eps, ref_logp=ref, kl_coef=self.p.kl_coef)
                if not torch.isfinite(loss):
                    raise NonFiniteError(f"step {step}: the loss is {loss.item()}; stopping (the last checkpoint is intact)")
                self.opt.zero_grad(set_to_none=True)
                self.acc.backward(loss)
            with self.timer("optimizer"):
                norm = self.acc.clip_grad_norm_(self.model.parameters(), self.p.max_grad_norm)
                if not torch.isfinite(norm):
                    raise NonFiniteError(f"step {step}: the gradient norm is {float(norm)}; stopping (the last checkpoint is intact)")
                self.opt.step()
            stats["grad_norm"].append(float(norm))
            for k in ("clip_frac", "loss", "ratio_mean"):
                stats[k].append(float(st[k]))
        out = {k: sum(v) / len(v) for k, v in stats.items()}
        out.update(skipped_update=0.0, lr=self.p.lr * mult)
        return out

    # ------------------------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ro = self.collect(step)
        upd = self.update(ro, step)
        G = self.p.group_size
        pol = torch.tensor(ro.policy_rewards, dtype=torch.float32)
        allr = torch.tensor(ro.rewards, dtype=torch.float32)
        gathered = self.acc.gather_for_metrics(torch.stack([pol, allr], dim=1).to(self.acc.device)).cpu()
        pol, allr = gathered[:, 0], gathered[:, 1]
        digit_rate = float((pol != -1).float().mean())
        self.digit_history.append(digit_rate)
        policy_rows = [i for i, inj in enumerate(ro.is_injected) if not inj]
        lengths = ro.completion_mask.sum(1).float()
        rec = {
            "step": step,
            "mean_reward": float(allr.mean()),
            "policy_reward": float(pol.mean()),
            "digit_rate": digit_rate,
            "accuracy": float((pol == 1).float().mean()),
            "injected_frac": sum(ro.is_injected) / len(ro.is_injected),
            "frac_reward_zero_std": frac_zero_std_groups(allr, G),
            "completion_length": float(lengths[policy_rows].mean()) if policy_rows else 0.0,
            "kl": _masked_kl(ro),
            **upd,
            "seconds_per_step": time.perf_counter() - t0,
        }
        rec["_sample"] = ro.texts[0]
        return rec


def _masked_kl(ro: Rollout) -> float:
    """Mean k3 KL(policy || reference) over completion tokens, at sampling time; NaN when not measured."""
    if ro.ref_logp is None:
        return float("nan")
    return float(masked_mean(k3_kl(ro.old_logp, ro.ref_logp), ro.completion_mask))
