"""Guidance injection: replace some of a group's policy samples by the correct answer.

With a weak prompt the base policy rarely produces a number (14.5% in the blog), so most
groups of G samples have equal rewards and zero advantage: the cold-start problem.
Injection substitutes the correct answer for some samples of a group, guaranteeing a +1
reward next to the policy's own samples and therefore reward variance (seed 001, "Guidance
Injection: Breaking the Cold Start"; seed 000, "How Guidance Injection Works").

A strategy only decides WHICH indices of one group are replaced; ``apply_injection`` does
the replacement and rescoring. Strategies are registered by name for params.yaml:

* ``none``: never inject (pure GRPO).
* ``stochastic``: the blog 001 scheme, ``k = randint(1, G-1)`` random indices (1 to 7 of 8).
* ``ensure_one``: the blog 000 scheme, one random index, only if no sample is correct.
* ``decay``: each sample independently with probability ``injection_rate(step)``, the
  blog's suggested hybrid (001, "Step 4: Consider Hybrid Approaches").
* ``adaptive``: ``stochastic`` until the policy's rolling digit rate reaches a threshold,
  then ``none`` (an extension: stop guiding once the format is learned).
* ``fixed``: the same ``fixed_count`` random samples of every group (at most G-1); 1 of 8 is
  the recipe of LUFFY ("Learning to Reason under Off-Policy Guidance", arXiv 2504.14945).
* ``cosine``: as ``decay``, but the rate follows a half cosine from the initial to the final
  rate over the decay window (the schedules of UFT, arXiv 2505.16984, and Prefix-RFT,
  arXiv 2507.01679): it stays high longer, then falls faster.

How the injected samples enter the loss is a separate knob, combinable with any strategy:
``shaping_gamma`` > 0 replaces their clipped ratio by LUFFY's policy shaping
(:func:`stages.grpo.loss.grpo_loss`).

Every strategy leaves at least one policy sample in the group: a fully injected group
would have all rewards +1, zero std, and no learning signal (001, "The critical constraint").
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields


def _knob(default: float, **rules: float):
    """A knob with its allowed range (min / max inclusive, gt exclusive): params.yaml is validated by these
    same rules (stages.config), so a knob is declared here and nowhere else."""
    return field(default=default, metadata=rules)


def range_error(name: str, value: float, rules: dict) -> str | None:
    """Why ``value`` breaks ``rules`` (a field's metadata), or None when it does not."""
    if "min" in rules and value < rules["min"]:
        return f"{name} = {value!r} is invalid: must be >= {rules['min']}"
    if "max" in rules and value > rules["max"]:
        return f"{name} = {value!r} is invalid: must be <= {rules['max']}"
    if "gt" in rules and not value > rules["gt"]:
        return f"{name} = {value!r} is invalid: must be > {rules['gt']}"
    return None


@dataclass(frozen=True)
class InjectionParams:
    """Knobs of the injection strategies (defaults are the blog's); params.yaml section ``injection_params``."""

    decay_initial_rate: float = _knob(0.8, min=0, max=1)  # blog get_injection_rate: initial_rate
    decay_final_rate: float = _knob(0.0, min=0, max=1)  # blog get_injection_rate: final_rate
    decay_fraction: float = _knob(0.7, gt=0, max=1)  # decay over the first 70% of steps
    adaptive_threshold: float = _knob(0.9, min=0, max=1)  # adaptive: switch off once rolling digit rate >= this
    fixed_count: int = _knob(1, min=1)  # fixed: injected samples per group (capped at G-1); LUFFY: 1 of 8
    shaping_gamma: float = _knob(0.0, min=0)  # > 0: injected tokens weigh p / (p + gamma) (LUFFY, gamma 0.1); 0: off

    def __post_init__(self) -> None:
        """Reject knobs outside their range with a one-line message naming the knob."""
        for f in fields(self):
            problem = range_error(f.name, getattr(self, f.name), dict(f.metadata))
            if problem:
                raise ValueError(problem)
        if self.decay_final_rate > self.decay_initial_rate:
            raise ValueError(f"decay_final_rate = {self.decay_final_rate} is invalid: must be <= decay_initial_rate "
                             f"({self.decay_initial_rate})")


@dataclass(frozen=True)
class GroupContext:
    """What a strategy may look at when deciding the injections of one group."""

    step: int  # 0-based training step
    total_steps: int
    group_size: int  # G
    rewards: tuple[int, ...]  # the G policy samples' rewards (+1/0/-1) before injection
    rolling_digit_rate: float  # fraction of recent POLICY samples that contained a number

    def __post_init__(self) -> None:
        """Reject groups that cannot be injected into consistently (G < 2, wrong reward count)."""
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 to keep a policy sample, got {self.group_size}")
        if len(self.rewards) != self.group_size:
            raise ValueError(f"expected {self.group_size} rewards (one per sample), got {len(self.rewards)}")


InjectionStrategy = Callable[[GroupContext, InjectionParams, random.Random], list[int]]
STRATEGIES: dict[str, InjectionStrategy] = {}


def _register(name: str) -> Callable[[InjectionStrategy], InjectionStrategy]:
    """Decorator adding a strategy to ``STRATEGIES`` under ``name``."""

    def add(strategy: InjectionStrategy) -> InjectionStrategy:
        STRATEGIES[name] = strategy
        return strategy

    return add


def injection_rate(step: int, total_steps: int, params: InjectionParams) -> float:
    """The blog's ``get_injection_rate``: linear decay from the initial to the final rate.

    The rate falls linearly over the first ``decay_fraction * total_steps`` steps and stays
    at the final rate afterwards. Identical to the blog's code, plus one guard: with an
    empty decay window (total_steps or decay_fraction 0) the blog divides by zero; here the
    final rate is returned.
    """
    decay_steps = params.decay_fraction * total_steps
    if decay_steps <= 0 or step > decay_steps:
        return params.decay_final_rate
    progress = step / decay_steps
    return params.decay_initial_rate * (1 - progress) + params.decay_final_rate * progress


def cosine_injection_rate(step: int, total_steps: int, params: InjectionParams) -> float:
    """Half-cosine decay from the initial to the final rate over the first ``decay_fraction * total_steps``
    steps, then the final rate: initial at step 0, their mean at mid-window, final at its end."""
    decay_steps = params.decay_fraction * total_steps
    if decay_steps <= 0 or step >= decay_steps:
        return params.decay_final_rate
    weight = 0.5 * (1 + math.cos(math.pi * step / decay_steps))  # 1 -> 0 over the window
    return params.decay_final_rate + (params.decay_initial_rate - params.decay_final_rate) * weight


def _each_with_probability(rate: float, group_size: int, rng: random.Random) -> list[int]:
    """Each of G samples independently with probability ``rate``; if all G were drawn one (at random) is given
    back to the policy. One uniform draw per sample whatever the rate: a seeded run consumes the rng alike."""
    draws = [rng.random() for _ in range(group_size)]  # (G,)
    injected = [index for index, draw in enumerate(draws) if draw < rate]
    if len(injected) == group_size:
        injected.pop(rng.randrange(group_size))
    return injected


@_register("none")
def inject_none(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """Never inject: pure GRPO, every sample is the policy's own."""
    return []


@_register("stochastic")
def inject_stochastic(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """Blog 001's scheme: inject k = randint(1, G-1) distinct random samples (never all G)."""
    num_injected = rng.randint(1, ctx.group_size - 1)  # randint is inclusive at both ends
    return sorted(rng.sample(range(ctx.group_size), num_injected))


@_register("ensure_one")
def inject_ensure_one(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """Blog 000's scheme: if no sample is correct (reward +1), inject one random sample."""
    if any(reward == 1 for reward in ctx.rewards):
        return []
    return [rng.randrange(ctx.group_size)]


@_register("decay")
def inject_decay(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """Inject each sample independently with probability ``injection_rate(step)`` (linear decay), never all G."""
    return _each_with_probability(injection_rate(ctx.step, ctx.total_steps, params), ctx.group_size, rng)


@_register("cosine")
def inject_cosine(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """Inject each sample independently with probability ``cosine_injection_rate(step)``, never all G."""
    return _each_with_probability(cosine_injection_rate(ctx.step, ctx.total_steps, params), ctx.group_size, rng)


@_register("fixed")
def inject_fixed(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """``fixed_count`` distinct random samples of every group, capped at G-1 (one stays the policy's own)."""
    return sorted(rng.sample(range(ctx.group_size), min(params.fixed_count, ctx.group_size - 1)))


@_register("adaptive")
def inject_adaptive(ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """``stochastic`` while the rolling digit rate is below the threshold, then ``none``."""
    if ctx.rolling_digit_rate < params.adaptive_threshold:
        return inject_stochastic(ctx, params, rng)
    return inject_none(ctx, params, rng)


STRATEGY_NAMES: tuple[str, ...] = tuple(STRATEGIES)


def get_strategy(name: str) -> InjectionStrategy:
    """Return the strategy registered under ``name``; ValueError listing the names if none."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown injection strategy {name!r}; registered: {', '.join(STRATEGY_NAMES)}") from None


def choose_injected(name: str, ctx: GroupContext, params: InjectionParams, rng: random.Random) -> list[int]:
    """Indices of the group's samples to replace by the correct answer, per strategy ``name``.

    Returns sorted unique indices in [0, G), never all G. A strategy breaking that contract
    is a bug in this module and raises RuntimeError rather than silently training on it.
    """
    strategy = get_strategy(name)
    injected = sorted(set(strategy(ctx, params, rng)))
    if injected and not 0 <= injected[0] <= injected[-1] < ctx.group_size:
        raise RuntimeError(f"strategy {name!r} returned indices outside [0, {ctx.group_size}): {injected}")
    if len(injected) == ctx.group_size:
        raise RuntimeError(f"strategy {name!r} injected all {ctx.group_size} samples of a group")
    return injected


def apply_injection(
    completions: Sequence[str],
    rewards: Sequence[int],
    injected: Sequence[int],
    injected_text: str,
    reward_fn: Callable[[str], int],
) -> tuple[list[str], list[int], list[bool]]:
    """Replace the ``injected`` samples of one group by ``injected_text`` and rescore them.

    Args:
        completions: the G policy completions of one group.
        rewards: their G rewards.
        injected: indices to replace (from ``choose_injected``).
        injected_text: the correct answer in the prompt style's format (e.g. "5", or
            "<think>...</think><answer> 5 </answer>" for R1V).
        reward_fn: scores one completion against this group's truth, e.g.
            ``functools.partial(count_reward, truth=5)``; injected text should score +1.

    Returns:
        (completions, rewards, is_injected): new lists of length G; the inputs are not
        mutated. ``is_injected[i]`` marks samples the policy did not generate, for the logs
        (and because they need old-policy log-probs from a forward pass, not from generate).
    """
    if len(completions) != len(rewards):
        raise ValueError(f"{len(completions)} completions but {len(rewards)} rewards")
    group_size = len(completions)
    injected_set = set(injected)
    if any(not 0 <= index < group_size for index in injected_set):
        raise ValueError(f"injected indices {sorted(injected_set)} outside [0, {group_size})")
    is_injected = [index in injected_set for index in range(group_size)]
    injected_reward = reward_fn(injected_text) if injected_set else None
    new_completions = [
        injected_text if flag else completion for flag, completion in zip(is_injected, completions, strict=True)
    ]
    new_rewards = [injected_reward if flag else reward for flag, reward in zip(is_injected, rewards, strict=True)]
    return new_completions, new_rewards, is_injected
