"""The blog's findings, each checked against our measurements by an explicit rule.

One row per item of the "What We Observed" list of post 000, plus the baseline premise
and the key insight on baseline strength. Each row says what the blog reports, what we
measured, the verdict ("reproduced", "not reproduced", "inconclusive") and the rule that
produced it, so a reader can recompute it by hand.

Seeds. Comparisons between two groups of cells (e.g. injection vs none) use
:func:`compare`: with at least two seeds in each group the verdict is "reproduced" only
when the seed ranges [min, max] of the two groups do not overlap in the blog's direction
(every seed of one group beats every seed of the other), "not reproduced" when they do
not overlap in the opposite direction, and "inconclusive" when they overlap; with a single
seed in a group the plain comparison of values decides and ``ours`` says "(1 seed)".
Missing data is always "inconclusive".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.analysis.blog_numbers import BLOG
from stages.analysis.dynamics import two_phase_stats
from stages.analysis.tables import (
    base_value,
    cell_values,
    fmt_pct,
    fmt_pp,
    fmt_steps,
    injection_effect,
    md_table,
    pct,
    select,
    speedup,
    summarize,
)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
COLUMNS = ["claim", "blog", "ours", "verdict", "rule"]

SEED_RULE = ("with >= 2 seeds per group: reproduced only if the seed ranges [min, max] do not overlap in the "
             "blog's direction, not reproduced if they do not overlap the other way, else inconclusive; with 1 seed: "
             "plain comparison")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    seeds: str  # "(1 seed)" or "(n=2 vs n=2)"


def compare(low: np.ndarray, high: np.ndarray, censored: bool = False) -> Verdict:
    """Is ``low`` below ``high`` (the blog's direction)? See the module docstring for the rule.

    ``censored``: NaN means "never reached" (e.g. steps to threshold), i.e. +infinity;
    otherwise NaNs are dropped.
    """
    a, b = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    if censored:
        a, b = np.where(np.isnan(a), np.inf, a), np.where(np.isnan(b), np.inf, b)
    else:
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return Verdict(INCONCLUSIVE, "(missing data)")
    if np.isinf(a).all() and np.isinf(b).all():
        return Verdict(INCONCLUSIVE, "(neither reached)")
    if min(a.size, b.size) >= 2:
        seeds = f"(n={a.size} vs n={b.size} seeds)"
        if a.max() < b.min():
            return Verdict(REPRODUCED, seeds)
        if b.max() < a.min():
            return Verdict(NOT_REPRODUCED, seeds)
        return Verdict(INCONCLUSIVE, seeds + ", seed ranges overlap")
    seeds = "(1 seed)" if a.size == 1 and b.size == 1 else f"(n={a.size} vs n={b.size} seeds; 1-seed rule)"
    ma, mb = float(np.mean(a)), float(np.mean(b))
    if ma < mb:
        return Verdict(REPRODUCED, seeds)
    if ma > mb:
        return Verdict(NOT_REPRODUCED, seeds)
    return Verdict(INCONCLUSIVE, seeds + ", tie")


def _row(claim: str, blog: str, ours: str, verdict: str, rule: str) -> dict[str, str]:
    return {"claim": claim, "blog": blog, "ours": ours, "verdict": verdict, "rule": rule}


def _n(values: np.ndarray) -> int:
    return int(np.asarray(values).size)


# ---------------------------------------------------------------------------
# one function per claim
# ---------------------------------------------------------------------------


def claim_baseline(baseline: pd.DataFrame) -> dict[str, str]:
    d = _baseline_rate(baseline, "default")
    r = _baseline_rate(baseline, "r1v")
    blog = (f"default prompt {BLOG.baseline['default'].digit_rate.text} digit rate, "
            f"R1V prompt {BLOG.baseline['r1v'].digit_rate.text}")
    rule = "reproduced if the base model's digit rate is < 30% with the default prompt and >= 90% with R1V; " \
           "not reproduced if either fails; inconclusive if a prompt was not assessed"
    if not (np.isfinite(d) and np.isfinite(r)):
        ours = ", ".join(f"{name} {pct(v) if np.isfinite(v) else 'not assessed'}" for name, v in (("default", d),
                                                                                                 ("R1V", r)))
        return _row("Prompt sets the baseline: the default prompt rarely yields a digit, R1V almost always does",
                    blog, ours, INCONCLUSIVE, rule)
    verdict = REPRODUCED if d < 0.30 and r >= 0.90 else NOT_REPRODUCED
    return _row("Prompt sets the baseline: the default prompt rarely yields a digit, R1V almost always does",
                blog, f"default {pct(d)}, R1V {pct(r)}", verdict, rule)


def _baseline_rate(baseline: pd.DataFrame, prompt: str) -> float:
    rows = select(baseline, prompt)
    if rows.empty or "digit_rate" not in rows:
        return math.nan
    return float(pd.to_numeric(rows["digit_rate"], errors="coerce").mean())


def claim_sparse_signals(baseline: pd.DataFrame, cells: pd.DataFrame, threshold: float) -> dict[str, str]:
    claim = "GRPO works with sparse signals (weak baseline, no injection, eventually learns)"
    blog = "only ~14% of outputs scoreable, yet GRPO reaches 93% CLEVR accuracy without injection"
    rule = (f"default prompt, no-injection arm; premise: base digit rate <= 30%; a seed 'learned' if it reached "
            f"the {threshold:.0%} threshold (steps_to_threshold not NaN) or ended with CLEVR accuracy >= "
            f"{threshold:.0%}; reproduced if every seed learned, not reproduced if none did, inconclusive if "
            "mixed, premise false or data missing")
    rate = _baseline_rate(baseline, "default")
    steps = cell_values(cells, "default", "none", "steps_to_threshold")
    acc = cell_values(cells, "default", "none", "clevr_acc")
    if steps.size == 0:
        return _row(claim, blog, f"base digit rate {pct(rate)}; no-injection arm not run", INCONCLUSIVE, rule)
    if acc.size != steps.size:
        acc = np.full(steps.size, np.nan)
    learned = np.isfinite(steps) | (np.nan_to_num(acc, nan=-1.0) >= threshold)
    n = steps.size
    ours = (f"base digit rate {pct(rate)}; learned in {int(learned.sum())}/{n} seed{'s' if n > 1 else ''} "
            f"(steps to {threshold:.0%}: {fmt_steps(steps)}; final CLEVR {fmt_pct(acc)})")
    if n == 1:
        ours += " (1 seed)"
    if not np.isfinite(rate) or rate > 0.30:
        return _row(claim, blog, ours + "; premise not met", INCONCLUSIVE, rule)
    verdict = REPRODUCED if learned.all() else NOT_REPRODUCED if not learned.any() else INCONCLUSIVE
    return _row(claim, blog, ours, verdict, rule)


def claim_two_phases(curves: pd.DataFrame, window: int, level: float = 0.9,
                     min_gain: float = 0.10) -> dict[str, str]:
    claim = "Learning has two phases: format first, then accuracy (weak baseline, no injection)"
    blog = (f"phase 1 (steps 0-{BLOG.format_phase_end_step.text.strip('~')}): digit rate 14% -> ~100% with "
            f"accuracy flat; phase 2: accuracy {BLOG.phase2_accuracy.text}")
    rule = (f"default prompt, no-injection curves, trailing rolling means over {window} steps; per seed: boundary "
            f"= steps trained when the rolling digit rate (full window) first reaches {level:.0%} (as the train "
            f"metric steps_to_digit90); accuracy given a digit (rolling accuracy / rolling digit "
            f"rate) must rise by >= {min_gain * 100:.0f} pp from the boundary to the last step (accuracy learned "
            f"after format), starting from a digit rate < 50% (first full window); a seed with a boundary and a "
            "smaller rise counts against (format and accuracy learned together); reproduced if every seed "
            "supports, not reproduced if every seed counts against, else inconclusive (incl. no boundary reached "
            "or no curves)")
    stats = two_phase_stats(curves, window, level=level)
    if stats.empty:
        return _row(claim, blog, "no training curves for default / no injection", INCONCLUSIVE, rule)
    parts, votes = [], []
    for r in stats.itertuples():
        if not np.isfinite(r.boundary):
            parts.append(f"seed {r.seed}: rolling digit rate never reached {level:.0%} (start {pct(r.start_digit)})")
            votes.append(None)
            continue
        gain = r.agd_end - r.agd_at
        parts.append(f"seed {r.seed}: digit rate {pct(r.start_digit)} -> {level:.0%} after {r.boundary:.0f} "
                     f"steps trained, accuracy there {pct(r.acc_at)} -> {pct(r.acc_end)} at the end; accuracy "
                     f"given a digit {pct(r.agd_at)} -> {pct(r.agd_end)} ({fmt_pp(gain)})")
        if r.start_digit >= 0.5:
            votes.append(None)
        else:
            votes.append(bool(gain >= min_gain))
    if len(votes) == 1:
        parts.append("(1 seed)")
    if all(v is True for v in votes):
        verdict = REPRODUCED
    elif all(v is False for v in votes):
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return _row(claim, blog, "; ".join(parts), verdict, rule)


def claim_injection_accelerates(cells: pd.DataFrame, threshold: float) -> dict[str, str]:
    claim = "Guidance injection accelerates learning (weak baseline)"
    a = BLOG.arms
    blog = (f"steps to 90%: injection {a[('default', 'inject')].steps_to_90.display()} vs none "
            f"{a[('default', 'none')].steps_to_90.display()}; speed-up {BLOG.speedup['default'].display()}")
    rule = (f"default prompt: injection's steps_to_threshold ({threshold:.0%}) < no injection's; a seed that never "
            f"reached counts as +infinity; {SEED_RULE}; the size of the speed-up is reported, not graded")
    inj = cell_values(cells, "default", "inject", "steps_to_threshold")
    none = cell_values(cells, "default", "none", "steps_to_threshold")
    v = compare(inj, none, censored=True)
    sp = speedup(cells, "default")
    ratio = f"; speed-up {sp:.2f}x" if np.isfinite(sp) else ""
    ours = (f"steps to {threshold:.0%}: injection {fmt_steps(inj)} vs none {fmt_steps(none)}{ratio} {v.seeds}")
    return _row(claim, blog, ours, v.verdict, rule)


def claim_injection_hurts_transfer(cells: pd.DataFrame) -> dict[str, str]:
    claim = "Injection hurts cross-domain transfer with the weak baseline"
    a = BLOG.arms
    blog = (f"SuperCLEVR: injection {a[('default', 'inject')].superclevr_acc.text} vs none "
            f"{a[('default', 'none')].superclevr_acc.text} ({BLOG.injection_effect_superclevr['default'].text})")
    rule = f"default prompt: SuperCLEVR accuracy of injection < no injection; {SEED_RULE}; size reported, not graded"
    inj = cell_values(cells, "default", "inject", "superclevr_acc")
    none = cell_values(cells, "default", "none", "superclevr_acc")
    v = compare(inj, none)
    d, _, _ = injection_effect(cells, "default")
    ours = f"SuperCLEVR: injection {fmt_pct(inj)} vs none {fmt_pct(none)} ({fmt_pp(d)}) {v.seeds}"
    return _row(claim, blog, ours, v.verdict, rule)


def claim_strong_baseline_transfers(cells: pd.DataFrame, level: float = BLOG.strong_transfer_level) -> dict[str, str]:
    claim = f"Strong baseline (R1V): both arms transfer well (> {level:.0%} on SuperCLEVR)"
    a = BLOG.arms
    blog = (f"SuperCLEVR: injection {a[('r1v', 'inject')].superclevr_acc.display()}, none "
            f"{a[('r1v', 'none')].superclevr_acc.display()}")
    rule = (f"R1V prompt, both arms: SuperCLEVR accuracy > {level:.0%}; with >= 2 seeds in an arm that arm passes "
            f"only if every seed is > {level:.0%} and fails only if every seed is <= {level:.0%}; with 1 seed the "
            "value decides; reproduced if both arms pass, not reproduced if either fails, else inconclusive")
    parts, results = [], []
    for arm in ("inject", "none"):
        vals = cell_values(cells, "r1v", arm, "superclevr_acc")
        vals = vals[~np.isnan(vals)]
        parts.append(f"{'injection' if arm == 'inject' else 'none'} {fmt_pct(vals)}")
        if vals.size == 0:
            results.append(None)
        elif vals.size == 1:
            results.append(bool(vals[0] > level))
        else:
            results.append(True if vals.min() > level else False if vals.max() <= level else None)
    n = [_n(cell_values(cells, "r1v", arm, "superclevr_acc")) for arm in ("inject", "none")]
    ours = "SuperCLEVR: " + ", ".join(parts) + (" (1 seed)" if max(n) == 1 else "")
    if any(r is False for r in results):
        verdict = NOT_REPRODUCED
    elif all(r is True for r in results):
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return _row(claim, blog, ours, verdict, rule)


def _group_means(cells: pd.DataFrame, column: str = "superclevr_acc"):
    """{(prompt, arm): Summary} for the four blog groups; None if one is missing."""
    groups = {}
    for prompt in ("default", "r1v"):
        for arm in ("inject", "none"):
            s = summarize(cell_values(cells, prompt, arm, column))
            if s.empty:
                return None
            groups[(prompt, arm)] = s
    return groups


def _spread_verdict(margin: float, groups: dict) -> tuple[str, str]:
    """margin > 0 supports the blog. Several seeds everywhere: |margin| must exceed the largest seed range."""
    if min(s.n for s in groups.values()) >= 2:
        spread = max(s.hi - s.lo for s in groups.values())
        note = f"(>= 2 seeds; largest seed range {spread * 100:.1f} pp)"
        if margin > spread:
            return REPRODUCED, note
        if -margin > spread:
            return NOT_REPRODUCED, note
        return INCONCLUSIVE, note
    note = "(1 seed)" if max(s.n for s in groups.values()) == 1 else "(some groups 1 seed; plain comparison)"
    return (REPRODUCED if margin > 0 else NOT_REPRODUCED if margin < 0 else INCONCLUSIVE), note


def claim_prompt_matters_more(cells: pd.DataFrame) -> dict[str, str]:
    claim = "Prompt choice matters more than injection for final (cross-domain) performance"
    a = BLOG.arms
    b_prompt = abs((a[("r1v", "inject")].superclevr_acc.value + a[("r1v", "none")].superclevr_acc.value) / 2
                   - (a[("default", "inject")].superclevr_acc.value + a[("default", "none")].superclevr_acc.value) / 2)
    b_inj = (abs(BLOG.injection_effect_superclevr["default"].value)
             + abs(BLOG.injection_effect_superclevr["r1v"].value)) / 2
    blog = f"SuperCLEVR: prompt effect {b_prompt * 100:.1f} pp vs injection effect {b_inj * 100:.1f} pp (from its tables)"
    rule = ("on SuperCLEVR accuracy (seed means): prompt effect = |mean over arms(R1V) - mean over arms(default)|, "
            "injection effect = mean over prompts of |injection - none|; reproduced if prompt effect > injection "
            "effect; with >= 2 seeds in all four groups the difference must exceed the largest seed range "
            "(reversed by more -> not reproduced, else inconclusive); missing group -> inconclusive")
    g = _group_means(cells)
    if g is None:
        return _row(claim, blog, "needs both prompts x both arms; not all run", INCONCLUSIVE, rule)
    p_eff = abs((g[("r1v", "inject")].mean + g[("r1v", "none")].mean) / 2
                - (g[("default", "inject")].mean + g[("default", "none")].mean) / 2)
    i_eff = (abs(g[("default", "inject")].mean - g[("default", "none")].mean)
             + abs(g[("r1v", "inject")].mean - g[("r1v", "none")].mean)) / 2
    verdict, note = _spread_verdict(p_eff - i_eff, g)
    ours = f"prompt effect {p_eff * 100:.1f} pp vs injection effect {i_eff * 100:.1f} pp {note}"
    return _row(claim, blog, ours, verdict, rule)


def claim_baseline_strength(cells: pd.DataFrame) -> dict[str, str]:
    claim = "Key insight: injection's effect on transfer is smaller with the strong baseline than with the weak one"
    e = BLOG.injection_effect_superclevr
    blog = f"injection - none on SuperCLEVR: weak {e['default'].text}, strong {e['r1v'].text}"
    rule = ("|mean(injection) - mean(none)| of SuperCLEVR accuracy: R1V < default; with >= 2 seeds in all four "
            "groups the difference of the two effects must exceed the largest seed range (reversed by more -> "
            "not reproduced, else inconclusive); with 1 seed plain comparison; missing group -> inconclusive")
    g = _group_means(cells)
    if g is None:
        return _row(claim, blog, "needs both prompts x both arms; not all run", INCONCLUSIVE, rule)
    d_weak = g[("default", "inject")].mean - g[("default", "none")].mean
    d_strong = g[("r1v", "inject")].mean - g[("r1v", "none")].mean
    verdict, note = _spread_verdict(abs(d_weak) - abs(d_strong), g)
    ours = f"injection - none on SuperCLEVR: weak {fmt_pp(d_weak)}, strong {fmt_pp(d_strong)} {note}"
    return _row(claim, blog, ours, verdict, rule)


# ---------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------


def claims_table(baseline: pd.DataFrame, curves: pd.DataFrame, cells: pd.DataFrame, base_eval: pd.DataFrame,
                 threshold: float, window: int) -> pd.DataFrame:
    """All claims; columns ``claim, blog, ours, verdict, rule``; index ``key`` (a stable short name).

    ``base_eval`` is accepted for symmetry with the figures; the base model's digit rate comes from
    ``baseline`` and falls back to ``base_eval``'s CLEVR digit rate when ``baseline`` lacks a prompt.
    """
    if (baseline is None or baseline.empty) and base_eval is not None and not base_eval.empty:
        baseline = pd.DataFrame({"prompt": p, "digit_rate": base_value(base_eval, p, "clevr_digit_rate")}
                                for p in ("default", "r1v"))
    rows = {
        "baseline_prompts": claim_baseline(baseline),
        "sparse_signals": claim_sparse_signals(baseline, cells, threshold),
        "two_phases": claim_two_phases(curves, window),
        "injection_accelerates": claim_injection_accelerates(cells, threshold),
        "injection_hurts_transfer": claim_injection_hurts_transfer(cells),
        "strong_baseline_transfers": claim_strong_baseline_transfers(cells),
        "prompt_matters_more": claim_prompt_matters_more(cells),
        "baseline_strength_insight": claim_baseline_strength(cells),
    }
    df = pd.DataFrame.from_dict(rows, orient="index")[COLUMNS]
    df.index.name = "key"
    return df


def claims_markdown(df: pd.DataFrame) -> str:
    """The claims table as GitHub markdown, with a one-line tally."""
    verdict_md = {REPRODUCED: "**reproduced**", NOT_REPRODUCED: "**not reproduced**", INCONCLUSIVE: "inconclusive"}
    rows = [[r.claim, r.blog, r.ours, verdict_md.get(r.verdict, r.verdict), r.rule] for r in df.itertuples()]
    counts = df["verdict"].value_counts()
    tally = ", ".join(f"{counts.get(v, 0)} {v}" for v in (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE))
    return md_table(["Claim", "Blog", "Ours", "Verdict", "Rule"], rows, "lllcl") + f"\n{len(df)} claims: {tally}.\n"
