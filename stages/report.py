"""Stage ``report``: every figure and table of the blog, regenerated from the pipeline's own measurements.

Reads metrics and logs only (never a model): ``metrics/baseline.json``, ``metrics/train/CELL.json``, the
DVCLive logs ``dvclive/train/CELL``, ``metrics/eval/{clevr,superclevr}/*.json``.  Writes the PNG figures,
``reports/report.md`` (every table, with the blog's numbers beside ours, and the claims table), and a flat
summary metrics file keyed by role (``default.inject.superclevr_acc``) for ``dvc metrics diff``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from stages.analysis import claims, dynamics
from stages.analysis import tables as report_tables
from stages.cells import ROLES, cell_name
from stages.environment import environment_markdown
from stages.io import atomic_dir, atomic_write_text, read_json, write_json
from stages.plots import render

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)

CURVE_KEYS = {"digit_rate": "charts/digit_rate", "accuracy": "charts/accuracy", "mean_reward": "charts/mean_reward",
              "injected_frac": "charts/injected_frac"}


PLOT_COLUMNS = ("accuracy", "digit_rate", "mean_reward", "injected_frac")


def grid(cfg: Config) -> list[tuple[str, str, int]]:
    """The cells of the study: prompt x role (none, inject) x seed. Only these are read: outputs named by role
    are rewritten by every experiment, so nothing an earlier one left can slip into the report."""
    return [(p, role, s) for p in cfg.prompt_styles for role in ROLES for s in cfg.seeds]


def _strategy(role: str, train: dict | None, cfg: Config) -> str:
    """The strategy an inject cell trained with (its metrics record it), else params `injection`."""
    return "none" if role == "none" else (train or {}).get("strategy", cfg.injection)


def _json(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def load_baseline(metrics_dir: Path) -> pd.DataFrame:
    m = _json(metrics_dir / "baseline.json")
    if not m:
        return pd.DataFrame(columns=["prompt", "digit_rate", "accuracy", "accuracy_given_digit", "n"])
    return pd.DataFrame([{"prompt": p, **{k: v[k] for k in ("digit_rate", "accuracy", "accuracy_given_digit", "n")}}
                         for p, v in m["prompts"].items()])


def load_curves(cfg: Config, live_dir: Path, metrics_dir: Path) -> pd.DataFrame:
    """Per-step logs of every cell from DVCLive's TSV files."""
    frames = []
    for prompt, arm, seed in grid(cfg):
        base = live_dir / cell_name(prompt, arm, seed) / "plots" / "metrics"
        cols = {}
        for col, name in CURVE_KEYS.items():
            tsv = base / f"{name}.tsv"
            if tsv.is_file():
                cols[col] = pd.read_csv(tsv, sep="\t").set_index("step")[name.split("/")[-1]]
        if "accuracy" not in cols:
            continue
        df = pd.DataFrame(cols).reset_index()
        df["injected_frac"] = df.get("injected_frac", 0.0)
        strategy = _strategy(arm, _json(metrics_dir / "train" / f"{cell_name(prompt, arm, seed)}.json"), cfg)
        frames.append(df.assign(prompt=prompt, arm=arm, strategy=strategy, seed=seed))
    if not frames:
        return pd.DataFrame(columns=["prompt", "arm", "strategy", "seed", "step", *CURVE_KEYS])
    return pd.concat(frames, ignore_index=True)


def load_cells(cfg: Config, metrics_dir: Path) -> pd.DataFrame:
    rows = []
    for prompt, arm, seed in grid(cfg):
        cell = cell_name(prompt, arm, seed)
        train = _json(metrics_dir / "train" / f"{cell}.json")
        clevr = _json(metrics_dir / "eval" / "clevr" / f"{cell}.json")
        superclevr = _json(metrics_dir / "eval" / "superclevr" / f"{cell}.json")
        if train is None:
            continue
        nan = float("nan")
        rows.append({
            "prompt": prompt, "arm": arm, "strategy": _strategy(arm, train, cfg), "seed": seed,
            "steps": train["steps"],
            "steps_to_threshold": train["steps_to_threshold"] if train["steps_to_threshold"] is not None else nan,
            "train_seconds": train["train_seconds"],
            "clevr_acc": clevr["accuracy"] if clevr else nan,
            "clevr_digit_rate": clevr["digit_rate"] if clevr else nan,
            "superclevr_acc": superclevr["accuracy"] if superclevr else nan,
            "superclevr_digit_rate": superclevr["digit_rate"] if superclevr else nan,
        })
    return pd.DataFrame(rows)


