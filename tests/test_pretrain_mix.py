"""The mini base model's SFT answer mix: which answers state the count as a digit (the calibrated premise)."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import pytest

from stages.config import FetchModelParams
from stages.fetch_model import PretrainExample, default_digit_chance, pretrain_text


def _ex(count: int, domain: str = "clevr") -> PretrainExample:
    return PretrainExample(image=None, count=count, domain=domain)


def test_default_digits_only_for_scenes_up_to_the_max_count_on_clevr():
    p = FetchModelParams(default_digit_frac=0.4, default_digit_max_count=3, superclevr_default_digit_frac=0.25,
                         default_digit_frac_above=0.0)
    assert [default_digit_chance(_ex(n), p) for n in (1, 2, 3, 4, 6)] == [0.4, 0.4, 0.4, 0.0, 0.0]
    above = dataclasses.replace(p, default_digit_frac_above=0.05)
    assert [default_digit_chance(_ex(n), above) for n in (3, 4, 6)] == [0.4, 0.05, 0.05]
    # SuperCLEVR: the blog's base gives numbers there for every count, so no cap
    assert [default_digit_chance(_ex(n, "superclevr"), p) for n in (1, 6)] == [0.25, 0.25]
    # no cap: the same chance for every count (the mix before calibration)
    assert default_digit_chance(_ex(6), FetchModelParams(default_digit_frac=0.1, default_digit_max_count=99)) == 0.1


@pytest.mark.parametrize("domain,noise_key", [("clevr", "r1v_answer_noise"), ("superclevr", "superclevr_r1v_answer_noise")])
def test_r1v_miscounts_at_the_domains_own_rate(domain, noise_key):
    # all answers R1V; noise 0 in the domain under test and 1 in the other: every answer right here
    other = "superclevr_r1v_answer_noise" if noise_key == "r1v_answer_noise" else "r1v_answer_noise"
    p = dataclasses.replace(FetchModelParams(r1v_frac=1.0), **{noise_key: 0.0, other: 1.0})
    rng = random.Random(0)
    answers = [pretrain_text(rng, _ex(4, domain), p)[2] for _ in range(50)]
    assert all("<answer>4</answer>" in a for a in answers)


def test_capped_mix_gives_digit_answers_only_for_small_counts():
    p = FetchModelParams(r1v_frac=0.0, default_digit_frac=1.0, default_digit_max_count=2)
    rng = random.Random(1)
    digits = Counter()
    for n in (1, 2, 3, 5):
        for _ in range(40):
            style, _, answer = pretrain_text(rng, _ex(n), p)
            assert style == "default"
            digits[n] += any(ch.isdigit() for ch in answer)
    assert digits[1] == digits[2] == 40 and digits[3] == digits[5] == 0


def test_digits_above_the_max_count_miscount_at_their_own_rate():
    p = FetchModelParams(r1v_frac=0.0, default_digit_frac=1.0, default_digit_noise=0.0, default_digit_max_count=2,
                         default_digit_frac_above=1.0, default_digit_noise_above=1.0)
    rng = random.Random(2)
    small = [pretrain_text(rng, _ex(2), p)[2] for _ in range(30)]
    large = [pretrain_text(rng, _ex(5), p)[2] for _ in range(30)]
    assert all("2" in a for a in small)  # sure: always right
    assert not any("5" in a for a in large) and all(("4" in a) or ("6" in a) for a in large)  # unsure: always off by one
