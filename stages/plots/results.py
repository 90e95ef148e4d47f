"""Result figures: baseline comparison, transfer, injection effect, the results table and the summary bar.

Each figure shows our value beside the blog's wherever the blog has one; every number drawn comes
from ``stages.analysis.tables`` (seed summaries, injection effect, which arm transfers better).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from stages.analysis.blog_numbers import BASELINE_STRENGTH, BLOG, PROMPT_LABELS
from stages.analysis.tables import (
    ARMS,
    arm_label,
    base_value,
    better_arm,
    cell_values,
    fmt_pct,
    fmt_steps,
    injection_effect,
    pct,
    prompt_label,
    prompts_in,
    select,
    summarize,
)
from stages.plots.common import (
    BAD,
    COLORS,
    FOOTNOTE,
    GOOD,
    HATCH,
    LIGHT,
    arm_summary,
    base_summary,
    blog_arm,
    blog_bar,
    legend_handles,
    note,
    ours_bar,
    pct_axis,
    save,
)


def plot_baseline_comparison(baseline: pd.DataFrame, out_path: Path) -> Path:
    """Base model digit rate and accuracy by prompt, ours beside the blog's."""
    prompts = prompts_in(baseline)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    panels = [("digit_rate", "Digit (format) rate", "digit_rate"), ("accuracy", "Accuracy", "accuracy")]
    x = np.arange(len(prompts))
    w = 0.36
    for ax, (col, title, field) in zip(axes, panels, strict=True):
        for i, prompt in enumerate(prompts):
            rows = select(baseline, prompt)
            s = summarize(pd.to_numeric(rows[col], errors="coerce")) if not rows.empty and col in rows else summarize([])
            ours_bar(ax, x[i] - w / 2, s, COLORS["base"], w, fontsize=9)
            b = BLOG.baseline.get(prompt)
            blog_bar(ax, x[i] + w / 2, getattr(b, field) if b else None, "base", w, fontsize=9)
        ax.set_xticks(x, [prompt_label(p) for p in prompts])
        pct_axis(ax)
        ax.set_ylabel(f"{title} of the base model (%)")
        ax.set_title(f"{title} on CLEVR, no training")
        ax.grid(axis="y", alpha=0.3, zorder=0)
    axes[0].legend(handles=[Patch(fc=COLORS["base"], ec="black", label="ours (base model)"),
                            Patch(fc=LIGHT["base"], ec=COLORS["base"], hatch=HATCH, label="blog (Qwen2-VL-2B)")],
                   loc="upper left", fontsize=9)
    fig.suptitle("Baseline: how often the base model answers with a digit, by prompt style", fontsize=12,
                 weight="bold")
    fig.text(0.5, -0.02, "digit rate = share of responses with an extractable number (reward != -1); "
             "blog: 14.5% (Default) vs 99% (R1V)", ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return save(fig, out_path)


def plot_transfer_results(cells: pd.DataFrame, base_eval: pd.DataFrame, out_path: Path) -> Path:
    """CLEVR vs SuperCLEVR accuracy for base / injection / no injection, per prompt, ours beside blog."""
    prompts = prompts_in(cells, base_eval)
    fig, axes = plt.subplots(1, len(prompts), figsize=(7 * len(prompts), 5.4), squeeze=False)
    w = 0.13
    configs = ("base", "inject", "none")
    for ax, prompt in zip(axes[0], prompts, strict=True):
        ran = not select(cells, prompt).empty or not select(base_eval, prompt).empty
        for gi, (col, field) in enumerate((("clevr_acc", "clevr_acc"), ("superclevr_acc", "superclevr_acc"))):
            for ci, cfg in enumerate(configs):
                x = gi + (ci - 1) * 2.2 * w
                s = base_summary(base_eval, prompt, col) if cfg == "base" else arm_summary(cells, prompt, cfg, col)
                ours_bar(ax, x - w / 2, s, COLORS[cfg], w, rotate=True, fontsize=7.5)
                blog_bar(ax, x + w / 2, blog_arm(prompt, cfg, field), cfg, w, rotate=True, fontsize=7.5)
        ax.set_xticks([0, 1], ["CLEVR (in-domain)", "SuperCLEVR (cross-domain)"])
        pct_axis(ax, top=1.25)
        ax.set_ylabel("counting accuracy (%)")
        ax.set_title(prompt_label(prompt))
        ax.grid(axis="y", alpha=0.3, zorder=0)
        if not ran:
            note(ax, "ours: not run (blog values only)", y=0.93, fontsize=9)
    fig.legend(handles=legend_handles(cells=cells), loc="lower center", ncol=6, fontsize=8.5, bbox_to_anchor=(0.5, -0.07))
    fig.suptitle("Cross-domain transfer: CLEVR vs SuperCLEVR accuracy, ours vs blog", fontsize=12.5, weight="bold")
    fig.text(0.5, -0.1, FOOTNOTE, ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return save(fig, out_path)


def plot_injection_effect_summary(cells: pd.DataFrame, base_eval: pd.DataFrame, out_path: Path) -> Path:
    """SuperCLEVR accuracy difference (injection - none) per prompt style, ours vs blog."""
    prompts = prompts_in(cells, base_eval)
    fig, ax = plt.subplots(figsize=(9, 5.4))
    w = 0.34
    pp = 100.0
    lim = 5.0
    for i, prompt in enumerate(prompts):
        d, lo, hi = injection_effect(cells, prompt)
        if np.isfinite(d):
            ax.bar(i - w / 2, d * pp, w, color=COLORS["inject"], edgecolor="black", lw=0.6, zorder=3)
            if hi > lo and (lo != d or hi != d):
                ax.errorbar(i - w / 2, d * pp, yerr=[[(d - lo) * pp], [(hi - d) * pp]], fmt="none", ecolor="black",
                            capsize=3, zorder=4)
            end = max(d, hi) if d >= 0 else min(d, lo)
            ax.text(i - w / 2, end * pp + (1 if d >= 0 else -1), f"{d * pp:+.1f} pp", ha="center",
                    va="bottom" if d >= 0 else "top", fontsize=9, weight="bold")
            lim = max(lim, abs(lo) * pp, abs(hi) * pp, abs(d) * pp)
        else:
            ax.text(i - w / 2, 0.5, "not run", rotation=90, ha="center", va="bottom", fontsize=9, style="italic",
                    color="#777777")
        b = BLOG.injection_effect_superclevr.get(prompt)
        if b is not None:
            ax.bar(i + w / 2, b.value * pp, w, color=LIGHT["inject"], edgecolor=COLORS["inject"], hatch=HATCH,
                   zorder=3)
            if b.low is not None and b.high is not None:
                ax.errorbar(i + w / 2, b.value * pp, yerr=[[(b.value - b.low) * pp], [(b.high - b.value) * pp]],
                            fmt="none", ecolor="#777777", capsize=3, zorder=4)
            bend = (b.high if b.value >= 0 else b.low) if b.low is not None else b.value
            ax.text(i + w / 2, bend * pp + (1 if b.value >= 0 else -1), b.text, ha="center",
                    va="bottom" if b.value >= 0 else "top", fontsize=9, color="#555555")
            lim = max(lim, abs(b.value) * pp)
    ax.axhline(0, color="black", lw=1)
    ax.set_ylim(-lim * 1.35, lim * 1.35)
    ax.set_xticks(range(len(prompts)), [prompt_label(p) for p in prompts])
    ax.set_ylabel("SuperCLEVR accuracy: injection - no injection (pp)")
    ax.set_title("Injection's effect on cross-domain transfer depends on baseline strength", fontsize=12,
                 weight="bold")
    ax.text(0.01, 0.02, "below 0: injection hurts transfer", transform=ax.transAxes, fontsize=8.5, color="#555555")
    ax.text(0.01, 0.97, "above 0: injection helps transfer", transform=ax.transAxes, fontsize=8.5, color="#555555",
            va="top")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(handles=[Patch(fc=COLORS["inject"], ec="black", label="ours (error bar: range over seed pairs)"),
                       Patch(fc=LIGHT["inject"], ec=COLORS["inject"], hatch=HATCH, label="blog")],
              loc="lower right", fontsize=9)
    fig.tight_layout()
    return save(fig, out_path)


def _rank_colors(values: dict[str, float]) -> dict[str, str]:
    """Green for the better of inject/none, pink for the worse; nothing on ties or missing."""
    best = better_arm(values)
    if best is None:
        return {}
    return {best: GOOD, ("none" if best == "inject" else "inject"): BAD}


def plot_results_table(cells: pd.DataFrame, base_eval: pd.DataFrame, out_path: Path,
                       threshold: float = BLOG.threshold) -> Path:
    """The complete results table as a figure; green/pink = better/worse SuperCLEVR transfer within a prompt."""
    prompts = prompts_in(cells, base_eval)
    thr = f"{threshold:.0%}"
    header = ["Configuration", "CLEVR\nours", "CLEVR\nblog", "SuperCLEVR\nours", "SuperCLEVR\nblog",
              "Number present\nSuperCLEVR ours", "Number present\nSuperCLEVR blog", f"Steps to {thr}\nours",
              "Steps to 90%\nblog", "Steps trained\nours", "Steps trained\nblog"]
    fig, axes = plt.subplots(len(prompts), 1, figsize=(17, 2.1 * len(prompts) + 0.9), squeeze=False)
    for ax, prompt in zip(axes[:, 0], prompts, strict=True):
        ax.axis("off")
        rows, colours = [], []
        ours_sc = {a: summarize(cell_values(cells, prompt, a, "superclevr_acc")).mean for a in ARMS}
        blog_sc = {a: (blog_arm(prompt, a, "superclevr_acc").value if blog_arm(prompt, a, "superclevr_acc")
                       else math.nan) for a in ARMS}
        oc, bc = _rank_colors(ours_sc), _rank_colors(blog_sc)
        has_base = not select(base_eval, prompt).empty
        bb = BLOG.base_eval.get(prompt)
        rows.append(["base model (no training)",
                     pct(base_value(base_eval, prompt, "clevr_acc")) if has_base else "not run",
                     bb.clevr_acc.text if bb else "—",
                     pct(base_value(base_eval, prompt, "superclevr_acc")) if has_base else "not run",
                     bb.superclevr_acc.text if bb else "—",
                     pct(base_value(base_eval, prompt, "superclevr_digit_rate")) if has_base else "not run",
                     bb.superclevr_digit_rate.text if bb and bb.superclevr_digit_rate else "—",
                     "—", "—", "0", "0"])
        colours.append(["#f2f2f2"] * len(header))
        for arm in ARMS:
            ab = BLOG.arms.get((prompt, arm))

            def bt(field, ab=ab):
                v = getattr(ab, field, None) if ab else None
                return v.text if v is not None else "—"

            rows.append([arm_label(arm, cells, prompt),
                         fmt_pct(cell_values(cells, prompt, arm, "clevr_acc")), bt("clevr_acc"),
                         fmt_pct(cell_values(cells, prompt, arm, "superclevr_acc")), bt("superclevr_acc"),
                         fmt_pct(cell_values(cells, prompt, arm, "superclevr_digit_rate")),
                         bt("superclevr_digit_rate"),
                         fmt_steps(cell_values(cells, prompt, arm, "steps_to_threshold")), bt("steps_to_90"),
                         fmt_steps(cell_values(cells, prompt, arm, "steps")), bt("steps_trained")])
            c = ["white"] * len(header)
            c[3] = oc.get(arm, "white")
            c[4] = bc.get(arm, "white")
            colours.append(c)
        table = ax.table(cellText=rows, colLabels=header, cellColours=colours, loc="center", cellLoc="center",
                         colColours=["#dddddd"] * len(header))
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        table.auto_set_column_width(list(range(len(header))))
        table.scale(1, 1.9)
        for (r, c), cell in table.get_celld().items():
            if r == 0:
                cell.set_text_props(weight="bold")
                cell.set_height(cell.get_height() * 1.5)
            if c in (2, 4, 6, 8, 10) and r > 0:
                cell.get_text().set_color("#555555")
        rate = base_value(base_eval, prompt, "clevr_digit_rate")
        blog_rate = BLOG.base_eval[prompt].clevr_digit_rate.text if prompt in BLOG.base_eval else "—"
        ax.set_title(f"{BASELINE_STRENGTH.get(prompt, '?').capitalize()} baseline: "
                     f"{PROMPT_LABELS.get(prompt, prompt)} prompt (base digit rate: ours "
                     f"{pct(rate) if np.isfinite(rate) else 'not run'}, "
                     f"blog {blog_rate})", fontsize=11, weight="bold", loc="left")
    fig.suptitle("Complete results, ours beside the blog", fontsize=13, weight="bold")
    fig.text(0.5, 0.0, "green / pink: better / worse SuperCLEVR transfer of the two trained arms within a prompt "
             "(ours and blog ranked separately); several seeds: mean ± std (n)", ha="center", fontsize=9,
             color="#555555")
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    return save(fig, out_path)


def plot_results_summary_bar(cells: pd.DataFrame, base_eval: pd.DataFrame, out_path: Path) -> Path:
    """SuperCLEVR accuracy per configuration (prompt x {base, inject, none}), ours vs blog."""
    prompts = prompts_in(cells, base_eval)
    fig, ax = plt.subplots(figsize=(max(9, 2.2 * 3 * len(prompts)), 5.6))
    w = 0.38
    ticks, labels = [], []
    x = 0.0
    for pi, prompt in enumerate(prompts):
        start = x
        for cfg in ("base", "inject", "none"):
            s = (base_summary(base_eval, prompt, "superclevr_acc") if cfg == "base"
                 else arm_summary(cells, prompt, cfg, "superclevr_acc"))
            ours_bar(ax, x - w / 2, s, COLORS[cfg], w, fontsize=9)
            blog_bar(ax, x + w / 2, blog_arm(prompt, cfg, "superclevr_acc"), cfg, w, fontsize=9)
            ticks.append(x)
            labels.append({"base": "base model", "inject": arm_label("inject", cells, prompt),
                           "none": "no injection"}[cfg].replace(" (", "\n("))
            x += 1.0
        ax.text((start + x - 1) / 2, -0.13, prompt_label(prompt), ha="center", va="top", fontsize=10.5,
                weight="bold", transform=ax.get_xaxis_transform())
        if pi < len(prompts) - 1:
            ax.axvline(x - 0.25, color="#999999", lw=0.8, ls="-")
            x += 0.5
    ax.axhline(BLOG.strong_transfer_level, color="#555555", ls=":", lw=1)
    ax.text(ticks[0] - 0.5, BLOG.strong_transfer_level + 0.008, f"blog's 'strong transfer' level: > "
            f"{BLOG.strong_transfer_level:.0%}", fontsize=8.5, va="bottom", ha="left", color="#555555")
    ax.set_xticks(ticks, labels, fontsize=9)
    pct_axis(ax, top=1.05)
    ax.set_ylabel("SuperCLEVR accuracy (%)")
    ax.set_title("Cross-domain transfer (SuperCLEVR) by configuration, ours vs blog", fontsize=12.5, weight="bold")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(handles=legend_handles(cells=cells), loc="upper left", ncol=2, fontsize=8.5, framealpha=0.92)
    fig.text(0.5, -0.06, FOOTNOTE, ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return save(fig, out_path)
