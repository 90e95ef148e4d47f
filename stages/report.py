"""Stage ``report``: every figure and table of the blog, regenerated from the pipeline's own measurements.

Reads metrics and logs (never a model's weights): ``metrics/baseline.json``, ``metrics/train/CELL.json``, the
DVCLive logs ``dvclive/train/CELL``, ``metrics/eval/{clevr,superclevr}/*.json`` (with their per-question
records, for the 95% intervals), the evaluations' answers ``answers/{clevr,superclevr}/*.jsonl`` with the base
model's tokenizer (the mechanism table: answer lengths in tokens), and of params: the grid (prompt_styles, seeds, injection), train.steps /
accuracy_threshold / rolling_window / group_size, baseline_assess.group_size and the fetch_model params that
calibrate the mini base model (the premises table).  Writes the PNG figures, ``reports/report.md`` (every
table, with its 95% intervals and the blog's numbers beside ours, the claims table and the premises table),
and a flat summary metrics file keyed by role (``default.inject.superclevr_acc``) for ``dvc metrics diff``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from stages.analysis import claims, dynamics, estimates, intervals, mechanism
from stages.analysis import tables as report_tables
from stages.analysis.account_table import account_table
from stages.cells import ROLES, cell_name
from stages.environment import environment_markdown
from stages.io import atomic_dir, atomic_write_text, read_json, write_json
from stages.plots import render

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)

CURVE_KEYS = {"digit_rate": "charts/digit_rate", "accuracy": "charts/accuracy", "mean_reward": "charts/mean_reward",
              "injected_frac": "charts/injected_frac", "completion_length": "charts/completion_length"}


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
    """One row per trained cell: its train metrics and, per eval dataset, the columns of
    :func:`estimates.eval_columns` (accuracy, digit rate, n, per-question record, greedy accuracy)."""
    rows = []
    for prompt, arm, seed in grid(cfg):
        cell = cell_name(prompt, arm, seed)
        train = _json(metrics_dir / "train" / f"{cell}.json")
        if train is None:
            continue
        nan = float("nan")
        row = {"prompt": prompt, "arm": arm, "strategy": _strategy(arm, train, cfg), "seed": seed,
               "steps": train["steps"],
               "steps_to_threshold": train["steps_to_threshold"] if train["steps_to_threshold"] is not None else nan,
               "train_seconds": train["train_seconds"]}
        for ds in estimates.DATASETS:
            row.update(estimates.eval_columns(ds, _json(metrics_dir / "eval" / ds / f"{cell}.json")))
        rows.append(row)
    return pd.DataFrame(rows)


def load_base_eval(cfg: Config, metrics_dir: Path) -> pd.DataFrame:
    """One row per prompt whose base model was evaluated: the columns of :func:`estimates.eval_columns`."""
    rows = []
    for prompt in cfg.prompt_styles:
        found = {ds: _json(metrics_dir / "eval" / ds / f"{prompt}-base.json") for ds in estimates.DATASETS}
        if any(found.values()):
            row = {"prompt": prompt}
            for ds, m in found.items():
                row.update(estimates.eval_columns(ds, m))
            rows.append(row)
    return pd.DataFrame(rows)


def _tokenizer(base_dir: Path | None):
    """The base model's tokenizer (its files only), or None where there is none to read."""
    if base_dir is None or not (Path(base_dir) / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(base_dir))


def load_answer_mechanism(cfg: Config, answers_dir: Path, base_dir: Path | None) -> pd.DataFrame:
    """One row per model (each prompt's base, each cell) and domain: :func:`mechanism.answer_mechanism` of its
    headline answers (the first sampled answer per question), answer lengths counted by the base's tokenizer
    (NaN without one)."""
    tokenizer = _tokenizer(base_dir)
    models = [(p, "base", float("nan"), f"{p}-base") for p in cfg.prompt_styles]
    models += [(p, arm, s, cell_name(p, arm, s)) for p, arm, s in grid(cfg)]
    rows = []
    for prompt, arm, seed, name in models:
        for ds in estimates.DATASETS:
            path = answers_dir / ds / f"{name}.jsonl"
            if not path.is_file():
                continue
            answers = pd.read_json(path, lines=True, dtype=False)  # dtype=False: an answer "5" stays a string
            if "decoding" in answers:
                answers = answers[(answers["decoding"] == "sampled") & (answers["sample"] == 0)]
            texts = [str(r) for r in answers["response"]]
            tokens = ([len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts] if tokenizer
                      else [float("nan")] * len(texts))
            rows.append({"prompt": prompt, "domain": ds, "arm": arm, "seed": seed,
                         **mechanism.answer_mechanism(answers.assign(response=texts), prompt, tokens)})
    return pd.DataFrame(rows)


