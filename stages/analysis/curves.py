"""Learning curves: the one definition of "rolling mean" and "steps to reach a level".

Training metrics (``steps_to_threshold`` in metrics/train/CELL.json), the report's tables and its figures
all call these, so a figure's marker and a metric can never disagree.

Convention: step ``i`` (0-based) is the (i+1)-th step trained. The rolling mean at step ``i`` is the mean of
steps ``max(0, i-window+1) .. i``; it counts as having *reached* a level only once a full window has been
trained (``i + 1 >= window``), so a lucky first step never counts. "Steps to reach" is the number of steps
trained at that moment (``i + 1``).
"""

from __future__ import annotations

from collections.abc import Sequence


def rolling_mean(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (the first ``window - 1`` average what they have)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def steps_to_reach(values: Sequence[float], level: float, window: int) -> int | None:
    """Steps trained when the rolling mean (full window) first reaches ``level``; None if it never does."""
    for i, mean in enumerate(rolling_mean(values, window)):
        if i + 1 >= window and mean >= level:
            return i + 1
    return None
