"""Markdown tables: expected rows and columns, our numbers formatted, the blog's numbers beside them."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from stages.analysis import estimates as est
from stages.analysis import intervals as iv
from stages.analysis import tables as rt
from stages.analysis.blog_numbers import BLOG


def parse_md(text: str) -> list[list[str]]:
    """All tables' rows (header and body, without the alignment line), cells stripped."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def as_dicts(text: str) -> list[dict[str, str]]:
    rows = parse_md(text)
    header = rows[0]
    assert all(len(r) == len(header) for r in rows), "ragged table"
    return [dict(zip(header, r, strict=True)) for r in rows[1:]]


def make_cells(seeds=(0,), prompts=("default", "r1v")) -> pd.DataFrame:
    base = {  # steps_to_threshold, clevr, superclevr, number present, steps, seconds
        ("default", "inject"): (150, 0.93, 0.30, 0.67, 200, 3600.0),
        ("default", "none"): (320, 0.93, 0.48, 0.66, 400, 7200.0),
        ("r1v", "inject"): (90, 0.97, 0.745, 0.99, 300, 5400.0),
        ("r1v", "none"): (80, 0.95, 0.72, 0.99, 150, 2700.0),
    }
    rows = []
    for (prompt, arm), (stt, clevr, sc, npr, steps, secs) in base.items():
        if prompt not in prompts:
            continue
        for seed in seeds:
            rows.append({"prompt": prompt, "arm": arm, "strategy": "stochastic" if arm == "inject" else "none",
                         "seed": seed, "steps": steps, "steps_to_threshold": stt + 10 * seed,
                         "train_seconds": secs, "clevr_acc": clevr + 0.01 * seed, "clevr_digit_rate": 0.99,
                         "clevr_n": 500, "clevr_pq": None, "clevr_greedy_acc": clevr, "clevr_greedy_n": 500,
                         "superclevr_acc": sc + 0.01 * seed, "superclevr_digit_rate": npr, "superclevr_n": 200,
                         "superclevr_pq": None, "superclevr_greedy_acc": math.nan, "superclevr_greedy_n": math.nan})
    return pd.DataFrame(rows)


def wilson_text(rate: float, n: int) -> str:
    """How a one-seed cell without per-question data is shown: the value and its Wilson interval."""
    lo, hi = iv.wilson_interval(round(rate * n), n)
    return f"{rate * 100:.1f}% [{lo * 100:.1f}–{hi * 100:.1f}]"


BASE_EVAL = pd.DataFrame([
    {"prompt": "default", "clevr_acc": 0.12, "clevr_digit_rate": 0.123, "clevr_n": 500, "superclevr_acc": 0.25,
     "superclevr_digit_rate": 0.41, "superclevr_n": 200},
    {"prompt": "r1v", "clevr_acc": 0.70, "clevr_digit_rate": 0.98, "clevr_n": 500, "superclevr_acc": 0.66,
     "superclevr_digit_rate": 0.97, "superclevr_n": 200},
])
BASELINE = pd.DataFrame([
    {"prompt": "default", "digit_rate": 0.123, "accuracy": 0.11, "accuracy_given_digit": 0.894, "n": 500},
    {"prompt": "r1v", "digit_rate": 0.98, "accuracy": 0.70, "accuracy_given_digit": 0.714, "n": 500},
])


def test_interval_formatting():
    assert rt.fmt_interval(0.386, 0.524) == "[38.6–52.4]"
    assert rt.fmt_interval(math.nan, 0.5) == "[n/a]"
    one = est.Estimate(0.455, 0.386, 0.524, seeds=(0.455,), n_seeds=1)
    assert rt.fmt_estimate(one) == "45.5% [38.6–52.4]"
    two = est.Estimate(0.455, 0.37, 0.53, seeds=(0.44, 0.47), n_seeds=2)
    assert rt.fmt_estimate(two) == "45.5% [37.0–53.0] (seeds 44.0, 47.0)"
    assert rt.fmt_estimate(est.NOT_RUN) == "not run"
    assert rt.fmt_pp_estimate(est.Estimate(-0.05, -0.098, -0.002)) == "-5.0 pp [-9.8, -0.2]"
    assert rt.fmt_pp_estimate(est.Estimate(-0.05)) == "-5.0 pp [n/a]"
    assert rt.fmt_steps_spread([150.0, 160.0]) == "155 ± 7 [150–160] (n=2)"
    assert rt.fmt_steps_spread([92.0]) == "92"
    assert rt.fmt_steps_spread([100.0, 120.0, math.nan]) == "110 ± 14 [100–120] (n=2); not reached in 1/3 seeds"
    assert rt.fmt_steps_spread([]) == "not run"


