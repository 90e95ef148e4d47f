"""95% intervals: Wilson on hand-computed cases, the hierarchical bootstrap's pairing and seed resampling, and the
estimates the report takes from its frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stages.analysis import estimates as est
from stages.analysis import intervals as iv

# z = 1.959964, z^2 = 3.841459. Wilson: center = (p + z^2/2n) / (1 + z^2/n),
# half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2).
# 0/10: center = 0.1920730/1.3841459 = 0.138767, half = 1.959964/1.3841459 * sqrt(0 + 0.00960365) = 0.138767
#       -> [0, 0.277533]  (= 0.3841459 / 1.3841459)
# 5/10: center 0.5, half = 1.416010 * sqrt(0.025 + 0.00960365) = 1.416010 * 0.186021 = 0.263407
#       -> [0.236593, 0.763407]
# 10/10: the mirror of 0/10 -> [0.722467, 1]


@pytest.mark.parametrize("k, n, lo, hi", [(0, 10, 0.0, 0.277533), (5, 10, 0.236593, 0.763407),
                                          (10, 10, 0.722467, 1.0)])
def test_wilson_by_hand(k, n, lo, hi):
    got = iv.wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-6)


def test_wilson_without_trials():
    assert all(math.isnan(x) for x in iv.wilson_interval(0, 0))
    assert all(math.isnan(x) for x in iv.wilson_interval(3, math.nan))
    assert all(math.isnan(x) for x in iv.wilson_interval(11, 10))  # inconsistent input: no interval


def test_percentile_interval():
    # 1001 evenly spaced replicates 0, 0.001, ..., 1: the 2.5% and 97.5% quantiles are 0.025 and 0.975
    assert iv.percentile_interval(np.arange(1001) / 1000) == pytest.approx((0.025, 0.975))
    assert iv.percentile_interval(np.array([0.5, np.nan, 0.5])) == (0.5, 0.5)
    assert all(math.isnan(x) for x in iv.percentile_interval(np.array([])))


def test_identical_groups_differ_by_exactly_zero():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, 300) / 4  # per-question accuracy, k = 4
    one = iv.hierarchical_bootstrap({"x": [a], "y": [a.copy()]}, n_boot=500)
    assert iv.percentile_interval(iv.difference(one, "x", "y")) == (0.0, 0.0)
    # several seeds, all identical: the seed draws differ per group, the values do not
    many = iv.hierarchical_bootstrap({"x": [a, a, a], "y": [a, a]}, n_boot=500)
    assert iv.percentile_interval(iv.difference(many, "x", "y")) == pytest.approx((0.0, 0.0), abs=1e-12)


def test_one_seed_all_right_is_one():
    reps = iv.hierarchical_bootstrap({"x": [np.ones(50)]}, n_boot=200)
    assert iv.percentile_interval(reps["x"]) == (1.0, 1.0)
    assert iv.percentile_interval(iv.unpaired_bootstrap({"x": [(1.0, 50)]}, n_boot=200)["x"]) == (1.0, 1.0)


def test_deterministic_under_the_seed():
    rng = np.random.default_rng(0)
    groups = {"a": [rng.random(100), rng.random(100)], "b": [rng.random(100)]}
    first = iv.hierarchical_bootstrap(groups, n_boot=300, seed=7)
    again = iv.hierarchical_bootstrap(groups, n_boot=300, seed=7)
    other = iv.hierarchical_bootstrap(groups, n_boot=300, seed=8)
    assert all(np.array_equal(first[k], again[k]) for k in groups)
    assert not np.array_equal(first["a"], other["a"])
    # a group's replicates do not depend on which other groups share the call
    alone = iv.hierarchical_bootstrap({"a": groups["a"]}, n_boot=300, seed=7)
    assert np.array_equal(alone["a"], first["a"])


def test_a_clear_difference_excludes_zero():
    rng = np.random.default_rng(1)
    good = (rng.random(200) < 0.9).astype(float)
    bad = (rng.random(200) < 0.5).astype(float)
    reps = iv.hierarchical_bootstrap({"good": [good], "bad": [bad]})
    lo, hi = iv.percentile_interval(iv.difference(reps, "good", "bad"))
    assert 0 < lo < hi


def test_pairing_by_question_narrows_a_small_difference():
    """b = a with 10 of 300 right answers turned wrong: every paired replicate has b <= a, so the paired interval
    lies below 0; the same two accuracies known only as (rate, n) cannot be paired and straddle 0."""
    rng = np.random.default_rng(2)
    a = (rng.random(300) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a)[:10]] = 0.0
    paired = iv.percentile_interval(iv.difference(iv.hierarchical_bootstrap({"a": [a], "b": [b]}), "b", "a"))
    assert paired[1] <= 0 and paired[0] < 0
    unpaired_reps = iv.unpaired_bootstrap({"a": [(a.mean(), 300)], "b": [(b.mean(), 300)]})
    lo, hi = iv.percentile_interval(iv.difference(unpaired_reps, "b", "a"))
    assert lo < 0 < hi


def test_seeds_are_resampled():
    """Constant arrays (no question noise) with seed means 0.2 and 0.8: replicate means are the means of two seeds
    drawn with replacement, 0.2, 0.5 or 0.8."""
    reps = iv.hierarchical_bootstrap({"x": [np.full(40, 0.2), np.full(40, 0.8)]}, n_boot=1000)["x"]
    assert set(np.round(reps, 9)) == {0.2, 0.5, 0.8}
    assert iv.percentile_interval(reps) == pytest.approx((0.2, 0.8))


def test_unequal_questions_are_refused():
    with pytest.raises(ValueError):
        iv.hierarchical_bootstrap({"x": [np.ones(10)], "y": [np.ones(11)]})


def test_statistics_of_several_groups_by_hand():
    m = {"default.inject": 0.30, "default.none": 0.48, "r1v.inject": 0.745, "r1v.none": 0.72}
    # prompt effect |0.7325 - 0.39| = 0.3425; injection effect (0.18 + 0.025) / 2 = 0.1025
    assert iv.prompt_minus_injection(m) == pytest.approx(0.24)
    # |-0.18| - |+0.025|
    assert iv.effect_gap(m) == pytest.approx(0.155)
    assert iv.difference(m, "default.inject", "default.none") == pytest.approx(-0.18)


# --- estimates from the report's frames ---------------------------------------------------------------


def pq(correct, k: int = 1) -> est.PerQuestion:
    correct = np.asarray(correct, dtype=float)
    return est.PerQuestion(tuple(range(correct.size)), k, correct, np.full(correct.size, float(k)))


def eval_row(prompt, arm, seed, correct=None, acc=None, n=None, k=1, greedy=math.nan, greedy_n=math.nan):
    row = {"prompt": prompt, "arm": arm, "seed": seed}
    if correct is not None:
        p = pq(correct, k)
        row.update({"superclevr_acc": float(np.mean(p.correct) / k), "superclevr_digit_rate": 1.0,
                    "superclevr_n": len(p.rows), "superclevr_pq": p})
    else:
        row.update({"superclevr_acc": acc, "superclevr_digit_rate": 1.0, "superclevr_n": n, "superclevr_pq": None})
    row.update({"superclevr_greedy_acc": greedy, "superclevr_greedy_n": greedy_n})
    return row


def test_eval_columns_old_and_new_metrics():
    old = est.eval_columns("clevr", {"accuracy": 0.5, "digit_rate": 0.9, "n": 200})
    assert old["clevr_pq"] is None and old["clevr_n"] == 200 and math.isnan(old["clevr_greedy_acc"])
    new = est.eval_columns("clevr", {"accuracy": 0.5, "digit_rate": 1.0, "n": 2,
                                     "per_question": {"rows": [0, 1], "samples": 2, "correct": [2, 0],
                                                      "digit": [2, 2]},
                                     "greedy": {"n": 2, "accuracy": 0.5, "digit_rate": 1.0,
                                                "accuracy_given_digit": 0.5}})
    assert new["clevr_pq"].rate("acc").tolist() == [1.0, 0.0] and new["clevr_greedy_acc"] == 0.5
    assert math.isnan(est.eval_columns("clevr", None)["clevr_acc"])


def test_role_estimate_wilson_without_per_question():
    cells = pd.DataFrame([eval_row("default", "inject", 0, acc=0.5, n=10)])
    e = est.role_estimate(cells, "default", "inject", "superclevr")
    assert (e.lo, e.hi) == pytest.approx((0.236593, 0.763407), abs=1e-6) and e.method == "Wilson"
    assert e.seeds == (0.5,) and e.n_seeds == 1
    no_n = pd.DataFrame([eval_row("default", "inject", 0, acc=0.5, n=math.nan)])
    assert not est.role_estimate(no_n, "default", "inject", "superclevr").has_interval
    assert not est.role_estimate(cells, "r1v", "inject", "superclevr").ran


def test_role_estimate_over_seeds_and_questions():
    rng = np.random.default_rng(4)
    cells = pd.DataFrame([eval_row("default", "inject", s, correct=rng.integers(0, 5, 100), k=4) for s in (0, 1)])
    e = est.role_estimate(cells, "default", "inject", "superclevr")
    assert e.method == est.PAIRED and len(e.seeds) == 2 and e.lo < e.value < e.hi
    assert e.value == pytest.approx(np.mean(e.seeds))
    greedy = pd.DataFrame([eval_row("default", "inject", 0, acc=0.5, n=10, greedy=0.5, greedy_n=10)])
    g = est.role_estimate(greedy, "default", "inject", "superclevr", "greedy_acc")
    assert (g.lo, g.hi) == pytest.approx((0.236593, 0.763407), abs=1e-6)


def test_injection_effect_paired_and_unpaired():
    rng = np.random.default_rng(5)
    none = (rng.random(300) < 0.5).astype(float)
    inject = none.copy()
    inject[np.flatnonzero(none)[:10]] = 0.0  # -3.3 pp, question by question
    cells = pd.DataFrame([eval_row("default", "inject", 0, correct=inject), eval_row("default", "none", 0, correct=none)])
    e = est.injection_effect(cells, "default")
    assert e.value == pytest.approx(-10 / 300) and e.method == est.PAIRED and e.hi <= 0
    old = pd.DataFrame([eval_row("default", "inject", 0, acc=inject.mean(), n=300),
                        eval_row("default", "none", 0, acc=none.mean(), n=300)])
    u = est.injection_effect(old, "default")
    assert u.method == est.UNPAIRED and u.lo < 0 < u.hi
    assert not est.injection_effect(cells.iloc[:1], "default").ran


def test_baseline_estimate_wilson():
    baseline = pd.DataFrame([{"prompt": "default", "digit_rate": 0.5, "accuracy": 0.25,
                              "accuracy_given_digit": 0.5, "n": 20}])
    d = est.baseline_estimate(baseline, "default", "digit_rate")
    assert (d.lo, d.hi) == pytest.approx(iv.wilson_interval(10, 20))
    agd = est.baseline_estimate(baseline, "default", "accuracy_given_digit")  # 5 right of 10 numbered
    assert (agd.lo, agd.hi) == pytest.approx((0.236593, 0.763407), abs=1e-6)
    assert not est.baseline_estimate(baseline, "r1v", "digit_rate").ran
