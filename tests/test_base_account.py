"""The blog's account of its base model, measured on hand-made answers (stages/counting/base_account.py) and
judged in the report's table (stages/analysis/account_table.py)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from stages.analysis import account_table as T
from stages.counting import base_account as A

BLOG_EXAMPLE = ("Looking at this image, I can see several geometric shapes arranged on a gray surface. There appear "
                "to be three cubes - two blue and one yellow - along with two red spheres positioned near the cubes. "
                "In total, I count approximately five distinct objects in this scene")


@pytest.mark.parametrize(("text", "bare"), [("5", True), (" 5.", True), ("10\n", True), ("5 objects", False),
                                            ("five", False), ("There are 5 objects.", False), ("", False)])
def test_just_a_number_is_the_number_and_nothing_else(text, bare):
    assert A.is_bare_number(text) is bare


@pytest.mark.parametrize(("text", "describes"), [
    (BLOG_EXAMPLE, True), ("two red spheres", True), ("A Bus and a car.", True), ("three metal cylinders", True),
    ("I can see four objects on the floor.", False),
    ("This scene contains four objects with different colors.", False),  # "colors" names no colour
    ("There are 5 vehicles in the image.", False), ("5", False)])
def test_a_description_names_a_colour_shape_or_material(text, describes):
    assert A.names_scene(text) is describes


@pytest.mark.parametrize(("text", "words"), [(BLOG_EXAMPLE, True), ("In total, I count four distinct items.", True),
                                             ("There are 5 objects.", False), ("five, that is 5", False),
                                             ("several shapes", False), ("someone", False)])
def test_a_count_in_words_has_a_number_word_and_no_digit(text, words):
    assert A.count_in_words(text) is words


def test_accuracy_slope_is_the_least_squares_slope_on_the_count():
    # x = 1, 2, 3 (centred -1, 0, 1), y = 1, 1, 0 (centred 1/3, 1/3, -2/3): slope = (-1/3 - 2/3) / 2
    assert A.accuracy_slope([1, 2, 3], [True, True, False]) == pytest.approx(-0.5)
    assert A.accuracy_slope([1, 2, 3], [True, True, True]) == 0.0
    assert math.isnan(A.accuracy_slope([4, 4], [True, False]))  # one count: no slope


def test_slope_interval_holds_the_slope_and_is_the_same_every_time():
    truth = [3, 4, 5, 6, 7, 8] * 10
    correct = [True, True, True, False, True, False] * 10
    lo, hi = A.slope_interval(truth, correct)
    assert lo < A.accuracy_slope(truth, correct) < hi < 0
    assert A.slope_interval(truth, correct) == (lo, hi)


def _answers():
    return pd.DataFrame({
        "truth": [5, 5, 3, 6],
        "response": ["5", BLOG_EXAMPLE, "I count 4 objects.", "Looking at the picture, there are"],
        "reward": [1, -1, 0, -1],
    })


def test_answer_account_of_four_hand_made_answers():
    m = A.answer_account(_answers(), [1, 40, 5, 50], max_new_tokens=50)
    assert m["n"] == 4
    assert m["bare_number_share"] == 0.25  # "5"
    assert m["describes_scene_share"] == 0.25  # the blog's example
    assert m["count_in_words_share"] == 0.25  # the blog's example; the last one never reached its count
    assert (m["tokens_mean"], m["tokens_median"]) == (24.0, 22.5)
    assert m["cut_share"] == 0.25  # 50 tokens of 50: no end before the limit
    assert m["accuracy_by_count"] == {"3": 0.0, "5": 0.5, "6": 0.0}
    assert m["accuracy_slope"] == pytest.approx(A.accuracy_slope([5, 5, 3, 6], [1, 0, 0, 0]))


def test_answer_account_refuses_lengths_that_do_not_match_the_answers():
    with pytest.raises(ValueError, match="3 token counts for 4 answers"):
        A.answer_account(_answers(), [1, 2, 3], max_new_tokens=50)


def test_logprob_account_mean_median_and_an_interval_around_the_mean():
    m = A.logprob_account([-1.0, -2.0, -6.0])
    assert (m["n"], m["mean"], m["median"]) == (3, -3.0, -2.0)
    assert -6.0 <= m["lo"] <= -3.0 <= m["hi"] <= -1.0


def test_data_account_counts_and_phrasings():
    d = A.data_account([3, 10, 3], ["How many?", "How many?", "Count them."])
    assert (d["count_min"], d["count_max"], d["per_count"]) == (3, 10, {"3": 2, "10": 1})
    assert (d["phrasings"], d["top_phrasing"]) == (2, "How many?")


def _account(bare: float, describes: float, counts: tuple[int, int], phrasings: int) -> dict:
    def one(style: str) -> dict:
        return {"n": 500, "bare_number_share": bare, "describes_scene_share": describes,
                "count_in_words_share": 0.8, "tokens_mean": 9.0, "tokens_median": 9.0, "tokens_p90": 12.0,
                "cut_share": 0.0, "accuracy_by_count": {"1": 1.0, "2": 0.9}, "accuracy_slope": -0.1,
                "accuracy_slope_lo": -0.2, "accuracy_slope_hi": -0.01,
                "injected_logprob": {"n": 500, "mean": -4.4, "median": -4.0, "lo": -4.6, "hi": -4.2}}
    data = {"count_min": counts[0], "count_max": counts[1], "phrasings": phrasings}
    return {"clevr": {"default": one("default"), "r1v": one("r1v")},
            "superclevr": {"default": one("default"), "r1v": one("r1v")},
            "data": {"clevr": data, "superclevr": data}}


def _verdicts(account: dict | None, real_model: bool = False) -> dict[str, str]:
    return {row[0]: row[-1] for row in T.account_rows(account, real_model)}


def test_the_table_judges_each_premise_by_its_rule():
    v = _verdicts(_account(bare=0.041, describes=0.0, counts=(1, 6), phrasings=4))
    assert v["CLEVR, default prompt: answers that are just a number"] == "no"  # 4.1% is not "almost never"
    assert v["CLEVR, default prompt: log p of the injected text (the bare true count)"] == "yes"  # < ln 2%
    assert v["CLEVR, R1V prompt: log p of the injected text"] == "n/a"  # the blog gives nothing
    assert v["CLEVR, default prompt: answers describe the scene (name a colour, shape or material)"] == "no"
    assert v["CLEVR, default prompt: count stated in words (no digit)"] == "yes"
    assert v["CLEVR, default prompt: median answer length (tokens)"] == "no"  # 9 tokens is not verbose
    assert v["CLEVR, default prompt: answers cut by max_new_tokens"] == "no"
    assert v["SuperCLEVR, R1V prompt: accuracy change per extra object (errors grow with the count?)"] == "yes"
    assert v["CLEVR: counts asked"] == v["SuperCLEVR: counts asked"] == "no"
    assert v["SuperCLEVR: distinct phrasings of the question"] == "no"

    v = _verdicts(_account(bare=0.0, describes=0.9, counts=(3, 10), phrasings=1))
    assert v["SuperCLEVR, default prompt: answers that are just a number"] == "yes"
    assert v["SuperCLEVR, default prompt: answers describe the scene (name a colour, shape or material)"] == "yes"
    assert v["CLEVR: counts asked"] == v["SuperCLEVR: distinct phrasings of the question"] == "yes"


def test_the_table_says_what_was_not_measured_and_names_no_knob_for_the_real_model():
    rows = T.account_rows(None, real_model=True)
    assert len(rows) == len(T.ACCOUNT)
    assert {r[2] for r in rows} == {"not measured"} and {r[-1] for r in rows} == {"n/a"}
    assert {r[4] for r in rows} == {"— (the real model and data)"}
    table = T.account_table(_account(0.0, 0.9, (3, 10), 1))
    assert "default_digit_frac x 1/4" in table and "fetch_data.clevr_min_count" in table


def test_the_blog_profile_measures_every_row_of_the_account(tmp_path, make_tiny_world, repo_root):
    """baseline_assess under the blog profile (on the CPU by the explicit param, a tiny model standing in for
    Qwen2-VL-2B) writes the account for both domains and both prompt styles, and the report's table shows our
    numbers for every premise it can measure."""
    import subprocess
    import sys

    import yaml

    root = make_tiny_world(tmp_path, seed=5, n_train=4, n_heldout=6, n_superclevr=6)
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    raw["profile"] = "blog"
    raw["execution"]["device"] = "cpu"
    raw["profiles"]["blog"]["baseline_assess"] = {"n_questions": 6, "batch_size": 3}
    raw["profiles"]["blog"]["eval"] = {"max_new_tokens": 6, "dtype": "float32"}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "baseline-assess", "--params", str(params),
                           "--base", str(root / "base"), "--data", str(root / "data"),
                           "--metrics", str(tmp_path / "m.json"), "--table", str(tmp_path / "t.md")],
                          capture_output=True, text=True, timeout=300, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    account = __import__("json").loads((tmp_path / "m.json").read_text())["account"]
    assert account["data"]["clevr"]["count_min"] >= 1 and account["data"]["superclevr"]["phrasings"] >= 1
    for domain in ("clevr", "superclevr"):
        for style in ("default", "r1v"):
            m = account[domain][style]
            assert 0 <= m["bare_number_share"] <= 1 and 0 <= m["cut_share"] <= 1
            assert m["injected_logprob"]["mean"] < 0  # a probability below 1 under a random-ish tiny model
            assert m["tokens_median"] >= 0 and m["max_new_tokens"] == 6
    rows = T.account_rows(account, real_model=True)
    measured = [r for r in rows if r[2] not in ("", "n/a", "not measured")]
    assert len(measured) == len(rows), [r for r in rows if r not in measured]


def test_the_account_at_the_real_shapes_on_the_rehearsal_stand_in(repo_root):
    """Qwen2-VL-2B-Instruct's widths, vocabulary (151,936), special ids and image processor with one text layer
    and one vision block of random weights (the rehearsal's stand-in), 480x320 scenes of 3-10 objects: every
    measurement of the account comes out, per domain and prompt style."""
    import dataclasses

    from stages import baseline_assess, gpu_check
    from stages.config import load_config

    cfg = load_config(repo_root / "params.yaml")
    cfg = dataclasses.replace(cfg, profile="blog", baseline_assess=dataclasses.replace(cfg.baseline_assess, batch_size=2),
                              eval=dataclasses.replace(cfg.eval, max_new_tokens=3))
    config, processor = gpu_check.standin_2b(text_layers=1, vision_depth=1)
    model = gpu_check.random_model(config, seed=0, device="cpu", dtype="float32")
    splits = {"clevr": gpu_check.synthetic_examples(2, seed=0), "superclevr": gpu_check.synthetic_examples(2, seed=1)}
    answers = {name: {style: baseline_assess.answer(model, processor, exs, style, cfg, name) for style in ("default", "r1v")}
               for name, exs in splits.items()}
    account = baseline_assess.account(model, processor, splits, answers, cfg)
    assert 3 <= account["data"]["clevr"]["count_min"] <= account["data"]["clevr"]["count_max"] <= 10
    for domain in splits:
        for style in ("default", "r1v"):
            m = account[domain][style]
            assert m["n"] == 2 and m["max_new_tokens"] == 3
            # a random 2B-vocabulary model: the injected text is far from probable (below 1 in a million)
            assert m["injected_logprob"]["mean"] < math.log(1e-6)
    assert all(r[2] not in ("", "n/a") for r in T.account_rows(account, real_model=True))