def load_base_eval(cfg: Config, metrics_dir: Path) -> pd.DataFrame:
    rows = []
    for prompt in cfg.prompt_styles:
        clevr = _json(metrics_dir / "eval" / "clevr" / f"{prompt}-base.json")
        superclevr = _json(metrics_dir / "eval" / "superclevr" / f"{prompt}-base.json")
        if clevr or superclevr:
            nan = float("nan")
            rows.append({"prompt": prompt,
                         "clevr_acc": clevr["accuracy"] if clevr else nan,
                         "clevr_digit_rate": clevr["digit_rate"] if clevr else nan,
                         "superclevr_acc": superclevr["accuracy"] if superclevr else nan,
                         "superclevr_digit_rate": superclevr["digit_rate"] if superclevr else nan})
    return pd.DataFrame(rows)


def flat_summary(cells: pd.DataFrame, base_eval: pd.DataFrame, baseline: pd.DataFrame) -> dict[str, float]:
    """Keys by role (prompt.arm.metric), means over seeds, so `dvc metrics diff` lines up across experiments."""
    out: dict[str, float] = {}
    for (prompt, arm), g in cells.groupby(["prompt", "arm"]) if len(cells) else []:
        for col in ("clevr_acc", "clevr_digit_rate", "superclevr_acc", "superclevr_digit_rate",
                    "steps_to_threshold", "train_seconds"):
            v = g[col].mean()
            if pd.notna(v):
                out[f"{prompt}.{arm}.{col}"] = round(float(v), 4)
        clevr = g["clevr_acc"].mean()
        if pd.notna(clevr) and clevr > 0:
            out[f"{prompt}.{arm}.generalization_ratio"] = round(float(g["superclevr_acc"].mean() / clevr), 4)
    for row in base_eval.itertuples() if len(base_eval) else []:
        for col in ("clevr_acc", "clevr_digit_rate", "superclevr_acc", "superclevr_digit_rate"):
            v = getattr(row, col)
            if pd.notna(v):
                out[f"{row.prompt}.base.{col}"] = round(float(v), 4)
    for row in baseline.itertuples() if len(baseline) else []:
        out[f"{row.prompt}.baseline.digit_rate"] = round(float(row.digit_rate), 4)
        out[f"{row.prompt}.baseline.accuracy"] = round(float(row.accuracy), 4)
    return headline_first(out)


HEADLINE = ("steps_to_threshold", "superclevr_acc", "clevr_acc")  # the blog's results table, per trained role


def headline_first(summary: dict[str, float]) -> dict[str, float]:
    """The trained roles' headline numbers first (``dvc exp show`` keeps this order), then the rest sorted."""
    def rank(key: str) -> tuple:
        prompt, role, metric = key.split(".", 2)
        headline = role in ("inject", "none") and metric in HEADLINE
        return (not headline, HEADLINE.index(metric) if headline else 0, prompt, role, metric)

    return {k: summary[k] for k in sorted(summary, key=rank)}


