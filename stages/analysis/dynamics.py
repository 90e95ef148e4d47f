"""Learning dynamics from the per-step training curves: rolling curves, their mean over seeds, phase boundaries.

Built on :mod:`stages.analysis.curves`, the one definition of "rolling mean" and "steps to reach a level"
that the train stage's metrics (``steps_to_threshold``, ``steps_to_digit90``) use too. The report's claims
and figures take every number about a curve from here.

Conventions (those of ``curves``):

* Steps are *steps trained*, 1-based. The logs' ``step`` column is 0-based, so the row with ``step == i``
  sits at ``steps_trained == i + 1``; figures use ``steps_trained`` as their x axis, so a marker placed at a
  metric's value (e.g. ``steps_to_threshold``) lines up with the curve.
* A rolling mean counts as having reached a level only with a full window (``steps_trained >= window``);
  before that it averages what it has (``full_window`` is False on those rows).
* The window always comes from params (``train.rolling_window``, the window of the train stage's metrics); there is no default.

Several seeds: a drawn curve is, per step, the mean (and min / max) over seeds of the per-seed rolling
means. The phase boundary of several seeds is :func:`curves.steps_to_reach` applied to the seed-mean of
the raw per-step digit rate over the steps every seed logged; the rolling mean being linear, that is
exactly where the drawn seed-mean rolling curve first reaches the level with a full window. With one seed
it is the train metric ``steps_to_digit90`` (same window). :func:`two_phase_stats` gives the per-seed
boundaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.analysis.curves import rolling_mean, steps_to_reach
from stages.analysis.tables import select
from stages.cells import PROMPT_STYLES, ROLES

SEED_KEYS: tuple[str, ...] = ("prompt", "arm", "strategy", "seed")
CURVE_COLUMNS: tuple[str, ...] = ("digit_rate", "accuracy", "mean_reward")
MEAN_CURVE_COLUMNS = ["steps_trained", "mean", "lo", "hi", "n", "full"]


def rolling_curves(curves: pd.DataFrame | None, window: int,
                   columns: Sequence[str] = CURVE_COLUMNS) -> pd.DataFrame:
    """Per (prompt, arm, strategy, seed): ``<col>_roll`` = :func:`curves.rolling_mean` of ``col``.

    Adds ``steps_trained`` (= step + 1) and ``full_window`` (steps_trained >= window). Rows sorted by seed
    keys, then step; an empty frame when there are no curves.
    """
    if curves is None or curves.empty:
        return pd.DataFrame()
    keys = [c for c in SEED_KEYS if c in curves]
    df = curves.sort_values([*keys, "step"]).reset_index(drop=True)
    df["steps_trained"] = df["step"].astype(int) + 1
    df["full_window"] = df["steps_trained"] >= int(window)
    positions = list(df.groupby(keys, sort=False, dropna=False).indices.values()) if keys else [np.arange(len(df))]
    for col in columns:
        if col not in df:
            continue
        raw, rolled = df[col].to_numpy(dtype=float), np.full(len(df), np.nan)
        for pos in positions:
            rolled[pos] = rolling_mean(raw[pos].tolist(), int(window))
        df[f"{col}_roll"] = rolled
    return df


def mean_curve(rolled: pd.DataFrame, column: str) -> pd.DataFrame:
    """Across seeds per step trained: mean, min, max and count of ``column``; ``full``: every seed has a full
    window there. Columns ``MEAN_CURVE_COLUMNS``."""
    if rolled is None or rolled.empty or column not in rolled:
        return pd.DataFrame(columns=MEAN_CURVE_COLUMNS)
    g = rolled.groupby("steps_trained")
    out = pd.DataFrame({"mean": g[column].mean(), "lo": g[column].min(), "hi": g[column].max(),
                        "n": g[column].count(), "full": g["full_window"].all()}).reset_index()
    return out[MEAN_CURVE_COLUMNS]


def value_at(curve: pd.DataFrame, steps_trained: float, column: str = "mean") -> float:
    """``curve[column]`` at ``steps_trained`` (NaN when absent)."""
    if curve.empty or not np.isfinite(steps_trained):
        return math.nan
    hit = curve.loc[curve["steps_trained"] == int(steps_trained), column]
    return float(hit.iloc[0]) if len(hit) else math.nan


def seed_mean(rows: pd.DataFrame, column: str) -> pd.Series:
    """Mean over seeds of raw ``column`` per step trained, over the steps every seed logged (index: steps
    trained, from 1, contiguous)."""
    if rows is None or rows.empty or column not in rows:
        return pd.Series(dtype=float)
    df = rows.assign(steps_trained=rows["step"].astype(int) + 1)
    n_seeds = df["seed"].nunique() if "seed" in df else 1
    g = df.groupby("steps_trained")[column]
    mean = g.mean()[g.count() == n_seeds].sort_index()
    expected = np.arange(1, len(mean) + 1)
    contiguous = np.flatnonzero(mean.index.to_numpy() != expected)
    return mean.iloc[: contiguous[0]] if contiguous.size else mean


def reach(values: Sequence[float], level: float, window: int) -> float:
    """:func:`curves.steps_to_reach` with NaN for "never"."""
    hit = steps_to_reach(list(values), level, int(window))
    return math.nan if hit is None else float(hit)


def phase_boundary(curves: pd.DataFrame | None, prompt: str, arm: str, window: int, level: float = 0.9) -> float:
    """Steps trained when the seed-mean rolling digit rate first reaches ``level`` with a full window (NaN if
    never): ``curves.steps_to_reach`` of the seed-mean raw digit rate (see the module docstring)."""
    rows = select(curves, prompt, arm)
    if rows.empty or "digit_rate" not in rows:
        return math.nan
    return reach(seed_mean(rows, "digit_rate").to_numpy(), level, window)


@dataclass(frozen=True)
class FormatPhases:
    """What the format-vs-accuracy figure draws for one (prompt, arm)."""

    rolled: pd.DataFrame  # per-seed rows: raw columns, *_roll, steps_trained, full_window
    digit: pd.DataFrame  # mean_curve of the rolling digit rate
    accuracy: pd.DataFrame  # mean_curve of the rolling accuracy
    boundary: float  # phase_boundary: steps trained, NaN if never reached
    acc_at_boundary: float  # seed-mean rolling accuracy at the boundary
    acc_final: float  # seed-mean rolling accuracy at the last step
    end: int  # last step trained
    n_seeds: int
    window: int
    level: float


def format_phases(curves: pd.DataFrame | None, prompt: str, arm: str, window: int,
                  level: float = 0.9) -> FormatPhases | None:
    """Rolling digit rate and accuracy, the phase boundary and the accuracy there; None when not run."""
    rows = select(curves, prompt, arm)
    if rows.empty:
        return None
    rolled = rolling_curves(rows, window)
    digit, accuracy = mean_curve(rolled, "digit_rate_roll"), mean_curve(rolled, "accuracy_roll")
    boundary = phase_boundary(rows, prompt, arm, window, level)
    return FormatPhases(rolled=rolled, digit=digit, accuracy=accuracy, boundary=boundary,
                        acc_at_boundary=value_at(accuracy, boundary),
                        acc_final=float(accuracy["mean"].iloc[-1]) if len(accuracy) else math.nan,
                        end=int(rolled["steps_trained"].max()), n_seeds=int(rows["seed"].nunique()),
                        window=int(window), level=level)


TWO_PHASE_COLUMNS = ["seed", "start_digit", "boundary", "acc_at", "agd_at", "acc_end", "agd_end"]


def two_phase_stats(curves: pd.DataFrame | None, window: int, prompt: str = "default", arm: str = "none",
                    level: float = 0.9) -> pd.DataFrame:
    """Per seed: start digit rate, phase boundary, accuracy(-given-digit) at the boundary and at the end.

    ``boundary``: steps trained when that seed's rolling digit rate first reaches ``level``
    (``curves.steps_to_reach``, = the train metric ``steps_to_digit90`` at the same window); ``start_digit``:
    the rolling digit rate at the first full window (all steps if fewer); ``agd`` = rolling accuracy /
    rolling digit rate.
    """
    rows = select(curves, prompt, arm)
    if rows.empty:
        return pd.DataFrame(columns=TWO_PHASE_COLUMNS)
    rolled = rolling_curves(rows, window)
    out = []
    for seed, df in rolled.groupby("seed"):
        dig, acc = df["digit_rate_roll"].to_numpy(), df["accuracy_roll"].to_numpy()
        boundary = reach(df["digit_rate"].to_numpy(), level, window)
        rec = {"seed": seed, "start_digit": float(dig[min(int(window), dig.size) - 1]), "boundary": boundary,
               "acc_at": math.nan, "agd_at": math.nan, "acc_end": float(acc[-1]),
               "agd_end": float(acc[-1] / dig[-1]) if dig[-1] > 0 else math.nan}
        if np.isfinite(boundary):
            i = int(boundary) - 1
            rec.update(acc_at=float(acc[i]), agd_at=float(acc[i] / dig[i]) if dig[i] > 0 else math.nan)
        out.append(rec)
    return pd.DataFrame(out, columns=TWO_PHASE_COLUMNS)


# column names of the dvc plots CSVs (dvc.yaml lists them): every prompt style x role, run or not
PLOT_ROLES: tuple[str, ...] = tuple(f"{prompt}-{role}" for prompt in PROMPT_STYLES for role in ROLES)


def role_curves(curves: pd.DataFrame | None, column: str, window: int) -> pd.DataFrame:
    """One column per role (``PROMPT-none`` / ``PROMPT-inject``, whatever the strategy), the mean over seeds of
    the per-seed rolling ``column``, by ``step`` (= steps trained). The layout `dvc plots` reads: fixed column
    names, so two experiments with other strategies or seeds compare line by line. Roles not run stay empty."""
    out = pd.DataFrame({"step": pd.Series(dtype=int)})
    rolled = rolling_curves(curves, window, columns=(column,))
    for role in PLOT_ROLES:
        prompt, arm = role.split("-")
        rows = rolled[(rolled["prompt"] == prompt) & (rolled["arm"] == arm)] if not rolled.empty else rolled
        mean = mean_curve(rows, f"{column}_roll")[["steps_trained", "mean"]].rename(
            columns={"steps_trained": "step", "mean": role})
        out = out.merge(mean, on="step", how="outer")
    for role in PLOT_ROLES:
        if role not in out:
            out[role] = np.nan
    return out.sort_values("step")[["step", *PLOT_ROLES]].reset_index(drop=True)
