"""The one rule both reports (the blog's claims and the study) apply to one-number-per-seed values such as steps
to the threshold: such a number has no question noise, so its interval is the seed range.

``a`` lies below ``b`` only when each side has at least 2 seeds and the ranges [min, max] do not overlap; one
seed in either measures no seed noise and decides nothing. With ``censored``, NaN means "never reached" and
counts as +infinity (slowest of all); otherwise NaNs are dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BELOW, ABOVE, OVERLAP, TOO_FEW_SEEDS, MISSING, NEITHER_REACHED = (
    "below", "above", "overlap", "too few seeds", "missing data", "neither reached")
MIN_SEEDS = 2


@dataclass(frozen=True)
class SeedOrder:
    order: str  # one of BELOW, ABOVE, OVERLAP, TOO_FEW_SEEDS, MISSING, NEITHER_REACHED
    a: np.ndarray  # the values judged (NaN dropped, or +inf where censored)
    b: np.ndarray

    @property
    def chance(self) -> int:
        """With no effect every ordering of the seeds is equally likely: the ranges fail to overlap in a given
        direction by chance with probability 1 / this (6 at 2 vs 2, 20 at 3 vs 3)."""
        return math.comb(self.a.size + self.b.size, self.a.size)


def seed_order(a: Sequence[float], b: Sequence[float], censored: bool = False) -> SeedOrder:
    """Where ``a``'s seeds lie against ``b``'s (see the module docstring)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if censored:
        x, y = np.where(np.isnan(x), np.inf, x), np.where(np.isnan(y), np.inf, y)
    else:
        x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if x.size == 0 or y.size == 0:
        return SeedOrder(MISSING, x, y)
    if np.isinf(x).all() and np.isinf(y).all():
        return SeedOrder(NEITHER_REACHED, x, y)
    if min(x.size, y.size) < MIN_SEEDS:
        return SeedOrder(TOO_FEW_SEEDS, x, y)
    if x.max() < y.min():
        return SeedOrder(BELOW, x, y)
    if y.max() < x.min():
        return SeedOrder(ABOVE, x, y)
    return SeedOrder(OVERLAP, x, y)