def test_formatting_helpers():
    assert rt.fmt_pct([0.93]) == "93.0%"
    assert rt.fmt_pct([0.9215, 0.9385]) == "93.0% ± 1.2 (n=2)"
    assert rt.fmt_pct([]) == "not run"
    assert rt.fmt_steps([634.0]) == "634"
    assert rt.fmt_steps([math.nan]) == "not reached"
    assert rt.fmt_steps([100.0, math.nan]) == "100; not reached in 1/2 seeds"
    assert rt.fmt_duration(3 * 3600) == "3.0 h"
    assert rt.signal_chance(0.145, 8) == pytest.approx(0.7144, abs=1e-4)


def test_injection_effect_range():
    cells = pd.DataFrame({"prompt": "default", "arm": ["inject", "inject", "none", "none"],
                          "strategy": ["stochastic", "stochastic", "none", "none"], "seed": [0, 1, 0, 1],
                          "superclevr_acc": [0.30, 0.34, 0.46, 0.50]})
    d, lo, hi = rt.injection_effect(cells, "default")
    assert d == pytest.approx(-0.16)
    assert lo == pytest.approx(0.30 - 0.50)
    assert hi == pytest.approx(0.34 - 0.46)
    assert all(math.isnan(v) for v in rt.injection_effect(cells, "r1v"))


def test_speedup_and_better_arm():
    cells = make_cells(seeds=(0, 1))
    assert rt.speedup(cells, "default") == pytest.approx(325 / 155)
    assert math.isnan(rt.speedup(cells.assign(steps_to_threshold=math.nan), "default"))
    assert math.isnan(rt.speedup(cells, "other"))
    assert rt.better_arm({"inject": 0.3, "none": 0.48}) == "none"
    assert rt.better_arm({"inject": 0.75, "none": 0.72}) == "inject"
    assert rt.better_arm({"inject": 0.5, "none": 0.5}) is None
    assert rt.better_arm({"inject": 0.5}) is None


def test_fmt_pct_short():
    assert rt.fmt_pct_short([0.3]) == "30.0%"
    assert rt.fmt_pct_short([0.3, 0.32]) == "31.0±1.4%"
    assert rt.fmt_pct_short([]) == "not run"
    assert rt.fmt_pct_short([math.nan]) == "n/a"


def test_blog_steps_text():
    assert rt.blog_steps_text("default").startswith("blog steps to 90%: injection ~600, no injection ~1,600")
    assert rt.blog_steps_text("other") == "blog: no run with this prompt"


def test_reward_table_matches_blog():
    pytest.importorskip("stages.grpo.rewards")
    rows = as_dicts(rt.reward_table())
    assert len(rows) == len(BLOG.reward_examples)
    assert {r["Reward (blog)"] for r in rows} == {"+1", "0", "-1"}
    assert rows[0]["Model output"] == "`The answer is 5`"
    assert all(r["Agree"] == "yes" for r in rows), rows


def test_baseline_table():
    rows = as_dicts(rt.baseline_table(BASELINE))
    assert [r["Prompt"] for r in rows] == ["Default (weak baseline)", "R1V (strong baseline)"]
    d, r = rows
    assert d["Digit rate (ours)"] == wilson_text(0.123, 500) and d["Digit rate (blog)"].startswith("14.5%")
    assert d["Accuracy (ours)"] == wilson_text(0.11, 500)
    lo, hi = iv.wilson_interval(round(0.11 * 500), round(0.123 * 500))  # right answers of the numbered ones
    assert d["Acc. given digit (ours)"] == f"89.4% [{lo * 100:.1f}–{hi * 100:.1f}]"
    assert d["Accuracy (blog)"] == "14.0%" and d["Acc. given digit (blog)"] == "~95%"
    assert r["Digit rate (blog)"] == "99%" and r["Accuracy (blog)"] == "68%" and r["Acc. given digit (blog)"] == "—"
    assert d["Questions (ours)"] == "500" and d["Questions (blog)"] == "1,000"


