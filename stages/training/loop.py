"""The GRPO loop with guidance injection (blog 001_*, "The GRPO Training Loop" and the appendix).

One step:
  1. sample ``prompts_per_step`` questions (B); each gets a group of G completion rows;
  2. generate G completions per prompt (temperature 1, top_p 1); old-policy log-probs come from the
     generation pass itself (they equal the training forward's to ~1e-6 with left padding);
     every forward runs each prompt (and its image) once and shares it with the G rows through the KV cache;
  3. score them (+1 / 0 / -1), then let the injection strategy replace some completions of each group by the
     correct answer in the prompt style's format (injected rows get old log-probs from a no-grad forward,
     since the policy did not sample them);
  4. group-relative advantages; then ``epochs`` clipped passes, one AdamW update each; with ``train.sft_coef`` > 0
     each pass also adds CHORD's decaying supervised term, ``sft_weight(step) * sft_loss`` on every prompt's expert
     completion (the text injection uses), to the loss.

Everything random in a step is seeded from (seed, step), so a run resumed from a checkpoint replays exactly
what an uninterrupted run would have done.  The loop runs under Accelerate: one CPU, one GPU, or several
processes with ``accelerate launch`` or ``torchrun`` (each takes B / world prompts; DDP averages the
gradients). Every rank takes the same branches around ``backward()`` (the decisions are all-reduced), since a
rank that skipped an update would leave the others waiting in the gradient all-reduce for good.

Precision: the policy's weights and AdamW state are always fp32 (``train.precision`` fp32 or bf16-mixed, where
forwards run under bf16 autocast): an AdamW step of lr 1e-5 on bf16 weights rounds away.

Memory (GPU): ``train.gradient_checkpointing`` recomputes each layer's activations in the backward instead of
keeping them (the training forwards only; generation is unchanged); ``train.lora_rank > 0`` trains LoRA adapters
(:mod:`stages.training.lora`) instead of every weight, and uses the frozen base, adapters off, as the reference.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from stages import prompts
from stages.counting.questions import CountingExample
from stages.grpo.advantages import frac_zero_std_groups, group_advantages
from stages.grpo.injection import GroupContext, InjectionParams, apply_injection, choose_injected
from stages.grpo.loss import grpo_loss, k3_kl, sft_loss, sft_weight
from stages.grpo.rewards import get_reward
from stages.vlm import qwen2vl as vlm

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import TrainParams

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
class Samples:
    """What the policy generated for this process's B prompts x G rows, and what it earned."""

    completion_ids: torch.Tensor  # (N, T)
    completion_mask: torch.Tensor  # (N, T)
    logprobs: torch.Tensor  # (N, T) old-policy log-probs, from the generation pass
    texts: list[str]  # (N,)
    rewards: list[int]  # (N,)


@dataclass
class Injected:
    """The step's completions after guidance injection (row order unchanged)."""

    texts: list[str]  # (N,)
    rewards: list[int]  # (N,)
    is_injected: list[bool]  # (N,)

    @property
    def rows(self) -> list[int]:
        return [row for row, flag in enumerate(self.is_injected) if flag]


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
    expert_ids: torch.Tensor | None = None  # (B, Te) each prompt's expert completion, only when the SFT weight > 0
    expert_mask: torch.Tensor | None = None  # (B, Te)


