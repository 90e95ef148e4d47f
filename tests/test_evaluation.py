"""Scoring answers and the blog's chance-of-signal table, on hand-computed cases."""

from __future__ import annotations

import pandas as pd
import pytest

from stages.baseline_assess import markdown, signal_table
from stages.counting.scoring import score
from stages.grpo.advantages import signal_chance


def test_signal_chance_matches_the_blog():
    # blog 001: G=8, p=5% -> 34%, p=14.5% -> 71%, p=30% -> 94%
    assert signal_chance(0.05, 8) == pytest.approx(0.3366, abs=1e-4)
    assert signal_chance(0.145, 8) == pytest.approx(0.7144, abs=1e-4)
    assert signal_chance(0.30, 8) == pytest.approx(0.9424, abs=1e-4)
    assert signal_chance(0.0, 8) == 0.0 and signal_chance(1.0, 8) == 1.0


def test_score_counts_digits_accuracy_and_per_count():
    answers = pd.DataFrame({
        "truth": [3, 3, 4, 4, 5],
        "reward": [1, -1, 0, 1, -1],  # 3 answers with a number, 2 correct
    })
    m = score(answers)
    assert m["n"] == 5
    assert m["digit_rate"] == pytest.approx(3 / 5)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["accuracy_given_digit"] == pytest.approx(2 / 3)
    assert m["accuracy_by_count"] == {"3": 0.5, "4": 0.5, "5": 0.0}


def test_baseline_table_rows():
    rows = signal_table([0.05, 0.145], {"default": 0.2}, 8)
    assert [r["source"] for r in rows] == ["blog p", "blog p", "measured (default)"]
    md = markdown({"default": {"digit_rate": 0.2, "accuracy": 0.1, "accuracy_given_digit": 0.5}}, rows, 8, 10)
    assert "| default | 20.0% | 10.0% | 50.0% |" in md
    assert "| measured (default) | 20.0% | 83.2% |" in md  # 1 - 0.8^8 = 0.8322