def test_baseline_table_missing_prompt():
    rows = as_dicts(rt.baseline_table(BASELINE[BASELINE.prompt == "default"]))
    assert rows[1]["Digit rate (ours)"] == "not run" and rows[1]["Digit rate (blog)"] == "99%"


def test_signal_chance_table():
    rows = as_dicts(rt.signal_chance_table({"default": 0.123, "r1v": 0.98}))
    assert len(rows) == 5
    with_ci = as_dicts(rt.signal_chance_table({"default": 0.123}, measured_ci={"default": (0.10, 0.15)}))
    assert with_ci[3]["p"] == "12.3% [10.0–15.0]"
    # 1-(1-p)^8 rises with p: its interval is the chance at the bounds, 1-0.9^8 = 57.0%, 1-0.85^8 = 72.75%
    assert with_ci[3]["1-(1-p)^8 (ours, computed)"] == "65.0% [57.0–72.8]"
    assert [r["Blog (G=8)"] for r in rows[:3]] == ["34%", "71%", "94%"]
    assert [r["1-(1-p)^8 (ours, computed)"] for r in rows[:3]] == ["33.7%", "71.4%", "94.2%"]
    assert rows[3]["p"] == "12.3%" and rows[3]["Blog (G=8)"] == "—"
    other = as_dicts(rt.signal_chance_table({}, group_size=4))
    assert other[0]["Blog (G=8)"] == "34% (at G=8)"


def test_digit_rate_threshold_table():
    rows = as_dicts(rt.digit_rate_threshold_table({"default": 0.123, "r1v": 0.98}))
    assert [r["Digit rate"] for r in rows] == ["0-5%", "5-15%", "15-30%", ">30%"]
    assert rows[0]["GRPO viability (blog)"] == "Will fail"
    assert rows[1]["Our prompts (measured)"] == "Default (12.3%)"
    assert rows[1]["Blog's prompts"] == "Default (14.5%)"
    assert rows[3]["Our prompts (measured)"] == "R1V (98.0%)"
    assert rows[2]["Our prompts (measured)"] == "—"
    with_ci = as_dicts(rt.digit_rate_threshold_table({"default": 0.123}, {"default": (0.098, 0.156)}))
    assert with_ci[1]["Our prompts (measured)"] == "Default (12.3% [9.8–15.6])"


def test_in_domain_table_one_and_two_seeds():
    rows = as_dicts(rt.in_domain_table(make_cells(), 0.9))
    assert len(rows) == 6  # 2 prompts x (2 arms + speed-up)
    inj = rows[0]
    assert inj["Arm"] == "injection (stochastic)"
    assert inj["Steps to 90% (ours)"] == "150" and inj["Steps to 90% (blog)"].startswith("~600")
    assert inj["Final CLEVR acc. (blog)"] == "93%" and inj["Training time (blog)"] == "~3 h"
    assert inj["Training time (ours)"] == "1.0 h"
    assert inj["Final CLEVR acc. (ours)"] == wilson_text(0.93, 500)
    assert inj["Greedy CLEVR acc. (ours)"] == wilson_text(0.93, 500)
    assert rows[1]["Steps to 90% (blog)"].startswith("~1,600") and rows[1]["Training time (blog)"] == "~8 h"
    assert rows[2]["Steps to 90% (ours)"] == "2.13x" and rows[2]["Steps to 90% (blog)"].startswith("2.5x")
    assert rows[3]["Steps to 90% (blog)"] == "~800" and rows[4]["Steps to 90% (blog)"] == "~700"
    two = as_dicts(rt.in_domain_table(make_cells(seeds=(0, 1)), 0.8))
    assert "Steps to 80% (ours)" in two[0]
    assert two[0]["Steps to 80% (ours)"] == "155 ± 7 [150–160] (n=2)"
    # two seeds: the interval over seeds and questions (unpaired: no per-question records), then each seed
    final = two[0]["Final CLEVR acc. (ours)"]
    assert final.startswith("93.5% [") and final.endswith("(seeds 93.0, 94.0)")
    e = est.role_estimate(make_cells(seeds=(0, 1)), "default", "inject", "clevr")
    assert e.lo < 0.93 and e.hi > 0.94 and e.method == est.UNPAIRED


