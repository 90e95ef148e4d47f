"""Why the arms differ, or do not: the mechanism behind the transfer numbers, per arm and domain.

The blog splits its -18 pp SuperCLEVR drop into two factors, numbers present x accuracy given a number (post 002,
"67% numbers present"); the diagnosis of the mini world (issue 22) adds two more that say *what* the policy
writes: its answer length, and the share of answers in the form of the text guidance injection inserts
(:func:`stages.prompts.injected_completion` with the answer's own count: a bare number under the default
prompt, the R1V template under R1V). Two views:

* over training, from the CLEVR training curves (the policy's own samples; injected rows excluded from the
  length, as the trainer logs it): :func:`mechanism_curves`;
* at the ends, base model and trained cells, on both domains, from the evaluations' sampled answers
  (``answers/<domain>/<cell>.jsonl``): :func:`answer_mechanism` and :func:`mechanism_rows`.

Accuracy given a number over a rolling window is the rolling accuracy over the rolling digit rate: both are
shares of the same samples (every step samples the same number of answers), so the ratio is the share of
right answers among the numbered ones in the window.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from stages.analysis import dynamics
from stages.analysis.tables import fmt_pct, md_table, summarize
from stages.prompts import injected_completion

CURVE_COLUMNS: tuple[str, ...] = ("completion_length", "digit_rate", "accuracy")
# (key, label) of each measured quantity, in the order of the figure's panels and the table's columns
QUANTITIES: tuple[tuple[str, str], ...] = (
    ("tokens_mean", "answer length (tokens)"),
    ("injected_form_share", "in the injected text's form"),
    ("numbers_present", "numbers present"),
    ("accuracy_given_number", "accuracy given a number"),
)


def in_injected_form(response: str, style: str) -> bool:
    """The answer is the text injection writes, for whatever count it states (surrounding space aside): a bare
    number under the default prompt, the R1V template with its count. Right or wrong, it is injection's format."""
    text = response.strip()
    return any(text == injected_completion(style, int(k)) for k in set(re.findall(r"\d+", text)))


def answer_mechanism(answers: pd.DataFrame, style: str, token_counts: Sequence[int]) -> dict:
    """One model's answers on one domain (columns truth, response, reward; one row per answer) and each answer's
    length in tokens -> n, tokens_mean, injected_form_share, numbers_present, accuracy_given_number (NaN when no
    answer holds a number)."""
    n = len(answers)
    if n == 0:
        return {"n": 0, **{key: math.nan for key, _ in QUANTITIES}}
    numbered = answers["reward"].to_numpy() != -1
    correct = answers["reward"].to_numpy() == 1
    injected = [in_injected_form(r, style) for r in answers["response"]]
    return {
        "n": n,
        "tokens_mean": float(np.mean(token_counts)),
        "injected_form_share": float(np.mean(injected)),
        "numbers_present": float(numbered.mean()),
        "accuracy_given_number": float(correct[numbered].mean()) if numbered.any() else math.nan,
    }


def mechanism_curves(curves: pd.DataFrame | None, window: int) -> pd.DataFrame:
    """Per-seed rolling curves (:func:`dynamics.rolling_curves`) of the answer length, the digit rate and the
    accuracy, plus ``accuracy_given_number`` (per step, NaN where no sample held a number) and its rolling
    ``accuracy_given_number_roll`` (rolling accuracy / rolling digit rate, NaN where that is 0)."""
    rolled = dynamics.rolling_curves(curves, window, columns=CURVE_COLUMNS)
    if rolled.empty or "digit_rate" not in rolled or "accuracy" not in rolled:
        return rolled
    with np.errstate(divide="ignore", invalid="ignore"):
        rolled["accuracy_given_number"] = np.where(rolled["digit_rate"] > 0,
                                                   rolled["accuracy"] / rolled["digit_rate"], np.nan)
        rolled["accuracy_given_number_roll"] = np.where(rolled["digit_rate_roll"] > 0,
                                                        rolled["accuracy_roll"] / rolled["digit_rate_roll"], np.nan)
    return rolled


def fmt_mean(values: Sequence[float], digits: int = 1) -> str:
    """'9.3' for one value, '9.3 ± 0.4 (n=3)' for several (sample std); 'not run' for none."""
    s = summarize(values)
    if s.empty:
        return "not run"
    return f"{s.mean:.{digits}f}" if s.n == 1 else f"{s.mean:.{digits}f} ± {s.std:.{digits}f} (n={s.n})"


FORMATS: dict[str, Callable[[Sequence[float]], str]] = {
    "tokens_mean": fmt_mean, "injected_form_share": fmt_pct, "numbers_present": fmt_pct,
    "accuracy_given_number": fmt_pct}


def mechanism_rows(measured: pd.DataFrame) -> list[list[str]]:
    """``measured``: one row per model and domain (columns prompt, domain, arm in base / none / inject, seed,
    and the keys of :data:`QUANTITIES`) -> table rows [prompt, domain, model, quantity...], seeds summarised."""
    rows = []
    if measured is None or measured.empty:
        return rows
    order = {"base": 0, "none": 1, "inject": 2}
    keys = measured[["prompt", "domain", "arm"]].drop_duplicates()
    keys = keys.assign(o=keys["arm"].map(order)).sort_values(["prompt", "domain", "o"])
    for prompt, domain, arm in keys[["prompt", "domain", "arm"]].itertuples(index=False):
        sel = measured[(measured["prompt"] == prompt) & (measured["domain"] == domain) & (measured["arm"] == arm)]
        label = {"base": "base model", "none": "no injection", "inject": "injection"}.get(arm, arm)
        rows.append([prompt, domain, label, *(FORMATS[key](sel[key].tolist()) for key, _ in QUANTITIES)])
    return rows


def mechanism_table(measured: pd.DataFrame) -> str:
    rows = mechanism_rows(measured)
    if not rows:
        return "_No evaluation answers found: run the eval stages first._"
    return md_table(["prompt", "domain", "model", *(label for _, label in QUANTITIES)], rows, align="lll" + "r" * 4)
