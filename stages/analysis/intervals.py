"""95% confidence intervals: Wilson for one proportion, a hierarchical bootstrap over seeds and questions.

Pure numpy functions; :mod:`stages.analysis.estimates` applies them to the report's frames.

Units. An accuracy of a trained role (prompt x arm) varies with the training seed and with the evaluation
questions (which questions were drawn, and the sampled answers to them). The bootstrap resamples both: one
replicate draws the questions with replacement once (the same draw for every group of that dataset, since
every cell answers the same questions in the same order: differences between groups are then paired by
question) and, per group, its seeds with replacement. A group with one seed keeps only the question noise:
its interval says nothing about seed noise. Per question the unit is the question's share of right answers
(correct / k over its k sampled answers): answers to one question are not independent, questions are.

Without per-question data (metrics written before ``per_question`` existed) a cell is n questions with one
answer each, and nothing pairs two cells: one proportion gets a Wilson interval, several are resampled
apart (:func:`unpaired_bootstrap`: a binomial draw per seed, exactly a bootstrap of n 0/1 answers).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

Z95 = 1.959964  # standard normal quantile at 0.975: a two-sided 95% interval
N_BOOT = 2000  # bootstrap replicates; the percentile bounds move by < 1 pp between seeds of the bootstrap
BOOT_SEED = 0  # the bootstrap's own seed: the report is a deterministic function of the metrics


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``successes`` of ``n`` trials; (nan, nan) when n is not a positive number or
    successes is not in [0, n].

    Unlike p ± z·se it stays inside [0, 1] and is not empty at 0/n or n/n (0/10 -> [0, 0.278]).
    """
    if not (np.isfinite(n) and n > 0 and np.isfinite(successes) and 0 <= successes <= n):
        return math.nan, math.nan
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` share of ``replicates`` (n_boot,), NaNs dropped; (nan, nan) when none is left."""
    r = np.asarray(replicates, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(r, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------
# the bootstrap
# ---------------------------------------------------------------------------


def _key_seed(key: str) -> int:
    """A stable integer per group name (Python's hash() is salted per process)."""
    return zlib.crc32(key.encode())


@lru_cache(maxsize=4)
def question_weights(n: int, n_boot: int = N_BOOT, seed: int = BOOT_SEED) -> np.ndarray:
    """(n_boot, n) float: how often each of n questions is drawn in each replicate (each row sums to n).

    A function of (n, n_boot, seed) only, so every group of a dataset, in whichever call, sees the same draws:
    a role's interval in a table and the difference the claims take from it come from the same replicates.
    Cached read-only (2000 x 1000 floats = 16 MB per dataset size).
    """
    rng = np.random.default_rng([seed, n])
    w = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    w.setflags(write=False)
    return w


def resample_seeds(seed_means: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, S) per-seed replicate means -> (n_boot,) mean over S seeds drawn with replacement per replicate."""
    n_boot, s = seed_means.shape
    pick = rng.integers(0, s, size=(n_boot, s))
    return np.take_along_axis(seed_means, pick, axis=1).mean(axis=1)


def hierarchical_bootstrap(groups: Mapping[str, Sequence[np.ndarray]], n_boot: int = N_BOOT,
                           seed: int = BOOT_SEED) -> dict[str, np.ndarray]:
    """Replicate means (n_boot,) per group, questions and seeds resampled.

    ``groups``: name (e.g. ``"default.inject"``) -> one array per seed of per-question values (n,), e.g.
    per-question accuracy correct/k; every array of every group has the same n and question order (one
    dataset). Replicate r draws the questions once (shared by all groups: :func:`question_weights`) and each
    group's seeds with replacement (a generator per group name). Seeded: the same input gives the same output.
    """
    arrays = [np.asarray(a, dtype=float) for g in groups.values() for a in g]
    if not arrays:
        return {}
    n = arrays[0].size
    if any(a.size != n for a in arrays) or n == 0:
        raise ValueError("hierarchical_bootstrap: every array must hold the same questions (same length > 0)")
    w = question_weights(n, n_boot, seed)
    out = {}
    for name, seeds in groups.items():
        if len(seeds) == 0:
            raise ValueError(f"hierarchical_bootstrap: group {name!r} has no seed")
        per_seed = w @ np.stack([np.asarray(a, dtype=float) for a in seeds], axis=1) / n  # (n_boot, S)
        out[name] = resample_seeds(per_seed, np.random.default_rng([seed, _key_seed(name)]))
    return out


def unpaired_bootstrap(groups: Mapping[str, Sequence[tuple[float, int]]], n_boot: int = N_BOOT,
                       seed: int = BOOT_SEED) -> dict[str, np.ndarray]:
    """As :func:`hierarchical_bootstrap` for cells known only as (rate, n): n questions, one answer each.

    Resampling n 0/1 answers of which round(rate * n) are 1 gives a mean ~ Binomial(n, that share) / n, drawn
    per seed and replicate independently (no question order to pair on); seeds are then resampled as above.
    """
    out = {}
    for name, seeds in groups.items():
        if len(seeds) == 0:
            raise ValueError(f"unpaired_bootstrap: group {name!r} has no seed")
        rng = np.random.default_rng([seed, _key_seed(name), 1])
        per_seed = np.stack([rng.binomial(int(n), round(rate * n) / n, size=n_boot) / n for rate, n in seeds],
                            axis=1)  # (n_boot, S)
        out[name] = resample_seeds(per_seed, np.random.default_rng([seed, _key_seed(name)]))
    return out


# ---------------------------------------------------------------------------
# statistics of several groups, on the same replicates (each (n_boot,) or a float for the point estimate)
# ---------------------------------------------------------------------------


def difference(reps: Mapping[str, np.ndarray], a: str, b: str) -> np.ndarray:
    """a - b per replicate, e.g. injection - none."""
    return reps[a] - reps[b]


def prompt_minus_injection(reps: Mapping[str, np.ndarray], prompts: tuple[str, str] = ("default", "r1v"),
                           arms: tuple[str, str] = ("inject", "none")) -> np.ndarray:
    """Prompt effect - injection effect per replicate (keys ``prompt.arm``).

    prompt effect = |mean over arms(prompts[1]) - mean over arms(prompts[0])|;
    injection effect = mean over prompts of |arms[0] - arms[1]|.
    """
    p0, p1 = prompts
    mean = {p: (reps[f"{p}.{arms[0]}"] + reps[f"{p}.{arms[1]}"]) / 2 for p in prompts}
    prompt_effect = np.abs(mean[p1] - mean[p0])
    injection_effect = sum(np.abs(difference(reps, f"{p}.{arms[0]}", f"{p}.{arms[1]}")) for p in prompts) / 2
    return prompt_effect - injection_effect


def effect_gap(reps: Mapping[str, np.ndarray], weak: str = "default", strong: str = "r1v",
               arms: tuple[str, str] = ("inject", "none")) -> np.ndarray:
    """|effect(weak)| - |effect(strong)| per replicate, effect = arms[0] - arms[1]: > 0 when injection moves the
    weak baseline's transfer more than the strong one's (the blog's key insight)."""
    return (np.abs(difference(reps, f"{weak}.{arms[0]}", f"{weak}.{arms[1]}"))
            - np.abs(difference(reps, f"{strong}.{arms[0]}", f"{strong}.{arms[1]}")))
