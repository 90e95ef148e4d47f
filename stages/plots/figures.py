"""One function per figure of the blog, drawn from the pipeline's own measurements.

Every ``plot_*`` function takes DataFrames (see ``stages.analysis.tables`` for their
columns), writes one PNG to ``out_path`` and returns that path. Figures show our value
beside the blog's wherever the blog has one. Colours: injection red, no injection blue,
base model grey; the blog's values are light and hatched. Several seeds: bars are the
mean with min-max error bars, curves the mean of the per-seed rolling means with a
min-max band. Missing data never raises: the panel says "not run" / "not reached".
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Patch  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from stages.analysis.blog_numbers import BASELINE_STRENGTH, BLOG, PROMPT_LABELS, BlogValue  # noqa: E402
from stages.analysis.tables import (  # noqa: E402
    ARMS,
    Summary,
    arm_label,
    base_value,
    cell_values,
    default_window,
    first_step_at,
    fmt_pct,
    fmt_steps,
    mean_curve,
    pct,
    prompt_label,
    prompts_in,
    rolling_curves,
    select,
    summarize,
)

DPI = 120
COLORS = {"inject": "#d62728", "none": "#1f77b4", "base": "#7f7f7f"}
LIGHT = {"inject": "#f7b6b6", "none": "#b9d3ee", "base": "#dedede"}
HATCH = "///"
DIGIT_COLOR = "#6a3d9a"  # digit (format) rate curves
GOOD, BAD = "#c7e9c0", "#fcc5c0"  # better / worse transfer highlighting
FOOTNOTE = "ours: this pipeline's measurements (mean over seeds, error bars min-max); blog: hatched"

plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "font.size": 10})


# ---------------------------------------------------------------------------
# small drawing helpers
# ---------------------------------------------------------------------------


def _save(fig: plt.Figure, out_path: Path) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return out_path


def _note(ax: plt.Axes, text: str, x: float = 0.5, y: float = 0.5, **kw) -> None:
    ax.text(x, y, text, transform=ax.transAxes, ha="center", va="center", fontsize=kw.pop("fontsize", 11),
            style="italic", color="#555555",
            bbox=dict(boxstyle="round,pad=0.4", fc="#f7f7f7", ec="#bbbbbb"), **kw)


def _pct_axis(ax: plt.Axes, axis: str = "y", top: float = 1.12) -> None:
    if axis == "y":
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    else:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))


def _ours_bar(ax, x, s: Summary, color, width, label=None, text_fmt=pct, rotate=False, fontsize=8):
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


def _blog_bar(ax, x, v: BlogValue | None, key: str, width, label=None, rotate=False, fontsize=8):
    """The blog's bar (light, hatched); an em dash when the blog gives no number."""
    if v is None:
        ax.text(x, 0.02, "blog: n/a", rotation=90, ha="center", va="bottom", fontsize=fontsize - 1,
                color="#999999")
        return
    ax.bar(x, v.value, width, color=LIGHT[key], edgecolor=COLORS[key], hatch=HATCH, linewidth=0.8, label=label,
           zorder=3)
    if v.low is not None and v.high is not None and v.low != v.high:
        ax.errorbar(x, v.value, yerr=[[v.value - v.low], [v.high - v.value]], fmt="none", ecolor="#777777",
                    capsize=2, lw=0.8, zorder=4)
    ax.text(x, max(v.value, v.high or 0, 0) + (0.03 if rotate else 0.015), v.text, ha="center", va="bottom", fontsize=fontsize,
            color="#555555", rotation=90 if rotate else 0, zorder=5)


def _legend_handles(keys=("base", "inject", "none"), cells=None, blog=True):
    labels = {"base": "base model", "inject": arm_label("inject", cells), "none": "no injection"}
    blog_labels = {"base": "base model", "inject": "injection", "none": "no injection"}  # blog: stochastic injection
    hs = [Patch(fc=COLORS[k], ec="black", label=f"{labels[k]} (ours)") for k in keys]
    if blog:
        hs += [Patch(fc=LIGHT[k], ec=COLORS[k], hatch=HATCH, label=f"{blog_labels[k]} (blog)") for k in keys]
    return hs


