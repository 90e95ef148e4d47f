"""The report's table of the blog's account of its base model (issue 22): one row per premise, the sentence of
the seed it comes from, our measurement with its 95% interval, the rule that says whether the two agree, and the
knob of the mini world that sets it.

Reads ``metrics/baseline.json["account"]`` (written by ``baseline_assess`` with
:mod:`stages.counting.base_account`); computes no statistic beyond a Wilson interval of a share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from stages.analysis import intervals as iv
from stages.analysis.tables import DASH, md_table, pct

ALMOST_NEVER = 0.02  # "almost never": fewer than 1 answer in 50 (our reading of the blog's words, stated)
VERBOSE_TOKENS = 37  # half of the blog's example answer (~75 tokens): "verbose"
REAL_COUNTS = (3, 10)  # R1-V's SuperCLEVR-200 and CLEVR's scenes (3 to 10 objects)

CLEVR_SOURCE = "leonardPKU/clevr_cogen_a_train: CLEVR scenes of 3-10 objects, one question"
SUPERCLEVR_SOURCE = "R1-V src/eval/prompts/superclevr_test200_counting_problems.jsonl: counts 3-10, one question"


@dataclass(frozen=True)
class Measured:
    """Our number: a value, its 95% interval (NaN: none) and how it prints."""

    value: float
    lo: float = math.nan
    hi: float = math.nan
    text: str = ""


@dataclass(frozen=True)
class AccountPremise:
    label: str
    blog: str  # the seed's sentence (or the real data's fact), with where it is
    measure: Callable[[dict], Measured | None]  # account -> ours; None: not measured
    rule: str  # when ours is "within reach" of the blog's account
    holds: Callable[[Measured], bool] | None  # None: the blog gives nothing to compare with
    knob: str  # what sets it in the mini world (fetch_model / fetch_data params, templates)


def _reader(domain: str, style: str, key: str,
            build: Callable[[dict], Measured | None]) -> Callable[[dict], Measured | None]:
    """account -> ``build(account[domain][style])`` when that entry holds ``key``; None (not measured) else."""
    def measure(account: dict) -> Measured | None:
        m = account.get(domain, {}).get(style)
        return build(m) if m and key in m else None
    return measure


def _share_of(key: str) -> Callable[[dict], Measured]:
    def build(m: dict) -> Measured | None:
        if not m.get("n"):
            return None
        lo, hi = iv.wilson_interval(round(m[key] * m["n"]), m["n"])
        return Measured(m[key], lo, hi, f"{pct(m[key])} [{pct(lo)}-{pct(hi)}]")
    return build


def _share(domain: str, style: str, key: str) -> Callable[[dict], Measured | None]:
    return _reader(domain, style, key, _share_of(key))


def _logprob(domain: str, style: str) -> Callable[[dict], Measured | None]:
    def build(m: dict) -> Measured | None:
        lp = m["injected_logprob"]
        return Measured(lp["mean"], lp["lo"], lp["hi"],
                        f"{lp['mean']:.2f} nats [{lp['lo']:.2f} to {lp['hi']:.2f}] (median {lp['median']:.2f})"
                        ) if lp.get("n") else None
    return _reader(domain, style, "injected_logprob", build)


def _median_tokens(domain: str) -> Callable[[dict], Measured | None]:
    return _reader(domain, "default", "tokens_median", lambda m: Measured(
        m["tokens_median"], text=f"{m['tokens_median']:.0f} (mean {m['tokens_mean']:.1f}, "
                                 f"90th percentile {m['tokens_p90']:.0f})"))


def _slope(domain: str) -> Callable[[dict], Measured | None]:
    def build(m: dict) -> Measured:
        by = ", ".join(f"{k}: {pct(v, 0)}" for k, v in m["accuracy_by_count"].items())
        return Measured(m["accuracy_slope"], m["accuracy_slope_lo"], m["accuracy_slope_hi"],
                        f"{100 * m['accuracy_slope']:+.1f} pp [{100 * m['accuracy_slope_lo']:+.1f} to "
                        f"{100 * m['accuracy_slope_hi']:+.1f}] per object (by count {by})")
    return _reader(domain, "r1v", "accuracy_slope", build)


def _counts(domain: str) -> Callable[[dict], Measured | None]:
    def measure(account: dict) -> Measured | None:
        d = account.get("data", {}).get(domain)
        if not d or d.get("count_min") is None:
            return None
        return Measured(float(d["count_min"] == REAL_COUNTS[0] and d["count_max"] == REAL_COUNTS[1]),
                        text=f"{d['count_min']}-{d['count_max']}")
    return measure


def _phrasings(account: dict) -> Measured | None:
    d = account.get("data", {}).get("superclevr")
    if not d:
        return None
    return Measured(float(d["phrasings"]), text=f"{d['phrasings']}")


def _below(limit: float) -> Callable[[Measured], bool]:
    return lambda m: math.isfinite(m.hi) and m.hi < limit


def _above(limit: float) -> Callable[[Measured], bool]:
    return lambda m: math.isfinite(m.lo) and m.lo > limit


_JUST_A_NUMBER = '"it almost never output *just* a number" (001, The Problem)'
_DESCRIBES = ('"it produced verbose descriptions"; its example names "three cubes - two blue and one yellow - '
              'along with two red spheres" (001, The Problem)')
_EXAMPLE_LENGTH = "its example answer runs ~75 tokens (~60 words) and counts last (001, The Problem)"
_BARE_KNOB = "{frac} x 1/4: the bare \"{{n}}\" is one of the four prompts.DIGIT_TEMPLATES"


def _domain_rows(domain: str, name: str, digit_frac: str, noise: str) -> list[AccountPremise]:
    return [
        AccountPremise(f"{name}, default prompt: answers that are just a number", _JUST_A_NUMBER,
                       _share(domain, "default", "bare_number_share"),
                       f"almost never: the interval's upper end below {pct(ALMOST_NEVER, 0)}", _below(ALMOST_NEVER),
                       _BARE_KNOB.format(frac=digit_frac)),
        AccountPremise(f"{name}, default prompt: log p of the injected text (the bare true count)",
                       _JUST_A_NUMBER + ", so the bare number is improbable", _logprob(domain, "default"),
                       f"at most ln {pct(ALMOST_NEVER, 0)} = {math.log(ALMOST_NEVER):.2f} nats on average (the "
                       "interval's upper end)", _below(math.log(ALMOST_NEVER)), _BARE_KNOB.format(frac=digit_frac)),
        AccountPremise(f"{name}, R1V prompt: log p of the injected text", f"{DASH} (the blog gives nothing)",
                       _logprob(domain, "r1v"), "n/a: measured for the real model's comparison", None,
                       "r1v_frac; prompts.THINK_TEMPLATES (the injected text is the first)"),
        AccountPremise(f"{name}, default prompt: answers describe the scene (name a colour, shape or material)",
                       _DESCRIBES, _share(domain, "default", "describes_scene_share"),
                       "most do: the interval's lower end above 50%", _above(0.5),
                       "none: prompts.WORD_TEMPLATES and DIGIT_TEMPLATES name no colour, shape or material"),
        AccountPremise(f"{name}, default prompt: count stated in words (no digit)",
                       'its example counts "approximately five distinct objects" (001, The Problem)',
                       _share(domain, "default", "count_in_words_share"),
                       "most do: the interval's lower end above 50%", _above(0.5),
                       f"1 - {digit_frac}: prompts.WORD_TEMPLATES"),
        AccountPremise(f"{name}, default prompt: median answer length (tokens)", _EXAMPLE_LENGTH,
                       _median_tokens(domain), f"verbose: at least half the example's ({VERBOSE_TOKENS} tokens)",
                       lambda m: m.value >= VERBOSE_TOKENS, "none: every template is one short sentence"),
        AccountPremise(f"{name}, default prompt: answers cut by max_new_tokens", _EXAMPLE_LENGTH
                       + ", longer than the 50-token limit", _share(domain, "default", "cut_share"),
                       "some are: the interval's lower end above 0%", _above(0.0),
                       "none: every template is one short sentence"),
        AccountPremise(f"{name}, R1V prompt: accuracy change per extra object (errors grow with the count?)",
                       '"the model already knows how to count" (001); that its errors grow with the count is '
                       "issue 22's reading of a model that counts, not the blog's words",
                       _slope(domain), "errors grow: the interval's upper end below 0", _below(0.0),
                       f"{noise}: a miscount by one at every count, flat"),
    ]


ACCOUNT: tuple[AccountPremise, ...] = (
    *_domain_rows("clevr", "CLEVR", "default_digit_frac", "r1v_answer_noise"),
    *_domain_rows("superclevr", "SuperCLEVR", "superclevr_default_digit_frac", "superclevr_r1v_answer_noise"),
    AccountPremise("CLEVR: counts asked", f"3-10 ({CLEVR_SOURCE})", _counts("clevr"), "the same range",
                   lambda m: m.value == 1.0, "fetch_data.clevr_min_count, clevr_max_count"),
    AccountPremise("SuperCLEVR: counts asked", f"3-10 ({SUPERCLEVR_SOURCE})", _counts("superclevr"),
                   "the same range", lambda m: m.value == 1.0, "fetch_data.superclevr_min_count, superclevr_max_count"),
    AccountPremise("SuperCLEVR: distinct phrasings of the question",
                   f'1, "How many different items are there in the image?" ({SUPERCLEVR_SOURCE})', _phrasings,
                   "the same: one", lambda m: m.value == 1.0, "counting.questions.SUPERCLEVR_QUESTIONS"),
)


def verdict(premise: AccountPremise, measured: Measured | None) -> str:
    """'yes' / 'no' by the premise's rule; 'n/a' where the blog gives nothing or nothing was measured."""
    if measured is None or premise.holds is None:
        return "n/a"
    return "yes" if premise.holds(measured) else "no"


def account_rows(account: dict | None, real_model: bool) -> list[list[str]]:
    """[premise, blog, ours, rule, set by, within reach?] per premise; ``real_model``: the blog profile, whose
    model and data no knob sets."""
    rows = []
    for premise in ACCOUNT:
        m = premise.measure(account or {})
        knob = f"{DASH} (the real model and data)" if real_model else premise.knob
        rows.append([premise.label, premise.blog, m.text if m else "not measured", premise.rule, knob,
                     verdict(premise, m)])
    return rows


def account_table(account: dict | None, real_model: bool = False) -> str:
    return md_table(["Premise", "Blog (001) or the real data", "Ours (95% interval)", "Within reach when",
                     "Set by (mini world)", "Within reach?"], account_rows(account, real_model), "lllllc")
