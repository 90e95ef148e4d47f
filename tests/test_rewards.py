"""Tests for stages.grpo.rewards: answer extraction and the blog's ternary count reward."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stages.grpo.rewards import (
    ANSWER_CAP,
    REWARDS,
    count_reward,
    extract_answer,
    get_reward,
    has_number,
)


def blog_compute_reward(response: str, ground_truth: int) -> int:
    """The blog's compute_reward, verbatim (seed 001, "The Cold Start Problem")."""
    numbers = re.findall(r"\b(\d+)\b", response)
    if not numbers:
        return -1
    predicted = int(numbers[-1])
    return 1 if predicted == ground_truth else 0


# (response, truth, expected extracted answer, expected reward), open-r1 style.
CASES = [
    # The blog's own examples.
    ("The answer is 5", 5, 5, 1),
    ("The answer is 3", 5, 3, 0),
    ("There are several objects", 5, None, -1),
    ("I see 3 red objects and 2 blue objects, so 5 total", 5, 5, 1),  # last number wins
    ("5", 5, 5, 1),  # the injected bare digit
    # Answer tag precedence: the tag beats numbers in <think> and after the tag.
    ("<think>there are 4</think><answer> 3 </answer>", 3, 3, 1),
    ("<think>there are 4</think><answer>3</answer> so 4", 4, 3, 0),
    ("<answer>\n 7\t</answer>", 7, 7, 1),  # any ASCII whitespace around the number
    ("<answer>2</answer><answer>9</answer>", 2, 2, 1),  # the first tag wins
    ("<answer>no idea</answer><answer>6</answer>", 6, 6, 1),  # first NUMERIC tag
    # A tag without a lone integer inside falls back to the last integer of the text.
    ("I count 4 <answer>four</answer>", 4, 4, 1),
    ("<answer>3 or 4</answer>", 3, 4, 0),  # "3 or 4" is not a lone integer: last is 4
    ("<answer>3.5</answer>", 5, 5, 1),  # '.' splits 3.5 into 3 and 5: last is 5
    ("<ANSWER>3</ANSWER> 2", 3, 2, 0),  # tag names are case-sensitive
    # Unclosed and nested tags.
    ("<answer> 8", 8, 8, 1),  # unclosed: fallback finds 8
    ("<answer><answer>6</answer></answer>", 6, 6, 1),  # the inner tag is well formed
    ("</answer>5<answer>", 5, 5, 1),
    # Word boundaries (re.ASCII \b): digits glued to letters or '_' are not numbers.
    ("abc5", 5, None, -1),  # no \b between 'c' and '5'
    ("5th object", 5, None, -1),  # no \b between '5' and 't'
    ("x_5", 5, None, -1),  # '_' is a word character
    ("abc5 and 2", 2, 2, 1),
    ("count=5.", 5, 5, 1),  # '=' and '.' are boundaries
    # Signs and separators: \d+ has no sign, so '-3' reads as 3 (counts are never negative).
    ("-3", 3, 3, 1),
    ("1,000", 0, 0, 1),  # last digit run is '000' -> 0
    ("007", 7, 7, 1),  # leading zeros: int('007') = 7
    # Unicode digits are not digits here (re.ASCII): '٣' is Arabic-Indic three.
    ("٣", 3, None, -1),
    ("३ objects", 3, None, -1),  # Devanagari three
    ("٣5", 5, 5, 1),  # '٣' is not an ASCII word char, so there is a \b before '5'
    ("<answer>٣</answer>", 3, None, -1),
    # Empty and whitespace-only.
    ("", 0, None, -1),
    ("   \n", 0, None, -1),
]


@pytest.mark.parametrize(("response", "truth", "answer", "reward"), CASES)
def test_cases(response: str, truth: int, answer: int | None, reward: int) -> None:
    assert extract_answer(response) == answer
    assert count_reward(response, truth) == reward
    assert has_number(response) == (answer is not None)


def test_huge_integers_saturate_without_raising() -> None:
    # 5001 digits: int() would refuse it (default limit 4300 digits).
    huge = "1" + "0" * 5000
    assert extract_answer(huge) == ANSWER_CAP
    assert extract_answer(f"<answer>{huge}</answer>") == ANSWER_CAP
    assert count_reward(f"there are {huge}", 5) == 0  # a number, but not the count
    # 18 significant digits are exact; 19 saturate at 10**18.
    assert extract_answer("999999999999999999") == 10**18 - 1
    assert extract_answer("1234567890123456789") == ANSWER_CAP
    # Leading zeros do not count as significant digits: 5000 zeros then 7 is 7.
    assert extract_answer("0" * 5000 + "7") == 7
    assert extract_answer("0" * 5000) == 0


def test_registry() -> None:
    assert get_reward("count") is count_reward
    assert set(REWARDS) == {"count", "partial"}
    with pytest.raises(ValueError, match=r"unknown reward 'accuracy'; registered rewards: count, partial"):
        get_reward("accuracy")


# Property tests ---------------------------------------------------------------------------

# A 2 s deadline per example: generous enough not to flake on a loaded CI box, far below
# what a quadratic regex would take on 100 KB.
FAST = settings(deadline=2000, max_examples=40)