class GRPOTrainer:
    def __init__(self, model, ref_model, processor, examples: list[CountingExample], style: str, strategy: str,
                 params: TrainParams, injection: InjectionParams, seed: int, accelerator=None):
        from accelerate import Accelerator

        if params.gradient_checkpointing:
            vlm.enable_gradient_checkpointing(model)
        self.lora = params.lora_rank > 0
        if self.lora:
            from stages.training import lora  # peft: imported only for LoRA

            # the adapters' random init (peft draws it on the CPU) from the run's seed, whatever ran before
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(step_seed(seed, 0, 2))
                model = lora.apply_lora(model, params)
        not_fp32 = sorted({str(p.dtype) for p in model.parameters() if p.requires_grad and p.dtype != torch.float32})
        if not_fp32:
            raise ValueError(f"the policy's trainable weights are {', '.join(not_fp32)}: load them in float32 "
                             "(train.precision bf16-mixed computes in bf16 and keeps fp32 master weights)")
        self.acc = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        self.p = params
        self.style = style
        self.reward = get_reward(params.reward)  # train.reward: the training reward (count, or partial credit)
        self.strategy = strategy
        self.seed = seed
        self.examples = examples
        self.processor = processor
        self.tok = processor.tokenizer
        self.ref_model = ref_model.eval().requires_grad_(False) if ref_model is not None else None
        trainable = [p for p in model.parameters() if p.requires_grad]  # every weight, or LoRA's adapters
        opt = torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
        self.model, self.opt = self.acc.prepare(model, opt)
        self.gen_config = vlm.sampling_config(self.tok, max_new_tokens=params.max_new_tokens,
                                              temperature=params.temperature, top_p=params.top_p)
        self.injection_params = injection
        self.digit_history: deque[float] = deque(maxlen=params.rolling_window)
        self.timer = PhaseTimer()
        if params.prompts_per_step % self.acc.num_processes:
            raise ValueError(f"train.prompts_per_step ({params.prompts_per_step}) must be a multiple of the "
                             f"number of processes ({self.acc.num_processes})")

    @property
    def policy(self):
        return self.acc.unwrap_model(self.model)

    def compute(self):
        """The forward passes' precision: bf16 autocast under bf16-mixed (weights stay fp32), else nothing."""
        return torch.autocast(self.acc.device.type, dtype=torch.bfloat16, enabled=self.p.precision == "bf16-mixed")

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (one all-reduce; the same answer everywhere)."""
        if self.acc.num_processes == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.acc.device)
        return bool(self.acc.reduce(t, reduction="sum").item() > 0)

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

    def encode(self, mine: list[tuple[int, CountingExample]]) -> dict:
        """The B prompts in the cell's style with their images, left-padded, not expanded to rows."""
        texts = [vlm.chat_prompt(self.processor, prompts.build_messages(self.style, ex.question)) for _, ex in mine]
        return dict(vlm.encode_prompts(self.processor, [ex.image for _, ex in mine], texts))

    def generate(self, batch: dict, mine: list[tuple[int, CountingExample]], step: int) -> Samples:
        """G completions per prompt, each row sampled from its own seeded generator, scored."""
        G = self.p.group_size
        row_seeds = [step_seed(self.seed, step, 1000 + pos * G + i) for pos, _ in mine for i in range(G)]
        policy = self.policy
        policy.eval()
        with self.timer("generation"), self.compute():
            gen = vlm.generate(policy, self.processor, batch, self.gen_config, want_logprobs=True,
                               row_seeds=row_seeds, group_size=G)
        truths = [ex.answer for _, ex in mine for _ in range(G)]
        rewards = [self.reward(text, truth) for text, truth in zip(gen.texts, truths, strict=True)]
        return Samples(gen.completion_ids, gen.completion_mask, gen.logprobs, gen.texts, rewards)

    def inject(self, samples: Samples, mine: list[tuple[int, CountingExample]], step: int) -> Injected:
        """Guidance injection, group by group: the strategy picks rows, :func:`apply_injection` replaces them."""
        G = self.p.group_size
        rolling = sum(self.digit_history) / len(self.digit_history) if self.digit_history else 0.0
        texts, rewards, flags = [], [], []
        for g, (pos, ex) in enumerate(mine):
            group = slice(g * G, (g + 1) * G)
            ctx = GroupContext(step=step, total_steps=self.p.steps, group_size=G,
                               rewards=tuple(samples.rewards[group]), rolling_digit_rate=rolling)
            rows = choose_injected(self.strategy, ctx, self.injection_params,
                                   random.Random(step_seed(self.seed, step, 100_000 + pos)))
            t, r, f = apply_injection(samples.texts[group], samples.rewards[group], rows,
                                      prompts.injected_completion(self.style, ex.answer),
                                      functools.partial(self.reward, truth=ex.answer))
            texts += t
            rewards += r
            flags += f
        return Injected(texts, rewards, flags)

    def completions(self, batch: dict, samples: Samples, injected: Injected) -> tuple[torch.Tensor, ...]:
        """Token ids (N, T), mask (N, T) and old-policy log-probs (N, T) of the completions after injection.

        Injected rows were not sampled by the policy, so their old log-probs come from a no-grad forward.
        """
        rows = injected.rows
        if not rows:
            return samples.completion_ids, samples.completion_mask, samples.logprobs
        inj_ids, inj_mask = vlm.tokenize_completions(self.tok, [injected.texts[r] for r in rows])
        ids, mask = merge_completions(samples.completion_ids, samples.completion_mask, rows, inj_ids, inj_mask,
                                      self.tok.pad_token_id)
        old = torch.zeros(ids.shape, dtype=torch.float32)
        old[:, : samples.logprobs.shape[1]] = samples.logprobs
        with torch.no_grad(), self.timer("injected_forward"), self.compute():
            old[rows] = vlm.completion_logprobs(self.policy, batch, ids[rows], mask[rows], group_size=self.p.group_size,
                                                rows=rows).float().cpu()
        return ids, mask, old.masked_fill(~mask, 0.0)

    @contextlib.contextmanager
    def reference(self):
        """The frozen base model: ``ref_model`` when given, else under LoRA the policy with its adapters off."""
        if self.ref_model is not None:
            yield self.ref_model
        else:
            from stages.training import lora

            with lora.base_model(self.policy):
                yield self.policy

    def reference_logprobs(self, batch: dict, ids: torch.Tensor, mask: torch.Tensor, step: int) -> torch.Tensor | None:
        """Log-probs under the frozen base model, when the KL enters the loss or is logged this step."""
        if (self.ref_model is None and not self.lora) or not (self.p.kl_coef > 0 or step % self.p.kl_log_every == 0):
            return None
        with torch.no_grad(), self.timer("reference_forward"), self.compute(), self.reference() as ref:
            return vlm.completion_logprobs(ref, batch, ids, mask, group_size=self.p.group_size).float().cpu()

    def collect(self, step: int) -> Rollout:
        mine = self.sample_prompts(step)
        batch = self.encode(mine)
        samples = self.generate(batch, mine, step)
        injected = self.inject(samples, mine, step)
        ids, mask, old_logp = self.completions(batch, samples, injected)
        ref_logp = self.reference_logprobs(batch, ids, mask, step)
        advantages = group_advantages(torch.tensor(injected.rewards, dtype=torch.float32), self.p.group_size)
        ro = Rollout(batch, ids, mask, old_logp, ref_logp, advantages, injected.rewards, samples.rewards,
                     injected.is_injected, injected.texts)
        if self.sft_weight(step) > 0:  # CHORD's expert answers, tokenized once per step (nothing when off)
            ro.expert_ids, ro.expert_mask = vlm.tokenize_completions(
                self.tok, [prompts.injected_completion(self.style, ex.answer) for _, ex in mine])
        return ro

    def sft_weight(self, step: int) -> float:
        """The weight of CHORD's supervised term at ``step`` (0: off, the plain GRPO loss)."""
        return sft_weight(step, self.p.steps, self.p.sft_coef, self.p.sft_decay_fraction)

    # ------------------------------------------------------------------------------------------------------
    def update(self, ro: Rollout, step: int) -> dict[str, float]:
        """``epochs`` clipped passes over the rollout, one optimizer step each.

        Whether there is anything to learn is decided over all ranks: a rank whose groups are all constant
        still runs its passes (its loss is zero, its gradient zero) while any other rank has a signal. With
        CHORD's supervised term on (its weight > 0) there always is.
        """
        mult = lr_multiplier(step, self.p.steps, self.p.warmup_frac)
        for group in self.opt.param_groups:
            group["lr"] = self.p.lr * mult
        w_sft = self.sft_weight(step)
        logged = {"sft_weight": w_sft} if self.p.sft_coef > 0 else {}  # CHORD on: its weight, 0 once decayed
        if not self.any_rank(bool((ro.advantages != 0).any()) or self.p.kl_coef > 0 or w_sft > 0):
            return {"skipped_update": 1.0, "lr": self.p.lr * mult, **logged}  # every group on every rank constant
        stats = {"clip_frac": [], "grad_norm": [], "loss": [], "ratio_mean": []}
        if w_sft > 0:
            stats["sft_loss"] = []
            G = self.p.group_size
            expert_rows = [b * G for b in range(len(ro.batch["input_ids"]))]  # one row per prompt
        self.model.train()
        dev = self.acc.device
        shaped = torch.tensor(ro.is_injected, dtype=torch.bool, device=dev)  # (N,) policy-shaped rows, if on
        for _ in range(self.p.epochs):
            with self.timer("train_forward_backward"):
                with self.compute():
                    logp = vlm.completion_logprobs(self.model, ro.batch, ro.completion_ids, ro.completion_mask,
                                                   group_size=self.p.group_size)
                ref = None if ro.ref_logp is None or self.p.kl_coef == 0 else ro.ref_logp.to(dev)
                loss, st = grpo_loss(logp.float(), ro.old_logp.to(dev), ro.advantages.to(dev),
                                     ro.completion_mask.to(dev), clip_eps=self.p.clip_eps, ref_logp=ref,
                                     kl_coef=self.p.kl_coef, shaped=shaped,
                                     shaping_gamma=self.injection_params.shaping_gamma)
                if w_sft > 0:
                    with self.compute():
                        expert_logp = vlm.completion_logprobs(self.model, ro.batch, ro.expert_ids, ro.expert_mask,
                                                              group_size=G, rows=expert_rows)  # (B, Te)
                    sft = sft_loss(expert_logp.float(), ro.expert_mask.to(dev))
                    loss = loss + w_sft * sft
                    stats["sft_loss"].append(float(sft.detach()))
                if self.any_rank(not bool(torch.isfinite(loss))):
                    raise NonFiniteError(f"step {step}: the loss is not finite ({loss.item()} on this rank); "
                                         "stopping (the last checkpoint is intact)")
                self.opt.zero_grad(set_to_none=True)
                self.acc.backward(loss)
            with self.timer("optimizer"):
                norm = self.acc.clip_grad_norm_(self.model.parameters(), self.p.max_grad_norm)
                if not torch.isfinite(norm):  # the gradients are all-reduced: every rank sees the same norm
                    raise NonFiniteError(f"step {step}: the gradient norm is {float(norm)}; stopping (the last checkpoint is intact)")
                self.opt.step()
            stats["grad_norm"].append(float(norm))
            for k in ("clip_frac", "loss", "ratio_mean"):
                stats[k].append(float(st[k]))
        # the loss is a mean over rows (every rank holds as many), clip_frac and ratio_mean means over tokens
        tokens = float(ro.completion_mask.sum())
        weights = {"loss": 1.0, "grad_norm": 1.0, "clip_frac": tokens, "ratio_mean": tokens, "sft_loss": 1.0}
        out = {k: self.mean_over_ranks(sum(v) / len(v), weights[k]) for k, v in stats.items()}
        out.update(skipped_update=0.0, lr=self.p.lr * mult, **logged)
        return out

    def mean_over_ranks(self, value: float, weight: float = 1.0) -> float:
        """The ``weight``-weighted mean over ranks of a per-rank mean: the mean over the whole global batch."""
        if self.acc.num_processes == 1:
            return value
        sums = self.acc.reduce(torch.tensor([value * weight, weight], device=self.acc.device), reduction="sum")
        return float(sums[0] / sums[1])

    # ------------------------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        ro = self.collect(step)
        upd = self.update(ro, step)
        G = self.p.group_size
        # per row, gathered over ranks: policy reward, reward after injection, injected?, length, KL sum (N, 5)
        per_row = torch.stack([
            torch.tensor(ro.policy_rewards, dtype=torch.float32),
            torch.tensor(ro.rewards, dtype=torch.float32),
            torch.tensor(ro.is_injected, dtype=torch.float32),
            ro.completion_mask.sum(1).float(),
            _row_kl_sums(ro),
        ], dim=1)
        rows = self.acc.gather(per_row.to(self.acc.device)).cpu()
        pol, allr, injected, lengths, kl_sums = rows.unbind(1)
        digit_rate = float((pol != -1).float().mean())
        self.digit_history.append(digit_rate)
        own = injected == 0
        rec = {
            "step": step,
            "mean_reward": float(allr.mean()),
            "policy_reward": float(pol.mean()),
            "digit_rate": digit_rate,
            "accuracy": float((pol == 1).float().mean()),
            "injected_frac": float(injected.mean()),
            "frac_reward_zero_std": frac_zero_std_groups(allr, G),
            "completion_length": float(lengths[own].mean()) if bool(own.any()) else 0.0,
            # mean k3 KL over completion tokens at sampling time (NaN when not measured this step)
            "kl": float(kl_sums.sum() / lengths.sum()) if ro.ref_logp is not None else float("nan"),
            **upd,
            "seconds_per_step": time.perf_counter() - t0,
            # this step's seconds by phase (generation, reference / injected forward, passes, optimizer)
            **{f"time_{phase}": s for phase, s in self.timer.reset().items()},
        }
        if self.acc.device.type == "cuda":  # this step's peak GPU memory, then a fresh peak for the next one
            rec["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.acc.device) / 2**30
            torch.cuda.reset_peak_memory_stats(self.acc.device)
        rec["_sample"] = ro.texts[0]
        return rec


def _row_kl_sums(ro: Rollout) -> torch.Tensor:
    """Per row, the sum over completion tokens of k3 KL(policy || reference) at sampling time; zeros if unmeasured."""
    if ro.ref_logp is None:
        return torch.zeros(len(ro.rewards))
    return (k3_kl(ro.old_logp, ro.ref_logp) * ro.completion_mask).sum(1).float()
