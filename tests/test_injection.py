"""Tests for stages.grpo.injection: the decay schedule, each strategy, and apply_injection."""

from __future__ import annotations

import functools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.grpo.injection import (
    STRATEGIES,
    STRATEGY_NAMES,
    GroupContext,
    InjectionParams,
    apply_injection,
    choose_injected,
    cosine_injection_rate,
    injection_rate,
)
from stages.grpo.rewards import count_reward

BLOG = InjectionParams()  # initial 0.8, final 0.0, decay over the first 70% of steps
SEEDS = range(500)


def context(
    group_size: int = 8,
    rewards: tuple[int, ...] | None = None,
    step: int = 0,
    total_steps: int = 100,
    rolling_digit_rate: float = 0.0,
) -> GroupContext:
    """A GroupContext with defaults: a cold-start group of G samples without a number."""
    if rewards is None:
        rewards = (-1,) * group_size
    return GroupContext(step, total_steps, group_size, rewards, rolling_digit_rate)


# injection_rate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "total_steps", "expected"),
    [
        (0, 100, 0.8),  # progress 0: the initial rate
        # decay window = 0.7 * 100 = 70 steps; step 35: progress 35/70 = 0.5 -> 0.8 * 0.5 = 0.4
        (35, 100, 0.4),
        # step 7: progress 7/70 = 0.1 -> 0.8 * 0.9 = 0.72
        (7, 100, 0.72),
        # 1000 steps: window 700; step 245 = 35% of it -> 0.8 * (1 - 0.35) = 0.52
        (245, 1000, 0.52),
        (70, 100, 0.0),  # progress exactly 1 -> 0.8 * 0 + 0.0 * 1 = 0.0
        (71, 100, 0.0),  # after the window: the final rate
        (99, 100, 0.0),
        (0, 0, 0.0),  # empty window: final rate (the blog's code would divide by zero)
    ],
)
def test_injection_rate_matches_blog(step: int, total_steps: int, expected: float) -> None:
    assert injection_rate(step, total_steps, BLOG) == pytest.approx(expected, abs=1e-12)


def test_injection_rate_with_nonzero_final_rate() -> None:
    params = InjectionParams(decay_initial_rate=1.0, decay_final_rate=0.2, decay_fraction=0.5)
    # window = 0.5 * 10 = 5 steps; step 2: progress 0.4 -> 1.0 * 0.6 + 0.2 * 0.4 = 0.68
    assert injection_rate(2, 10, params) == pytest.approx(0.68)
    assert injection_rate(6, 10, params) == 0.2


def test_params_reject_rates_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"decay_initial_rate = 1.5 is invalid: must be <= 1"):
        InjectionParams(decay_initial_rate=1.5)


# Strategies -----------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert STRATEGY_NAMES == ("none", "stochastic", "ensure_one", "decay", "cosine", "fixed", "adaptive")
    assert set(STRATEGIES) == set(STRATEGY_NAMES)


def test_unknown_name_lists_registered_strategies() -> None:
    with pytest.raises(ValueError) as error:
        choose_injected("always", context(), BLOG, random.Random(0))
    message = str(error.value)
    assert "\n" not in message
    assert message == ("unknown injection strategy 'always'; registered: none, stochastic, ensure_one, decay, cosine, "
                       "fixed, adaptive")


def test_none_never_injects() -> None:
    assert all(choose_injected("none", context(), BLOG, random.Random(seed)) == [] for seed in SEEDS)


@pytest.mark.parametrize("group_size", [2, 3, 8])
def test_stochastic_injects_between_one_and_g_minus_one(group_size: int) -> None:
    counts = set()
    for seed in SEEDS:
        injected = choose_injected("stochastic", context(group_size), BLOG, random.Random(seed))
        assert 1 <= len(injected) <= group_size - 1
        counts.add(len(injected))
    # Over 500 seeds every k in 1..G-1 occurs (randint is inclusive of G-1).
    assert counts == set(range(1, group_size))


def test_stochastic_with_two_samples_always_injects_exactly_one() -> None:
    chosen = [choose_injected("stochastic", context(2), BLOG, random.Random(seed)) for seed in SEEDS]
    assert all(len(injected) == 1 for injected in chosen)
    assert {injected[0] for injected in chosen} == {0, 1}