def eval_decoding(cfg: Config, metrics_dir: Path) -> dict | None:
    """The decoding the evaluations recorded (the first eval metrics file found), else None."""
    names = [cell_name(p, a, s) for p, a, s in grid(cfg)] + [f"{p}-base" for p in cfg.prompt_styles]
    for ds in estimates.DATASETS:
        for name in names:
            m = _json(metrics_dir / "eval" / ds / f"{name}.json")
            if m and m.get("decoding"):
                return m["decoding"]
    return None


def calibration(cfg: Config) -> dict[str, float] | None:
    """The fetch_model params that calibrate the mini base model to the blog's premises (the premises table's
    "calibrated by"); None under the blog profile, whose base model is the real one."""
    if cfg.profile == "blog":
        return None
    f = cfg.fetch_model
    return {"default_digit_frac": f.default_digit_frac, "default_digit_max_count": f.default_digit_max_count,
            "default_digit_frac_above": f.default_digit_frac_above,
            "default_digit_noise_above": f.default_digit_noise_above, "default_digit_noise": f.default_digit_noise,
            "superclevr_default_digit_frac": f.superclevr_default_digit_frac,
            "r1v_answer_noise": f.r1v_answer_noise, "superclevr_r1v_answer_noise": f.superclevr_r1v_answer_noise,
            "superclevr_frac": f.superclevr_frac, "r1v_frac": f.r1v_frac}


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


def _decoding_text(decoding: dict | None) -> str:
    if not decoding:
        return "the decoding set in params eval.*"
    if decoding.get("do_sample"):
        return f"sampling, temperature {decoding['temperature']}, top_p {decoding['top_p']}"
    return "greedy decoding"


def _greedy_measured(*frames: pd.DataFrame) -> bool:
    return any(col.endswith("_greedy_acc") and pd.to_numeric(df[col], errors="coerce").notna().any()
               for df in frames if len(df) for col in df.columns)


def intervals_text(cfg: Config, cells: pd.DataFrame, base_eval: pd.DataFrame, decoding: dict | None) -> str:
    """The intro's account of the evaluation and the intervals: samples per question, greedy, units, method."""
    ks = estimates.samples_per_question(cells, base_eval)
    if ks:
        times = " or ".join(str(k) for k in ks) + " times" if ks != [1] else "once"
    else:
        k = (decoding or {}).get("samples_per_question", 1)
        times = f"{k} times" if k > 1 else "once"
    greedy = ("It also answers each question once greedily: the greedy columns, beside the sampled accuracy, "
              "show an accuracy free of sampling noise." if _greedy_measured(cells, base_eval) else
              "Greedy accuracy was not measured: the greedy columns show —.")
    seeds = ("With one seed per role, as here, they carry question noise only, not seed noise: another seed may land "
             "outside them." if len(cfg.seeds) == 1 else
             f"With {len(cfg.seeds)} seeds per role they carry both seed and question noise.")
    return (f"Evaluation answers each question {times} with {_decoding_text(decoding)}: the accuracies in every "
            f"table. {greedy} Every accuracy and digit rate comes with its 95% interval, written "
            f"`45.5% [38.6–52.4]`. For a trained role (prompt x arm) the interval is over seeds and questions: a "
            f"hierarchical bootstrap with {intervals.N_BOOT:,} replicates, each drawing the evaluation questions "
            "with replacement (the same draw for every role of a dataset, so differences between roles are paired "
            "by question) and the role's seeds with replacement; the per-seed values follow in parentheses when "
            f"there are several. {seeds} The base model's intervals are a bootstrap over questions; the baseline "
            "assessment's (one answer per question) are Wilson score intervals, as are cells whose metrics hold no "
            "per-question record (and differences with them are unpaired). Steps to the threshold are one number "
            "per seed: mean ± sd with the [min–max] range over seeds. The claims are decided on these intervals; "
            "each Rule says how.")


def _injected_example(prompt: str) -> str:
    from stages.prompts import injected_completion

    return injected_completion(prompt, 5)