def _arm_summary(cells, prompt, arm, col) -> Summary:
    return summarize(cell_values(cells, prompt, arm, col))


def _base_summary(base_eval, prompt, col) -> Summary:
    v = base_value(base_eval, prompt, col)
    return summarize([v]) if np.isfinite(v) else summarize([])


def _blog_arm(prompt, arm, field) -> BlogValue | None:
    if arm == "base":
        b = BLOG.base_eval.get(prompt)
    else:
        b = BLOG.arms.get((prompt, arm))
    return getattr(b, field, None) if b is not None else None


def _box(ax, x, y, w, h, text, fc="#ffffff", ec="#333333", fontsize=9, lw=1.2, ls="-", weight="normal",
         color="black"):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", fc=fc, ec=ec, lw=lw,
                                ls=ls))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, weight=weight, color=color,
            wrap=False)


def _arrow(ax, start, end, color="#333333", lw=1.4, style="-|>", rad=0.0, ls="-"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14, color=color, lw=lw, ls=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))


def _steps_text(values: np.ndarray) -> str:
    return fmt_steps(values) if len(values) else "not run"


# ---------------------------------------------------------------------------
# 1. baseline comparison
# ---------------------------------------------------------------------------


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
            _ours_bar(ax, x[i] - w / 2, s, COLORS["base"], w, fontsize=9)
            b = BLOG.baseline.get(prompt)
            _blog_bar(ax, x[i] + w / 2, getattr(b, field) if b else None, "base", w, fontsize=9)
        ax.set_xticks(x, [prompt_label(p) for p in prompts])
        _pct_axis(ax)
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
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 2. GRPO algorithm diagram
# ---------------------------------------------------------------------------


