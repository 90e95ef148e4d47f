"""Diagrams: the GRPO algorithm with guidance injection, and the key-takeaway mechanism figure.

The GRPO diagram is an illustration (example rewards for one group; the advantages shown are computed
from them). The key-takeaway figure states the blog's explanation in boxes and annotates it with our
measured transfer numbers from ``stages.analysis.tables``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import FancyBboxPatch

from stages.analysis.blog_numbers import BLOG
from stages.analysis.tables import arm_label, base_value, cell_values, fmt_pct_short, injection_effect, pct
from stages.plots.common import COLORS, LIGHT, arrow, blog_arm, box, save


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

    box(ax, 0.1, mid - 1.0, 2.2, 2.0, "Prompt\nimage + question\n\"How many items\nare there?\"\n(truth: 5)",
         fc="#f2f2f2")
    box(ax, 2.9, mid - 1.0, 2.1, 2.0, f"Policy $\\pi_\\theta$\nsamples G = {g}\nresponses\n(temperature 1)",
         fc="#e8f0fa")
    arrow(ax, (2.3, mid), (2.9, mid))
    ax.text(7.1, top + 0.45, "1. samples + reward\n(+1 correct, 0 wrong, -1 no number)", ha="center", fontsize=9.5,
            weight="bold")
    ax.text(11.05, top + 0.45, "2. guidance injection\n(inject arm only)", ha="center", fontsize=9.5, weight="bold",
            color=COLORS["inject"])
    ax.text(14.1, top + 0.45, "3. group-normalised advantage\n$A_i = (r_i - \\mathrm{mean}(r)) / \\mathrm{std}(r)$",
            ha="center", fontsize=9.5, weight="bold")
    ax.text(14.85, top + 0.05, "without\ninjection", ha="center", fontsize=7.5, color=COLORS["none"])
    bh = dy * 0.78
    for i, y in enumerate(ys):
        arrow(ax, (5.0, mid), (5.5, y), lw=0.7, color="#777777")
        box(ax, 5.5, y - bh / 2, 2.7, bh, f"\"{samples[i]}\"", fontsize=8.5)
        c, t = chip[rewards[i]]
        box(ax, 8.3, y - bh / 2, 0.6, bh, t, fc=c, ec=c, fontsize=9, weight="bold", color="white")
        arrow(ax, (8.95, y), (9.45, y), lw=0.8, color="#777777")
        if i in injected:
            box(ax, 9.5, y - bh / 2, 2.5, bh, "\"5\"  (injected)", fc="#fde0e0", ec=COLORS["inject"], fontsize=8.5,
                 ls="--", lw=1.4)
            c2, t2 = chip[1.0]
        else:
            box(ax, 9.5, y - bh / 2, 2.5, bh, "kept (policy sample)", fc="#ffffff", ec="#bbbbbb", fontsize=8,
                 color="#666666")
            c2, t2 = chip[after[i]]
        box(ax, 12.1, y - bh / 2, 0.6, bh, t2, fc=c2, ec=c2, fontsize=9, weight="bold", color="white")
        arrow(ax, (12.75, y), (13.1, y), lw=0.8, color="#777777")
        col = "#2ca02c" if adv[i] > 0 else "#8c8c8c"
        box(ax, 13.15, y - bh / 2, 1.25, bh, f"{adv[i]:+.2f}", fc="white", ec=col, fontsize=9, weight="bold",
             color=col)
        ax.text(14.5, y, f"({adv_none[i]:+.2f})", fontsize=7.5, va="center", color="#1f77b4")
    ax.text(14.15, bottom - 0.3, "black: inject arm\nblue: no-injection arm", ha="center", va="top",
            fontsize=8.5)
    ax.text(10.95, bottom - 0.3, f"replace k in [1, {g - 1}] samples by\nthe truth (reward +1), never all G", ha="center", va="top", fontsize=8.5, color=COLORS["inject"])
    ax.add_patch(FancyBboxPatch((9.35, bottom - 0.1), 3.45, top - bottom + 0.2, boxstyle="round,pad=0.05",
                                fc="none", ec=COLORS["inject"], ls="--", lw=1.0))
    box(ax, 15.4, mid - 1.5, 2.5, 3.0, "4. clipped policy update\n"
         "$L = -\\min(\\rho A,$\n$\\mathrm{clip}(\\rho, 1-\\epsilon, 1+\\epsilon) A)$\n"
         f"$\\rho = \\pi_\\theta / \\pi_{{old}}$, $\\epsilon$ = {BLOG.clip_epsilon}\n4 epochs, no KL",
         fc="#e8f5e9", fontsize=9)
    arrow(ax, (15.1, mid), (15.4, mid))
    loop_y = -0.35
    ax.plot([16.65, 16.65, 3.95], [mid - 1.55, loop_y, loop_y], color="#2ca02c", lw=1.6)
    arrow(ax, (3.95, loop_y), (3.95, mid - 1.05), color="#2ca02c", lw=1.6)
    ax.text(6.5, loop_y + 0.1, "next step: the updated policy samples again", ha="center", va="bottom", fontsize=9,
            color="#2ca02c")
    ax.set_title("GRPO with guidance injection: one prompt's group (example rewards; advantages computed from them)",
                 fontsize=12, weight="bold")
    return save(fig, out_path)


def _ours_blog(ours: str, blog: str) -> str:
    return f"ours {ours}  |  blog {blog}"


def plot_key_takeaway(cells: pd.DataFrame, base_eval: pd.DataFrame, out_path: Path) -> Path:
    """The blog's mechanism, weak vs strong baseline, annotated with our measured transfer numbers."""
    fig, axes = plt.subplots(1, 2, figsize=(16, 7.6))

    def sc(prompt, arm):
        return fmt_pct_short(cell_values(cells, prompt, arm, "superclevr_acc"))

    def blog_sc(prompt, arm):
        v = blog_arm(prompt, arm, "superclevr_acc")
        return v.text if v else "—"

    def effect(prompt):
        d, _, _ = injection_effect(cells, prompt)
        return f"{d * 100:+.1f} pp" if np.isfinite(d) else "not run"

    def rate(prompt):
        v = base_value(base_eval, prompt, "clevr_digit_rate")
        return pct(v) if np.isfinite(v) else "not run"

    def present(prompt, arm):
        return fmt_pct_short(cell_values(cells, prompt, arm, "superclevr_digit_rate"))

    def blog_present(prompt, arm):
        v = blog_arm(prompt, arm, "superclevr_digit_rate")
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
        box(ax, 1.0, 8.6, 8.0, 1.15, f"{p['head']}\nbase digit rate: {_ours_blog(rate(prompt), blog_rate)}",
             fc="#eeeeee", fontsize=10.5, weight="bold")
        y_top = 8.6
        if p["shared"]:
            box(ax, 1.5, 7.0, 7.0, 1.05, p["shared"], fc="#fff8e1", ec="#d4a017", fontsize=10)
            arrow(ax, (5, 8.6), (5, 8.05))
            y_top = 7.0
        n = len(p["inject"])
        hs = 1.0 if p["shared"] else 1.05
        gap = (y_top - 0.75 - (res_y + res_h) - 0.35) / n
        ys = [y_top - 0.75 - (j + 1) * gap + (gap - hs) for j in range(n)]
        for xc, arm in ((2.6, "inject"), (7.4, "none")):
            color = COLORS[arm]
            ax.text(xc, y_top - 0.42, arm_label(arm, cells, prompt), ha="center", fontsize=10.5, weight="bold",
                    color=color)
            arrow(ax, (xc, y_top - 0.5), (xc, ys[0] + hs), color=color)
            for j, text in enumerate(p[arm]):
                box(ax, xc - 2.1, ys[j], 4.2, hs, text, ec=color, fontsize=9.5)
                if j + 1 < n:
                    arrow(ax, (xc, ys[j]), (xc, ys[j + 1] + hs), color=color)
            arrow(ax, (xc, ys[-1]), (xc, res_y + res_h), color=color)
            box(ax, xc - 2.3, res_y, 4.6, res_h,
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
    return save(fig, out_path)
