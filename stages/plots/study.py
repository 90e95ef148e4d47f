"""The study's figures: the speed-vs-transfer map, the cross-domain format lag, the training curves.

Nothing here computes a result: the points, intervals and the Pareto front come from :mod:`stages.analysis.study`
through the report's :class:`stages.study_report.Study`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from matplotlib.ticker import PercentFormatter

from stages.analysis import study as st
from stages.analysis.blog_numbers import BLOG
from stages.analysis.curves import rolling_mean
from stages.plots.common import COLORS, DIGIT_COLOR, plt, save

if TYPE_CHECKING:
    from stages.study_report import Study


def _colors(names: list[str]) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab20")
    return {n: cmap(i % 20) for i, n in enumerate(names)}


def speed_transfer_map(s: Study, window: int, out_path: Path) -> Path:
    """x: steps to 90% CLEVR accuracy (mean, seed range); y: SuperCLEVR accuracy (mean, 95% interval)."""
    names = list(s.results)
    colors = _colors(names)
    budget = max(r.budget for r in s.results.values())
    fig, (ax, blog_ax) = plt.subplots(1, 2, figsize=(12.5, 6), gridspec_kw={"width_ratios": [4, 1]})
    points = {}
    for n in names:
        r = s.results[n]
        mean, lo, hi = st.speed_summary(r.steps)
        never = math.isinf(hi)
        x = budget if math.isinf(mean) else mean
        xlo, xhi = (budget if math.isinf(lo) else lo), (budget if never else hi)
        y = s.level(n)
        points[n] = (mean, y.value)
        ax.errorbar([x], [y.value], xerr=[[x - xlo], [xhi - x]], yerr=[[y.value - y.lo], [y.hi - y.value]],
                    fmt="s" if never else "o", color=colors[n], ms=7, capsize=3, lw=1.2,
                    mfc="white" if never else colors[n])
        ax.annotate(n, (x, y.value), xytext=(5, 5), textcoords="offset points", fontsize=8, color=colors[n])
    front = st.pareto_front(points)
    fx = [budget if math.isinf(points[n][0]) else points[n][0] for n in front]
    ax.plot(fx, [points[n][1] for n in front], "--", color="#444444", lw=1, zorder=0, label="Pareto front (means)")
    ax.axvline(budget, color="#bbbbbb", lw=0.8, ls=":")
    ax.set_xlabel(f"steps to 90% CLEVR accuracy (rolling {window} steps): mean, seed range")
    ax.set_ylabel("SuperCLEVR-mini accuracy: mean, 95% interval")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_title(f"ours: {len(names)} configurations x {len(next(iter(s.results.values())).seeds)} seeds "
                 f"(default prompt, {budget} steps)", fontsize=10)
    ax.plot([], [], "o", color="#555555", label="every seed reached 90%")
    ax.plot([], [], "s", color="#555555", mfc="white", label="a seed never did (drawn at the budget)")
    ax.legend(fontsize=7, loc="best")
    for arm, marker in (("inject", "o"), ("none", "s")):
        b = BLOG.arms[("default", arm)]
        blog_ax.scatter([b.steps_to_90.value], [b.superclevr_acc.value], marker=marker, s=60, color=COLORS[arm],
                        label={"inject": "injection", "none": "no injection"}[arm])
        blog_ax.annotate(f"{b.steps_to_90.text} / {b.superclevr_acc.text}", (b.steps_to_90.value,
                                                                              b.superclevr_acc.value),
                         xytext=(4, 6), textcoords="offset points", fontsize=8)
    blog_ax.set_xlim(0, 2000)
    blog_ax.set_ylim(0.2, 0.6)
    blog_ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    blog_ax.set_title("blog (1 seed, 2000-step budget)", fontsize=10)
    blog_ax.set_xlabel("steps to 90%")
    blog_ax.legend(fontsize=7, loc="lower right")
    return save(fig, out_path)


def _mean_curve(frames: list[pd.DataFrame], column: str, window: int) -> pd.Series:
    rolled = [pd.Series(rolling_mean(f[column].tolist(), window), index=f.index + 1) for f in frames]
    return pd.concat(rolled, axis=1).mean(axis=1)


def format_lag(s: Study, curves: dict[str, list[pd.DataFrame]], names: list[str], window: int,
               out_path: Path) -> Path:
    """Per configuration: CLEVR digit rate of training (rolling) and the SuperCLEVR probe's digit rate."""
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=True)
    for ax, n in zip(axes.flat, names, strict=False):
        frames = curves[n]
        ax.plot(_mean_curve(frames, "digit_rate", window), color=DIGIT_COLOR, lw=1.5, label="CLEVR (training)")
        probes = [f["superclevr_digit_rate"].dropna() for f in frames if "superclevr_digit_rate" in f]
        if probes:
            probe = pd.concat(probes, axis=1).mean(axis=1)
            ax.plot(probe.index + 1, probe.values, "o", ms=3, color="#ff7f00", label="SuperCLEVR probe")
            ax.plot(probe.index + 1, rolling_mean(probe.tolist(), 3), "-", lw=1, color="#ff7f00", alpha=0.6)
        mean = st.lag_summary([lag for *_, lag in s.results[n].lags])[0]
        lag = "n/a" if math.isnan(mean) else "never (a seed's probe)" if math.isinf(mean) else f"{mean:+.0f} steps"
        ax.set_title(f"{n}: mean lag {lag}", fontsize=9)
        ax.axhline(0.9, color="#bbbbbb", lw=0.8, ls=":")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("step")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("digit (format) rate")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Cross-domain format lag: mean over seeds", fontsize=11)
    fig.tight_layout()
    return save(fig, out_path)


def accuracy_curves(s: Study, curves: dict[str, list[pd.DataFrame]], window: int, out_path: Path) -> Path:
    """Rolling training accuracy of every configuration (mean over seeds), and its SuperCLEVR probe accuracy."""
    names = list(s.results)
    colors = _colors(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for n in names:
        left.plot(_mean_curve(curves[n], "accuracy", window), color=colors[n], lw=1.2, label=n)
        probes = [f["superclevr_accuracy"].dropna() for f in curves[n] if "superclevr_accuracy" in f]
        if probes:
            probe = pd.concat(probes, axis=1).mean(axis=1)
            right.plot(probe.index + 1, rolling_mean(probe.tolist(), 3), color=colors[n], lw=1.2, label=n)
    left.axhline(0.9, color="#bbbbbb", lw=0.8, ls=":")
    left.set_title(f"CLEVR training accuracy (rolling {window} steps), mean over seeds", fontsize=10)
    right.set_title("SuperCLEVR probe accuracy (rolling 3 probes), mean over seeds", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.05)
    left.set_ylabel("accuracy")
    right.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    return save(fig, out_path)