def plot_grpo_algorithm(out_path: Path, group_size: int = BLOG.group_size) -> Path:
    """Diagram: prompt -> G samples -> rewards -> (injection) -> advantages -> clipped update."""
    g = max(2, int(group_size))
    texts = ["several shapes on a floor", "I count five objects", "3", "a colourful scene",
             "5", "cubes and spheres", "it shows objects", "many items"]
    samples = [texts[i % len(texts)] for i in range(g)]
    rewards = np.full(g, -1.0)
    if g > 2:
        rewards[2] = 0.0
    rewards[min(4, g - 1)] = 1.0
    samples[min(4, g - 1)] = "5"
    candidates = [i for i in range(g) if rewards[i] < 1]
    injected = candidates[0::3][: max(1, min(3, g - 1))]
    after = rewards.copy()
    after[injected] = 1.0
    adv = (after - after.mean()) / (after.std() + 1e-8)
    adv_none = (rewards - rewards.mean()) / (rewards.std() + 1e-8)

    fig, ax = plt.subplots(figsize=(17, 7.6))
    ax.set_xlim(0, 18)
    ax.set_ylim(-0.7, 9.6)
    ax.axis("off")
    top, bottom = 8.0, 0.9
    dy = (top - bottom) / g
    ys = [top - (i + 0.5) * dy for i in range(g)]
    mid = (top + bottom) / 2
    chip = {1.0: ("#2ca02c", "+1"), 0.0: ("#ff9f1c", "0"), -1.0: ("#8c8c8c", "-1")}

    _box(ax, 0.1, mid - 1.0, 2.2, 2.0, "Prompt\nimage + question\n\"How many items\nare there?\"\n(truth: 5)",
         fc="#f2f2f2")
    _box(ax, 2.9, mid - 1.0, 2.1, 2.0, f"Policy $\\pi_\\theta$\nsamples G = {g}\nresponses\n(temperature 1)",
         fc="#e8f0fa")
    _arrow(ax, (2.3, mid), (2.9, mid))
    ax.text(7.1, top + 0.45, "1. samples + reward\n(+1 correct, 0 wrong, -1 no number)", ha="center", fontsize=9.5,
            weight="bold")
    ax.text(11.05, top + 0.45, "2. guidance injection\n(inject arm only)", ha="center", fontsize=9.5, weight="bold",
            color=COLORS["inject"])
    ax.text(14.1, top + 0.45, "3. group-normalised advantage\n$A_i = (r_i - \\mathrm{mean}(r)) / \\mathrm{std}(r)$",
            ha="center", fontsize=9.5, weight="bold")
    ax.text(14.85, top + 0.05, "without\ninjection", ha="center", fontsize=7.5, color=COLORS["none"])
    bh = dy * 0.78
    for i, y in enumerate(ys):
        _arrow(ax, (5.0, mid), (5.5, y), lw=0.7, color="#777777")
        _box(ax, 5.5, y - bh / 2, 2.7, bh, f"\"{samples[i]}\"", fontsize=8.5)
        c, t = chip[rewards[i]]
        _box(ax, 8.3, y - bh / 2, 0.6, bh, t, fc=c, ec=c, fontsize=9, weight="bold", color="white")
        _arrow(ax, (8.95, y), (9.45, y), lw=0.8, color="#777777")
        if i in injected:
            _box(ax, 9.5, y - bh / 2, 2.5, bh, "\"5\"  (injected)", fc="#fde0e0", ec=COLORS["inject"], fontsize=8.5,
                 ls="--", lw=1.4)
            c2, t2 = chip[1.0]
        else:
            _box(ax, 9.5, y - bh / 2, 2.5, bh, "kept (policy sample)", fc="#ffffff", ec="#bbbbbb", fontsize=8,
                 color="#666666")
            c2, t2 = chip[after[i]]
        _box(ax, 12.1, y - bh / 2, 0.6, bh, t2, fc=c2, ec=c2, fontsize=9, weight="bold", color="white")
        _arrow(ax, (12.75, y), (13.1, y), lw=0.8, color="#777777")
        col = "#2ca02c" if adv[i] > 0 else "#8c8c8c"
        _box(ax, 13.15, y - bh / 2, 1.25, bh, f"{adv[i]:+.2f}", fc="white", ec=col, fontsize=9, weight="bold",
             color=col)
        ax.text(14.5, y, f"({adv_none[i]:+.2f})", fontsize=7.5, va="center", color="#1f77b4")
    ax.text(14.15, bottom - 0.3, "black: inject arm\nblue: no-injection arm", ha="center", va="top",
            fontsize=8.5)
    ax.text(10.95, bottom - 0.3, f"replace k in [1, {g - 1}] samples by\nthe truth (reward +1), never all G", ha="center", va="top", fontsize=8.5, color=COLORS["inject"])
    ax.add_patch(FancyBboxPatch((9.35, bottom - 0.1), 3.45, top - bottom + 0.2, boxstyle="round,pad=0.05",
                                fc="none", ec=COLORS["inject"], ls="--", lw=1.0))
    _box(ax, 15.4, mid - 1.5, 2.5, 3.0, "4. clipped policy update\n"
         "$L = -\\min(\\rho A,$\n$\\mathrm{clip}(\\rho, 1-\\epsilon, 1+\\epsilon) A)$\n"
         f"$\\rho = \\pi_\\theta / \\pi_{{old}}$, $\\epsilon$ = {BLOG.clip_epsilon}\n4 epochs, no KL",
         fc="#e8f5e9", fontsize=9)
    _arrow(ax, (15.1, mid), (15.4, mid))
    loop_y = -0.35
    ax.plot([16.65, 16.65, 3.95], [mid - 1.55, loop_y, loop_y], color="#2ca02c", lw=1.6)
    _arrow(ax, (3.95, loop_y), (3.95, mid - 1.05), color="#2ca02c", lw=1.6)
    ax.text(6.5, loop_y + 0.1, "next step: the updated policy samples again", ha="center", va="bottom", fontsize=9,
            color="#2ca02c")
    ax.set_title("GRPO with guidance injection: one prompt's group (example rewards; advantages computed from them)",
                 fontsize=12, weight="bold")
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# curve helpers
# ---------------------------------------------------------------------------


def _window(curves: pd.DataFrame, window: int | None) -> int:
    if window is not None:
        return int(window)
    if curves is None or curves.empty:
        return 1
    return default_window(int(curves["step"].max()) + 1)


