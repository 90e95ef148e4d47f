"""The blog's findings, each checked against our measurements by an explicit rule.

One row per item of the "What We Observed" list of post 000, plus the baseline premise
and the key insight on baseline strength. Each row says what the blog reports, what we
measured, the verdict ("reproduced", "not reproduced", "inconclusive") and the rule that
produced it, so a reader can recompute it by hand.

Intervals (all 95%, :mod:`stages.analysis.estimates`). A claim about accuracies is decided
by the interval of its statistic, never by a point estimate: for trained roles a
hierarchical bootstrap over seeds and questions (differences paired by question), for the
baseline assessment Wilson intervals. The statistic's interval entirely on the blog's side
of the line -> "reproduced", entirely on the other side -> "not reproduced", straddling it
-> "inconclusive". With one seed per role the intervals carry question noise only; ``ours``
says so.

Steps to the threshold have no question noise (one number per seed): :func:`compare` asks
for the seed ranges [min, max] not to overlap, and calls one seed inconclusive (one seed
measures no seed noise). Missing data is always "inconclusive". Sparse signals and the two
phases keep their own per-seed rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.analysis import estimates as est
from stages.analysis.blog_numbers import BLOG
from stages.analysis.dynamics import two_phase_stats
from stages.analysis.estimates import Estimate
from stages.analysis.intervals import N_BOOT
from stages.analysis.seed_rule import ABOVE, BELOW, MISSING, NEITHER_REACHED, TOO_FEW_SEEDS, seed_order
from stages.analysis.tables import (
    base_value,
    cell_values,
    fmt_estimate,
    fmt_int,
    fmt_pct,
    fmt_pp,
    fmt_pp_estimate,
    fmt_steps,
    md_table,
    pct,
    select,
    speedup,
)

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"
COLUMNS = ["claim", "blog", "ours", "verdict", "rule"]

SEED_RULE = ("steps are one number per seed (no question noise), so the interval is the seed range: with >= 2 "
             "seeds per arm reproduced only if the ranges [min, max] over seeds do not overlap in the blog's "
             "direction, not reproduced if they do not overlap the other way, else inconclusive; with 1 seed in an "
             "arm inconclusive (one seed measures no seed noise; the plain comparison is reported)")
INTERVAL_RULE = (f"95% interval over seeds and questions (hierarchical bootstrap, {N_BOOT:,} replicates, paired by "
                 "question; unpaired, by binomial resampling, for metrics without per-question data)")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    seeds: str  # "(1 seed: ...)" or "(n=2 vs n=2 seeds; ...)"


def compare(low: np.ndarray, high: np.ndarray, censored: bool = False) -> Verdict:
    """Is ``low`` below ``high`` (the blog's direction)? Per-seed values, judged by the rule both reports share
    (:func:`stages.analysis.seed_rule.seed_order`; ``censored``: NaN is "never reached"); ``seeds`` reports the
    chance of disjoint ranges with no effect, 1 / C(n_a + n_b, n_a)."""
    o = seed_order(low, high, censored)
    a, b = o.a, o.b
    if o.order == MISSING:
        return Verdict(INCONCLUSIVE, "(missing data)")
    if o.order == NEITHER_REACHED:
        return Verdict(INCONCLUSIVE, "(neither reached)")
    if o.order != TOO_FEW_SEEDS:
        seeds = (f"(n={a.size} vs n={b.size} seeds; chance of disjoint ranges in one direction with no effect "
                 f"1/{o.chance})")
        if o.order == BELOW:
            return Verdict(REPRODUCED, seeds)
        if o.order == ABOVE:
            return Verdict(NOT_REPRODUCED, seeds)
        return Verdict(INCONCLUSIVE, seeds[:-1] + "; seed ranges overlap)")
    ma, mb = float(np.mean(a)), float(np.mean(b))
    plain = "agrees with the blog" if ma < mb else "goes against the blog" if ma > mb else "is a tie"
    n = "1 seed" if a.size == 1 and b.size == 1 else f"n={a.size} vs n={b.size} seeds"
    return Verdict(INCONCLUSIVE, f"({n}: the plain comparison {plain}, but one seed measures no seed noise)")


def sign_verdict(e: Estimate, blog_sign: int) -> str:
    """The interval rule: ``e``'s 95% interval entirely on the blog's side of 0 (``blog_sign`` +1: above, -1:
    below) -> reproduced; entirely on the other side -> not reproduced; containing 0, or none -> inconclusive."""
    if not e.has_interval:
        return INCONCLUSIVE
    if blog_sign * e.lo > 0 and blog_sign * e.hi > 0:
        return REPRODUCED
    if blog_sign * e.lo < 0 and blog_sign * e.hi < 0:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def interval_note(e: Estimate) -> str:
    """What ``e``'s interval covers: '(1 seed: question noise only; paired by question)'."""
    if not e.ran:
        return ""
    seeds = ("1 seed: question noise only" if e.n_seeds == 1 else
             f"{e.n_seeds} seeds: seed and question noise" if e.n_seeds > 1 else "questions")
    how = e.method if e.has_interval else "no interval: question counts unknown"
    return f"({seeds}; {how})"


def _row(claim: str, blog: str, ours: str, verdict: str, rule: str) -> dict[str, str]:
    return {"claim": claim, "blog": blog, "ours": ours, "verdict": verdict, "rule": rule}


# ---------------------------------------------------------------------------
# one function per claim
# ---------------------------------------------------------------------------


def claim_baseline(baseline: pd.DataFrame, low: float = 0.30, high: float = 0.90) -> dict[str, str]:
    claim = "Prompt sets the baseline: the default prompt rarely yields a digit, R1V almost always does"
    d = est.baseline_estimate(baseline, "default", "digit_rate")
    r = est.baseline_estimate(baseline, "r1v", "digit_rate")
    blog = (f"default prompt {BLOG.baseline['default'].digit_rate.text} digit rate, "
            f"R1V prompt {BLOG.baseline['r1v'].digit_rate.text}")
    rule = (f"base model's digit rate, Wilson 95% intervals (n questions, one answer each): reproduced if the "
            f"default prompt's upper bound < {low:.0%} and R1V's lower bound >= {high:.0%}; not reproduced if the "
            f"default's lower bound >= {low:.0%} or R1V's upper bound < {high:.0%}; else inconclusive (also when a "
            "prompt was not assessed)")
    ours = ", ".join(f"{name} {fmt_estimate(e, 'not assessed')}" for name, e in (("default", d), ("R1V", r)))
    if not (d.has_interval and r.has_interval):
        return _row(claim, blog, ours, INCONCLUSIVE, rule)
    if d.hi < low and r.lo >= high:
        verdict = REPRODUCED
    elif d.lo >= low or r.hi < high:
        verdict = NOT_REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return _row(claim, blog, ours, verdict, rule)


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
    ours = (f"steps to {threshold:.0%}: injection {_steps_range(inj)} vs none {_steps_range(none)}{ratio} "
            f"{v.seeds}")
    return _row(claim, blog, ours, v.verdict, rule)


def _steps_range(values: np.ndarray) -> str:
    """fmt_steps, with the [min–max] range over seeds when there are several."""
    finite = values[np.isfinite(values)]
    text = fmt_steps(values)
    return text + (f" [{fmt_int(finite.min())}–{fmt_int(finite.max())}]" if finite.size > 1 else "")


def claim_injection_hurts_transfer(cells: pd.DataFrame) -> dict[str, str]:
    claim = "Injection hurts cross-domain transfer with the weak baseline"
    a = BLOG.arms
    blog = (f"SuperCLEVR: injection {a[('default', 'inject')].superclevr_acc.text} vs none "
            f"{a[('default', 'none')].superclevr_acc.text} ({BLOG.injection_effect_superclevr['default'].text})")
    rule = (f"default prompt, SuperCLEVR accuracy: {INTERVAL_RULE} of injection - none; reproduced if entirely "
            "< 0, not reproduced if entirely > 0, inconclusive if it contains 0 (or an arm is missing); the size is "
            "reported, not graded")
    inj = est.role_estimate(cells, "default", "inject", "superclevr")
    none = est.role_estimate(cells, "default", "none", "superclevr")
    e = est.injection_effect(cells, "default")
    ours = (f"SuperCLEVR: injection {fmt_estimate(inj)} vs none {fmt_estimate(none)}; injection - none "
            f"{fmt_pp_estimate(e, 'n/a')} {interval_note(e)}")
    return _row(claim, blog, ours, sign_verdict(e, -1), rule)


def _steps_trained_text(cells: pd.DataFrame, prompt: str) -> str:
    """'our arms trained matched steps (400 each)', or each arm's steps when they differ."""
    inj, none = (cell_values(cells, prompt, arm, "steps") for arm in ("inject", "none"))
    every = np.concatenate([inj, none])
    every = every[np.isfinite(every)]
    if every.size == 0:
        return "our arms: steps trained unknown"
    if inj.size and none.size and np.all(every == every[0]):
        return f"our arms trained matched steps ({fmt_int(every[0])} each)"
    return f"our arms trained {fmt_steps(inj)} (injection) vs {fmt_steps(none)} (none) steps"


def claim_strong_baseline_transfers(cells: pd.DataFrame, level: float = BLOG.strong_transfer_level) -> dict[str, str]:
    claim = f"Strong baseline (R1V): both arms transfer well (> {level:.0%} on SuperCLEVR)"
    a = BLOG.arms
    blog = (f"SuperCLEVR: injection {a[('r1v', 'inject')].superclevr_acc.display()}, none "
            f"{a[('r1v', 'none')].superclevr_acc.display()}")
    rule = (f"R1V prompt, SuperCLEVR accuracy, per arm its {INTERVAL_RULE}: an arm passes if the lower bound is "
            f"> {level:.0%} and fails if the upper bound is <= {level:.0%}; reproduced if both arms pass, not "
            "reproduced if either fails, else inconclusive (also when an arm is missing)")
    parts, results, notes = [], [], []
    for arm in ("inject", "none"):
        e = est.role_estimate(cells, "r1v", arm, "superclevr")
        parts.append(f"{'injection' if arm == 'inject' else 'none'} {fmt_estimate(e)}")
        notes.append(interval_note(e))
        results.append(None if not e.has_interval else True if e.lo > level else False if e.hi <= level else None)
    steps = {arm: int(BLOG.arms[("r1v", arm)].steps_trained.value) for arm in ("inject", "none")}
    ours = ("SuperCLEVR: " + ", ".join(parts) + f" {next((n for n in notes if n), '')}; "
            + _steps_trained_text(cells, "r1v")
            + f", while the blog's R1V arms trained {steps['inject']:,} (injection) vs {steps['none']:,} (none) "
              "steps, a limitation the blog itself states (none stopped early)")
    if any(r is False for r in results):
        verdict = NOT_REPRODUCED
    elif all(r is True for r in results):
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return _row(claim, blog, ours, verdict, rule)


def claim_prompt_matters_more(cells: pd.DataFrame) -> dict[str, str]:
    claim = "Prompt choice matters more than injection for final (cross-domain) performance"
    a = BLOG.arms
    b_prompt = abs((a[("r1v", "inject")].superclevr_acc.value + a[("r1v", "none")].superclevr_acc.value) / 2
                   - (a[("default", "inject")].superclevr_acc.value + a[("default", "none")].superclevr_acc.value) / 2)
    b_inj = (abs(BLOG.injection_effect_superclevr["default"].value)
             + abs(BLOG.injection_effect_superclevr["r1v"].value)) / 2
    blog = f"SuperCLEVR: prompt effect {b_prompt * 100:.1f} pp vs injection effect {b_inj * 100:.1f} pp (from its tables)"
    rule = ("on SuperCLEVR accuracy: prompt effect = |mean over arms(R1V) - mean over arms(default)|, injection "
            f"effect = mean over prompts of |injection - none|; {INTERVAL_RULE} of prompt effect - injection "
            "effect, computed on each replicate; reproduced if entirely > 0, not reproduced if entirely < 0, "
            "inconclusive if it contains 0 (or a group is missing)")
    e = est.prompt_minus_injection(cells)
    if not e.ran:
        return _row(claim, blog, "needs both prompts x both arms; not all run", INCONCLUSIVE, rule)
    m = {f"{p}.{arm}": est.role_estimate(cells, p, arm, "superclevr").value for p, arm in est.FOUR_ROLES}
    p_eff = abs((m["r1v.inject"] + m["r1v.none"]) / 2 - (m["default.inject"] + m["default.none"]) / 2)
    i_eff = (abs(m["default.inject"] - m["default.none"]) + abs(m["r1v.inject"] - m["r1v.none"])) / 2
    ours = (f"prompt effect {p_eff * 100:.1f} pp vs injection effect {i_eff * 100:.1f} pp; difference "
            f"{fmt_pp_estimate(e, 'n/a')} {interval_note(e)}")
    return _row(claim, blog, ours, sign_verdict(e, +1), rule)


def claim_baseline_strength(cells: pd.DataFrame) -> dict[str, str]:
    claim = "Key insight: injection's effect on transfer is smaller with the strong baseline than with the weak one"
    e = BLOG.injection_effect_superclevr
    blog = f"injection - none on SuperCLEVR: weak {e['default'].text}, strong {e['r1v'].text}"
    rule = ("|injection - none| of SuperCLEVR accuracy, default (weak) minus R1V (strong): "
            f"{INTERVAL_RULE} of |effect default| - |effect R1V|, computed on each replicate; reproduced if entirely "
            "> 0, not reproduced if entirely < 0, inconclusive if it contains 0 (or a group is missing)")
    gap = est.effect_gap(cells)
    if not gap.ran:
        return _row(claim, blog, "needs both prompts x both arms; not all run", INCONCLUSIVE, rule)
    weak, strong = est.injection_effect(cells, "default"), est.injection_effect(cells, "r1v")
    ours = (f"injection - none on SuperCLEVR: weak {fmt_pp_estimate(weak, 'n/a')}, strong "
            f"{fmt_pp_estimate(strong, 'n/a')}; |weak| - |strong| {fmt_pp_estimate(gap, 'n/a')} {interval_note(gap)}")
    return _row(claim, blog, ours, sign_verdict(gap, +1), rule)


# ---------------------------------------------------------------------------
# table
# ---------------------------------------------------------------------------


def claims_table(baseline: pd.DataFrame, curves: pd.DataFrame, cells: pd.DataFrame, base_eval: pd.DataFrame,
                 threshold: float, window: int) -> pd.DataFrame:
    """All claims; columns ``claim, blog, ours, verdict, rule``; index ``key`` (a stable short name).

    ``base_eval`` is accepted for symmetry with the figures; the base model's digit rate comes from
    ``baseline`` and falls back to ``base_eval``'s CLEVR digit rate (and its n, for the Wilson interval) when
    ``baseline`` is empty.
    """
    if (baseline is None or baseline.empty) and base_eval is not None and not base_eval.empty:
        baseline = pd.DataFrame({"prompt": p, "digit_rate": base_value(base_eval, p, "clevr_digit_rate"),
                                 "n": base_value(base_eval, p, "clevr_n")} for p in ("default", "r1v"))
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
