"""Claims: verdicts follow their stated rules on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stages.analysis import claims as cl
from stages.analysis import curves as curve_math
from stages.analysis import estimates as est
from stages.analysis.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

THRESHOLD = 0.9


N_LARGE = 5000  # SuperCLEVR questions of the synthetic cells: question noise ~0.7 pp, below every gap tested


def cells_frame(values: dict[tuple[str, str], list[float]], column: str, **fixed) -> pd.DataFrame:
    """One row per (prompt, arm, seed) with ``column`` set from ``values``; SuperCLEVR known as (accuracy, n)
    without per-question records (the unpaired path)."""
    rows = []
    for (prompt, arm), vals in values.items():
        for seed, v in enumerate(vals):
            row = {"prompt": prompt, "arm": arm, "strategy": "stochastic" if arm == "inject" else "none",
                   "seed": seed, "steps": 400, "steps_to_threshold": math.nan, "clevr_acc": 0.5,
                   "superclevr_acc": math.nan, "superclevr_n": N_LARGE, "superclevr_pq": None,
                   "train_seconds": 100.0}
            row.update(fixed)
            row[column] = v
            rows.append(row)
    return pd.DataFrame(rows)


def steps_cells(inject, none):
    return cells_frame({("default", "inject"): inject, ("default", "none"): none}, "steps_to_threshold")


def transfer_cells(d_inj, d_none, r_inj, r_none):
    return cells_frame({("default", "inject"): d_inj, ("default", "none"): d_none,
                        ("r1v", "inject"): r_inj, ("r1v", "none"): r_none}, "superclevr_acc")


def two_phase_curves(agd_start: float, seeds=(0,), steps: int = 300, noise: float = 0.0) -> pd.DataFrame:
    """Digit rate 0.14 -> ~1 by mid-run; accuracy given a digit rises from agd_start to 0.95 afterwards."""
    rng = np.random.default_rng(1)
    step = np.arange(steps)
    frames = []
    for seed in seeds:
        dig = 0.14 + 0.86 / (1 + np.exp(-(step - 0.35 * steps) / (0.04 * steps)))
        agd = agd_start + (0.95 - agd_start) / (1 + np.exp(-(step - 0.7 * steps) / (0.05 * steps)))
        d = np.clip(dig + rng.normal(0, noise, steps), 0, 1)
        frames.append(pd.DataFrame({"prompt": "default", "arm": "none", "strategy": "none", "seed": seed,
                                    "step": step, "digit_rate": d, "accuracy": d * agd,
                                    "mean_reward": d * agd - (1 - d), "injected_frac": 0.0}))
    return pd.concat(frames, ignore_index=True)


# --- the generic comparison rule -------------------------------------------------------------------


@pytest.mark.parametrize("low, high, censored, expected", [
    ([100], [300], False, INCONCLUSIVE),  # one seed measures no seed noise
    ([300], [100], False, INCONCLUSIVE),
    ([100], [100], False, INCONCLUSIVE),
    ([100, 120], [300], False, INCONCLUSIVE),
    ([100, 120], [300, 320], False, REPRODUCED),
    ([100, 320], [300, 330], False, INCONCLUSIVE),  # ranges overlap
    ([300, 320], [100, 120], False, NOT_REPRODUCED),
    ([], [100], False, INCONCLUSIVE),
    ([100, 110], [math.nan, math.nan], True, REPRODUCED),  # "not reached" is +inf
    ([math.nan, math.nan], [100, 110], True, NOT_REPRODUCED),
    ([math.nan], [math.nan], True, INCONCLUSIVE),
    ([math.nan], [100], False, INCONCLUSIVE),  # not censored: NaN dropped -> missing
])
def test_compare(low, high, censored, expected):
    assert cl.compare(np.array(low, float), np.array(high, float), censored=censored).verdict == expected


def test_compare_reports_the_chance_of_disjoint_ranges_and_the_one_seed_plain_comparison():
    assert "1/6" in cl.compare(np.array([1.0, 2]), np.array([3.0, 4])).seeds  # 1 / C(4, 2)
    assert "1/20" in cl.compare(np.array([1.0, 2, 3]), np.array([4.0, 5, 6])).seeds
    one = cl.compare(np.array([1.0]), np.array([3.0])).seeds
    assert "agrees with the blog" in one and "no seed noise" in one


# --- injection accelerates ----------------------------------------------------------------------


def test_injection_clearly_faster_is_reproduced():
    one = cl.claim_injection_accelerates(steps_cells([150], [400]), THRESHOLD)
    assert one["verdict"] == INCONCLUSIVE  # one seed cannot be conclusive: it measures no seed noise
    assert "1 seed" in one["ours"] and "agrees with the blog" in one["ours"] and "2.67x" in one["ours"]
    assert "~600" in one["blog"] and "~1,600" in one["blog"]
    row2 = cl.claim_injection_accelerates(steps_cells([150, 170], [380, 420]), THRESHOLD)
    assert row2["verdict"] == REPRODUCED and "n=2" in row2["ours"] and "[150–170]" in row2["ours"]
    assert "do not overlap" in row2["rule"] and "1 seed in an arm inconclusive" in row2["rule"]


def test_injection_overlapping_seeds_is_inconclusive():
    row = cl.claim_injection_accelerates(steps_cells([150, 400], [300, 420]), THRESHOLD)
    assert row["verdict"] == INCONCLUSIVE


def test_injection_reversed_is_not_reproduced():
    one = cl.claim_injection_accelerates(steps_cells([400], [150]), THRESHOLD)
    assert one["verdict"] == INCONCLUSIVE and "goes against the blog" in one["ours"]
    assert cl.claim_injection_accelerates(steps_cells([400, 420], [150, 170]), THRESHOLD)["verdict"] == NOT_REPRODUCED


def test_injection_not_reached_counts_as_slower():
    row = cl.claim_injection_accelerates(steps_cells([150, 160], [math.nan, math.nan]), THRESHOLD)
    assert row["verdict"] == REPRODUCED and "not reached" in row["ours"]
    assert cl.claim_injection_accelerates(steps_cells([150], [math.nan]), THRESHOLD)["verdict"] == INCONCLUSIVE
    assert cl.claim_injection_accelerates(steps_cells([], []), THRESHOLD)["verdict"] == INCONCLUSIVE


# --- transfer claims -----------------------------------------------------------------------------


def test_transfer_claims_blog_like():
    cells = transfer_cells([0.30], [0.48], [0.745], [0.72])
    hurts = cl.claim_injection_hurts_transfer(cells)
    assert hurts["verdict"] == REPRODUCED
    assert cl.claim_strong_baseline_transfers(cells)["verdict"] == REPRODUCED
    assert cl.claim_prompt_matters_more(cells)["verdict"] == REPRODUCED
    assert cl.claim_baseline_strength(cells)["verdict"] == REPRODUCED
    assert "-18.0 pp [" in hurts["ours"] and "1 seed: question noise only; unpaired" in hurts["ours"]
    assert "entirely < 0" in hurts["rule"] and "95% interval over seeds and questions" in hurts["rule"]


def test_transfer_claims_reversed():
    cells = transfer_cells([0.50], [0.30], [0.40], [0.75])  # injection helps weak, hurts strong a lot
    assert cl.claim_injection_hurts_transfer(cells)["verdict"] == NOT_REPRODUCED
    assert cl.claim_strong_baseline_transfers(cells)["verdict"] == NOT_REPRODUCED
    assert cl.claim_baseline_strength(cells)["verdict"] == NOT_REPRODUCED
    same_prompt = transfer_cells([0.30], [0.60], [0.35], [0.65])  # prompt effect 5 pp < injection effect 30 pp
    assert cl.claim_prompt_matters_more(same_prompt)["verdict"] == NOT_REPRODUCED


def test_transfer_claims_seeds():
    clear = transfer_cells([0.30, 0.32], [0.47, 0.50], [0.74, 0.75], [0.73, 0.75])
    assert cl.claim_injection_hurts_transfer(clear)["verdict"] == REPRODUCED
    assert cl.claim_strong_baseline_transfers(clear)["verdict"] == REPRODUCED
    assert cl.claim_baseline_strength(clear)["verdict"] == REPRODUCED
    assert "2 seeds: seed and question noise" in cl.claim_injection_hurts_transfer(clear)["ours"]
    noisy = transfer_cells([0.30, 0.50], [0.40, 0.48], [0.68, 0.75], [0.71, 0.73])
    assert cl.claim_injection_hurts_transfer(noisy)["verdict"] == INCONCLUSIVE  # the interval straddles 0
    assert cl.claim_strong_baseline_transfers(noisy)["verdict"] == INCONCLUSIVE  # inject's interval straddles 70%
    assert cl.claim_baseline_strength(noisy)["verdict"] == INCONCLUSIVE


def test_transfer_claims_missing_prompt():
    cells = transfer_cells([0.30], [0.48], [], [])
    assert cl.claim_injection_hurts_transfer(cells)["verdict"] == REPRODUCED
    for fn in (cl.claim_strong_baseline_transfers, cl.claim_prompt_matters_more, cl.claim_baseline_strength):
        assert fn(cells)["verdict"] == INCONCLUSIVE


def test_transfer_claims_without_question_counts_are_inconclusive():
    cells = transfer_cells([0.30], [0.48], [0.745], [0.72]).assign(superclevr_n=math.nan)
    row = cl.claim_injection_hurts_transfer(cells)
    assert row["verdict"] == INCONCLUSIVE and "no interval" in row["ours"]


def pq_cells(correct: dict[tuple[str, str], np.ndarray], k: int) -> pd.DataFrame:
    """One seed per role with per-question records (``correct`` of k answers per question, same questions)."""
    rows = []
    for (prompt, arm), c in correct.items():
        p = est.PerQuestion(tuple(range(c.size)), k, c.astype(float), np.full(c.size, float(k)))
        rows.append({"prompt": prompt, "arm": arm, "strategy": "stochastic" if arm == "inject" else "none",
                     "seed": 0, "steps": 400, "superclevr_acc": float(c.mean() / k), "superclevr_n": c.size,
                     "superclevr_pq": p})
    return pd.DataFrame(rows)


def test_a_difference_straddling_zero_is_inconclusive_and_one_excluding_it_is_reproduced():
    rng = np.random.default_rng(0)
    none = rng.integers(0, 5, 200)  # right answers of k = 4 per question
    # injection one answer worse on 40 questions (-5 pp), question by question: every paired replicate is <= 0
    worse = none.copy()
    hit = np.flatnonzero(none > 0)[:40]
    worse[hit] -= 1
    row = cl.claim_injection_hurts_transfer(pq_cells({("default", "inject"): worse, ("default", "none"): none}, 4))
    assert row["verdict"] == REPRODUCED and "paired by question" in row["ours"] and "-5.0 pp [" in row["ours"]
    # an unrelated injection arm of about the same accuracy: the interval straddles 0
    other = rng.integers(0, 5, 200)
    row = cl.claim_injection_hurts_transfer(pq_cells({("default", "inject"): other, ("default", "none"): none}, 4))
    assert row["verdict"] == INCONCLUSIVE
    # identical arms: the interval is exactly [0, 0], which contains 0
    row = cl.claim_injection_hurts_transfer(pq_cells({("default", "inject"): none, ("default", "none"): none}, 4))
    assert row["verdict"] == INCONCLUSIVE and "+0.0 pp [+0.0, +0.0]" in row["ours"]


def test_strong_baseline_states_the_steps_each_arm_trained():
    row = cl.claim_strong_baseline_transfers(transfer_cells([0.30], [0.48], [0.745], [0.72]))
    assert "matched steps (400 each)" in row["ours"]
    assert "1,574 (injection) vs 776 (none)" in row["ours"]
    uneven = transfer_cells([0.30], [0.48], [0.745], [0.72])
    uneven.loc[(uneven.prompt == "r1v") & (uneven.arm == "none"), "steps"] = 200
    assert "400 (injection) vs 200 (none) steps" in cl.claim_strong_baseline_transfers(uneven)["ours"]


# --- baseline, sparse signals, two phases ---------------------------------------------------------


BASELINE = pd.DataFrame({"prompt": ["default", "r1v"], "digit_rate": [0.13, 0.98], "accuracy": [0.1, 0.7],
                         "accuracy_given_digit": [0.77, 0.71], "n": [500, 500]})


def test_baseline_and_sparse_signals():
    row = cl.claim_baseline(BASELINE)
    assert row["verdict"] == REPRODUCED and "Wilson" in row["rule"]
    assert "default 13.0% [" in row["ours"]
    weak_r1v = BASELINE.assign(digit_rate=[0.13, 0.5])
    assert cl.claim_baseline(weak_r1v)["verdict"] == NOT_REPRODUCED
    assert cl.claim_baseline(BASELINE.iloc[:1])["verdict"] == INCONCLUSIVE
    # 14 of 50 = 28% < 30%, but its Wilson interval [17.5%, 41.7%] straddles 30%
    near = BASELINE.assign(digit_rate=[0.28, 0.98], n=[50, 500])
    assert cl.claim_baseline(near)["verdict"] == INCONCLUSIVE
    assert cl.claim_baseline(BASELINE.drop(columns="n"))["verdict"] == INCONCLUSIVE
    learned = steps_cells([100], [300])
    assert cl.claim_sparse_signals(BASELINE, learned, THRESHOLD)["verdict"] == REPRODUCED
    stuck = steps_cells([100], [math.nan])
    assert cl.claim_sparse_signals(BASELINE, stuck, THRESHOLD)["verdict"] == NOT_REPRODUCED
    mixed = steps_cells([100], [300, math.nan])
    assert cl.claim_sparse_signals(BASELINE, mixed, THRESHOLD)["verdict"] == INCONCLUSIVE
    not_sparse = BASELINE.assign(digit_rate=[0.6, 0.98])
    assert cl.claim_sparse_signals(not_sparse, learned, THRESHOLD)["verdict"] == INCONCLUSIVE


def test_two_phases():
    assert cl.claim_two_phases(two_phase_curves(0.5), window=10)["verdict"] == REPRODUCED
    both = cl.claim_two_phases(two_phase_curves(0.5, seeds=(0, 1), noise=0.03), window=10)
    assert both["verdict"] == REPRODUCED and "seed 1" in both["ours"]
    # accuracy given a digit already 95% from the start: accuracy just tracks the format -> one phase
    assert cl.claim_two_phases(two_phase_curves(0.95), window=10)["verdict"] == NOT_REPRODUCED
    never = two_phase_curves(0.5).assign(digit_rate=0.3)
    assert cl.claim_two_phases(never, window=10)["verdict"] == INCONCLUSIVE
    assert cl.claim_two_phases(pd.DataFrame(), window=10)["verdict"] == INCONCLUSIVE


def test_two_phases_boundary_in_steps_trained_as_the_metric():
    curves = two_phase_curves(0.5)
    metric = curve_math.steps_to_reach(curves["digit_rate"].tolist(), 0.9, 10)  # train's steps_to_digit90
    assert metric is not None
    row = cl.claim_two_phases(curves, window=10)
    assert f"90% after {metric} steps trained" in row["ours"]
    first_window = float(np.mean(curves["digit_rate"].iloc[:10]))
    assert f"digit rate {first_window * 100:.1f}% ->" in row["ours"]


# --- the table ---------------------------------------------------------------------------------------


def test_claims_table_and_markdown():
    cells = transfer_cells([0.30, 0.31], [0.48, 0.49], [0.745, 0.75], [0.72, 0.73])
    cells["steps_to_threshold"] = [150, 160, 400, 420, 90, 95, 80, 85]
    cells["clevr_acc"] = [0.93, 0.93, 0.93, 0.93, 0.97, 0.97, 0.95, 0.95]
    base_eval = pd.DataFrame({"prompt": ["default", "r1v"], "clevr_acc": [0.1, 0.7], "clevr_digit_rate": [0.13, 0.98],
                              "superclevr_acc": [0.28, 0.68], "superclevr_digit_rate": [0.4, 0.97]})
    df = cl.claims_table(BASELINE, two_phase_curves(0.5), cells, base_eval, THRESHOLD, window=10)
    assert list(df.columns) == cl.COLUMNS
    assert list(df.index) == ["baseline_prompts", "sparse_signals", "two_phases", "injection_accelerates",
                              "injection_hurts_transfer", "strong_baseline_transfers", "prompt_matters_more",
                              "baseline_strength_insight"]
    assert (df["verdict"] == REPRODUCED).all(), df[["ours", "verdict"]]
    assert df["rule"].str.len().min() > 40 and df["blog"].str.len().min() > 10
    md = cl.claims_markdown(df)
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(df)
    assert "8 reproduced, 0 not reproduced, 0 inconclusive" in md


def test_claims_table_without_data():
    empty = pd.DataFrame()
    df = cl.claims_table(empty, empty, empty, empty, THRESHOLD, window=10)
    assert (df["verdict"] == INCONCLUSIVE).all()
