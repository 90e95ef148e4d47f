"""Markdown tables of the report: our measurements beside the blog's numbers.

Pure functions: DataFrames in, GitHub-markdown strings out. The shared helpers at the
top (aggregation over seeds, injection effect, speed-up, number formatting) are also used
by the figures (``stages.plots``) and ``stages.analysis.claims``; everything about the
per-step curves (rolling means, phase boundary) is in ``stages.analysis.dynamics``.

Input frames (see the report stage): ``baseline`` (prompt, digit_rate, accuracy,
accuracy_given_digit, n), ``curves`` (prompt, arm, strategy, seed, step, digit_rate,
accuracy, mean_reward, injected_frac), ``cells`` (prompt, arm, strategy, seed, steps,
steps_to_threshold, train_seconds, clevr_acc, clevr_digit_rate, superclevr_acc,
superclevr_digit_rate), ``base_eval`` (prompt, clevr_acc, clevr_digit_rate,
superclevr_acc, superclevr_digit_rate). ``arm`` is "inject" or "none".

Spread convention: text shows mean ± sample standard deviation over seeds with n;
figures draw min-max error bars.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.analysis.blog_numbers import ARM_LABELS, BASELINE_STRENGTH, BLOG, PROMPT_LABELS, BlogValue
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
    """Base model per prompt: digit rate, accuracy, accuracy given a digit."""
    rows = []
    for prompt in prompts_in(baseline):
        r = select(baseline, prompt)
        blog = BLOG.baseline.get(prompt)
        if r.empty and blog is None:
            continue

        def ours(col: str, r: pd.DataFrame = r) -> str:
            return NOT_RUN if r.empty or col not in r else pct(float(r[col].mean()))

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
                        p_values: Sequence[float] = (0.05, 0.145, 0.30)) -> str:
    """1-(1-p)^G at the blog's p values and at our measured digit rate per prompt."""
    blog = dict(BLOG.signal_chance)
    rows = []
    for p in p_values:
        b = blog.get(p)
        btext = DASH if b is None else (b.text if group_size == BLOG.group_size else f"{b.text} (at G={BLOG.group_size})")
        rows.append([f"blog p = {pct(p)}", pct(p), pct(signal_chance(p, group_size)), btext])
    for prompt, p in measured_p.items():
        rows.append([f"ours: {prompt_label(prompt)}", pct(p),
                     pct(signal_chance(p, group_size)) if np.isfinite(p) else DASH, DASH])
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


def digit_rate_threshold_table(measured: dict[str, float]) -> str:
    """The blog's digit-rate threshold table, marking where our prompts fall."""
    marks: dict[str, list[str]] = {}
    for prompt, rate in measured.items():
        band = digit_rate_band(rate)
        if band is not None:
            marks.setdefault(band.label, []).append(f"{PROMPT_LABELS.get(prompt, prompt)} ({pct(rate)})")
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


def in_domain_table(cells: pd.DataFrame, threshold: float) -> str:
    """Steps to threshold, final CLEVR accuracy and training time per prompt x arm."""
    rows = []
    for prompt in prompts_in(cells):
        for arm in ARMS:
            blog = BLOG.arms.get((prompt, arm))
            rows.append([
                PROMPT_LABELS.get(prompt, prompt), arm_label(arm, cells, prompt),
                fmt_steps(cell_values(cells, prompt, arm, "steps_to_threshold")),
                blog_text(blog.steps_to_90 if blog else None),
                fmt_pct(cell_values(cells, prompt, arm, "clevr_acc")),
                blog_text(blog.clevr_acc if blog else None),
                fmt_durations(cell_values(cells, prompt, arm, "train_seconds")),
                blog_text(blog.train_seconds if blog else None),
            ])
        rows.append([PROMPT_LABELS.get(prompt, prompt), "speed-up (none ÷ injection steps)", _speedup(cells, prompt),
                     blog_text(BLOG.speedup.get(prompt)), "", "", "", ""])
    return md_table(["Prompt", "Arm", f"Steps to {_thr(threshold)} (ours)", "Steps to 90% (blog)",
                     "Final CLEVR acc. (ours)", "Final CLEVR acc. (blog)", "Training time (ours)",
                     "Training time (blog)"], rows, "llrrrrrr")


