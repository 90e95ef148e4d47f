"""The blog's own account of its base model, measured on answers (issue 22): pure functions, no model.

Post 001 says of Qwen2-VL-2B-Instruct before training: "it almost never output *just* a number. Instead, it
produced verbose descriptions" (its example names "three cubes - two blue and one yellow - along with two red
spheres" and counts "approximately five" in words, ~75 tokens). These functions turn one model's answers into the
measurements that test that account, so the same numbers come out of the mini world and the real model:

- :func:`is_bare_number`: the answer is only a number (what the default prompt's injection inserts, ``"5"``);
- :func:`names_scene`: the answer describes the scene (a colour, shape or material of either domain);
- :func:`count_in_words`: the answer states a count in words and writes no digit;
- :func:`answer_account`: shares of the above, answer lengths, the share cut by ``max_new_tokens``, accuracy by
  true count and its slope over the count (does the model's error grow with the count?);
- :func:`data_account`: the counts a dataset asks for and how many phrasings it uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from stages.prompts import NUMBER_WORDS
from stages.scenes import CLEVR_COLORS, CLEVR_SHAPES, SUPERCLEVR_COLORS, SUPERCLEVR_SHAPES

BOOT = 2000  # bootstrap replicates over questions for the slope's interval
BOOT_SEED = 0

_BARE_NUMBER = re.compile(r"\s*\d+\s*\.?\s*")
_DIGIT = re.compile(r"\d")
_NUMBER_WORD = re.compile(r"\b(" + "|".join(NUMBER_WORDS) + r")\b", re.IGNORECASE)

# What a description of a CLEVR or SuperCLEVR scene names: the mini world's colours and shapes (stages/scenes),
# the real datasets' own (CLEVR: 8 colours, cube/sphere/cylinder, rubber/metal; Super-CLEVR: vehicles) and the
# words a real model uses for them. The count nouns of the mini world's templates ("objects", "items",
# "vehicles") are not descriptions: every counting answer can name them.
SCENE_WORDS: tuple[str, ...] = tuple(dict.fromkeys([
    *CLEVR_COLORS, *CLEVR_SHAPES, *SUPERCLEVR_COLORS, *SUPERCLEVR_SHAPES,
    "grey", "rubber", "metal", "metallic", "matte", "shiny",
    "block", "ball", "truck", "motorcycle", "airplane", "plane", "bike",
]))
_SCENE_WORD = re.compile(r"\b(" + "|".join(sorted(SCENE_WORDS, key=len, reverse=True)) + r")(s|es)?\b",
                         re.IGNORECASE)


def is_bare_number(response: str) -> bool:
    """``"5"``, ``" 5."``: the answer is a number and nothing else."""
    return _BARE_NUMBER.fullmatch(response) is not None


def names_scene(response: str) -> bool:
    """The answer names a colour, shape or material of the scene (any word of :data:`SCENE_WORDS`)."""
    return _SCENE_WORD.search(response) is not None


def count_in_words(response: str) -> bool:
    """The answer states a count in words ("five") and writes no digit: what the reward cannot read."""
    return _DIGIT.search(response) is None and _NUMBER_WORD.search(response) is not None


def accuracy_slope(truth: Sequence[int], correct: Sequence[bool]) -> float:
    """Least-squares slope of correctness (0/1) on the true count: accuracy change per extra object.

    Negative when errors grow with the count; NaN with fewer than two distinct counts."""
    x, y = np.asarray(truth, dtype=float), np.asarray(correct, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def slope_interval(truth: Sequence[int], correct: Sequence[bool], n_boot: int = BOOT,
                   seed: int = BOOT_SEED) -> tuple[float, float]:
    """95% percentile interval of :func:`accuracy_slope` over a bootstrap of the questions (fixed seed)."""
    x, y = np.asarray(truth, dtype=float), np.asarray(correct, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))  # (B, n): each row one resample of the questions
    xs, ys = x[idx], y[idx]
    xc = xs - xs.mean(axis=1, keepdims=True)
    denom = (xc * xc).sum(axis=1)
    slopes = np.where(denom > 0, (xc * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1) / np.where(denom > 0, denom, 1),
                      np.nan)
    lo, hi = np.nanpercentile(slopes, [2.5, 97.5])
    return float(lo), float(hi)


def answer_account(answers: pd.DataFrame, token_counts: Sequence[int], max_new_tokens: int) -> dict:
    """The account's measurements of one model's answers (one per question).

    answers: the frame of :func:`stages.counting.scoring.answer_questions` (truth, response, reward);
    token_counts: each answer's length in tokens (same order); an answer of ``max_new_tokens`` or more was cut by
    the limit before it ended. Shares are over all answers; ``n`` says how many.
    """
    n = len(answers)
    if len(token_counts) != n:
        raise ValueError(f"answer_account: {len(token_counts)} token counts for {n} answers")
    if n == 0:
        return {"n": 0}
    responses = answers["response"].astype(str)
    tokens = np.asarray(token_counts, dtype=float)
    correct = (answers["reward"] == 1).to_numpy()
    truth = answers["truth"].astype(int).to_numpy()
    lo, hi = slope_interval(truth, correct)
    by_count = pd.Series(correct).groupby(truth).mean()
    return {
        "n": n,
        "bare_number_share": float(responses.map(is_bare_number).mean()),
        "describes_scene_share": float(responses.map(names_scene).mean()),
        "count_in_words_share": float(responses.map(count_in_words).mean()),
        "tokens_mean": float(tokens.mean()),
        "tokens_median": float(np.median(tokens)),
        "tokens_p90": float(np.percentile(tokens, 90)),
        "cut_share": float((tokens >= max_new_tokens).mean()),
        "max_new_tokens": int(max_new_tokens),
        "accuracy_by_count": {str(int(k)): float(v) for k, v in by_count.items()},
        "accuracy_slope": accuracy_slope(truth, correct),
        "accuracy_slope_lo": lo,
        "accuracy_slope_hi": hi,
    }


def logprob_account(logprobs: Sequence[float]) -> dict:
    """Per-question log-probabilities (nats) of one text under a model: mean, median, and the mean's 95%
    bootstrap interval over questions (fixed seed)."""
    v = np.asarray(logprobs, dtype=float)
    if len(v) == 0:
        return {"n": 0}
    rng = np.random.default_rng(BOOT_SEED)
    means = v[rng.integers(0, len(v), size=(BOOT, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"n": int(len(v)), "mean": float(v.mean()), "median": float(np.median(v)), "lo": float(lo),
            "hi": float(hi)}


def data_account(truths: Iterable[int], questions: Iterable[str]) -> dict:
    """The counts a dataset asks for (min, max, questions per count) and its distinct phrasings."""
    counts = pd.Series([int(t) for t in truths])
    phrasings = pd.Series(list(questions)).value_counts()
    return {
        "n": int(len(counts)),
        "count_min": int(counts.min()) if len(counts) else None,
        "count_max": int(counts.max()) if len(counts) else None,
        "per_count": {str(int(k)): int(v) for k, v in counts.value_counts().sort_index().items()},
        "phrasings": int(len(phrasings)),
        "top_phrasing": str(phrasings.index[0]) if len(phrasings) else None,
    }
