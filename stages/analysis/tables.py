"""Markdown tables of the report: our measurements beside the blog's numbers.

Pure functions: DataFrames in, GitHub-markdown strings out. The shared helpers at the
top (aggregation over seeds, injection effect, speed-up, number formatting) are also used
by the figures (``stages.plots``) and ``stages.analysis.claims``; everything about the
per-step curves (rolling means, phase boundary) is in ``stages.analysis.dynamics``.

Input frames (see the report stage): ``baseline`` (prompt, digit_rate, accuracy,
accuracy_given_digit, n), ``curves`` (prompt, arm, strategy, seed, step, digit_rate,
accuracy, mean_reward, injected_frac), ``cells`` (prompt, arm, strategy, seed, steps,
steps_to_threshold, train_seconds and the evaluation columns of
:mod:`stages.analysis.estimates`: clevr_acc, clevr_digit_rate, clevr_n, clevr_pq,
clevr_greedy_acc, clevr_greedy_n, the same for superclevr), ``base_eval`` (prompt and the
same evaluation columns). ``arm`` is "inject" or "none".

Intervals: every accuracy and digit rate in a table is shown with its 95% interval,
``45.5% [38.6–52.4]`` (:mod:`stages.analysis.estimates`): over seeds and questions for a
trained role, followed by the per-seed values when there are several ``(seeds 44.0, 47.0)``;
over questions for the base model; Wilson for the baseline assessment. Steps to the
threshold (per seed, no question noise) show mean ± sample standard deviation with the
[min–max] range over seeds. Figures draw min-max error bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.analysis import estimates as est
from stages.analysis.blog_numbers import ARM_LABELS, BASELINE_STRENGTH, BLOG, PROMPT_LABELS, BlogValue
from stages.analysis.estimates import Estimate
from stages.grpo.advantages import signal_chance

PROMPTS: tuple[str, ...] = ("default", "r1v")
ARMS: tuple[str, ...] = ("inject", "none")
DASH = "—"
NOT_RUN = "not run"


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Mean and spread of one quantity over seeds (NaNs dropped, counted apart)."""

    mean: float
    std: float  # sample std (ddof=1); 0.0 with one value; NaN with none
    lo: float
    hi: float
    n: int  # finite values
    n_missing: int  # NaN values (e.g. threshold never reached)

    @property
    def empty(self) -> bool:
        return self.n == 0


def summarize(values: Iterable[float]) -> Summary:
    arr = np.asarray(list(values), dtype=float)
    finite = arr[np.isfinite(arr)]
    missing = int(arr.size - finite.size)
    if finite.size == 0:
        return Summary(math.nan, math.nan, math.nan, math.nan, 0, missing)
    std = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return Summary(float(finite.mean()), std, float(finite.min()), float(finite.max()), int(finite.size), missing)


def select(df: pd.DataFrame | None, prompt: str | None = None, arm: str | None = None) -> pd.DataFrame:
    """Rows of ``df`` for one prompt and/or arm; an empty frame when df is None/empty."""
    if df is None or len(df) == 0:
        return pd.DataFrame()
    mask = pd.Series(True, index=df.index)
    if prompt is not None and "prompt" in df:
        mask &= df["prompt"] == prompt
    if arm is not None and "arm" in df:
        mask &= df["arm"] == arm
    return df[mask]


def cell_values(cells: pd.DataFrame | None, prompt: str, arm: str, column: str) -> np.ndarray:
    """One value per seed of ``column`` for (prompt, arm); empty when not run."""
    rows = select(cells, prompt, arm)
    if rows.empty or column not in rows:
        return np.array([], dtype=float)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)


def base_value(base_eval: pd.DataFrame | None, prompt: str, column: str) -> float:
    rows = select(base_eval, prompt)
    if rows.empty or column not in rows:
        return math.nan
    return float(pd.to_numeric(rows[column], errors="coerce").mean())