def _draw_series(ax, rolled: pd.DataFrame, raw_col: str, color: str, label: str, ls="-") -> pd.DataFrame:
    """Raw per-seed values faintly, mean of per-seed rolling means boldly, min-max band."""
    for _, seed_df in rolled.groupby("seed"):
        ax.plot(seed_df["step"], seed_df[raw_col], color=color, alpha=0.15, lw=0.7)
    mc = mean_curve(rolled, f"{raw_col}_roll")
    if mc.empty:
        return mc
    if int(mc["n"].max()) > 1:
        ax.fill_between(mc["step"], mc["lo"], mc["hi"], color=color, alpha=0.15, lw=0)
    ax.plot(mc["step"], mc["mean"], color=color, lw=2, label=label, ls=ls)
    return mc


def _seed_text(rows: pd.DataFrame) -> str:
    n = rows["seed"].nunique() if "seed" in rows and len(rows) else 0
    return f"{n} seed" + ("s" if n != 1 else "")


# ---------------------------------------------------------------------------
# 3. format vs accuracy
# ---------------------------------------------------------------------------


def plot_format_vs_accuracy(curves: pd.DataFrame, out_path: Path, prompt: str = "default", arm: str = "none",
                            window: int | None = None, level: float = 0.9) -> Path:
    """Digit rate and accuracy over steps; phase boundary where rolling digit rate first reaches ``level``."""
    rows = select(curves, prompt, arm)
    fig, ax = plt.subplots(figsize=(11, 5.2))
    win = _window(rows, window)
    title = f"Two phases: format learning, then accuracy learning\n{prompt_label(prompt)}, {arm_label(arm, rows)}"
    if rows.empty:
        _note(ax, f"not run: no training curves for prompt={prompt!r}, arm={arm!r}")
        boundary = math.nan
    else:
        rolled = rolling_curves(rows, win)
        mc_d = _draw_series(ax, rolled, "digit_rate", DIGIT_COLOR, "digit (format) rate")
        mc_a = _draw_series(ax, rolled, "accuracy", COLORS.get(arm, "black"), "accuracy")
        boundary = first_step_at(mc_d, level)
        end = float(rows["step"].max())
        ax.axhline(level, color=DIGIT_COLOR, ls=":", lw=1, label=f"digit rate {level:.0%}")
        if np.isfinite(boundary):
            ax.axvspan(0, boundary, color=DIGIT_COLOR, alpha=0.06, lw=0)
            ax.axvline(boundary, color="black", ls="--", lw=1.2,
                       label=f"phase boundary: step {boundary:.0f} (rolling digit rate >= {level:.0%})")
            acc_at = mc_a.loc[mc_a["step"] <= boundary, "mean"]
            if len(acc_at):
                a = float(acc_at.iloc[-1])
                ax.plot([boundary], [a], "o", color=COLORS.get(arm, "black"), ms=7, zorder=5)
                ax.annotate(f"accuracy at boundary: {a:.0%}\nfinal (rolling): {mc_a['mean'].iloc[-1]:.0%}",
                            (boundary, a), xytext=(12, -28), textcoords="offset points", fontsize=9,
                            arrowprops=dict(arrowstyle="-", color="#777777"))
            ax.text(boundary / 2, 1.06, "phase 1: format", ha="center", fontsize=10, color=DIGIT_COLOR,
                    weight="bold")
            ax.text((boundary + end) / 2, 1.06, "phase 2: accuracy", ha="center", fontsize=10,
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
    _pct_axis(ax, top=1.12)
    ax.set_xlabel("training step")
    ax.set_ylabel("rate on the step's policy samples (%)")
    ax.set_title(title, fontsize=11.5, weight="bold", pad=22)
    ax.grid(alpha=0.3)
    b = BLOG
    ours_text = "ours: not run" if rows.empty else f"ours: {_seed_text(rows)}, rolling mean over {win} steps " \
                                                    "(faint: raw per step)"
    fig.text(0.5, -0.03, f"{ours_text}. "
             f"Blog ({PROMPT_LABELS.get('default')} prompt, no injection): phase 1 = steps 0-"
             f"{b.format_phase_end_step.value:.0f}, digit rate 14% -> ~100%; phase 2: accuracy "
             f"{b.phase2_accuracy.text}.", ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 4. learning curves
# ---------------------------------------------------------------------------


def _blog_steps_line(prompt: str) -> str:
    inj, none = BLOG.arms.get((prompt, "inject")), BLOG.arms.get((prompt, "none"))
    if inj is None or none is None:
        return "blog: no run with this prompt"
    line = f"blog steps to 90%: injection {inj.steps_to_90.text}, no injection {none.steps_to_90.text}"
    sp = BLOG.speedup.get(prompt)
    if sp is not None:
        line += f"; speed-up {sp.display()}"
    alts = [f"injection {v.alt}" for v in (inj.steps_to_90,) if v.alt]
    alts += [f"no injection {v.alt}" for v in (none.steps_to_90,) if v.alt]
    if alts:
        line += "\nother figures in the posts: " + "; ".join(alts)
    return line


def plot_learning_curves(curves: pd.DataFrame, cells: pd.DataFrame, prompt: str, threshold: float, out_path: Path,
                         window: int | None = None) -> Path:
    """Accuracy, digit rate and mean reward vs step for injection vs none, with steps-to-threshold markers."""
    rows = select(curves, prompt)
    win = _window(rows, window)
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.4), gridspec_kw={"width_ratios": [1.5, 1, 1]})
    ax_acc, ax_dig, ax_rew = axes
    thr_label = f"{threshold:.0%}"
    if rows.empty:
        for ax in axes:
            _note(ax, f"not run: no training curves\nfor prompt {prompt!r}")
    else:
        rolled = rolling_curves(rows, win, columns=("digit_rate", "accuracy", "mean_reward", "injected_frac"))
        handles = []
        for arm in ARMS:
            r = select(rolled, arm=arm)
            label = arm_label(arm, rows, prompt)
            if r.empty:
                handles.append(Line2D([], [], color=COLORS[arm], lw=2, label=f"{label}: not run"))
                continue
            _draw_series(ax_acc, r, "accuracy", COLORS[arm], label)
            _draw_series(ax_dig, r, "digit_rate", COLORS[arm], label)
            _draw_series(ax_rew, r, "mean_reward", COLORS[arm], label)
            handles.append(Line2D([], [], color=COLORS[arm], lw=2, label=label))
            if arm == "inject" and "injected_frac" in r and r["injected_frac"].fillna(0).max() > 0:
                mc = r.groupby("step")["injected_frac_roll"].mean()
                ax_dig.plot(mc.index, mc.values, color=COLORS[arm], ls=":", lw=1.5,
                            label="injected fraction of samples (inject arm)")
            steps = cell_values(cells, prompt, arm, "steps_to_threshold")
            s = summarize(steps)
            if not s.empty:
                ax_acc.axvline(s.mean, color=COLORS[arm], ls="--", lw=1.3)
                if s.n > 1:
                    ax_acc.axvspan(s.lo, s.hi, color=COLORS[arm], alpha=0.08, lw=0)
            handles.append(Line2D([], [], color=COLORS[arm], ls="--", lw=1.3,
                                  label=f"  steps to {thr_label}: {_steps_text(steps)}"))
        ax_acc.axhline(threshold, color="black", ls=":", lw=1.2)
        si = summarize(cell_values(cells, prompt, "inject", "steps_to_threshold"))
        sn = summarize(cell_values(cells, prompt, "none", "steps_to_threshold"))
        if not (si.empty or sn.empty) and si.mean > 0:
            handles.append(Line2D([], [], color="none", label=f"ours speed-up (none / injection): "
                                                              f"{sn.mean / si.mean:.2f}x"))
        handles.append(Line2D([], [], color="black", ls=":", lw=1.2, label=f"{thr_label} line (threshold)"))
        ax_acc.legend(handles=handles, loc="lower right", fontsize=8.5, framealpha=0.92)
        ax_dig.legend(loc="lower right", fontsize=8.5)
        ax_rew.legend(loc="lower right", fontsize=8.5)
        for ax in axes:
            ax.set_xlim(0, max(float(rows["step"].max()), 1))
    for ax, name in ((ax_acc, "accuracy"), (ax_dig, "digit (format) rate")):
        _pct_axis(ax, top=1.05)
        ax.set_ylabel(f"{name} on policy samples (%)")
    ax_rew.set_ylim(-1.05, 1.05)
    ax_rew.set_ylabel("mean reward (-1 no number, 0 wrong, +1 correct)")
    for ax, t in ((ax_acc, "CLEVR training accuracy"), (ax_dig, "digit (format) rate"), (ax_rew, "mean reward")):
        ax.set_xlabel("training step")
        ax.set_title(t)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves, {prompt_label(prompt)}: injection (red) vs no injection (blue)", fontsize=12.5,
                 weight="bold", y=1.03)
    blog_line = _blog_steps_line(prompt)
    fig.text(0.5, 0.955, blog_line, ha="center", va="center", fontsize=9.5, color="#444444",
             bbox=dict(boxstyle="round,pad=0.3", fc="#f7f7f7", ec="#cccccc"))
    if not rows.empty:
        fig.text(0.5, -0.03, f"ours: {_seed_text(rows)}, rolling mean over {win} steps (faint: raw per step; band: "
                 "min-max over seeds); dashed verticals: steps to threshold from the training cells (mean)",
                 ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout(rect=(0, 0, 1, 0.91 + 0.03 * (1 - blog_line.count("\n"))))
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 5. transfer results
# ---------------------------------------------------------------------------


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
                s = _base_summary(base_eval, prompt, col) if cfg == "base" else _arm_summary(cells, prompt, cfg, col)
                _ours_bar(ax, x - w / 2, s, COLORS[cfg], w, rotate=True, fontsize=7.5)
                _blog_bar(ax, x + w / 2, _blog_arm(prompt, cfg, field), cfg, w, rotate=True, fontsize=7.5)
        ax.set_xticks([0, 1], ["CLEVR (in-domain)", "SuperCLEVR (cross-domain)"])
        _pct_axis(ax, top=1.25)
        ax.set_ylabel("counting accuracy (%)")
        ax.set_title(prompt_label(prompt))
        ax.grid(axis="y", alpha=0.3, zorder=0)
        if not ran:
            _note(ax, "ours: not run (blog values only)", y=0.93, fontsize=9)
    fig.legend(handles=_legend_handles(cells=cells), loc="lower center", ncol=6, fontsize=8.5, bbox_to_anchor=(0.5, -0.07))
    fig.suptitle("Cross-domain transfer: CLEVR vs SuperCLEVR accuracy, ours vs blog", fontsize=12.5, weight="bold")
    fig.text(0.5, -0.1, FOOTNOTE, ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 6. injection effect summary
# ---------------------------------------------------------------------------


def injection_effect(cells: pd.DataFrame, prompt: str, column: str = "superclevr_acc") -> tuple[float, float, float]:
    """(mean(inject) - mean(none), lowest, highest pairwise difference); NaNs when an arm is missing."""
    inj = summarize(cell_values(cells, prompt, "inject", column))
    none = summarize(cell_values(cells, prompt, "none", column))
    if inj.empty or none.empty:
        return math.nan, math.nan, math.nan
    return inj.mean - none.mean, inj.lo - none.hi, inj.hi - none.lo


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
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 7. results table
# ---------------------------------------------------------------------------


def _rank_colors(values: dict[str, float]) -> dict[str, str]:
    """Green for the better of inject/none, pink for the worse; nothing on ties or missing."""
    a, b = values.get("inject", math.nan), values.get("none", math.nan)
    if not (np.isfinite(a) and np.isfinite(b)) or a == b:
        return {}
    return {"inject": GOOD, "none": BAD} if a > b else {"inject": BAD, "none": GOOD}


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
        blog_sc = {a: (_blog_arm(prompt, a, "superclevr_acc").value if _blog_arm(prompt, a, "superclevr_acc")
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
                         _steps_text(cell_values(cells, prompt, arm, "steps_to_threshold")), bt("steps_to_90"),
                         _steps_text(cell_values(cells, prompt, arm, "steps")), bt("steps_trained")])
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
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 8. results summary bar
# ---------------------------------------------------------------------------


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
            s = (_base_summary(base_eval, prompt, "superclevr_acc") if cfg == "base"
                 else _arm_summary(cells, prompt, cfg, "superclevr_acc"))
            _ours_bar(ax, x - w / 2, s, COLORS[cfg], w, fontsize=9)
            _blog_bar(ax, x + w / 2, _blog_arm(prompt, cfg, "superclevr_acc"), cfg, w, fontsize=9)
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
    _pct_axis(ax, top=1.05)
    ax.set_ylabel("SuperCLEVR accuracy (%)")
    ax.set_title("Cross-domain transfer (SuperCLEVR) by configuration, ours vs blog", fontsize=12.5, weight="bold")
    ax.grid(axis="y", alpha=0.3, zorder=0)
    ax.legend(handles=_legend_handles(cells=cells), loc="upper left", ncol=2, fontsize=8.5, framealpha=0.92)
    fig.text(0.5, -0.06, FOOTNOTE, ha="center", fontsize=8.5, color="#555555")
    fig.tight_layout()
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# 9. key takeaway
# ---------------------------------------------------------------------------


def _ours_blog(ours: str, blog: str) -> str:
    return f"ours {ours}  |  blog {blog}"


def plot_key_takeaway(cells: pd.DataFrame, base_eval: pd.DataFrame, out_path: Path) -> Path:
    """The blog's mechanism, weak vs strong baseline, annotated with our measured transfer numbers."""
    fig, axes = plt.subplots(1, 2, figsize=(16, 7.6))

    def compact(values: np.ndarray) -> str:
        s = summarize(values)
        if len(values) == 0:
            return "not run"
        if s.empty:
            return "n/a"
        return f"{s.mean * 100:.1f}%" if s.n == 1 else f"{s.mean * 100:.1f}±{s.std * 100:.1f}%"

    def sc(prompt, arm):
        return compact(cell_values(cells, prompt, arm, "superclevr_acc"))

    def blog_sc(prompt, arm):
        v = _blog_arm(prompt, arm, "superclevr_acc")
        return v.text if v else "—"

    def effect(prompt):
        d, _, _ = injection_effect(cells, prompt)
        return f"{d * 100:+.1f} pp" if np.isfinite(d) else "not run"

    def rate(prompt):
        v = base_value(base_eval, prompt, "clevr_digit_rate")
        return pct(v) if np.isfinite(v) else "not run"

    def present(prompt, arm):
        return compact(cell_values(cells, prompt, arm, "superclevr_digit_rate"))

    def blog_present(prompt, arm):
        v = _blog_arm(prompt, arm, "superclevr_digit_rate")
        return v.text if v else "—"

    panels = {
        "default": dict(
            head="Weak baseline: Default prompt",
            inject=["Injected ground-truth answers\nteach format + accuracy\ntogether",
                    "Format change coupled to\nthe training images (CLEVR)",
                    "On new images the digit\nanswer is less reliable"],
            none=["The policy discovers the digit\nformat by its own exploration",
                  "Format learned across varied\nimages: domain-agnostic",
                  "Format and counting carry\nover to new images"],
            shared=None),
        "r1v": dict(
            head="Strong baseline: R1V prompt",
            inject=["Injection can only teach\naccuracy (format is given)", "Accuracy skill: visual,\nnot tied to format"],
            none=["Exploration teaches\naccuracy", "Accuracy skill: visual,\nnot tied to format"],
            shared="Format already solved by the prompt\n-> both arms learn accuracy only"),
    }
    res_y, res_h = 0.8, 1.45
    for ax, prompt in zip(axes, ("default", "r1v"), strict=True):
        p = panels[prompt]
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
        ax.axis("off")
        blog_rate = BLOG.baseline[prompt].digit_rate.text
        _box(ax, 1.0, 8.6, 8.0, 1.15, f"{p['head']}\nbase digit rate: {_ours_blog(rate(prompt), blog_rate)}",
             fc="#eeeeee", fontsize=10.5, weight="bold")
        y_top = 8.6
        if p["shared"]:
            _box(ax, 1.5, 7.0, 7.0, 1.05, p["shared"], fc="#fff8e1", ec="#d4a017", fontsize=10)
            _arrow(ax, (5, 8.6), (5, 8.05))
            y_top = 7.0
        n = len(p["inject"])
        hs = 1.0 if p["shared"] else 1.05
        gap = (y_top - 0.75 - (res_y + res_h) - 0.35) / n
        ys = [y_top - 0.75 - (j + 1) * gap + (gap - hs) for j in range(n)]
        for xc, arm in ((2.6, "inject"), (7.4, "none")):
            color = COLORS[arm]
            ax.text(xc, y_top - 0.42, arm_label(arm, cells, prompt), ha="center", fontsize=10.5, weight="bold",
                    color=color)
            _arrow(ax, (xc, y_top - 0.5), (xc, ys[0] + hs), color=color)
            for j, text in enumerate(p[arm]):
                _box(ax, xc - 2.1, ys[j], 4.2, hs, text, ec=color, fontsize=9.5)
                if j + 1 < n:
                    _arrow(ax, (xc, ys[j]), (xc, ys[j + 1] + hs), color=color)
            _arrow(ax, (xc, ys[-1]), (xc, res_y + res_h), color=color)
            _box(ax, xc - 2.3, res_y, 4.6, res_h,
                 f"SuperCLEVR\naccuracy: {_ours_blog(sc(prompt, arm), blog_sc(prompt, arm))}\n"
                 f"number present: {_ours_blog(present(prompt, arm), blog_present(prompt, arm))}",
                 fc=LIGHT[arm], ec=color, fontsize=9, weight="bold")
        blog_eff = BLOG.injection_effect_superclevr[prompt].text
        ax.text(5, 0.3, f"injection effect on transfer: {_ours_blog(effect(prompt), blog_eff)}", ha="center",
                fontsize=10.5, weight="bold")
    fig.suptitle("Why baseline strength matters (the blog's hypothesis), with our measurements", fontsize=13,
                 weight="bold")
    n_seeds = int(cells["seed"].nunique()) if cells is not None and len(cells) and "seed" in cells else 0
    fig.text(0.5, 0.0, f"ours: {n_seeds} seed{'s' if n_seeds != 1 else ''} (mean ± std over seeds); the boxes "
             "state the blog's explanation, the numbers test its prediction", ha="center", fontsize=9,
             color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return _save(fig, out_path)


# ---------------------------------------------------------------------------
# all figures
# ---------------------------------------------------------------------------

FIGURE_FILES = {
    "baseline_comparison": "baseline_comparison.png",
    "grpo_algorithm": "grpo_algorithm.png",
    "format_vs_accuracy": "format_vs_accuracy.png",
    "learning_curves_default": "learning_curves_default.png",
    "learning_curves_r1v": "learning_curves_r1v.png",
    "transfer_results": "transfer_results.png",
    "injection_effect_summary": "injection_effect_summary.png",
    "results_table": "results_table.png",
    "results_summary_bar": "results_summary_bar.png",
    "key_takeaway": "key_takeaway.png",
}


def render_all(baseline: pd.DataFrame, curves: pd.DataFrame, cells: pd.DataFrame, base_eval: pd.DataFrame,
               threshold: float, out_dir: Path, window: int | None = None,
               group_size: int = BLOG.group_size) -> dict[str, Path]:
    """Write every figure into ``out_dir`` with the fixed names of ``FIGURE_FILES``."""
    out_dir = Path(out_dir)
    f = {k: out_dir / v for k, v in FIGURE_FILES.items()}
    return {
        "baseline_comparison": plot_baseline_comparison(baseline, f["baseline_comparison"]),
        "grpo_algorithm": plot_grpo_algorithm(f["grpo_algorithm"], group_size=group_size),
        "format_vs_accuracy": plot_format_vs_accuracy(curves, f["format_vs_accuracy"], window=window),
        "learning_curves_default": plot_learning_curves(curves, cells, "default", threshold,
                                                        f["learning_curves_default"], window=window),
        "learning_curves_r1v": plot_learning_curves(curves, cells, "r1v", threshold, f["learning_curves_r1v"],
                                                    window=window),
        "transfer_results": plot_transfer_results(cells, base_eval, f["transfer_results"]),
        "injection_effect_summary": plot_injection_effect_summary(cells, base_eval, f["injection_effect_summary"]),
        "results_table": plot_results_table(cells, base_eval, f["results_table"], threshold=threshold),
        "results_summary_bar": plot_results_summary_bar(cells, base_eval, f["results_summary_bar"]),
        "key_takeaway": plot_key_takeaway(cells, base_eval, f["key_takeaway"]),
    }
