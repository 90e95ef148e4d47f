"""Curve figures: format (digit rate) vs accuracy with its phase boundary, and the learning curves.

The x axis is *steps trained* (1-based, the convention of ``stages.analysis.curves``), so markers taken
from the train metrics (``steps_to_threshold``) sit where the drawn rolling curves reach the threshold.
Curves are the mean of the per-seed rolling means (``stages.analysis.dynamics``) with a min-max band;
the first ``window - 1`` steps, where the rolling mean has fewer than ``window`` values, are drawn thin.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from stages.analysis import dynamics
from stages.analysis.blog_numbers import BLOG, PROMPT_LABELS
from stages.analysis.tables import (
    ARMS,
    arm_label,
    blog_steps_text,
    cell_values,
    fmt_steps,
    prompt_label,
    select,
    speedup,
    summarize,
)
from stages.plots.common import COLORS, DIGIT_COLOR, note, pct_axis, save, seed_text

X_LABEL = "steps trained"


def draw_series(ax, rolled: pd.DataFrame, raw_col: str, color: str, label: str, ls="-") -> pd.DataFrame:
    """Raw per-seed values faintly, mean of per-seed rolling means boldly (thin before a full window),
    min-max band over seeds. Returns the drawn mean curve."""
    for _, seed_df in rolled.groupby("seed"):
        ax.plot(seed_df["steps_trained"], seed_df[raw_col], color=color, alpha=0.15, lw=0.7)
    mc = dynamics.mean_curve(rolled, f"{raw_col}_roll")
    if mc.empty:
        return mc
    if int(mc["n"].max()) > 1:
        ax.fill_between(mc["steps_trained"], mc["lo"], mc["hi"], color=color, alpha=0.15, lw=0)
    full = mc["full"].to_numpy(dtype=bool)
    start = int(np.argmax(full)) if full.any() else len(mc)
    if start > 0:  # up to and including the first full-window point, so the two pieces join
        part = mc.iloc[: start + 1]
        ax.plot(part["steps_trained"], part["mean"], color=color, lw=0.9, alpha=0.7, ls=ls,
                label=None if full.any() else label)
    if full.any():
        ax.plot(mc["steps_trained"][full], mc["mean"][full], color=color, lw=2, label=label, ls=ls)
    return mc


# ---------------------------------------------------------------------------
# format vs accuracy
# ---------------------------------------------------------------------------


def plot_format_vs_accuracy(curves: pd.DataFrame, out_path: Path, prompt: str = "default", arm: str = "none", *,
                            window: int, level: float = 0.9) -> Path:
    """Digit rate and accuracy vs steps trained; the phase boundary is ``dynamics.phase_boundary``."""
    rows = select(curves, prompt, arm)
    fig, ax = plt.subplots(figsize=(11, 5.2))
    title = f"Two phases: format learning, then accuracy learning\n{prompt_label(prompt)}, {arm_label(arm, rows)}"
    ph = dynamics.format_phases(curves, prompt, arm, window, level)
    if ph is None:
        note(ax, f"not run: no training curves for prompt={prompt!r}, arm={arm!r}")
    else:
        draw_series(ax, ph.rolled, "digit_rate", DIGIT_COLOR, "digit (format) rate")
        draw_series(ax, ph.rolled, "accuracy", COLORS.get(arm, "black"), "accuracy")
        b, end = ph.boundary, ph.end
        ax.axhline(level, color=DIGIT_COLOR, ls=":", lw=1, label=f"digit rate {level:.0%}")
        if np.isfinite(b):
            ax.axvspan(0, b, color=DIGIT_COLOR, alpha=0.06, lw=0)
            ax.axvline(b, color="black", ls="--", lw=1.2,
                       label=f"phase boundary: {b:.0f} steps trained (rolling digit rate >= {level:.0%})")
            if np.isfinite(ph.acc_at_boundary):
                a = ph.acc_at_boundary
                ax.plot([b], [a], "o", color=COLORS.get(arm, "black"), ms=7, zorder=5)
                ax.annotate(f"accuracy at boundary: {a:.0%}\nfinal (rolling): {ph.acc_final:.0%}",
                            (b, a), xytext=(12, -28), textcoords="offset points", fontsize=9,
                            arrowprops=dict(arrowstyle="-", color="#777777"))
            ax.text(b / 2, 1.06, "phase 1: format", ha="center", fontsize=10, color=DIGIT_COLOR, weight="bold")
            ax.text((b + end) / 2, 1.06, "phase 2: accuracy", ha="center", fontsize=10,
                    color=COLORS.get(arm, "black"), weight="bold")
        else:
            ax.text(0.5, 1.06, f"rolling digit rate never reached {level:.0%}: no phase boundary",
                    transform=ax.get_xaxis_transform(), ha="center", fontsize=10, style="italic")
        blog_b = BLOG.format_phase_end_step.value
        if prompt == "default" and arm == "none" and end >= blog_b:
            ax.axvline(blog_b, color=COLORS["base"], ls="-.", lw=1.2,
                       label=f"blog's phase boundary ({BLOG.format_phase_end_step.text})")
        ax.legend(loc="lower right", fontsize=9, framealpha=0.9)
        ax.set_xlim(0, max(end, 1))
    pct_axis(ax, top=1.12)
    ax.set_xlabel(X_LABEL)
    ax.set_ylabel("rate on the step's policy samples (%)")
    ax.set_title(title, fontsize=11.5, weight="bold", pad=22)
    ax.grid(alpha=0.3)
    ours_text = ("ours: not run" if ph is None else
                 f"ours: {seed_text(rows)}, rolling mean over {window} steps (faint: raw per step; thin: "
                 f"fewer than {window} steps trained)")
    fig.text(0.5, -0.03, f"{ours_text}. "
             f"Blog ({PROMPT_LABELS.get('default')} prompt, no injection): phase 1 = steps 0-"
             f"{BLOG.format_phase_end_step.value:.0f}, digit rate 14% -> ~100%; phase 2: accuracy "
             f"{BLOG.phase2_accuracy.text}.", ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return save(fig, out_path)


# ---------------------------------------------------------------------------
# learning curves
# ---------------------------------------------------------------------------


def plot_learning_curves(curves: pd.DataFrame, cells: pd.DataFrame, prompt: str, threshold: float, out_path: Path,
                         window: int) -> Path:
    """Accuracy, digit rate and mean reward vs steps trained for injection vs none; dashed verticals at the
    train metric ``steps_to_threshold`` (mean over seeds, band min-max)."""
    rows = select(curves, prompt)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.4), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    ax_acc, ax_dig, ax_rew = axes
    thr_label = f"{threshold:.0%}"
    if rows.empty:
        for ax in axes:
            note(ax, f"not run: no training curves\nfor prompt {prompt!r}")
    else:
        rolled = dynamics.rolling_curves(rows, window,
                                         columns=("digit_rate", "accuracy", "mean_reward", "injected_frac"))
        handles = []
        for arm in ARMS:
            r = select(rolled, arm=arm)
            label = arm_label(arm, rows, prompt)
            if r.empty:
                handles.append(Line2D([], [], color=COLORS[arm], lw=2, label=f"{label}: not run"))
                continue
            draw_series(ax_acc, r, "accuracy", COLORS[arm], label)
            draw_series(ax_dig, r, "digit_rate", COLORS[arm], label)
            draw_series(ax_rew, r, "mean_reward", COLORS[arm], label)
            handles.append(Line2D([], [], color=COLORS[arm], lw=2, label=label))
            if arm == "inject" and "injected_frac" in r and r["injected_frac"].fillna(0).max() > 0:
                mc = dynamics.mean_curve(r, "injected_frac_roll")
                ax_dig.plot(mc["steps_trained"], mc["mean"], color=COLORS[arm], ls=":", lw=1.5,
                            label="injected fraction of samples (inject arm)")
            steps = cell_values(cells, prompt, arm, "steps_to_threshold")
            s = summarize(steps)
            if not s.empty:
                ax_acc.axvline(s.mean, color=COLORS[arm], ls="--", lw=1.3)
                if s.n > 1:
                    ax_acc.axvspan(s.lo, s.hi, color=COLORS[arm], alpha=0.08, lw=0)
            handles.append(Line2D([], [], color=COLORS[arm], ls="--", lw=1.3,
                                  label=f"  steps to {thr_label}: {fmt_steps(steps)}"))
        ax_acc.axhline(threshold, color="black", ls=":", lw=1.2)
        sp = speedup(cells, prompt)
        if np.isfinite(sp):
            handles.append(Line2D([], [], color="none", label=f"ours speed-up (none / injection): {sp:.2f}x"))
        handles.append(Line2D([], [], color="black", ls=":", lw=1.2, label=f"{thr_label} line (threshold)"))
        ax_acc.legend(handles=handles, loc="lower right", fontsize=8.5, framealpha=0.92)
        ax_dig.legend(loc="lower right", fontsize=8.5)
        ax_rew.legend(loc="lower right", fontsize=8.5)
        for ax in axes:
            ax.set_xlim(0, max(float(rolled["steps_trained"].max()), 1))
    for ax, name in ((ax_acc, "accuracy"), (ax_dig, "digit (format) rate")):
        pct_axis(ax, top=1.05)
        ax.set_ylabel(f"{name} on policy samples (%)")
    ax_rew.set_ylim(-1.05, 1.05)
    ax_rew.set_ylabel("mean reward (-1 no number, 0 wrong, +1 correct)")
    for ax, t in ((ax_acc, "CLEVR training accuracy"), (ax_dig, "digit (format) rate"), (ax_rew, "mean reward")):
        ax.set_xlabel(X_LABEL)
        ax.set_title(t)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves, {prompt_label(prompt)}: injection (red) vs no injection (blue)", fontsize=12.5,
                 weight="bold", y=1.03)
    blog_line = blog_steps_text(prompt)
    fig.text(0.5, 0.955, blog_line, ha="center", va="center", fontsize=9.5, color="#444444",
             bbox=dict(boxstyle="round,pad=0.3", fc="#f7f7f7", ec="#cccccc"))
    if not rows.empty:
        fig.text(0.5, -0.03, f"ours: {seed_text(rows)}, rolling mean over {window} steps (faint: raw per step; thin: "
                 f"fewer than {window} steps trained; band: min-max over seeds); dashed verticals: steps to "
                 "threshold from the training cells (mean)",
                 ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout(rect=(0, 0, 1, 0.91 + 0.03 * (1 - blog_line.count("\n"))))
    return save(fig, out_path)