PIECES = [
    "<answer>",
    "</answer>",
    "<answer> ",
    " </answer>",
    "<think>",
    "</think>",
    " ",
    "\n",
    "abc",
    "-",
    ".",
    "٣",
    "<",
]


def build_response(seed: int, num_pieces: int) -> str:
    """A long response mixing numbers (some huge), tags, letters and separators."""
    rng = random.Random(seed)
    parts = []
    for _ in range(num_pieces):
        kind = rng.random()
        if kind < 0.4:
            parts.append(str(rng.randrange(10 ** rng.randint(1, 12))))
        elif kind < 0.42:
            parts.append(rng.choice("0123456789") * rng.randint(1, 3000))
        else:
            parts.append(rng.choice(PIECES))
    return "".join(parts)


@FAST
@given(st.text(), st.integers(min_value=0, max_value=20))
def test_count_reward_never_raises_on_any_text(response: str, truth: int) -> None:
    reward = count_reward(response, truth)
    assert reward in {-1, 0, 1}
    assert (reward == -1) == (not has_number(response))


@FAST
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=1000, max_value=20000))
def test_long_mixed_responses(seed: int, num_pieces: int) -> None:
    response = build_response(seed, num_pieces)  # up to ~100 KB
    answer = extract_answer(response)
    assert answer is None or 0 <= answer <= ANSWER_CAP
    assert count_reward(response, 3) in {-1, 0, 1}


@FAST
@given(
    st.sampled_from(["<answer>", "</answer>", "<answer> ", "<answer>1", "<"]),
    st.integers(min_value=1, max_value=10_000),
    st.sampled_from(["", "7", " 7 </answer>"]),
)
def test_pathological_repetitions(piece: str, repeats: int, tail: str) -> None:
    # e.g. '<answer>' 10k times then nothing / a digit / a closing tag.
    response = piece * repeats + tail
    assert count_reward(response, 7) in {-1, 0, 1}
    if tail == " 7 </answer>":
        # Either the last '<answer>' closes around 7, or no tag matches and the last
        # integer is 7: both rules agree.
        assert extract_answer(response) == 7


@FAST
@given(st.integers(min_value=1, max_value=100_000), st.sampled_from(["", "<answer>", "x"]))
def test_digit_runs_of_any_length(length: int, prefix: str) -> None:
    # A run of '9's up to 100k digits long: saturates (> 18 digits) and never raises.
    response = prefix + "9" * length
    expected = None if prefix == "x" else (10**length - 1 if length <= 18 else ANSWER_CAP)
    assert extract_answer(response) == expected


no_ascii_digit_text = st.text().filter(lambda text: not any(c in "0123456789" for c in text))


@FAST
@given(no_ascii_digit_text, st.integers(min_value=0, max_value=10**18 - 1))
def test_number_after_digit_free_prefix_is_extracted(prefix: str, number: int) -> None:
    assert extract_answer(f"{prefix} {number}") == number
    assert count_reward(f"{prefix} {number}", number) == 1


@FAST
@given(
    st.text(alphabet=st.characters(exclude_characters="<")), st.integers(min_value=0, max_value=10**18 - 1), st.text()
)
def test_answer_tag_wins_over_surrounding_text(before: str, number: int, after: str) -> None:
    # Nothing before the tag can open another tag (no '<'), so this tag is the first.
    assert extract_answer(f"{before}<answer> {number} </answer>{after}") == number


ascii_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=200)


@FAST
@given(ascii_text.filter(lambda text: "<answer>" not in text), st.integers(min_value=0, max_value=12))
def test_agrees_with_blog_on_ascii_text_without_tags(response: str, truth: int) -> None:
    # Without an answer tag, and in ASCII, the reward is exactly the blog's compute_reward.
    assert count_reward(response, truth) == blog_compute_reward(response, truth)


@pytest.mark.parametrize(
    ("response", "truth", "expected"),
    [
        ("There are 5 objects.", 5, 1),  # right
        ("There are 4 objects.", 5, 0.5),  # off by one, below
        ("<think>six</think><answer>6</answer>", 5, 0.5),  # off by one, above (the answer tag decides)
        ("There are 3 objects.", 5, 0),  # further off
        ("There are five objects.", 5, -1),  # no number
        ("1", 0, 0.5),  # off by one from zero
    ],
)
def test_partial_credit_reward(response: str, truth: int, expected: float) -> None:
    from stages.grpo.rewards import partial_credit_reward

    assert partial_credit_reward(response, truth) == expected
    # accuracy and the digit rate read the same as under the blog's reward
    assert (partial_credit_reward(response, truth) == 1) == (count_reward(response, truth) == 1)
    assert (partial_credit_reward(response, truth) == -1) == (count_reward(response, truth) == -1)


def test_train_reward_is_a_registered_name() -> None:
    from pathlib import Path

    import yaml

    from stages.config import ConfigError, config_from_dict
    from stages.grpo.rewards import get_reward, partial_credit_reward

    assert get_reward("partial") is partial_credit_reward

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["train"]["reward"] = "close"
    with pytest.raises(ConfigError, match=r"train.reward = 'close' is invalid"):
        config_from_dict(raw)