def test_ensure_one() -> None:
    with_correct = context(rewards=(-1, 0, -1, 1, -1, -1, -1, -1))
    without_correct = context(rewards=(-1, 0, -1, 0, -1, -1, -1, -1))
    for seed in SEEDS:
        assert choose_injected("ensure_one", with_correct, BLOG, random.Random(seed)) == []
        injected = choose_injected("ensure_one", without_correct, BLOG, random.Random(seed))
        assert len(injected) == 1 and 0 <= injected[0] < 8


def test_decay_never_takes_all_samples() -> None:
    # Initial rate 1.0 at step 0: every draw is < 1.0, so injection would take all G;
    # exactly one sample must be given back to the policy.
    always = InjectionParams(decay_initial_rate=1.0)
    given_back = set()
    for seed in SEEDS:
        injected = choose_injected("decay", context(8, step=0), always, random.Random(seed))
        assert len(injected) == 7
        given_back |= set(range(8)) - set(injected)
    assert given_back == set(range(8))  # the one given back is random, not always the same


def test_decay_follows_the_schedule() -> None:
    # step 35 of 100: rate 0.4, so about 0.4 * 8 = 3.2 injections per group on average.
    counts = [len(choose_injected("decay", context(8, step=35), BLOG, random.Random(seed))) for seed in SEEDS]
    assert sum(counts) / (len(counts) * 8) == pytest.approx(0.4, abs=0.03)
    # After the decay window the rate is 0: pure GRPO.
    late = context(8, step=80)
    assert all(choose_injected("decay", late, BLOG, random.Random(seed)) == [] for seed in SEEDS)


def test_adaptive_switches_off_at_the_threshold() -> None:
    params = InjectionParams(adaptive_threshold=0.9)
    for seed in SEEDS:
        below = choose_injected("adaptive", context(rolling_digit_rate=0.89), params, random.Random(seed))
        stochastic = choose_injected("stochastic", context(), params, random.Random(seed))
        assert below == stochastic  # below the threshold: exactly the stochastic scheme
        assert choose_injected("adaptive", context(rolling_digit_rate=0.9), params, random.Random(seed)) == []
        assert choose_injected("adaptive", context(rolling_digit_rate=1.0), params, random.Random(seed)) == []


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_seeded_rng_is_deterministic(name: str) -> None:
    ctx = context(8, step=10)
    first = [choose_injected(name, ctx, BLOG, random.Random(seed)) for seed in range(50)]
    second = [choose_injected(name, ctx, BLOG, random.Random(seed)) for seed in range(50)]
    assert first == second


