"""Scoring answers and the blog's chance-of-signal table, on hand-computed cases."""

from __future__ import annotations

from pathlib import Path

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


def test_per_question_counts_right_and_numbered_answers_per_question():
    from stages.counting.scoring import per_question

    # question 7: 2 samples, one right; question 3: both without a number; rows come back sorted
    answers = pd.DataFrame({"row": [7, 3, 7, 3], "reward": [1, -1, 0, -1]})
    assert per_question(answers) == {"rows": [3, 7], "samples": 2, "correct": [0, 1], "digit": [0, 2]}
    with pytest.raises(ValueError, match="different numbers of answers"):
        per_question(pd.DataFrame({"row": [1, 1, 2], "reward": [1, 1, 1]}))


def test_eval_stage_samples_each_question_k_times_and_greedily(tmp_path, make_tiny_world):
    """k sampled answers per question (sample 0 is the one-sample evaluation), one greedy answer, and the
    per-question counts the report's intervals resample."""
    import dataclasses
    import json

    from stages import evaluate
    from stages.config import load_config

    world = make_tiny_world(tmp_path / "w", seed=3, n_train=4, n_heldout=6)
    cfg = load_config(Path(__file__).resolve().parents[1] / "params.yaml")

    def run(name, **eval_kw):
        e = dataclasses.replace(cfg.eval, clevr_questions=5, batch_size=4, max_new_tokens=6, **eval_kw)
        m = evaluate.main(dataclasses.replace(cfg, eval=e), "clevr", "default", world / "base", world / "data",
                          tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl")
        return m, pd.read_json(tmp_path / f"{name}.jsonl", lines=True)

    one, one_answers = run("one", samples_per_question=1, greedy=False)
    three, answers = run("three", samples_per_question=3, greedy=True)
    assert one["greedy"] is None and set(one_answers["decoding"]) == {"sampled"}
    assert three["n"] == 15 and three["per_question"]["samples"] == 3 and len(three["per_question"]["rows"]) == 5
    sampled = answers[answers["decoding"] == "sampled"]
    assert sorted(sampled["sample"].unique()) == [0, 1, 2]
    # sample 0 is exactly the single-sample evaluation's answer set
    assert sampled[sampled["sample"] == 0]["response"].tolist() == one_answers["response"].tolist()
    # the counts add up to the headline accuracy
    assert sum(three["per_question"]["correct"]) / 15 == pytest.approx(three["accuracy"])
    greedy = answers[answers["decoding"] == "greedy"]
    assert len(greedy) == 5 and three["greedy"]["n"] == 5
    assert three["greedy"]["accuracy"] == pytest.approx((greedy["reward"] == 1).mean())
    assert json.loads((tmp_path / "three.json").read_text())["decoding"]["samples_per_question"] == 3
