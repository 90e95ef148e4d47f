"""Shared drawing helpers of the figures: colours, bars, boxes, arrows, notes, saving.

Colours: injection red, no injection blue, base model grey; the blog's values are light and hatched.
Several seeds: bars are the mean with min-max error bars. Missing data never raises: the panel says
"not run". Nothing here computes a result; the numbers come from ``stages.analysis``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from stages.analysis.blog_numbers import BLOG, BlogValue  # noqa: E402
from stages.analysis.tables import Summary, arm_label, base_value, cell_values, pct, summarize  # noqa: E402

DPI = 120
COLORS = {"inject": "#d62728", "none": "#1f77b4", "base": "#7f7f7f"}
LIGHT = {"inject": "#f7b6b6", "none": "#b9d3ee", "base": "#dedede"}
HATCH = "///"
DIGIT_COLOR = "#6a3d9a"  # digit (format) rate curves
GOOD, BAD = "#c7e9c0", "#fcc5c0"  # better / worse transfer highlighting
FOOTNOTE = "ours: this pipeline's measurements (mean over seeds, error bars min-max); blog: hatched"

plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "font.size": 10})


def save(fig: plt.Figure, out_path: Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return out_path


def note(ax: plt.Axes, text: str, x: float = 0.5, y: float = 0.5, **kw) -> None:
    ax.text(x, y, text, transform=ax.transAxes, ha="center", va="center", fontsize=kw.pop("fontsize", 11),
            style="italic", color="#555555",
            bbox=dict(boxstyle="round,pad=0.4", fc="#f7f7f7", ec="#bbbbbb"), **kw)


def pct_axis(ax: plt.Axes, axis: str = "y", top: float = 1.12) -> None:
    if axis == "y":
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    else:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def ours_bar(ax, x, s: Summary, color, width, label=None, text_fmt=pct, rotate=False, fontsize=8):
    """One of our bars: mean with min-max error bar; nothing but a note when not run."""
    if s.empty:
        ax.text(x, 0.02, "not run", rotation=90, ha="center", va="bottom", fontsize=fontsize, color="#777777",
                style="italic")
        return
    ax.bar(x, s.mean, width, color=color, edgecolor="black", linewidth=0.6, label=label, zorder=3)
    if s.n > 1:
        ax.errorbar(x, s.mean, yerr=[[s.mean - s.lo], [s.hi - s.mean]], fmt="none", ecolor="black", capsize=3,
                    lw=1, zorder=4)
    top = max(s.hi, s.mean, 0)
    ax.text(x, top + 0.015, text_fmt(s.mean), ha="center", va="bottom", fontsize=fontsize,
            rotation=90 if rotate else 0, zorder=5)


def blog_bar(ax, x, v: BlogValue | None, key: str, width, label=None, rotate=False, fontsize=8):
    """The blog's bar (light, hatched); a note when the blog gives no number."""
    if v is None:
        ax.text(x, 0.02, "blog: n/a", rotation=90, ha="center", va="bottom", fontsize=fontsize - 1,
                color="#999999")
        return
    ax.bar(x, v.value, width, color=LIGHT[key], edgecolor=COLORS[key], hatch=HATCH, linewidth=0.8, label=label,
           zorder=3)
    if v.low is not None and v.high is not None and v.low != v.high:
        ax.errorbar(x, v.value, yerr=[[v.value - v.low], [v.high - v.value]], fmt="none", ecolor="#777777",
                    capsize=2, lw=0.8, zorder=4)
    ax.text(x, max(v.value, v.high or 0, 0) + (0.03 if rotate else 0.015), v.text, ha="center", va="bottom",
            fontsize=fontsize, color="#555555", rotation=90 if rotate else 0, zorder=5)


def legend_handles(keys=("base", "inject", "none"), cells=None, blog=True):
    labels = {"base": "base model", "inject": arm_label("inject", cells), "none": "no injection"}
    blog_labels = {"base": "base model", "inject": "injection", "none": "no injection"}  # blog: stochastic injection
    hs = [Patch(fc=COLORS[k], ec="black", label=f"{labels[k]} (ours)") for k in keys]
    if blog:
        hs += [Patch(fc=LIGHT[k], ec=COLORS[k], hatch=HATCH, label=f"{blog_labels[k]} (blog)") for k in keys]
    return hs


def arm_summary(cells, prompt, arm, col) -> Summary:
    return summarize(cell_values(cells, prompt, arm, col))


def base_summary(base_eval, prompt, col) -> Summary:
    v = base_value(base_eval, prompt, col)
    return summarize([v]) if np.isfinite(v) else summarize([])


def blog_arm(prompt, arm, field) -> BlogValue | None:
    """The blog's value of ``field`` for (prompt, arm); arm "base" is the base model."""
    b = BLOG.base_eval.get(prompt) if arm == "base" else BLOG.arms.get((prompt, arm))
    return getattr(b, field, None) if b is not None else None


def seed_text(rows: pd.DataFrame) -> str:
    n = rows["seed"].nunique() if "seed" in rows and len(rows) else 0
    return f"{n} seed" + ("s" if n != 1 else "")


def box(ax, x, y, w, h, text, fc="#ffffff", ec="#333333", fontsize=9, lw=1.2, ls="-", weight="normal",
        color="black"):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", fc=fc, ec=ec, lw=lw,
                                ls=ls))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, weight=weight, color=color,
            wrap=False)


def arrow(ax, start, end, color="#333333", lw=1.4, style="-|>", rad=0.0, ls="-"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=color, lw=lw, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