def strategies(df: pd.DataFrame | None, prompt: str | None = None) -> list[str]:
    """Injection strategy names of the inject arm (sorted, unique)."""
    rows = select(df, prompt, "inject")
    if rows.empty or "strategy" not in rows:
        return []
    return sorted({str(s) for s in rows["strategy"].dropna() if str(s) != "none"})


def arm_label(arm: str, df: pd.DataFrame | None = None, prompt: str | None = None) -> str:
    """"injection (stochastic)", "no injection", "base model"."""
    label = ARM_LABELS.get(arm, arm)
    if arm == "inject":
        names = strategies(df, prompt)
        if names:
            label += f" ({'+'.join(names)})"
    return label


def prompt_label(prompt: str) -> str:
    return f"{PROMPT_LABELS.get(prompt, prompt)} ({BASELINE_STRENGTH.get(prompt, '?')} baseline)"


def prompts_in(*frames: pd.DataFrame | None) -> list[str]:
    """The blog's prompts first, then any other prompt present in the frames."""
    seen = list(PROMPTS)
    for df in frames:
        if df is not None and len(df) and "prompt" in df:
            seen += [p for p in dict.fromkeys(df["prompt"].astype(str)) if p not in seen]
    return seen


def pct(x: float, digits: int = 1) -> str:
    return DASH if x is None or not np.isfinite(x) else f"{x * 100:.{digits}f}%"


def fmt_pct(values: Iterable[float] | float, missing: str = NOT_RUN) -> str:
    """'93.0%' for one value, '93.0% ± 1.2 (n=2)' for several (std in pp)."""
    if np.isscalar(values):
        values = [values]  # type: ignore[list-item]
    vals = list(values)  # type: ignore[arg-type]
    if not vals:
        return missing
    s = summarize(vals)
    if s.empty:
        return "n/a"
    if s.n == 1 and s.n_missing == 0:
        return pct(s.mean)
    text = f"{pct(s.mean)} ± {s.std * 100:.1f} (n={s.n})"
    if s.n_missing:
        text += f"; {s.n_missing} n/a"
    return text


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def fmt_steps(values: Iterable[float], missing: str = NOT_RUN) -> str:
    """Steps to threshold over seeds; NaN means 'not reached'."""
    vals = list(values)
    if not vals:
        return missing
    s = summarize(vals)
    if s.empty:
        return "not reached" if len(vals) == 1 else f"not reached ({len(vals)}/{len(vals)} seeds)"
    text = fmt_int(s.mean) if s.n == 1 else f"{fmt_int(s.mean)} ± {fmt_int(s.std)} (n={s.n})"
    if s.n_missing:
        text += f"; not reached in {s.n_missing}/{len(vals)} seeds"
    return text


def fmt_duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def fmt_durations(values: Iterable[float], missing: str = NOT_RUN) -> str:
    vals = list(values)
    if not vals:
        return missing
    s = summarize(vals)
    if s.empty:
        return "n/a"
    if s.n == 1:
        return fmt_duration(s.mean)
    return f"{fmt_duration(s.mean)} ± {fmt_duration(s.std)} (n={s.n})"


def fmt_pp(x: float) -> str:
    return DASH if not np.isfinite(x) else f"{round(x * 100, 1) + 0.0:+.1f} pp"