def cross_domain_table(cells: pd.DataFrame, base_eval: pd.DataFrame) -> str:
    """SuperCLEVR accuracy and number-present rate, base model and both arms, per prompt."""
    rows = []
    for prompt in prompts_in(cells, base_eval):
        bblog = BLOG.base_eval.get(prompt)
        b = select(base_eval, prompt)
        rows.append([
            PROMPT_LABELS.get(prompt, prompt), "base model",
            NOT_RUN if b.empty else pct(base_value(base_eval, prompt, "superclevr_acc")),
            blog_text(bblog.superclevr_acc if bblog else None),
            NOT_RUN if b.empty else pct(base_value(base_eval, prompt, "superclevr_digit_rate")),
            blog_text(bblog.superclevr_digit_rate if bblog else None),
        ])
        for arm in ARMS:
            blog = BLOG.arms.get((prompt, arm))
            rows.append([
                PROMPT_LABELS.get(prompt, prompt), arm_label(arm, cells, prompt),
                fmt_pct(cell_values(cells, prompt, arm, "superclevr_acc")),
                blog_text(blog.superclevr_acc if blog else None),
                fmt_pct(cell_values(cells, prompt, arm, "superclevr_digit_rate")),
                blog_text(blog.superclevr_digit_rate if blog else None),
            ])
        diff, _, _ = injection_effect(cells, prompt)
        rows.append([PROMPT_LABELS.get(prompt, prompt), "injection − no injection", fmt_pp(diff),
                     blog_text(BLOG.injection_effect_superclevr.get(prompt)), "", ""])
    return md_table(["Prompt", "Model", "SuperCLEVR acc. (ours)", "SuperCLEVR acc. (blog)",
                     "Number present (ours)", "Number present (blog)"], rows, "llrrrr")


def r1v_tables(cells: pd.DataFrame, base_eval: pd.DataFrame, threshold: float) -> str:
    """The blog's two R1V tables: training dynamics and cross-domain transfer."""
    prompt = "r1v"
    dyn = []
    for arm in ARMS:
        blog = BLOG.arms[(prompt, arm)]
        dyn.append([f"R1V + {arm_label(arm, cells, prompt)}",
                    fmt_steps(cell_values(cells, prompt, arm, "steps_to_threshold")), blog.steps_to_90.display(),
                    fmt_pct(cell_values(cells, prompt, arm, "clevr_acc")), blog.clevr_acc.display(),
                    fmt_steps(cell_values(cells, prompt, arm, "steps")), blog.steps_trained.display()])
    transfer = [["R1V base model",
                 NOT_RUN if select(base_eval, prompt).empty else pct(base_value(base_eval, prompt, "superclevr_acc")),
                 BLOG.base_eval[prompt].superclevr_acc.display()]]
    for arm in ARMS:
        transfer.append([f"R1V + {arm_label(arm, cells, prompt)}",
                         fmt_pct(cell_values(cells, prompt, arm, "superclevr_acc")),
                         BLOG.arms[(prompt, arm)].superclevr_acc.display()])
    return ("**R1V training dynamics (CLEVR)**\n\n"
            + md_table(["Condition", f"Steps to {_thr(threshold)} (ours)", "Steps to 90% (blog)",
                        "Final CLEVR acc. (ours)", "Final CLEVR acc. (blog)", "Steps trained (ours)",
                        "Steps trained (blog)"], dyn, "lrrrrrr")
            + "\n**R1V cross-domain transfer (SuperCLEVR)**\n\n"
            + md_table(["Condition", "SuperCLEVR acc. (ours)", "SuperCLEVR acc. (blog)"], transfer, "lrr"))


def complete_results_table(cells: pd.DataFrame, base_eval: pd.DataFrame) -> str:
    """Baseline | Injection | CLEVR | SuperCLEVR | Steps, ours beside the blog's."""
    rows = []
    for prompt in prompts_in(cells, base_eval):
        bblog = BLOG.base_eval.get(prompt)
        rate = base_value(base_eval, prompt, "clevr_digit_rate")
        strength = BASELINE_STRENGTH.get(prompt, "?").capitalize()
        baseline = (f"{strength}: {PROMPT_LABELS.get(prompt, prompt)} (ours {pct(rate)}, "
                    f"blog {bblog.clevr_digit_rate.text if bblog else DASH})")
        has_base = not select(base_eval, prompt).empty
        rows.append([baseline, "base model",
                     pct(base_value(base_eval, prompt, "clevr_acc")) if has_base else NOT_RUN,
                     blog_text(bblog.clevr_acc if bblog else None),
                     pct(base_value(base_eval, prompt, "superclevr_acc")) if has_base else NOT_RUN,
                     blog_text(bblog.superclevr_acc if bblog else None), "0", "0"])
        for arm in ARMS:
            blog = BLOG.arms.get((prompt, arm))
            yes = "Yes" + (f" ({'+'.join(strategies(cells, prompt))})" if strategies(cells, prompt) else "")
            rows.append([baseline, yes if arm == "inject" else "No",
                         fmt_pct(cell_values(cells, prompt, arm, "clevr_acc")),
                         blog_text(blog.clevr_acc if blog else None),
                         fmt_pct(cell_values(cells, prompt, arm, "superclevr_acc")),
                         blog_text(blog.superclevr_acc if blog else None),
                         fmt_steps(cell_values(cells, prompt, arm, "steps")),
                         blog_text(blog.steps_trained if blog else None)])
    return md_table(["Baseline", "Injection", "CLEVR (ours)", "CLEVR (blog)", "SuperCLEVR (ours)",
                     "SuperCLEVR (blog)", "Steps (ours)", "Steps (blog)"], rows, "llrrrrrr")
