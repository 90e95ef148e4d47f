"""Claims: verdicts follow their stated rules on synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stages.analysis import claims as cl
from stages.analysis import curves as curve_math
from stages.analysis.claims import INCONCLUSIVE, NOT_REPRODUCED, REPRODUCED

THRESHOLD = 0.9


def cells_frame(values: dict[tuple[str, str], list[float]], column: str, **fixed) -> pd.DataFrame:
    """One row per (prompt, arm, seed) with ``column`` set from ``values``."""
    rows = []
    for (prompt, arm), vals in values.items():
        for seed, v in enumerate(vals):
            row = {"prompt": prompt, "arm": arm, "strategy": "stochastic" if arm == "inject" else "none",
                   "seed": seed, "steps": 400, "steps_to_threshold": math.nan, "clevr_acc": 0.5,
                   "superclevr_acc": math.nan, "train_seconds": 100.0}
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
    ([100], [300], False, REPRODUCED),
    ([300], [100], False, NOT_REPRODUCED),
    ([100], [100], False, INCONCLUSIVE),
    ([100, 120], [300, 320], False, REPRODUCED),
    ([100, 320], [300, 330], False, INCONCLUSIVE),  # ranges overlap
    ([300, 320], [100, 120], False, NOT_REPRODUCED),
    ([], [100], False, INCONCLUSIVE),
    ([100], [math.nan], True, REPRODUCED),  # "not reached" is +inf
    ([math.nan], [100], True, NOT_REPRODUCED),
    ([math.nan], [math.nan], True, INCONCLUSIVE),
    ([math.nan], [100], False, INCONCLUSIVE),  # not censored: NaN dropped -> missing
])
def test_compare(low, high, censored, expected):
    assert cl.compare(np.array(low, float), np.array(high, float), censored=censored).verdict == expected


# --- injection accelerates ----------------------------------------------------------------------


def test_injection_clearly_faster_is_reproduced():
    row = cl.claim_injection_accelerates(steps_cells([150], [400]), THRESHOLD)
    assert row["verdict"] == REPRODUCED
    assert "(1 seed)" in row["ours"] and "2.67x" in row["ours"]
    assert "~600" in row["blog"] and "~1,600" in row["blog"]
    row2 = cl.claim_injection_accelerates(steps_cells([150, 170], [380, 420]), THRESHOLD)
    assert row2["verdict"] == REPRODUCED and "n=2" in row2["ours"]
    assert "do not overlap" in row2["rule"]


def test_injection_overlapping_seeds_is_inconclusive():
    row = cl.claim_injection_accelerates(steps_cells([150, 400], [300, 420]), THRESHOLD)
    assert row["verdict"] == INCONCLUSIVE


def test_injection_reversed_is_not_reproduced():
    assert cl.claim_injection_accelerates(steps_cells([400], [150]), THRESHOLD)["verdict"] == NOT_REPRODUCED
    assert cl.claim_injection_accelerates(steps_cells([400, 420], [150, 170]), THRESHOLD)["verdict"] == NOT_REPRODUCED


def test_injection_not_reached_counts_as_slower():
    row = cl.claim_injection_accelerates(steps_cells([150], [math.nan]), THRESHOLD)
    assert row["verdict"] == REPRODUCED and "not reached" in row["ours"]
    assert cl.claim_injection_accelerates(steps_cells([], []), THRESHOLD)["verdict"] == INCONCLUSIVE


# --- transfer claims -----------------------------------------------------------------------------


def test_transfer_claims_blog_like():
    cells = transfer_cells([0.30], [0.48], [0.745], [0.72])
    assert cl.claim_injection_hurts_transfer(cells)["verdict"] == REPRODUCED
    assert cl.claim_strong_baseline_transfers(cells)["verdict"] == REPRODUCED
    assert cl.claim_prompt_matters_more(cells)["verdict"] == REPRODUCED
    assert cl.claim_baseline_strength(cells)["verdict"] == REPRODUCED
    assert "-18.0 pp" in cl.claim_injection_hurts_transfer(cells)["ours"]


def test_transfer_claims_reversed():
    cells = transfer_cells([0.50], [0.30], [0.40], [0.75])  # injection helps weak, hurts strong a lot
    assert cl.claim_injection_hurts_transfer(cells)["verdict"] == NOT_REPRODUCED
    assert cl.claim_strong_baseline_transfers(cells)["verdict"] == NOT_REPRODUCED
    assert cl.claim_baseline_strength(cells)["verdict"] == NOT_REPRODUCED
    same_prompt = transfer_cells([0.30], [0.60], [0.35], [0.65])  # prompt effect 5 pp < injection effect 30 pp
    assert cl.claim_prompt_matters_more(same_prompt)["verdict"] == NOT_REPRODUCED


def test_transfer_claims_seeds():
    clear = transfer_cells([0.30, 0.32], [0.47, 0.50], [0.74, 0.75], [0.71, 0.73])
    assert cl.claim_injection_hurts_transfer(clear)["verdict"] == REPRODUCED
    assert cl.claim_strong_baseline_transfers(clear)["verdict"] == REPRODUCED
    assert cl.claim_baseline_strength(clear)["verdict"] == REPRODUCED
    noisy = transfer_cells([0.30, 0.50], [0.40, 0.48], [0.68, 0.75], [0.71, 0.73])
    assert cl.claim_injection_hurts_transfer(noisy)["verdict"] == INCONCLUSIVE
    assert cl.claim_strong_baseline_transfers(noisy)["verdict"] == INCONCLUSIVE  # one inject seed <= 70%
    # effects 3 pp (weak) vs 0 pp (strong) differ by less than the 20 pp seed range
    assert cl.claim_baseline_strength(noisy)["verdict"] == INCONCLUSIVE


def test_transfer_claims_missing_prompt():
    cells = transfer_cells([0.30], [0.48], [], [])
    assert cl.claim_injection_hurts_transfer(cells)["verdict"] == REPRODUCED
    for fn in (cl.claim_strong_baseline_transfers, cl.claim_prompt_matters_more, cl.claim_baseline_strength):
        assert fn(cells)["verdict"] == INCONCLUSIVE


# --- baseline, sparse signals, two phases ---------------------------------------------------------


BASELINE = pd.DataFrame({"prompt": ["default", "r1v"], "digit_rate": [0.13, 0.98], "accuracy": [0.1, 0.7],
                         "accuracy_given_digit": [0.77, 0.71], "n": [500, 500]})


def test_baseline_and_sparse_signals():
    assert cl.claim_baseline(BASELINE)["verdict"] == REPRODUCED
    weak_r1v = BASELINE.assign(digit_rate=[0.13, 0.5])
    assert cl.claim_baseline(weak_r1v)["verdict"] == NOT_REPRODUCED
    assert cl.claim_baseline(BASELINE.iloc[:1])["verdict"] == INCONCLUSIVE
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
    cells = pd.concat([transfer_cells([0.30], [0.48], [0.745], [0.72])], ignore_index=True)
    cells["steps_to_threshold"] = [150, 400, 90, 80]
    cells["clevr_acc"] = [0.93, 0.93, 0.97, 0.95]
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