def fmt_interval(lo: float, hi: float) -> str:
    """'[38.6–52.4]' (percent, the % sign left to the value before it); '[n/a]' when there is none."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "[n/a]"
    return f"[{lo * 100:.1f}–{hi * 100:.1f}]"


def fmt_estimate(e: Estimate, missing: str = NOT_RUN) -> str:
    """'45.5% [38.6–52.4]'; with several seeds the per-seed values follow: '... (seeds 44.0, 47.0)'."""
    if not e.ran:
        return missing
    text = f"{pct(e.value)} {fmt_interval(e.lo, e.hi)}"
    if len(e.seeds) > 1:
        text += " (seeds " + ", ".join(f"{v * 100:.1f}" for v in e.seeds) + ")"
    return text


def fmt_pp_estimate(e: Estimate, missing: str = DASH) -> str:
    """'-5.0 pp [-9.8, -0.2]' for a difference of accuracies."""
    if not e.ran:
        return missing
    if not e.has_interval:
        return f"{fmt_pp(e.value)} [n/a]"
    lo, hi = (f"{round(x * 100, 1) + 0.0:+.1f}" for x in (e.lo, e.hi))
    return f"{fmt_pp(e.value)} [{lo}, {hi}]"


def fmt_steps_spread(values: Iterable[float], missing: str = NOT_RUN) -> str:
    """Steps to threshold over seeds: '92' for one seed, '155 ± 7 [150–160] (n=2)' for several (mean ± sd,
    [min–max]); NaN means 'not reached' and is counted apart."""
    vals = list(values)
    s = summarize(vals)
    if not vals or s.empty or s.n == 1:
        return fmt_steps(vals, missing)
    text = f"{fmt_int(s.mean)} ± {fmt_int(s.std)} [{fmt_int(s.lo)}–{fmt_int(s.hi)}] (n={s.n})"
    if s.n_missing:
        text += f"; not reached in {s.n_missing}/{len(vals)} seeds"
    return text


def blog_text(value: BlogValue | None) -> str:
    return DASH if value is None else value.display()


def n_seeds(cells: pd.DataFrame | None, prompt: str, arm: str) -> int:
    return len(select(cells, prompt, arm))


def injection_effect(cells: pd.DataFrame | None, prompt: str,
                     column: str = "superclevr_acc") -> tuple[float, float, float]:
    """(mean(inject) - mean(none), lowest, highest pairwise seed difference); NaNs when an arm is missing."""
    inj = summarize(cell_values(cells, prompt, "inject", column))
    none = summarize(cell_values(cells, prompt, "none", column))
    if inj.empty or none.empty:
        return math.nan, math.nan, math.nan
    return inj.mean - none.mean, inj.lo - none.hi, inj.hi - none.lo


def speedup(cells: pd.DataFrame | None, prompt: str) -> float:
    """Mean steps to threshold without injection / with injection (seed means); NaN when either is missing."""
    inj = summarize(cell_values(cells, prompt, "inject", "steps_to_threshold"))
    none = summarize(cell_values(cells, prompt, "none", "steps_to_threshold"))
    if inj.empty or none.empty or not inj.mean > 0:
        return math.nan
    return none.mean / inj.mean


def better_arm(values: dict[str, float]) -> str | None:
    """The arm ("inject" / "none") with the higher value; None on a tie or a missing value."""
    a, b = values.get("inject", math.nan), values.get("none", math.nan)
    if not (np.isfinite(a) and np.isfinite(b)) or a == b:
        return None
    return "inject" if a > b else "none"


def fmt_pct_short(values: Iterable[float]) -> str:
    """'30.0%' for one seed, '30.0±1.4%' for several (std over seeds), 'not run' / 'n/a' without values."""
    vals = list(values)
    if not vals:
        return NOT_RUN
    s = summarize(vals)
    if s.empty:
        return "n/a"
    return f"{s.mean * 100:.1f}%" if s.n == 1 else f"{s.mean * 100:.1f}±{s.std * 100:.1f}%"


def blog_steps_text(prompt: str) -> str:
    """The blog's steps to 90% per arm and speed-up for ``prompt`` (and the posts' other figures, if any)."""
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


def md_escape(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """GitHub markdown table; ``align`` is one char per column: l, c or r."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": ":---", "c": ":---:", "r": "---:"}
    lines = ["| " + " | ".join(md_escape(h) for h in headers) + " |",
             "| " + " | ".join(marks[a] for a in align) + " |"]
    for row in rows:
        lines.append("| " + " | ".join(md_escape(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _thr(threshold: float) -> str:
    return f"{threshold * 100:g}%"


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------


def reward_table() -> str:
    """The blog's reward examples, scored by our ``count_reward``."""
    from stages.grpo.rewards import count_reward  # lazy: written by another module

    rows = []
    for ex in BLOG.reward_examples:
        ours = count_reward(ex.response, ex.truth)
        rows.append([f"`{ex.response}`", ex.truth, f"{ex.reward:+d}" if ex.reward else "0",
                     f"{ours:+d}" if ours else "0", "yes" if ours == ex.reward else "**no**", ex.source])
    return md_table(["Model output", "Ground truth", "Reward (blog)", "Reward (ours)", "Agree", "Blog source"],
                    rows, "lrrrcl")


def baseline_table(baseline: pd.DataFrame) -> str:
    """Base model per prompt: digit rate, accuracy, accuracy given a digit, each with its Wilson interval."""
    rows = []
    for prompt in prompts_in(baseline):
        r = select(baseline, prompt)
        blog = BLOG.baseline.get(prompt)
        if r.empty and blog is None:
            continue

        def ours(col: str, prompt: str = prompt) -> str:
            return fmt_estimate(est.baseline_estimate(baseline, prompt, col))

        n = NOT_RUN if r.empty or "n" not in r else fmt_int(float(r["n"].sum()))
        rows.append([
            prompt_label(prompt),
            ours("digit_rate"), blog_text(blog.digit_rate if blog else None),
            ours("accuracy"), blog_text(blog.accuracy if blog else None),
            ours("accuracy_given_digit"), blog_text(blog.accuracy_given_digit if blog else None),
            n, DASH if blog is None or blog.n_questions is None else fmt_int(blog.n_questions),
        ])
    return md_table(["Prompt", "Digit rate (ours)", "Digit rate (blog)", "Accuracy (ours)", "Accuracy (blog)",
                     "Acc. given digit (ours)", "Acc. given digit (blog)", "Questions (ours)", "Questions (blog)"],
                    rows)


def signal_chance_table(measured_p: dict[str, float], group_size: int = BLOG.group_size,
                        p_values: Sequence[float] = (0.05, 0.145, 0.30),
                        measured_ci: dict[str, tuple[float, float]] | None = None) -> str:
    """1-(1-p)^G at the blog's p values and at our measured digit rate per prompt.

    ``measured_ci``: prompt -> the 95% interval of its digit rate; 1-(1-p)^G rises with p, so the chance's
    interval is the chance at the two bounds.
    """
    blog = dict(BLOG.signal_chance)
    ci = measured_ci or {}
    rows = []
    for p in p_values:
        b = blog.get(p)
        btext = DASH if b is None else (b.text if group_size == BLOG.group_size else f"{b.text} (at G={BLOG.group_size})")
        rows.append([f"blog p = {pct(p)}", pct(p), pct(signal_chance(p, group_size)), btext])
    for prompt, p in measured_p.items():
        chance = pct(signal_chance(p, group_size)) if np.isfinite(p) else DASH
        p_text = pct(p)
        if prompt in ci and np.isfinite(p):
            lo, hi = ci[prompt]
            p_text += f" {fmt_interval(lo, hi)}"
            chance += (f" {fmt_interval(signal_chance(lo, group_size), signal_chance(hi, group_size))}"
                       if np.isfinite(lo) and np.isfinite(hi) else " [n/a]")
        rows.append([f"ours: {prompt_label(prompt)}", p_text, chance, DASH])
    return md_table(["Digit rate source", "p", f"1-(1-p)^{group_size} (ours, computed)",
                     f"Blog (G={BLOG.group_size})"], rows)


def digit_rate_band(rate: float):
    """The blog's threshold band a digit rate falls in (None for NaN)."""
    if not np.isfinite(rate):
        return None
    for band in BLOG.digit_rate_bands:
        if band.low <= rate < band.high:
            return band
    return BLOG.digit_rate_bands[-1] if rate >= BLOG.digit_rate_bands[-1].low else BLOG.digit_rate_bands[0]


def digit_rate_threshold_table(measured: dict[str, float],
                               measured_ci: dict[str, tuple[float, float]] | None = None) -> str:
    """The blog's digit-rate threshold table, marking where our prompts fall (by the point estimate; the 95%
    interval, when given, follows it)."""
    ci = measured_ci or {}
    marks: dict[str, list[str]] = {}
    for prompt, rate in measured.items():
        band = digit_rate_band(rate)
        if band is not None:
            shown = pct(rate) + (f" {fmt_interval(*ci[prompt])}" if prompt in ci else "")
            marks.setdefault(band.label, []).append(f"{PROMPT_LABELS.get(prompt, prompt)} ({shown})")
    blog_marks: dict[str, list[str]] = {}
    for prompt, numbers in BLOG.baseline.items():
        band = digit_rate_band(numbers.digit_rate.value)
        blog_marks.setdefault(band.label, []).append(f"{PROMPT_LABELS[prompt]} ({numbers.digit_rate.text})")
    rows = [[b.label, b.viability, b.recommendation, ", ".join(blog_marks.get(b.label, [])) or DASH,
             ", ".join(marks.get(b.label, [])) or DASH] for b in BLOG.digit_rate_bands]
    return md_table(["Digit rate", "GRPO viability (blog)", "Recommendation (blog)", "Blog's prompts",
                     "Our prompts (measured)"], rows, "lllll")


def _speedup(cells: pd.DataFrame, prompt: str) -> str:
    ratio = speedup(cells, prompt)
    if np.isfinite(ratio):
        return f"{ratio:.2f}x"
    inj = summarize(cell_values(cells, prompt, "inject", "steps_to_threshold"))
    none = summarize(cell_values(cells, prompt, "none", "steps_to_threshold"))
    if not inj.empty and none.empty and none.n_missing:
        return "none did not reach the threshold"
    return "n/a"


def _role(cells: pd.DataFrame | None, prompt: str, arm: str, ds: str, metric: str = "acc") -> str:
    """A trained role's value on ``ds`` with its interval; greedy: '—' when the cells ran but greedy was not
    measured."""
    e = est.role_estimate(cells, prompt, arm, ds, metric)
    if metric == "greedy_acc" and not e.ran and n_seeds(cells, prompt, arm):
        return DASH
    return fmt_estimate(e)


def _base(base_eval: pd.DataFrame | None, prompt: str, ds: str, metric: str = "acc") -> str:
    """The base model's value on ``ds`` with its interval ('—' for greedy not measured)."""
    e = est.base_estimate(base_eval, prompt, ds, metric)
    if metric == "greedy_acc" and not e.ran and not select(base_eval, prompt).empty:
        return DASH
    return fmt_estimate(e)


def in_domain_table(cells: pd.DataFrame, threshold: float) -> str:
    """Steps to threshold, final CLEVR accuracy (sampled and greedy) and training time per prompt x arm."""
    rows = []
    for prompt in prompts_in(cells):
        for arm in ARMS:
            blog = BLOG.arms.get((prompt, arm))
            rows.append([
                PROMPT_LABELS.get(prompt, prompt), arm_label(arm, cells, prompt),
                fmt_steps_spread(cell_values(cells, prompt, arm, "steps_to_threshold")),
                blog_text(blog.steps_to_90 if blog else None),
                _role(cells, prompt, arm, "clevr"), _role(cells, prompt, arm, "clevr", "greedy_acc"),
                blog_text(blog.clevr_acc if blog else None),
                fmt_durations(cell_values(cells, prompt, arm, "train_seconds")),
                blog_text(blog.train_seconds if blog else None),
            ])
        rows.append([PROMPT_LABELS.get(prompt, prompt), "speed-up (none ÷ injection steps)", _speedup(cells, prompt),
                     blog_text(BLOG.speedup.get(prompt)), "", "", "", "", ""])
    return md_table(["Prompt", "Arm", f"Steps to {_thr(threshold)} (ours)", "Steps to 90% (blog)",
                     "Final CLEVR acc. (ours)", "Greedy CLEVR acc. (ours)", "Final CLEVR acc. (blog)",
                     "Training time (ours)", "Training time (blog)"], rows, "llrrrrrrr")


def cross_domain_table(cells: pd.DataFrame, base_eval: pd.DataFrame) -> str:
    """SuperCLEVR accuracy (sampled and greedy) and number-present rate, base model and both arms, per prompt,
    and injection - none with its interval (paired by question when the metrics allow)."""
    rows = []
    for prompt in prompts_in(cells, base_eval):
        bblog = BLOG.base_eval.get(prompt)
        rows.append([
            PROMPT_LABELS.get(prompt, prompt), "base model",
            _base(base_eval, prompt, "superclevr"), _base(base_eval, prompt, "superclevr", "greedy_acc"),
            blog_text(bblog.superclevr_acc if bblog else None),
            _base(base_eval, prompt, "superclevr", "digit_rate"),
            blog_text(bblog.superclevr_digit_rate if bblog else None),
        ])
        for arm in ARMS:
            blog = BLOG.arms.get((prompt, arm))
            rows.append([
                PROMPT_LABELS.get(prompt, prompt), arm_label(arm, cells, prompt),
                _role(cells, prompt, arm, "superclevr"), _role(cells, prompt, arm, "superclevr", "greedy_acc"),
                blog_text(blog.superclevr_acc if blog else None),
                _role(cells, prompt, arm, "superclevr", "digit_rate"),
                blog_text(blog.superclevr_digit_rate if blog else None),
            ])
        rows.append([PROMPT_LABELS.get(prompt, prompt), "injection − no injection",
                     fmt_pp_estimate(est.injection_effect(cells, prompt)),
                     fmt_pp_estimate(est.injection_effect(cells, prompt, metric="greedy_acc")),
                     blog_text(BLOG.injection_effect_superclevr.get(prompt)), "", ""])
    return md_table(["Prompt", "Model", "SuperCLEVR acc. (ours)", "Greedy SuperCLEVR acc. (ours)",
                     "SuperCLEVR acc. (blog)", "Number present (ours)", "Number present (blog)"], rows, "llrrrrr")


def r1v_tables(cells: pd.DataFrame, base_eval: pd.DataFrame, threshold: float) -> str:
    """The blog's two R1V tables: training dynamics and cross-domain transfer."""
    prompt = "r1v"
    dyn = []
    for arm in ARMS:
        blog = BLOG.arms[(prompt, arm)]
        dyn.append([f"R1V + {arm_label(arm, cells, prompt)}",
                    fmt_steps_spread(cell_values(cells, prompt, arm, "steps_to_threshold")), blog.steps_to_90.display(),
                    _role(cells, prompt, arm, "clevr"), _role(cells, prompt, arm, "clevr", "greedy_acc"),
                    blog.clevr_acc.display(),
                    fmt_steps(cell_values(cells, prompt, arm, "steps")), blog.steps_trained.display()])
    transfer = [["R1V base model", _base(base_eval, prompt, "superclevr"),
                 _base(base_eval, prompt, "superclevr", "greedy_acc"), BLOG.base_eval[prompt].superclevr_acc.display()]]
    for arm in ARMS:
        transfer.append([f"R1V + {arm_label(arm, cells, prompt)}", _role(cells, prompt, arm, "superclevr"),
                         _role(cells, prompt, arm, "superclevr", "greedy_acc"),
                         BLOG.arms[(prompt, arm)].superclevr_acc.display()])
    return ("**R1V training dynamics (CLEVR)**\n\n"
            + md_table(["Condition", f"Steps to {_thr(threshold)} (ours)", "Steps to 90% (blog)",
                        "Final CLEVR acc. (ours)", "Greedy CLEVR acc. (ours)", "Final CLEVR acc. (blog)",
                        "Steps trained (ours)", "Steps trained (blog)"], dyn, "lrrrrrrr")
            + "\n**R1V cross-domain transfer (SuperCLEVR)**\n\n"
            + md_table(["Condition", "SuperCLEVR acc. (ours)", "Greedy SuperCLEVR acc. (ours)",
                        "SuperCLEVR acc. (blog)"], transfer, "lrrr"))


def complete_results_table(cells: pd.DataFrame, base_eval: pd.DataFrame) -> str:
    """Baseline | Injection | CLEVR | SuperCLEVR | Steps, ours (sampled with its interval, and greedy) beside the
    blog's."""
    rows = []
    for prompt in prompts_in(cells, base_eval):
        bblog = BLOG.base_eval.get(prompt)
        rate = est.base_estimate(base_eval, prompt, "clevr", "digit_rate")
        strength = BASELINE_STRENGTH.get(prompt, "?").capitalize()
        ours_rate = f"{pct(rate.value)} {fmt_interval(rate.lo, rate.hi)}" if rate.ran else DASH
        baseline = (f"{strength}: {PROMPT_LABELS.get(prompt, prompt)} (ours {ours_rate}, "
                    f"blog {bblog.clevr_digit_rate.text if bblog else DASH})")
        rows.append([baseline, "base model",
                     _base(base_eval, prompt, "clevr"), _base(base_eval, prompt, "clevr", "greedy_acc"),
                     blog_text(bblog.clevr_acc if bblog else None),
                     _base(base_eval, prompt, "superclevr"), _base(base_eval, prompt, "superclevr", "greedy_acc"),
                     blog_text(bblog.superclevr_acc if bblog else None), "0", "0"])
        for arm in ARMS:
            blog = BLOG.arms.get((prompt, arm))
            yes = "Yes" + (f" ({'+'.join(strategies(cells, prompt))})" if strategies(cells, prompt) else "")
            rows.append([baseline, yes if arm == "inject" else "No",
                         _role(cells, prompt, arm, "clevr"), _role(cells, prompt, arm, "clevr", "greedy_acc"),
                         blog_text(blog.clevr_acc if blog else None),
                         _role(cells, prompt, arm, "superclevr"), _role(cells, prompt, arm, "superclevr", "greedy_acc"),
                         blog_text(blog.superclevr_acc if blog else None),
                         fmt_steps(cell_values(cells, prompt, arm, "steps")),
                         blog_text(blog.steps_trained if blog else None)])
    return md_table(["Baseline", "Injection", "CLEVR (ours)", "CLEVR greedy (ours)", "CLEVR (blog)",
                     "SuperCLEVR (ours)", "SuperCLEVR greedy (ours)", "SuperCLEVR (blog)", "Steps (ours)",
                     "Steps (blog)"], rows, "llrrrrrrrr")


# ---------------------------------------------------------------------------
# premises: the base model against the blog's
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Premise:
    """One property of the base model the study rests on, where ours is measured, and what calibrates it."""

    label: str
    blog: BlogValue
    source: str  # "baseline": the baseline assessment (metrics/baseline.json); else an eval dataset
    prompt: str
    metric: str  # a baseline column (source "baseline") or an estimates metric ("acc", "digit_rate")
    params: tuple[str, ...]  # fetch_model params that set it in the mini world (stages/fetch_model.py)


# The blog's numbers: 001's baseline table (CLEVR, 1,000 questions) and its transfer table (SuperCLEVR base
# model, 200 questions); see blog_numbers.py. The params: fetch_model.pretrain_text / default_digit_chance
# draw each SFT answer's format and count from them.
PREMISES: tuple[Premise, ...] = (
    Premise("CLEVR, default prompt: digit rate", BLOG.baseline["default"].digit_rate, "baseline", "default",
            "digit_rate", ("default_digit_frac", "default_digit_max_count", "default_digit_frac_above")),
    Premise("CLEVR, default prompt: accuracy given a digit", BLOG.baseline["default"].accuracy_given_digit,
            "baseline", "default", "accuracy_given_digit",
            ("default_digit_noise", "default_digit_max_count", "default_digit_frac_above", "default_digit_noise_above")),
    Premise("CLEVR, default prompt: accuracy", BLOG.baseline["default"].accuracy, "baseline", "default", "accuracy",
            ("default_digit_frac", "default_digit_max_count", "default_digit_noise", "default_digit_frac_above",
             "default_digit_noise_above")),
    Premise("CLEVR, R1V prompt: digit rate", BLOG.baseline["r1v"].digit_rate, "baseline", "r1v", "digit_rate",
            ("r1v_frac",)),
    Premise("CLEVR, R1V prompt: accuracy", BLOG.baseline["r1v"].accuracy, "baseline", "r1v", "accuracy",
            ("r1v_answer_noise", "r1v_frac")),
    Premise("SuperCLEVR, default prompt: accuracy", BLOG.base_eval["default"].superclevr_acc, "superclevr",
            "default", "acc", ("superclevr_default_digit_frac", "default_digit_noise", "superclevr_frac")),
    Premise("SuperCLEVR, default prompt: number present", BLOG.base_eval["default"].superclevr_digit_rate,
            "superclevr", "default", "digit_rate", ("superclevr_default_digit_frac", "superclevr_frac")),
    Premise("SuperCLEVR, R1V prompt: accuracy", BLOG.base_eval["r1v"].superclevr_acc, "superclevr", "r1v", "acc",
            ("superclevr_r1v_answer_noise", "r1v_frac", "superclevr_frac")),
)
CALIBRATION_PARAMS: tuple[str, ...] = tuple(dict.fromkeys(p for premise in PREMISES for p in premise.params))


def premise_estimate(premise: Premise, baseline: pd.DataFrame | None, base_eval: pd.DataFrame | None) -> Estimate:
    if premise.source == "baseline":
        return est.baseline_estimate(baseline, premise.prompt, premise.metric)
    return est.base_estimate(base_eval, premise.prompt, premise.source, premise.metric)


def within_reach(blog: BlogValue, e: Estimate) -> str:
    """Within reach: 'yes' when the blog's number lies inside our 95% interval, 'no' when outside, 'n/a' without one."""
    inside = e.contains(blog.value)
    return "n/a" if inside is None else "yes" if inside else "no"


def premises_table(baseline: pd.DataFrame | None, base_eval: pd.DataFrame | None,
                   calibration: dict[str, float] | None) -> str:
    """The base model's premises, ours (95% interval) beside the blog's, and the params that calibrate each.

    ``calibration``: fetch_model param -> value (the mini profile's pretraining mix); None under the blog
    profile, whose base model is the real one.
    """
    rows = []
    for premise in PREMISES:
        e = premise_estimate(premise, baseline, base_eval)
        if calibration is None:
            by = f"{DASH} (the real model)"
        else:
            by = ", ".join(f"{name} = {calibration[name]:g}" for name in premise.params if name in calibration)
        where = ("baseline assessment" if premise.source == "baseline" else f"{premise.source} eval of the base model")
        rows.append([premise.label, premise.blog.display(), fmt_estimate(e), where, by or DASH,
                     within_reach(premise.blog, e)])
    return md_table(["Premise", "Blog", "Ours (95% interval)", "Measured by", "Calibrated by (fetch_model)",
                     "Within reach?"], rows, "llrllc")