def report_markdown(cfg: Config, baseline, cells, base_eval, claims_df, decoding: dict | None,
                    eval_decoding: dict | None = None, account: dict | None = None,
                    answer_mechanism: pd.DataFrame | None = None) -> str:
    thr = cfg.train.accuracy_threshold
    measured = dict(zip(baseline["prompt"], baseline["digit_rate"], strict=False)) if len(baseline) else {}
    measured_ci = {}
    for prompt in measured:
        e = estimates.baseline_estimate(baseline, prompt, "digit_rate")
        measured_ci[prompt] = (e.lo, e.hi)
    fig = lambda name, caption: f"![{caption}](figures/{render.FIGURE_FILES[name]})\n\n*{caption}*\n"  # noqa: E731
    parts = [
        "# GRPO with guidance injection: the study, regenerated",
        "",
        f"Profile **{cfg.profile}**; injection arm **{cfg.injection}**; seeds {cfg.seeds}; "
        f"{cfg.train.steps} training steps per cell; accuracy threshold {thr:.0%}. "
        f"{intervals_text(cfg, cells, base_eval, eval_decoding or decoding)} The baseline assessment answers "
        f"each question once with {_decoding_text(decoding)}. Every number below was measured by this pipeline; "
        "the blog's numbers stand beside ours. Where the mini world does not reproduce a finding, the claims table "
        "says so.",
        "",
        "## Claims", "", claims.claims_markdown(claims_df), "",
        "## Premises: the base model against the blog's", "",
        "What the study rests on: the base model's format and accuracy per prompt, ours (95% interval) beside the "
        "blog's. CLEVR rows come from the baseline assessment, SuperCLEVR rows from the base model's evaluation. "
        + ("The mini profile's base model is pretrained to match the blog's; \"calibrated by\" names the "
           "fetch_model params that set each premise, \"within reach?\" whether the blog's number lies inside our "
           "interval." if cfg.profile != "blog" else
           "Under the blog profile the base model is the real one: nothing is calibrated."),
        "", report_tables.premises_table(baseline, base_eval, calibration(cfg)), "",
        "## The blog's account of its base model", "",
        "What post 001 says the base model does before training, beside what ours does (the baseline "
        "assessment's answers, one per question, on both domains; `metrics/baseline.json`, `account`). Where the "
        "blog gives words, not a number, \"within reach when\" says how we read them. "
        + ("\"Set by\" names what makes the mini world's base behave so; a \"no\" is a premise of the blog the "
           "mini world does not meet, and the findings below rest on that world, not the blog's."
           if cfg.profile != "blog" else "Under the blog profile these are the real model's and data's numbers: "
           "compare them with the mini profile's committed ones to see which of its premises hold."),
        "", account_table(account, real_model=cfg.profile == "blog"), "",
        "## Baseline", "", fig("baseline_comparison", "Figure 1: digit rate of the base model by prompt style"),
        report_tables.baseline_table(baseline), "",
        report_tables.signal_chance_table(measured, cfg.baseline_assess.group_size, measured_ci=measured_ci), "",
        report_tables.digit_rate_threshold_table(measured, measured_ci), "",
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
        "## Why the arms differ, or do not", "",
        "The blog splits its SuperCLEVR drop into numbers present x accuracy given a number; two more quantities "
        "say what the policy writes: how long its answers are, and how many take the form of the text injection "
        "inserts (`" + "`, `".join(f"{p}: {_injected_example(p)}" for p in cfg.prompt_styles) + "` for a count of "
        "5; the form counts whatever number the answer states, right or wrong). Over training, from the policy's "
        "own CLEVR training samples (Figure 11; lengths there count the end token, the table's do not; this grid "
        "takes no SuperCLEVR probe while training: the study does, for its format-lag curves):", "",
        fig("mechanism", "Figure 11: answer length, numbers present and accuracy given a number over training"),
        "At the ends, the base model and each trained cell on both domains (the evaluations' headline answers, "
        "one sampled answer per question; mean ± sd over seeds):", "",
        mechanism.mechanism_table(answer_mechanism), "",
        "## Environment", "", environment_markdown(), "",
    ]
    return "\n".join(parts) + "\n"


def main(cfg: Config, metrics_dir: Path, live_dir: Path, out_dir: Path, summary_path: Path,
         answers_dir: Path | None = None, base_dir: Path | None = None) -> dict:
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
    account = (_json(metrics_dir / "baseline.json") or {}).get("account")
    answer_mechanism = load_answer_mechanism(cfg, answers_dir, base_dir) if answers_dir else None
    atomic_write_text(out_dir / "report.md", report_markdown(cfg, baseline, cells, base_eval, claims_df, decoding,
                                                             eval_decoding(cfg, metrics_dir), account,
                                                             answer_mechanism))
    summary = flat_summary(cells, base_eval, baseline)
    write_json(summary_path, summary, sort_keys=False)  # headline first
    log.info("report: %d cells, %d claims -> %s", len(cells), len(claims_df), out_dir / "report.md")
    return summary
