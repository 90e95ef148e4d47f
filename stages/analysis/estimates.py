"""Point estimates with their 95% intervals, taken from the report's frames (see :mod:`stages.analysis.intervals`).

Evaluation columns, per dataset ``ds`` in ("clevr", "superclevr"), of the ``cells`` frame (one row per
trained cell) and the ``base_eval`` frame (one row per prompt), built by :func:`eval_columns`:

* ``{ds}_acc``, ``{ds}_digit_rate``: the sampled answers' accuracy and number-present rate (float, NaN: not run);
* ``{ds}_n``: questions (NaN when the metrics do not say);
* ``{ds}_pq``: :class:`PerQuestion` or None (metrics written before ``per_question`` existed);
* ``{ds}_greedy_acc``, ``{ds}_greedy_n``: the greedy answers' accuracy and questions (NaN: not measured).

``metric`` below is "acc", "digit_rate" or "greedy_acc". Greedy answers are one per question and have no
per-question record: they always take the (rate, n) path (Wilson for one seed, unpaired bootstrap for several).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stages.analysis import intervals as iv

DATASETS: tuple[str, ...] = ("clevr", "superclevr")
METRICS: tuple[str, ...] = ("acc", "digit_rate", "greedy_acc")
PAIRED, UNPAIRED = "paired by question", "unpaired"


@dataclass(frozen=True)
class PerQuestion:
    """An evaluation's answers per question: how many of its ``samples`` (k) answers were right / held a number."""

    rows: tuple[int, ...]  # the questions, in the dataset's order (the same in every cell of a dataset)
    samples: int  # k
    correct: np.ndarray  # (n,) int in [0, k]
    digit: np.ndarray  # (n,) int in [0, k]

    @classmethod
    def from_metrics(cls, pq: dict | None) -> PerQuestion | None:
        """``per_question`` of an eval metrics file ({"rows", "samples", "correct", "digit"}); None when absent."""
        if not pq or not pq.get("rows") or not pq.get("samples"):
            return None
        return cls(tuple(int(r) for r in pq["rows"]), int(pq["samples"]),
                   np.asarray(pq["correct"], dtype=float), np.asarray(pq["digit"], dtype=float))

    def rate(self, metric: str) -> np.ndarray:
        """(n,) per-question share of right ("acc") or numbered ("digit_rate") answers."""
        return (self.correct if metric == "acc" else self.digit) / self.samples


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its 95% interval (NaN bounds: no interval can be formed)."""

    value: float  # mean over seeds (a contrast: the statistic of the seed means); NaN: not run
    lo: float = math.nan
    hi: float = math.nan
    seeds: tuple[float, ...] = ()  # per-seed values of a trained role; () otherwise
    n_seeds: int = 0  # seeds behind it (a contrast: the fewest of its groups); 0 for a base model
    method: str = ""  # PAIRED, UNPAIRED or "Wilson"

    @property
    def ran(self) -> bool:
        return bool(np.isfinite(self.value))

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.lo) and np.isfinite(self.hi))

    def contains(self, x: float) -> bool | None:
        """Is ``x`` inside [lo, hi]? None without an interval."""
        return None if not self.has_interval else bool(self.lo <= x <= self.hi)


NOT_RUN = Estimate(math.nan)


def eval_columns(ds: str, metrics: dict | None) -> dict:
    """The evaluation columns of one cell (or base model) on ``ds`` from its eval metrics file (None: not run).

    Old files (no ``per_question``, no ``greedy``, maybe no ``n``) give None / NaN there.
    """
    nan = math.nan
    m = metrics or {}
    greedy = m.get("greedy") or {}
    return {f"{ds}_acc": m.get("accuracy", nan), f"{ds}_digit_rate": m.get("digit_rate", nan),
            f"{ds}_n": m.get("n", nan), f"{ds}_pq": PerQuestion.from_metrics(m.get("per_question")),
            f"{ds}_greedy_acc": greedy.get("accuracy", nan), f"{ds}_greedy_n": greedy.get("n", nan)}


def _rows(df: pd.DataFrame | None, prompt: str, arm: str | None) -> pd.DataFrame:
    """Rows of ``df`` for ``prompt`` (and ``arm`` when the frame has one); empty when df is None/empty."""
    if df is None or len(df) == 0 or "prompt" not in df:
        return pd.DataFrame()
    mask = df["prompt"] == prompt
    if arm is not None and "arm" in df:
        mask &= df["arm"] == arm
    return df[mask]


def _value_column(ds: str, metric: str) -> str:
    return f"{ds}_{metric}"


def _finite_rows(rows: pd.DataFrame, ds: str, metric: str) -> pd.DataFrame:
    col = _value_column(ds, metric)
    if rows.empty or col not in rows:
        return pd.DataFrame()
    return rows[np.isfinite(pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float))]


def replicates(groups: Mapping[str, pd.DataFrame], ds: str, metric: str, n_boot: int = iv.N_BOOT,
               seed: int = iv.BOOT_SEED) -> tuple[dict[str, np.ndarray] | None, str]:
    """Bootstrap replicate means (n_boot,) per group (name -> its rows, one per seed) and how they were paired.

    Paired (hierarchical bootstrap on per-question rates) when every row has per-question data on the same
    questions; else unpaired on (value, n) when every row says its n; else (None, "").
    """
    col = _value_column(ds, metric)
    groups = {name: _finite_rows(rows, ds, metric) for name, rows in groups.items()}
    if not groups or any(rows.empty for rows in groups.values()):
        return None, ""
    pqs = [pq for rows in groups.values() for pq in rows.get(f"{ds}_pq", pd.Series([None] * len(rows)))]
    if metric != "greedy_acc" and all(pq is not None for pq in pqs) and len({pq.rows for pq in pqs}) == 1:
        arrays = {name: [pq.rate(metric) for pq in rows[f"{ds}_pq"]] for name, rows in groups.items()}
        return iv.hierarchical_bootstrap(arrays, n_boot, seed), PAIRED
    n_col = f"{ds}_greedy_n" if metric == "greedy_acc" else f"{ds}_n"
    units = {}
    for name, rows in groups.items():
        n = pd.to_numeric(rows[n_col], errors="coerce").to_numpy(dtype=float) if n_col in rows else np.array([])
        if n.size != len(rows) or not (np.isfinite(n).all() and (n > 0).all()):
            return None, ""
        units[name] = [(float(v), int(k)) for v, k in zip(rows[col], n, strict=True)]
    return iv.unpaired_bootstrap(units, n_boot, seed), UNPAIRED


def _estimate(rows: pd.DataFrame, name: str, ds: str, metric: str, per_seed: bool) -> Estimate:
    """One group's estimate: the mean over its rows, a percentile interval of its replicates, or Wilson when
    it is one row known only as (rate, n)."""
    rows = _finite_rows(rows, ds, metric)
    if rows.empty:
        return NOT_RUN
    values = pd.to_numeric(rows[_value_column(ds, metric)], errors="coerce").to_numpy(dtype=float)
    seeds = tuple(float(v) for v in values) if per_seed else ()
    n_seeds = len(values) if per_seed else 0
    reps, how = replicates({name: rows}, ds, metric)
    if reps is None:
        return Estimate(float(values.mean()), seeds=seeds, n_seeds=n_seeds)
    if how == UNPAIRED and len(values) == 1:
        n = rows[f"{ds}_greedy_n" if metric == "greedy_acc" else f"{ds}_n"].iloc[0]
        lo, hi = iv.wilson_interval(round(values[0] * n), n)
        return Estimate(float(values[0]), lo, hi, seeds, n_seeds, "Wilson")
    lo, hi = iv.percentile_interval(reps[name])
    return Estimate(float(values.mean()), lo, hi, seeds, n_seeds, how)


def role_estimate(cells: pd.DataFrame | None, prompt: str, arm: str, ds: str, metric: str = "acc") -> Estimate:
    """A trained role (prompt x arm) on ``ds``: mean over seeds, interval over seeds and questions."""
    return _estimate(_rows(cells, prompt, arm), f"{prompt}.{arm}", ds, metric, per_seed=True)


def base_estimate(base_eval: pd.DataFrame | None, prompt: str, ds: str, metric: str = "acc") -> Estimate:
    """The base model with ``prompt`` on ``ds``: interval over questions (Wilson without per-question data)."""
    return _estimate(_rows(base_eval, prompt, None), f"{prompt}.base", ds, metric, per_seed=False)


def contrast(cells: pd.DataFrame | None, roles: Sequence[tuple[str, str]], ds: str,
             statistic: Callable[[Mapping[str, np.ndarray | float]], np.ndarray | float],
             metric: str = "acc") -> Estimate:
    """A statistic of several roles (keys ``prompt.arm``), e.g. :func:`intervals.difference`: its value on the
    seed means and a percentile interval over the same replicates of every role (paired by question when the
    data allow). NOT_RUN when a role has no cell."""
    groups = {f"{p}.{a}": _finite_rows(_rows(cells, p, a), ds, metric) for p, a in roles}
    if any(rows.empty for rows in groups.values()):
        return NOT_RUN
    col = _value_column(ds, metric)
    means = {name: float(pd.to_numeric(rows[col]).mean()) for name, rows in groups.items()}
    value = float(statistic(means))
    n_seeds = min(len(rows) for rows in groups.values())
    reps, how = replicates(groups, ds, metric)
    if reps is None:
        return Estimate(value, n_seeds=n_seeds)
    lo, hi = iv.percentile_interval(statistic(reps))
    return Estimate(value, lo, hi, n_seeds=n_seeds, method=how)


def injection_effect(cells: pd.DataFrame | None, prompt: str, ds: str = "superclevr",
                     metric: str = "acc") -> Estimate:
    """injection - none for ``prompt`` (over seeds and questions, paired by question when possible)."""
    inj, none = f"{prompt}.inject", f"{prompt}.none"
    return contrast(cells, [(prompt, "inject"), (prompt, "none")], ds,
                    lambda r: iv.difference(r, inj, none), metric)


FOUR_ROLES: tuple[tuple[str, str], ...] = (("default", "inject"), ("default", "none"), ("r1v", "inject"),
                                           ("r1v", "none"))


def prompt_minus_injection(cells: pd.DataFrame | None, ds: str = "superclevr") -> Estimate:
    """Prompt effect - injection effect (:func:`intervals.prompt_minus_injection`) over the four roles."""
    return contrast(cells, FOUR_ROLES, ds, iv.prompt_minus_injection)


def effect_gap(cells: pd.DataFrame | None, ds: str = "superclevr") -> Estimate:
    """|injection effect, default| - |injection effect, R1V| (:func:`intervals.effect_gap`)."""
    return contrast(cells, FOUR_ROLES, ds, iv.effect_gap)


def baseline_estimate(baseline: pd.DataFrame | None, prompt: str, metric: str) -> Estimate:
    """The baseline assessment (n questions, one answer each) of ``prompt``: ``metric`` in digit_rate, accuracy,
    accuracy_given_digit, with its Wilson interval (accuracy given a digit: right answers of the numbered ones).
    Without ``n`` the point alone."""
    rows = _rows(baseline, prompt, None)
    if rows.empty or metric not in rows:
        return NOT_RUN
    value = float(pd.to_numeric(rows[metric], errors="coerce").mean())
    n = float(pd.to_numeric(rows["n"], errors="coerce").sum()) if "n" in rows else math.nan
    if not (np.isfinite(value) and np.isfinite(n) and n > 0):
        return Estimate(value)
    if metric == "accuracy_given_digit":
        numbered = round(float(rows["digit_rate"].mean()) * n) if "digit_rate" in rows else math.nan
        right = round(float(rows["accuracy"].mean()) * n) if "accuracy" in rows else math.nan
        if not (np.isfinite(numbered) and numbered > 0 and np.isfinite(right)):
            return Estimate(value)
        lo, hi = iv.wilson_interval(right, numbered)
    else:
        lo, hi = iv.wilson_interval(round(value * n), n)
    return Estimate(value, lo, hi, method="Wilson")


def samples_per_question(*frames: pd.DataFrame | None) -> list[int]:
    """The distinct k (answers per question) of every per-question record in the frames (sorted)."""
    ks = set()
    for df in frames:
        for ds in DATASETS:
            col = f"{ds}_pq"
            if df is not None and len(df) and col in df:
                ks |= {pq.samples for pq in df[col] if pq is not None}
    return sorted(ks)
