"""Figure: the mechanism over training, per prompt (rows) and arm (colours), from the CLEVR training curves: the
answer length, numbers present and accuracy given a number of the policy's own samples. The numbers come from
:func:`stages.analysis.mechanism.mechanism_curves`; this module only draws them."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from stages.analysis.tables import arm_label, select
from stages.cells import PROMPT_STYLES, ROLES
from stages.plots.common import COLORS, note, pct_axis, save
from stages.plots.curves import draw_series

PANELS: tuple[tuple[str, str, bool], ...] = (  # (column, title, is a share)
    ("completion_length", "answer length (tokens, end token included)", False),
    ("digit_rate", "numbers present", True),
    ("accuracy_given_number", "accuracy given a number", True),
)


def plot_mechanism(rolled: pd.DataFrame, out_path: Path, prompts: tuple[str, ...] = PROMPT_STYLES) -> Path:
    """``rolled``: :func:`stages.analysis.mechanism.mechanism_curves` of every cell's curves."""
    fig, axes = plt.subplots(len(prompts), len(PANELS), figsize=(4.2 * len(PANELS), 3.1 * len(prompts)),
                             squeeze=False)
    for i, prompt in enumerate(prompts):
        for j, (column, title, share) in enumerate(PANELS):
            ax = axes[i][j]
            ax.set_title(f"{prompt} prompt: {title}", fontsize=10)
            drawn = False
            for arm in ROLES:
                rows = select(rolled, prompt, arm)
                if rows.empty or column not in rows:
                    continue
                draw_series(ax, rows, column, COLORS[arm], arm_label(arm, rolled, prompt))
                drawn = True
            if not drawn:
                note(ax, "not run")
                continue
            if share:
                pct_axis(ax)
            else:
                ax.set_ylim(bottom=0)
            ax.set_xlabel("steps trained")
            if i == 0 and j == 0:
                ax.legend(fontsize=8, loc="best")
    fig.suptitle("What the policy writes on CLEVR while it trains (mean of per-seed rolling means, band min-max)",
                 fontsize=11)
    fig.tight_layout()
    return save(fig, out_path)