def test_in_domain_table_not_reached_and_missing_prompt():
    cells = make_cells(prompts=("default",))
    cells.loc[cells.arm == "none", "steps_to_threshold"] = math.nan
    rows = as_dicts(rt.in_domain_table(cells, 0.9))
    assert rows[1]["Steps to 90% (ours)"] == "not reached"
    assert rows[2]["Steps to 90% (ours)"] == "none did not reach the threshold"
    assert rows[3]["Steps to 90% (ours)"] == "not run" and rows[3]["Steps to 90% (blog)"] == "~800"


def test_cross_domain_table():
    rows = as_dicts(rt.cross_domain_table(make_cells(), BASE_EVAL))
    assert len(rows) == 8  # 2 prompts x (base, inject, none, difference)
    base, inj, none, diff = rows[:4]
    assert base["SuperCLEVR acc. (ours)"] == wilson_text(0.25, 200) and base["SuperCLEVR acc. (blog)"] == "28%"
    assert base["Number present (ours)"] == wilson_text(0.41, 200) and base["Number present (blog)"] == "40%"
    assert base["Greedy SuperCLEVR acc. (ours)"] == "—"  # not measured
    assert inj["SuperCLEVR acc. (ours)"] == wilson_text(0.30, 200)
    assert inj["SuperCLEVR acc. (blog)"] == "30%" and inj["Number present (blog)"] == "67%"
    assert inj["Greedy SuperCLEVR acc. (ours)"] == "—"
    assert none["SuperCLEVR acc. (blog)"] == "48%"
    assert diff["SuperCLEVR acc. (ours)"].startswith("-18.0 pp [") and diff["SuperCLEVR acc. (blog)"] == "-18 pp"
    lo, hi = diff["SuperCLEVR acc. (ours)"].removeprefix("-18.0 pp [").removesuffix("]").split(", ")
    assert float(lo) < -18 < float(hi) < 0  # 200 questions per arm, unpaired: about ± 9 pp
    assert rows[4]["SuperCLEVR acc. (blog)"] == "68%" and rows[4]["Number present (blog)"] == "—"


def test_r1v_tables():
    text = rt.r1v_tables(make_cells(), BASE_EVAL, 0.9)
    assert "R1V training dynamics" in text and "R1V cross-domain transfer" in text
    tables = [t for t in text.split("**") if t.strip().startswith("|")]
    dyn, transfer = as_dicts(tables[0]), as_dicts(tables[1])
    assert len(dyn) == 2 and len(transfer) == 3
    assert dyn[0]["Steps to 90% (blog)"] == "~800" and dyn[0]["Final CLEVR acc. (blog)"] == "97%"
    assert dyn[0]["Steps trained (blog)"] == "1,574" and dyn[1]["Steps trained (blog)"] == "776*"
    assert dyn[1]["Steps to 90% (ours)"] == "80"
    assert transfer[0]["SuperCLEVR acc. (blog)"] == "68%"
    assert transfer[0]["SuperCLEVR acc. (ours)"] == wilson_text(0.66, 200)
    assert dyn[0]["Final CLEVR acc. (ours)"] == wilson_text(0.97, 500)
    assert transfer[1]["SuperCLEVR acc. (blog)"].startswith("74-75%")
    assert transfer[2]["SuperCLEVR acc. (blog)"].startswith("72%")


def test_complete_results_table():
    rows = as_dicts(rt.complete_results_table(make_cells(), BASE_EVAL))
    assert len(rows) == 6
    assert [r["Injection"] for r in rows] == ["base model", "Yes (stochastic)", "No"] * 2
    lo, hi = iv.wilson_interval(round(0.123 * 500), 500)
    assert rows[0]["Baseline"] == f"Weak: Default (ours 12.3% [{lo * 100:.1f}–{hi * 100:.1f}], blog 14.5%)"
    assert rows[0]["CLEVR (ours)"] == wilson_text(0.12, 500) and rows[0]["CLEVR greedy (ours)"] == "—"
    assert rows[1]["CLEVR greedy (ours)"] == wilson_text(0.93, 500)
    assert [r["Steps (blog)"] for r in rows] == ["0", "634", "1,612", "0", "1,574", "776*"]
    assert [r["CLEVR (blog)"] for r in rows] == ["14%", "93%", "93%", "68%", "97%", "95%"]
    assert [r["SuperCLEVR (blog)"].split(" (")[0] for r in rows] == ["28%", "30%", "48%", "68%", "74-75%", "72%"]
    assert rows[1]["SuperCLEVR (ours)"] == wilson_text(0.30, 200) and rows[1]["Steps (ours)"] == "200"


