"""Every figure renders from small synthetic frames (1 seed, 2 seeds, a missing prompt)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages.analysis.tables import phase_boundary
from stages.plots import figures

THRESHOLD = 0.9


def _logistic(step: np.ndarray, mid: float, scale: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(step - mid) / scale))


def synthetic_study(seeds=(0,), prompts=("default", "r1v"), steps: int = 240, questions: int = 32,
                    rng_seed: int = 0, strategy: str = "stochastic"):
    """A realistic little study: two phases on the default prompt, injection faster, R1V strong from the start.

    Returns (baseline, curves, cells, base_eval) with the report's column contract.
    """
    rng = np.random.default_rng(rng_seed)
    step = np.arange(steps)
    curve_rows, cell_rows = [], []
    shapes = {  # (digit midpoint, digit scale, start digit, acc-given-digit midpoint, start agd, end agd)
        ("default", "none"): (0.40, 0.06, 0.14, 0.65, 0.55, 0.97),
        ("default", "inject"): (0.10, 0.03, 0.14, 0.25, 0.55, 0.97),
        ("r1v", "none"): (0.0, 0.01, 0.98, 0.30, 0.72, 0.97),
        ("r1v", "inject"): (0.0, 0.01, 0.98, 0.33, 0.72, 0.98),
    }
    transfer = {("default", "inject"): 0.30, ("default", "none"): 0.48, ("r1v", "inject"): 0.745,
                ("r1v", "none"): 0.72}
    for prompt in prompts:
        for arm in ("none", "inject"):
            dmid, dscale, d0, amid, a0, a1 = shapes[(prompt, arm)]
            for seed in seeds:
                jitter = 1 + 0.08 * (seed - np.mean(seeds))
                dig = d0 + (0.99 - d0) * _logistic(step, dmid * steps * jitter, dscale * steps)
                agd = a0 + (a1 - a0) * _logistic(step, amid * steps * jitter, 0.08 * steps)
                acc_p = dig * agd
                digit_rate = rng.binomial(questions, dig) / questions
                accuracy = np.minimum(rng.binomial(questions, acc_p) / questions, digit_rate)
                mean_reward = accuracy - (1 - digit_rate)
                inj = rng.uniform(0.4, 0.75, steps) if arm == "inject" else np.zeros(steps)
                curve_rows.append(pd.DataFrame({
                    "prompt": prompt, "arm": arm, "strategy": strategy if arm == "inject" else "none",
                    "seed": seed, "step": step, "digit_rate": digit_rate, "accuracy": accuracy,
                    "mean_reward": mean_reward, "injected_frac": inj}))
                roll = pd.Series(accuracy).rolling(12, min_periods=6).mean()
                hit = np.flatnonzero(roll.to_numpy() >= THRESHOLD)
                cell_rows.append({
                    "prompt": prompt, "arm": arm, "strategy": strategy if arm == "inject" else "none",
                    "seed": seed, "steps": steps,
                    "steps_to_threshold": float(hit[0]) if len(hit) else math.nan,
                    "train_seconds": steps * (1.6 + 0.05 * seed),
                    "clevr_acc": float(np.clip(a1 - 0.03 + 0.01 * seed, 0, 1)),
                    "clevr_digit_rate": 0.99,
                    "superclevr_acc": float(np.clip(transfer[(prompt, arm)] + 0.02 * (seed - np.mean(seeds)), 0, 1)),
                    "superclevr_digit_rate": 0.67 if prompt == "default" else 0.97,
                })
    base = {"default": (0.145, 0.14, 0.28, 0.40), "r1v": (0.99, 0.68, 0.68, 0.97)}
    baseline = pd.DataFrame([{"prompt": p, "digit_rate": base[p][0], "accuracy": base[p][1],
                              "accuracy_given_digit": base[p][1] / base[p][0], "n": 500} for p in prompts])
    base_eval = pd.DataFrame([{"prompt": p, "clevr_acc": base[p][1], "clevr_digit_rate": base[p][0],
                               "superclevr_acc": base[p][2], "superclevr_digit_rate": base[p][3]} for p in prompts])
    curves = pd.concat(curve_rows, ignore_index=True)
    return baseline, curves, pd.DataFrame(cell_rows), base_eval


def _check_png(path, min_bytes: int = 10_000) -> None:
    assert path.exists()
    assert path.stat().st_size > min_bytes
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        assert w > 400 and h > 250


SCENARIOS = {
    "one_seed": dict(seeds=(0,)),
    "two_seeds": dict(seeds=(0, 1)),
    "no_r1v": dict(seeds=(0,), prompts=("default",)),
}


@pytest.fixture(scope="module", params=list(SCENARIOS))
def study(request):
    return request.param, synthetic_study(steps=120, **SCENARIOS[request.param])


def test_render_all_writes_every_figure(study, tmp_path):
    name, (baseline, curves, cells, base_eval) = study
    paths = figures.render_all(baseline, curves, cells, base_eval, THRESHOLD, tmp_path / name, window=8)
    assert set(paths) == set(figures.FIGURE_FILES)
    for key, path in paths.items():
        assert path.name == figures.FIGURE_FILES[key]
        _check_png(path)


def test_grpo_algorithm_other_group_size(tmp_path):
    _check_png(figures.plot_grpo_algorithm(tmp_path / "g4.png", group_size=4))


def test_empty_frames_do_not_crash(tmp_path):
    empty = pd.DataFrame()
    out = figures.render_all(empty, empty, empty, empty, THRESHOLD, tmp_path)
    for path in out.values():
        _check_png(path, min_bytes=5_000)


def test_not_reached_and_missing_arm(tmp_path):
    baseline, curves, cells, base_eval = synthetic_study(steps=80)
    cells = cells.copy()
    cells.loc[cells["arm"] == "none", "steps_to_threshold"] = math.nan
    cells = cells[~((cells["prompt"] == "r1v") & (cells["arm"] == "inject"))]
    curves = curves[~((curves["prompt"] == "r1v") & (curves["arm"] == "inject"))]
    for prompt in ("default", "r1v"):
        _check_png(figures.plot_learning_curves(curves, cells, prompt, 0.8, tmp_path / f"lc_{prompt}.png"))
    _check_png(figures.plot_results_table(cells, base_eval, tmp_path / "table.png"))
    _check_png(figures.plot_injection_effect_summary(cells, base_eval, tmp_path / "effect.png"))


def test_format_vs_accuracy_boundary_is_where_digit_rate_reaches_90():
    _, curves, _, _ = synthetic_study(steps=200, prompts=("default",))
    b = phase_boundary(curves, "default", "none", window=10)
    rows = curves[(curves.prompt == "default") & (curves.arm == "none")].sort_values("step")
    roll = rows["digit_rate"].rolling(10, min_periods=5).mean().to_numpy()
    assert np.isfinite(b)
    before = roll[: int(b)]
    assert roll[int(b)] >= 0.9
    assert (before[~np.isnan(before)] < 0.9).all()


def test_injection_effect_range():
    cells = pd.DataFrame({"prompt": "default", "arm": ["inject", "inject", "none", "none"],
                          "strategy": ["stochastic", "stochastic", "none", "none"], "seed": [0, 1, 0, 1],
                          "superclevr_acc": [0.30, 0.34, 0.46, 0.50]})
    d, lo, hi = figures.injection_effect(cells, "default")
    assert d == pytest.approx(-0.16)
    assert lo == pytest.approx(0.30 - 0.50)
    assert hi == pytest.approx(0.34 - 0.46)
    assert all(math.isnan(v) for v in figures.injection_effect(cells, "r1v"))
