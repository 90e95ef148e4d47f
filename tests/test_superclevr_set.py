"""The blog profile's SuperCLEVR set is checked to be R1-V's 200 counting questions (its question, counts 3-10, its
ground truths in its order), else fetch_data stops with one line naming what differs."""

from __future__ import annotations

import collections

import pytest
from datasets import Dataset

from stages.counting.questions import DataError
from stages.counting.sources import (
    R1V_SUPERCLEVR_ANSWERS,
    R1V_SUPERCLEVR_QUESTION,
    r1v_superclevr_differences,
    verify_r1v_superclevr,
)

R1V = list(R1V_SUPERCLEVR_ANSWERS)
QUESTIONS = [R1V_SUPERCLEVR_QUESTION] * 200


def test_the_committed_answers_are_r1v_s_as_published():
    # design.md, measured on R1-V's file: 200 questions, 3: 30, 4: 18, 5: 30, 6: 27, 7: 18, 8: 24, 9: 25, 10: 28
    assert len(R1V) == 200 and R1V[:3] == [4, 9, 10]  # superCLEVR_new_025000..025002
    assert collections.Counter(R1V) == {3: 30, 4: 18, 5: 30, 6: 27, 7: 18, 8: 24, 9: 25, 10: 28}


def test_r1v_s_set_passes():
    assert r1v_superclevr_differences(QUESTIONS, R1V) == []
    verify_r1v_superclevr(Dataset.from_dict({"question": QUESTIONS, "ground_truth": R1V}), "here")


@pytest.mark.parametrize(("questions", "answers", "says"), [
    (QUESTIONS[:8], R1V[:8], ["8 rows, not 200"]),
    (["How many vehicles are there?"] + QUESTIONS[1:], R1V, ["1 other question(s), e.g. 'How many vehicles are there?'"]),
    (QUESTIONS, [1] + R1V[1:], ["ground truths outside R1-V's 3-10: [1]"]),
    (QUESTIONS, R1V[::-1], ["R1-V's ground truths in another order"]),
    (QUESTIONS, [5] + R1V[1:], ["other ground truths (first at row 0: 5, R1-V's is 4)"]),
])
def test_each_difference_is_named(questions, answers, says):
    found = r1v_superclevr_differences(questions, answers)
    assert len(found) == len(says) and all(f.startswith(s) for f, s in zip(found, says, strict=True)), found


def test_a_wrong_set_stops_with_one_line_naming_the_fix():
    ds = Dataset.from_dict({"question": QUESTIONS[:8], "ground_truth": R1V[:8]})
    with pytest.raises(DataError) as err:
        verify_r1v_superclevr(ds, "data/raw/superclevr")
    message = str(err.value)
    assert "\n" not in message and message.startswith("data/raw/superclevr is not R1-V's SuperCLEVR-200")
    assert "8 rows, not 200" in message and "superclevr_test200_counting_problems.jsonl" in message


def test_fetch_data_of_the_blog_profile_checks_the_set_unless_told_not_to(tmp_path, repo_root):
    """The rehearsal's stand-in set (5 questions) is refused by the blog profile's fetch_data; with
    fetch_data.superclevr_check false (what scripts/rehearse_blog.sh sets) it is written."""
    import dataclasses

    from stages import fetch_data, rehearsal
    from stages.config import load_config

    raw = tmp_path / "raw"
    rehearsal.write_clevr_layout(raw / "clevr_cogen_a_train", n=4, seed=0)
    rehearsal.write_superclevr_layout(raw / "superclevr", n=5, seed=0)
    cfg = load_config(repo_root / "params.yaml")
    d = dataclasses.replace(cfg.fetch_data, raw_dir=str(raw), clevr_eval_rows=2)
    cfg = dataclasses.replace(cfg, profile="blog", fetch_data=d)
    with pytest.raises(DataError, match="is not R1-V's SuperCLEVR-200 counting set: 5 rows, not 200"):
        fetch_data.main(cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "superclevr").exists()
    fetch_data.main(dataclasses.replace(cfg, fetch_data=dataclasses.replace(d, superclevr_check=False)), tmp_path / "out")
    assert (tmp_path / "out" / "superclevr").is_dir()
