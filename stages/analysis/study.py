"""The study's statistics: speed and transfer of each configuration, with intervals, the Pareto front, the
cross-domain format lag, and the rules that turn two configurations' numbers into a verdict.

Pure functions over plain arrays; :mod:`stages.study_report` loads the metrics and writes the report.

Speed is the step at which a seed's rolling training accuracy first reaches the threshold (90%), or ``inf``
when it never does within the budget (censored). Its uncertainty is the seed range: with three seeds, two
configurations differ in speed only when their seed ranges do not overlap (every seed of one is faster than
every seed of the other), the main report's rule. Transfer is SuperCLEVR accuracy; its interval is the
hierarchical bootstrap of :mod:`stages.analysis.intervals` (questions shared by every configuration, so
differences are paired by question, and seeds resampled per configuration).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from stages.analysis import intervals as iv
from stages.analysis.curves import rolling_mean, steps_to_reach
from stages.analysis.estimates import Estimate
from stages.analysis.seed_rule import ABOVE, BELOW, seed_order

FASTER, SLOWER, SAME_SPEED = "faster", "slower", "no speed difference measured"
HIGHER, LOWER, SAME_LEVEL = "higher", "lower", "no difference measured"


# ----------------------------------------------------------------------------------------------------------
# speed


def steps_to_threshold(accuracy: Sequence[float], threshold: float, window: int) -> float:
    """First step whose rolling accuracy (window ``window``) reaches ``threshold``; inf when none does."""
    step = steps_to_reach(list(accuracy), threshold, window)
    return math.inf if step is None else float(step)


def speed_summary(steps: Sequence[float]) -> tuple[float, float, float]:
    """(mean, min, max) over seeds of steps to the threshold; the mean is inf if any seed never reached it."""
    arr = np.asarray(steps, dtype=float)
    return float(arr.mean()), float(arr.min()), float(arr.max())


def compare_speed(a: Sequence[float], b: Sequence[float]) -> str:
    """Is ``a`` faster than ``b``? By the rule the main report's claims use too
    (:func:`stages.analysis.seed_rule.seed_order`): only when each has at least 2 seeds and every seed of one
    reaches the threshold before every seed of the other (a seed that never reaches it, inf or NaN, counts as
    slowest of all); one seed decides nothing."""
    order = seed_order(a, b, censored=True).order
    return FASTER if order == BELOW else SLOWER if order == ABOVE else SAME_SPEED


# ----------------------------------------------------------------------------------------------------------
# transfer (SuperCLEVR accuracy or digit rate)


def replicates(per_question: Mapping[str, Sequence[np.ndarray]]) -> dict[str, np.ndarray]:
    """Bootstrap replicates (N_BOOT,) per configuration from its seeds' per-question rates (n,) each."""
    return iv.hierarchical_bootstrap(per_question)


def rate_interval(per_seed: Sequence[np.ndarray], reps: np.ndarray) -> Estimate:
    """The mean over seeds of per-question rates, with the percentile interval of its replicates."""
    lo, hi = iv.percentile_interval(reps)
    return Estimate(float(np.mean([np.mean(a) for a in per_seed])), lo, hi, n_seeds=len(per_seed))


def difference(per_question: Mapping[str, Sequence[np.ndarray]], reps: Mapping[str, np.ndarray], a: str,
               b: str) -> Estimate:
    """a - b (mean over seeds), with its paired-bootstrap interval."""
    value = float(np.mean([np.mean(x) for x in per_question[a]]) - np.mean([np.mean(x) for x in per_question[b]]))
    lo, hi = iv.percentile_interval(iv.difference(reps, a, b))
    return Estimate(value, lo, hi, n_seeds=min(len(per_question[a]), len(per_question[b])))


def compare_level(diff: Estimate) -> str:
    """higher / lower when the difference's interval lies entirely above / below 0; else no difference."""
    if diff.lo > 0:
        return HIGHER
    if diff.hi < 0:
        return LOWER
    return SAME_LEVEL


# ----------------------------------------------------------------------------------------------------------
# the speed-vs-transfer map


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """Names of the configurations no other one dominates, for (steps: lower is better, transfer: higher is
    better). One dominates another when it is at least as good on both and better on one. A configuration that
    never reached the threshold (steps inf) is on the front only if its transfer is the best of all."""
    names = list(points)
    front = []
    for n in names:
        x, y = points[n]
        dominated = any((points[m][0] <= x and points[m][1] >= y) and (points[m][0] < x or points[m][1] > y)
                        for m in names if m != n)
        if not dominated:
            front.append(n)
    return sorted(front, key=lambda n: (points[n][0], -points[n][1]))


# ----------------------------------------------------------------------------------------------------------
# the cross-domain format lag


def probe_reach(steps: Sequence[int], values: Sequence[float], level: float = 0.9, window: int = 3) -> float:
    """First probe step at which the rolling mean of the last ``window`` probe values reaches ``level``; inf
    when it never does. The probe is sparse (every N steps) and small (50 questions): a window of probes
    smooths its binomial noise as the training curves' rolling window does theirs."""
    rolled = rolling_mean(list(values), window)
    for step, value in zip(steps, rolled, strict=True):
        if value >= level:
            return float(step)
    return math.inf


def format_lag(clevr_digit: Sequence[float], probe_steps: Sequence[int], probe_digit: Sequence[float],
               window: int, level: float = 0.9) -> tuple[float, float, float]:
    """(in-domain step, cross-domain step, lag): when the rolling CLEVR digit rate of training reaches
    ``level``, when the SuperCLEVR probe's does, and the difference. The lag is inf when only the probe never
    gets there, and NaN (not measurable) when the in-domain rate never does."""
    clevr = steps_to_threshold(clevr_digit, level, window)
    cross = probe_reach(probe_steps, probe_digit, level)
    if math.isinf(clevr):
        return clevr, cross, math.nan
    return clevr, cross, cross - clevr


def lag_summary(lags: Sequence[float]) -> tuple[float, float, float]:
    """(mean, min, max) over the seeds whose lag is measurable (inf where the probe never reached the level);
    NaNs when no seed's is."""
    measured = [x for x in lags if not math.isnan(x)]
    return speed_summary(measured) if measured else (math.nan, math.nan, math.nan)


def has_gap(lags: Sequence[float], resolution: float = 0.0) -> bool | None:
    """Does the cross-domain format lag the in-domain one by more than ``resolution`` steps (the probe's
    interval: a smaller lag is below what the probe can see) in every seed? None when no seed's lag is
    measurable (the in-domain digit rate never reached the level)."""
    measured = [x for x in lags if not math.isnan(x)]
    if not measured:
        return None
    return len(measured) == len(lags) and all(x > resolution for x in measured)