@settings(deadline=None, max_examples=200)
@given(
    name=st.sampled_from(STRATEGY_NAMES),
    group_size=st.integers(min_value=2, max_value=16),
    step=st.integers(min_value=0, max_value=200),
    total_steps=st.integers(min_value=0, max_value=200),
    rolling_digit_rate=st.floats(min_value=0.0, max_value=1.0),
    initial_rate=st.floats(min_value=0.0, max_value=1.0),
    reward_seed=st.integers(min_value=0, max_value=2**32),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_every_strategy_keeps_a_policy_sample(
    name: str,
    group_size: int,
    step: int,
    total_steps: int,
    rolling_digit_rate: float,
    initial_rate: float,
    reward_seed: int,
    seed: int,
) -> None:
    rewards = tuple(random.Random(reward_seed).choice((-1, 0, 1)) for _ in range(group_size))
    ctx = GroupContext(step, total_steps, group_size, rewards, rolling_digit_rate)
    params = InjectionParams(decay_initial_rate=initial_rate)
    injected = choose_injected(name, ctx, params, random.Random(seed))
    assert injected == sorted(set(injected))
    assert all(0 <= index < group_size for index in injected)
    assert len(injected) < group_size


def test_group_context_validation() -> None:
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        context(group_size=1)
    with pytest.raises(ValueError, match="expected 8 rewards"):
        context(group_size=8, rewards=(1, 0))


# apply_injection ------------------------------------------------------------------------------


def test_apply_injection_replaces_and_rescores() -> None:
    completions = ["There are several objects", "I count 4", "5", "the answer is 6"]
    rewards = [count_reward(c, 5) for c in completions]
    assert rewards == [-1, 0, 1, 0]
    reward_fn = functools.partial(count_reward, truth=5)
    new_completions, new_rewards, is_injected = apply_injection(completions, rewards, [0, 3], "5", reward_fn)
    assert new_completions == ["5", "I count 4", "5", "5"]
    assert new_rewards == [1, 0, 1, 1]  # injected samples score +1 under the real reward
    assert is_injected == [True, False, False, True]
    # The inputs are untouched.
    assert completions == ["There are several objects", "I count 4", "5", "the answer is 6"]
    assert rewards == [-1, 0, 1, 0]


def test_apply_injection_r1v_format_scores_plus_one() -> None:
    text = "<think>I count the objects.</think><answer> 3 </answer>"
    reward_fn = functools.partial(count_reward, truth=3)
    _, new_rewards, is_injected = apply_injection(["no", "2"], [-1, 0], [1], text, reward_fn)
    assert new_rewards == [-1, 1]
    assert is_injected == [False, True]


def test_apply_injection_without_indices_is_identity() -> None:
    completions, rewards = ["a", "b"], [-1, -1]
    out = apply_injection(completions, rewards, [], "7", functools.partial(count_reward, truth=7))
    assert out == (["a", "b"], [-1, -1], [False, False])
    assert out[0] is not completions  # a new list, not the caller's


def test_apply_injection_rejects_inconsistent_inputs() -> None:
    reward_fn = functools.partial(count_reward, truth=1)
    with pytest.raises(ValueError, match="2 completions but 1 rewards"):
        apply_injection(["a", "b"], [0], [], "1", reward_fn)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        apply_injection(["a", "b"], [0, 0], [2], "1", reward_fn)


# cosine and fixed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.8),  # window 0.7 * 100 = 70 steps; cos(0) = 1 -> the initial rate
        (35, 0.4),  # mid-window: 0.5 * (1 + cos(pi / 2)) = 0.5 -> 0.8 * 0.5
        # step 14: 0.5 * (1 + cos(pi / 5)) = 0.5 * (1 + 0.809017) = 0.904508 -> 0.8 * 0.904508 = 0.723607
        (14, 0.723607),
        (56, 0.076393),  # step 56 = 4/5 of the window: 0.5 * (1 + cos(4 pi / 5)) = 0.095492 -> 0.076393
        (70, 0.0),  # end of the window and after: the final rate
        (99, 0.0),
    ],
)
def test_cosine_rate_is_a_half_cosine_over_the_window(step: int, expected: float) -> None:
    assert cosine_injection_rate(step, 100, BLOG) == pytest.approx(expected, abs=1e-6)
    # stays above the linear schedule in the window's first half, below it in the second
    if 0 < step < 35:
        assert cosine_injection_rate(step, 100, BLOG) > injection_rate(step, 100, BLOG)
    if 35 < step < 70:
        assert cosine_injection_rate(step, 100, BLOG) < injection_rate(step, 100, BLOG)


def test_cosine_with_a_final_rate_and_an_empty_window() -> None:
    params = InjectionParams(decay_initial_rate=0.6, decay_final_rate=0.2)
    assert cosine_injection_rate(35, 100, params) == pytest.approx(0.4)  # the mean of 0.6 and 0.2 at mid-window
    assert cosine_injection_rate(0, 0, params) == pytest.approx(0.2)


def test_cosine_injects_at_its_rate_and_never_all() -> None:
    # step 35 of 100: rate 0.4; over 500 groups of 8 about 40% of samples
    picks = [choose_injected("cosine", context(8, step=35), BLOG, random.Random(seed)) for seed in SEEDS]
    share = sum(len(p) for p in picks) / (8 * len(picks))
    assert 0.37 < share < 0.43
    assert all(choose_injected("cosine", context(8, step=70), BLOG, random.Random(s)) == [] for s in range(50))


@pytest.mark.parametrize(("count", "group_size", "expected"), [(1, 8, 1), (3, 8, 3), (8, 8, 7), (20, 4, 3), (1, 2, 1)])
def test_fixed_injects_exactly_its_count_capped_at_g_minus_one(count: int, group_size: int, expected: int) -> None:
    params = InjectionParams(fixed_count=count)
    for seed in range(50):
        picked = choose_injected("fixed", context(group_size, step=seed), params, random.Random(seed))
        assert len(picked) == expected and len(set(picked)) == expected
    # whatever the group's rewards and the step: the count never changes
    assert len(choose_injected("fixed", context(8, rewards=(1,) * 8, step=99), params, random.Random(0))) == min(count, 7)


def test_fixed_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fixed_count = 0 is invalid: must be >= 1"):
        InjectionParams(fixed_count=0)
