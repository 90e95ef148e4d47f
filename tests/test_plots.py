"""Every figure renders from small synthetic frames (1 seed, 2 seeds, a missing prompt)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages.analysis import curves as curve_math
from stages.analysis import dynamics
from stages.analysis.tables import arm_label
from stages.plots import curves as curve_plots
from stages.plots import render
from stages.plots.diagrams import plot_grpo_algorithm
from stages.plots.results import plot_injection_effect_summary, plot_results_table

THRESHOLD = 0.9
WINDOW = 8


def _logistic(step: np.ndarray, mid: float, scale: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(step - mid) / scale))


def synthetic_study(seeds=(0,), prompts=("default", "r1v"), steps: int = 240, questions: int = 32,
                    rng_seed: int = 0, strategy: str = "stochastic", window: int = WINDOW):
    """A realistic little study: two phases on the default prompt, injection faster, R1V strong from the start.

    Returns (baseline, curves, cells, base_eval) with the report's column contract; ``steps_to_threshold``
    computed as the train stage does (``curves.steps_to_reach`` over ``window``).
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
                reached = curve_math.steps_to_reach(accuracy.tolist(), THRESHOLD, window)
                cell_rows.append({
                    "prompt": prompt, "arm": arm, "strategy": strategy if arm == "inject" else "none",
                    "seed": seed, "steps": steps,
                    "steps_to_threshold": math.nan if reached is None else float(reached),
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
    paths = render.render_all(baseline, curves, cells, base_eval, THRESHOLD, tmp_path / name, window=WINDOW)
    assert set(paths) == set(render.FIGURE_FILES)
    for key, path in paths.items():
        assert path.name == render.FIGURE_FILES[key]
        _check_png(path)


def test_grpo_algorithm_other_group_size(tmp_path):
    _check_png(plot_grpo_algorithm(tmp_path / "g4.png", group_size=4))


def test_empty_frames_do_not_crash(tmp_path):
    empty = pd.DataFrame()
    out = render.render_all(empty, empty, empty, empty, THRESHOLD, tmp_path, window=20)
    for path in out.values():
        _check_png(path, min_bytes=5_000)


def test_not_reached_and_missing_arm(tmp_path):
    baseline, curves, cells, base_eval = synthetic_study(steps=80)
    cells = cells.copy()
    cells.loc[cells["arm"] == "none", "steps_to_threshold"] = math.nan
    cells = cells[~((cells["prompt"] == "r1v") & (cells["arm"] == "inject"))]
    curves = curves[~((curves["prompt"] == "r1v") & (curves["arm"] == "inject"))]
    for prompt in ("default", "r1v"):
        _check_png(curve_plots.plot_learning_curves(curves, cells, prompt, 0.8, tmp_path / f"lc_{prompt}.png",
                                                    window=WINDOW))
    _check_png(plot_results_table(cells, base_eval, tmp_path / "table.png"))
    _check_png(plot_injection_effect_summary(cells, base_eval, tmp_path / "effect.png"))


def test_run_shorter_than_the_window_renders(tmp_path):
    _, curves, cells, _ = synthetic_study(steps=6, prompts=("default",))
    _check_png(curve_plots.plot_format_vs_accuracy(curves, tmp_path / "fva.png", window=20), min_bytes=5_000)
    _check_png(curve_plots.plot_learning_curves(curves, cells, "default", THRESHOLD, tmp_path / "lc.png",
                                                window=20), min_bytes=5_000)


# --- one convention for "the rolling mean reaches a level" ------------------------------------------


def hand_curves(values_by_seed: dict[int, list[float]], prompt="default", arm="none", column="digit_rate",
                **other) -> pd.DataFrame:
    """Per-step curves (0-based ``step``) of one (prompt, arm), ``column`` set per seed, others constant."""
    frames = []
    for seed, values in values_by_seed.items():
        n = len(values)
        cols = {"digit_rate": np.ones(n), "accuracy": np.zeros(n), "mean_reward": np.zeros(n),
                "injected_frac": np.zeros(n), **other}
        cols[column] = np.asarray(values, dtype=float)
        frames.append(pd.DataFrame({"prompt": prompt, "arm": arm,
                                    "strategy": "stochastic" if arm == "inject" else "none", "seed": seed,
                                    "step": np.arange(n), **cols}))
    return pd.concat(frames, ignore_index=True)


def test_phase_boundary_agrees_with_steps_to_reach():
    digit = [0, 0, 1, 1, 1, 1]
    one = hand_curves({0: digit})
    assert curve_math.steps_to_reach(digit, 1.0, 2) == 4  # full window [1, 1] after 4 steps trained
    assert dynamics.phase_boundary(one, "default", "none", window=2, level=1.0) == 4
    assert dynamics.two_phase_stats(one, 2, level=1.0)["boundary"].tolist() == [4]
    # a lucky first step does not count: the window must be full
    assert dynamics.phase_boundary(hand_curves({0: [1, 0, 0, 0]}), "default", "none", window=2, level=1.0) != 1
    # several seeds: steps_to_reach of the seed-mean (= where the drawn mean curve reaches the level), not the
    # mean of per-seed boundaries (4 and 6 -> 5)
    two = hand_curves({0: digit, 1: [0, 0, 0, 0, 1, 1]})
    assert dynamics.two_phase_stats(two, 2, level=1.0)["boundary"].tolist() == [4, 6]
    assert dynamics.phase_boundary(two, "default", "none", window=2, level=1.0) == 6
    drawn = dynamics.mean_curve(dynamics.rolling_curves(two, 2), "digit_rate_roll")
    assert drawn.loc[drawn["mean"] >= 1.0, "steps_trained"].min() == 6


def test_phase_boundary_on_a_realistic_curve_is_the_metric():
    _, curves, _, _ = synthetic_study(steps=200, prompts=("default",))
    rows = curves[(curves.prompt == "default") & (curves.arm == "none")].sort_values("step")
    metric = curve_math.steps_to_reach(rows["digit_rate"].tolist(), 0.9, 10)  # the train stage's steps_to_digit90
    assert metric is not None
    assert dynamics.phase_boundary(curves, "default", "none", window=10) == metric


@pytest.fixture
def drawn(monkeypatch):
    """The figures of ``stages.plots.curves``, kept open instead of saved."""
    figs = []

    def keep(fig, out_path):
        figs.append(fig)
        return out_path

    monkeypatch.setattr(curve_plots, "save", keep)
    yield figs
    for fig in figs:
        plt.close(fig)


def _vlines(ax, ls="--") -> list[float]:
    """x of every dashed vertical line (axvline) on ``ax``."""
    out = []
    for line in ax.get_lines():
        x = np.asarray(line.get_xdata(), dtype=float)
        if x.size == 2 and x[0] == x[1] and line.get_linestyle() == ls:
            out.append(float(x[0]))
    return out


def _curve(ax, label: str) -> pd.Series:
    """The bold drawn curve labelled ``label``: y by x (steps trained)."""
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == label and ln.get_linewidth() == 2]
    return pd.Series(np.asarray(line.get_ydata(), float), index=np.asarray(line.get_xdata(), float))


def test_format_vs_accuracy_marker_is_the_phase_boundary(drawn, tmp_path):
    digit = [0.1] * 12 + [1.0] * 28
    curves = hand_curves({0: digit}, accuracy=np.linspace(0.05, 0.9, 40))
    curve_plots.plot_format_vs_accuracy(curves, tmp_path / "f.png", window=4)
    ax = drawn[0].axes[0]
    expected = curve_math.steps_to_reach(digit, 0.9, 4)
    assert expected == 16  # full window [1, 1, 1, 1] after 16 steps trained
    assert _vlines(ax) == [expected]
    digit_curve = _curve(ax, "digit (format) rate")
    assert digit_curve[expected] >= 0.9 > digit_curve[expected - 1]
    assert ax.get_xlabel() == "steps trained"


def test_learning_curve_markers_use_the_metric(drawn, tmp_path):
    acc = {"inject": [0.0] * 10 + [1.0] * 30, "none": [0.0] * 20 + [1.0] * 20}
    curves = pd.concat([hand_curves({0: acc[a]}, arm=a, column="accuracy") for a in acc], ignore_index=True)
    metric = {a: curve_math.steps_to_reach(v, THRESHOLD, 4) for a, v in acc.items()}  # what train writes
    assert metric == {"inject": 14, "none": 24}
    cells = pd.DataFrame([{"prompt": "default", "arm": a, "strategy": "stochastic" if a == "inject" else "none",
                           "seed": 0, "steps": 40, "steps_to_threshold": metric[a]} for a in acc])
    curve_plots.plot_learning_curves(curves, cells, "default", THRESHOLD, tmp_path / "lc.png", window=4)
    ax_acc = drawn[0].axes[0]
    assert sorted(_vlines(ax_acc)) == [14, 24]
    for arm, x in metric.items():  # each marker sits where its drawn rolling curve first reaches the threshold
        y = _curve(ax_acc, arm_label(arm, curves, "default"))
        assert y[x] >= THRESHOLD > y[x - 1]
    # the marker is the metric's value as given, not recomputed from the curves
    plt.close(drawn.pop())
    curve_plots.plot_learning_curves(curves, cells.assign(steps_to_threshold=[17, 31]), "default", THRESHOLD,
                                     tmp_path / "lc2.png", window=4)
    assert sorted(_vlines(drawn[0].axes[0])) == [17, 31]