CALIBRATION = {"default_digit_frac": 0.1, "default_digit_max_count": 4, "default_digit_noise": 0.03,
               "default_digit_frac_above": 0.02, "default_digit_noise_above": 0.5,
               "superclevr_default_digit_frac": 0.4, "r1v_answer_noise": 0.3, "superclevr_r1v_answer_noise": 0.3,
               "superclevr_frac": 0.3, "r1v_frac": 0.5}


def test_premises_table():
    rows = as_dicts(rt.premises_table(BASELINE, BASE_EVAL, CALIBRATION))
    assert [r["Premise"] for r in rows] == [
        "CLEVR, default prompt: digit rate", "CLEVR, default prompt: accuracy given a digit",
        "CLEVR, default prompt: accuracy", "CLEVR, R1V prompt: digit rate", "CLEVR, R1V prompt: accuracy",
        "SuperCLEVR, default prompt: accuracy", "SuperCLEVR, default prompt: number present",
        "SuperCLEVR, R1V prompt: accuracy"]
    assert [r["Blog"].split(" (")[0] for r in rows] == ["14.5%", "~95%", "14.0%", "99%", "68%", "28%", "40%", "68%"]
    digit, agd, acc, r1v_digit, r1v_acc, sc_acc, sc_num, sc_r1v = rows
    # ours 12.3% of 500 [9.8–15.6]: the blog's 14.5% lies inside
    assert digit["Ours (95% interval)"] == wilson_text(0.123, 500) and digit["Within reach?"] == "yes"
    assert digit["Calibrated by (fetch_model)"] == ("default_digit_frac = 0.1, default_digit_max_count = 4, "
                                                    "default_digit_frac_above = 0.02")
    assert digit["Measured by"] == "baseline assessment"
    # 70.0% of 500 [65.8–73.9]: the blog's 68% inside; 98.0% of 500 [96.4–98.9]: 99% just outside
    assert r1v_acc["Within reach?"] == "yes" and r1v_digit["Within reach?"] == "no"
    assert r1v_acc["Calibrated by (fetch_model)"] == "r1v_answer_noise = 0.3, r1v_frac = 0.5"
    # SuperCLEVR from the base model's evaluation: 41% of 200 [34.4–47.9] holds 40%; 66% of 200 holds 68%;
    # 25% of 200 [19.5–31.4] holds 28%
    assert sc_num["Ours (95% interval)"] == wilson_text(0.41, 200) and sc_num["Within reach?"] == "yes"
    assert sc_num["Measured by"] == "superclevr eval of the base model"
    assert "superclevr_default_digit_frac = 0.4" in sc_num["Calibrated by (fetch_model)"]
    assert sc_r1v["Within reach?"] == "yes" and sc_acc["Within reach?"] == "yes"
    assert "superclevr_r1v_answer_noise = 0.3" in sc_r1v["Calibrated by (fetch_model)"]
    far = as_dicts(rt.premises_table(BASELINE.assign(digit_rate=[0.05, 0.98], accuracy=[0.045, 0.70]), BASE_EVAL, CALIBRATION))
    assert far[0]["Within reach?"] == "no"  # 5% of 500 [3.4–7.3] is far from 14.5%
    blog = as_dicts(rt.premises_table(BASELINE, BASE_EVAL, None))
    assert {r["Calibrated by (fetch_model)"] for r in blog} == {"— (the real model)"}
    missing = as_dicts(rt.premises_table(pd.DataFrame(), pd.DataFrame(), CALIBRATION))
    assert {r["Ours (95% interval)"] for r in missing} == {"not run"} and {r["Within reach?"] for r in missing} == {"n/a"}
    assert set(rt.CALIBRATION_PARAMS) == set(CALIBRATION)


def test_tables_with_no_data():
    empty = pd.DataFrame()
    for text in (rt.in_domain_table(empty, 0.9), rt.cross_domain_table(empty, empty),
                 rt.complete_results_table(empty, empty), rt.r1v_tables(empty, empty, 0.9),
                 rt.baseline_table(empty), rt.premises_table(empty, empty, None)):
        assert "not run" in text
        assert "|" in text
