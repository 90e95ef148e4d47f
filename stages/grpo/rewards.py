"""Rewards for the counting task: pull an integer out of a completion and score it.

The rule is the blog's ``compute_reward`` (seed 001, "The Cold Start Problem"):

    numbers = re.findall(r'\\b(\\d+)\\b', response)
    if not numbers: return -1            # no extractable number
    return 1 if int(numbers[-1]) == ground_truth else 0

with one addition for the R1V prompt style: when the completion contains
``<answer> N </answer>`` the integer inside the first such tag wins over the last
integer of the text (so a number mentioned after the tag, or in ``<think>``, does not
override the declared answer). Without a well-formed numeric tag the blog's rule applies
unchanged, so on the default prompt the two functions agree.

Decisions, each pinned by a test in ``tests/test_rewards.py``:

* ASCII digits only (``re.ASCII``). Python's ``\\d`` also matches other scripts' digits
  ('٣', '३'), and ``int('٣') == 3``. The blog's data, its prompts and the tokenizer-level
  check of the answer are all ASCII, so a completion that says '٣' has not produced the
  answer format the policy is meant to learn: it scores -1. ``re.ASCII`` also makes ``\\b``
  and ``\\s`` ASCII-only, so '٣5' yields 5 (the Arabic digit is not an ASCII word character).
* Word boundaries as in the blog: 'abc5' and '5th' contain no number (no ``\\b`` between a
  letter and a digit), '-3' yields 3 (the minus sign is not part of ``\\d+``; counts are never
  negative), '3.5' yields 5 and '1,000' yields 0 (the last run of digits).
* Huge numbers never raise. ``int()`` refuses strings over 4300 digits by default and is
  quadratic below that, so the digit string is only converted when it has at most
  ``MAX_ANSWER_DIGITS`` significant digits; anything larger saturates at ``ANSWER_CAP``
  (= 10**18). Every value returned is therefore exact below the cap, and every number at or
  above the cap is reported as the cap, which no object count can equal.
* Linear time. Both patterns use possessive quantifiers (``*+``, ``++``; Python >= 3.11),
  so the engine never backtracks into a run of spaces or digits; every regex call is one
  left-to-right scan, whatever the input (thousands of numbers, ``<answer>`` repeated
  10k times, unclosed or nested tags, 100 KB of digits).
"""

from __future__ import annotations

import re
from collections.abc import Callable

# An integer with more significant digits than this is not converted by int():
# 18 digits always fit in a signed 64-bit integer and cost nothing to convert.
MAX_ANSWER_DIGITS = 18
# The value reported for any integer >= 10**18 (saturation; see the module docstring).
ANSWER_CAP = 10**MAX_ANSWER_DIGITS

# The first <answer> tag whose content is a single non-negative integer (with optional
# whitespace around it). Tag names are case-sensitive, as in R1-V's accuracy reward.
_ANSWER_TAG = re.compile(r"<answer>\s*+([0-9]++)\s*+</answer>", re.ASCII)
# A standalone run of ASCII digits: the blog's r'\b(\d+)\b' restricted to ASCII.
_STANDALONE_INTEGER = re.compile(r"\b([0-9]++)\b", re.ASCII)


def _digits_to_int(digits: str) -> int:
    """Convert an ASCII digit string to int, saturating at ``ANSWER_CAP`` instead of raising.

    Leading zeros are dropped first, so '0007' is 7 however many zeros precede it.
    """
    significant = digits.lstrip("0")
    if not significant:
        return 0
    if len(significant) > MAX_ANSWER_DIGITS:
        return ANSWER_CAP
    return int(significant)


def extract_answer(response: str) -> int | None:
    """Return the integer a completion answers with, or None when it contains no number.

    The integer inside the first ``<answer> N </answer>`` tag if there is one; otherwise the
    last standalone ASCII integer of the text (the blog's rule). Values of 10**18 and above
    are reported as ``ANSWER_CAP``. Never raises for a str; runs in linear time.
    """
    tagged = _ANSWER_TAG.search(response)
    if tagged is not None:
        return _digits_to_int(tagged.group(1))
    # Keep only the last match while scanning: no list of thousands of numbers is built.
    last_digits = None
    for match in _STANDALONE_INTEGER.finditer(response):
        last_digits = match.group(1)
    if last_digits is None:
        return None
    return _digits_to_int(last_digits)


def has_number(response: str) -> bool:
    """Whether the completion has an extractable number (the blog's "digit rate" event).

    Equivalent to ``count_reward(response, truth) != -1`` for any truth.
    """
    return extract_answer(response) is not None


def count_reward(response: str, truth: int) -> int:
    """Score a counting completion: +1 correct number, 0 wrong number, -1 no number.

    This is the blog's ternary reward; -1 (rather than 0) for a missing number is what makes
    format learning visible to GRPO, since it ranks "wrong number" above "no number".
    Never raises for a str response.
    """
    answer = extract_answer(response)
    if answer is None:
        return -1
    return 1 if answer == truth else 0


PARTIAL_CREDIT = 0.5  # partial_credit_reward: the reward of a count off by one


def partial_credit_reward(response: str, truth: int) -> float:
    """The blog's suggested shaping ("partial credit for close answers"): as :func:`count_reward`, but a number
    off by one earns ``PARTIAL_CREDIT`` instead of 0. +1 right, 0.5 off by one, 0 further off, -1 no number.

    Only the training reward changes: accuracy (reward == 1) and the digit rate (reward != -1) read the same.
    """
    answer = extract_answer(response)
    if answer is None:
        return -1
    if answer == truth:
        return 1
    return PARTIAL_CREDIT if abs(answer - truth) == 1 else 0


RewardFn = Callable[[str, int], float]

# Reward functions by the name used in params.yaml (train.reward; open-r1 style registry).
REWARDS: dict[str, RewardFn] = {"count": count_reward, "partial": partial_credit_reward}
REWARD_NAMES: tuple[str, ...] = tuple(REWARDS)


def get_reward(name: str) -> RewardFn:
    """Return the reward function registered under ``name``; ValueError listing names if none."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; registered rewards: {', '.join(sorted(REWARDS))}") from None
