"""Every figure of the report, written under fixed file names.

The figures by family: ``diagrams`` (GRPO algorithm, key takeaway), ``curves`` (format vs accuracy,
learning curves), ``mechanism`` (what the policy writes while it trains), ``results`` (baseline comparison, transfer, injection effect, results table, summary
bar); shared drawing helpers in ``common``. Figures only draw what ``stages.analysis`` computes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from stages.analysis.blog_numbers import BLOG
from stages.analysis.mechanism import mechanism_curves
from stages.plots.curves import plot_format_vs_accuracy, plot_learning_curves
from stages.plots.diagrams import plot_grpo_algorithm, plot_key_takeaway
from stages.plots.mechanism import plot_mechanism
from stages.plots.results import (
    plot_baseline_comparison,
    plot_injection_effect_summary,
    plot_results_summary_bar,
    plot_results_table,
    plot_transfer_results,
)

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
    "mechanism": "mechanism.png",
}


def render_all(baseline: pd.DataFrame, curves: pd.DataFrame, cells: pd.DataFrame, base_eval: pd.DataFrame,
               threshold: float, out_dir: Path, window: int, group_size: int = BLOG.group_size) -> dict[str, Path]:
    """Write every figure into ``out_dir`` with the fixed names of ``FIGURE_FILES``; ``window``: the rolling
    window of the curves (params ``report.rolling_window``)."""
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
        "mechanism": plot_mechanism(mechanism_curves(curves, window), f["mechanism"]),
    }
