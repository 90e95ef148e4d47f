"""The mechanism behind the arms' numbers (stages/analysis/mechanism.py): hand-made answers and curves."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stages.analysis import mechanism as M


def _answers(rows):
    return pd.DataFrame(rows, columns=["truth", "response", "reward"])


def test_the_injected_form_is_the_bare_number_under_default_and_the_template_under_r1v_whatever_the_count():
    assert M.in_injected_form(" 5 ", "default") and M.in_injected_form("12", "default")
    assert not M.in_injected_form("5.", "default") and not M.in_injected_form("5 objects", "default")
    r1v = "<think>I count the objects in the image. There are {w}.</think><answer>{n}</answer>"
    assert M.in_injected_form(r1v.format(w="five", n=5), "r1v") and M.in_injected_form(r1v.format(w="four", n=4), "r1v")
    assert not M.in_injected_form(r1v.format(w="four", n=5), "r1v")  # its words and its number disagree
    assert not M.in_injected_form("<answer>5</answer>", "r1v") and not M.in_injected_form("five", "default")


def test_answer_mechanism_on_four_hand_made_answers():
    answers = _answers([(5, "5", 1), (3, "There are 4 objects.", 0), (2, "I see two objects.", -1), (4, "3", 0)])
    m = M.answer_mechanism(answers, "default", [1, 6, 5, 1])
    assert m == {"n": 4, "tokens_mean": 3.25, "injected_form_share": 0.5, "numbers_present": 0.75,
                 "accuracy_given_number": pytest.approx(1 / 3)}


def test_answer_mechanism_without_any_number_has_no_accuracy_given_a_number():
    m = M.answer_mechanism(_answers([(2, "two", -1)]), "default", [1])
    assert m["numbers_present"] == 0 and math.isnan(m["accuracy_given_number"])
    assert M.answer_mechanism(_answers([]), "default", [])["n"] == 0


def test_rolling_accuracy_given_a_number_is_right_answers_among_numbered_ones_in_the_window():
    # two steps of 4 samples each: step 0 has 2 numbered (1 right), step 1 has 4 numbered (3 right)
    curves = pd.DataFrame({"prompt": "default", "arm": "none", "strategy": "none", "seed": 0, "step": [0, 1],
                           "digit_rate": [0.5, 1.0], "accuracy": [0.25, 0.75], "completion_length": [9.0, 2.0]})
    rolled = M.mechanism_curves(curves, window=2)
    assert rolled["accuracy_given_number"].tolist() == [0.5, 0.75]
    assert rolled["accuracy_given_number_roll"].iloc[1] == pytest.approx(4 / 6)  # (1 + 3) / (2 + 4)
    assert rolled["completion_length_roll"].iloc[1] == pytest.approx(5.5)


def test_the_table_summarises_seeds_per_model_and_domain_base_first():
    measured = pd.DataFrame([
        {"prompt": "default", "domain": "clevr", "arm": arm, "seed": seed, "tokens_mean": t,
         "injected_form_share": i, "numbers_present": 1.0, "accuracy_given_number": 0.9}
        for arm, seed, t, i in [("inject", 0, 2.0, 0.9), ("inject", 1, 2.2, 0.95), ("none", 0, 9.0, 0.0),
                                ("base", math.nan, 9.5, 0.04)]])
    rows = M.mechanism_rows(measured)
    assert [r[2] for r in rows] == ["base model", "no injection", "injection"]
    assert rows[2][3] == "2.1 ± 0.1 (n=2)" and rows[0][4] == "4.0%"
    assert "| default | clevr | base model |" in M.mechanism_table(measured)
    assert "run the eval stages" in M.mechanism_table(pd.DataFrame())