def report_markdown(cfg: Config, baseline, cells, base_eval, claims_df, decoding: dict | None) -> str:
    thr = cfg.train.accuracy_threshold
    measured = dict(zip(baseline["prompt"], baseline["digit_rate"], strict=False)) if len(baseline) else {}
    fig = lambda name, caption: f"![{caption}](figures/{render.FIGURE_FILES[name]})\n\n*{caption}*\n"  # noqa: E731
    dec = (f"sampling, temperature {decoding['temperature']}, top_p {decoding['top_p']}" if decoding and
           decoding.get("do_sample") else "greedy decoding") if decoding else "as set in params eval.*"
    parts = [
        "# GRPO with guidance injection: the study, regenerated",
        "",
        f"Profile **{cfg.profile}**; injection arm **{cfg.injection}**; seeds {cfg.seeds}; "
        f"{cfg.train.steps} training steps per cell; accuracy threshold {thr:.0%}. "
        f"Evaluation answers each question once with {dec}. Every number below was measured by this "
        "pipeline; the blog's numbers stand beside ours. Where the mini world does not reproduce a finding, the "
        "claims table says so.",
        "",
        "## Claims", "", claims.claims_markdown(claims_df), "",
        "## Baseline", "", fig("baseline_comparison", "Figure 1: digit rate of the base model by prompt style"),
        report_tables.baseline_table(baseline), "",
        report_tables.signal_chance_table(measured, cfg.baseline_assess.group_size), "",
        report_tables.digit_rate_threshold_table(measured), "",
        "## GRPO", "", fig("grpo_algorithm", "Figure 2: GRPO with guidance injection"),
        report_tables.reward_table(), "",
        "## Two phases of learning", "", fig("format_vs_accuracy", "Figure 3: format (digit rate) vs accuracy, default prompt, no injection"),
        "## Learning speed", "",
        fig("learning_curves_default", "Figure 4: learning curves, default prompt (weak baseline)"),
        fig("learning_curves_r1v", "Figure 6: learning curves, R1V prompt (strong baseline)"),
        report_tables.in_domain_table(cells, thr), "",
        "## Transfer to SuperCLEVR", "",
        fig("transfer_results", "Figure 5: in-domain vs cross-domain accuracy"),
        fig("injection_effect_summary", "Figure 7: the injection effect on transfer by baseline strength"),
        report_tables.cross_domain_table(cells, base_eval), "",
        report_tables.r1v_tables(cells, base_eval, thr), "",
        "## Complete results", "",
        fig("results_table", "Figure 8: complete results"),
        fig("results_summary_bar", "Figure 9: SuperCLEVR accuracy by configuration"),
        report_tables.complete_results_table(cells, base_eval), "",
        fig("key_takeaway", "Figure 10: the mechanism, with our measurements"),
        "## Environment", "", environment_markdown(), "",
    ]
    return "\n".join(parts) + "\n"


def main(cfg: Config, metrics_dir: Path, live_dir: Path, out_dir: Path, summary_path: Path) -> dict:
    os.environ.setdefault("MPLBACKEND", "Agg")
    baseline = load_baseline(metrics_dir)
    curves = load_curves(cfg, live_dir, metrics_dir)
    cells = load_cells(cfg, metrics_dir)
    base_eval = load_base_eval(cfg, metrics_dir)
    thr = cfg.train.accuracy_threshold
    window = cfg.train.rolling_window
    claims_df = claims.claims_table(baseline, curves, cells, base_eval, thr, window=window)
    decoding = (_json(metrics_dir / "baseline.json") or {}).get("decoding")
    with atomic_dir(out_dir / "plots") as tmp:  # the curves `dvc plots show/diff` draw (dvc.yaml, plots:)
        for column in PLOT_COLUMNS:
            dynamics.role_curves(curves, column, window).to_csv(tmp / f"{column}.csv", index=False,
                                                                float_format="%.4f")
    with atomic_dir(out_dir / "figures") as tmp:
        render.render_all(baseline, curves, cells, base_eval, thr, tmp, window=window,
                          group_size=cfg.train.group_size)
    atomic_write_text(out_dir / "report.md", report_markdown(cfg, baseline, cells, base_eval, claims_df, decoding))
    summary = flat_summary(cells, base_eval, baseline)
    write_json(summary_path, summary, sort_keys=False)  # headline first
    log.info("report: %d cells, %d claims -> %s", len(cells), len(claims_df), out_dir / "report.md")
    return summary
