"""Stage ``study_report`` (study/dvc.yaml): reports/study.md, its figures and metrics/study_summary.json.

Reads each configuration's metrics (metrics/study/NAME.json, written by ``study_run@NAME``) and DVCLive curves
(dvclive/study/NAME/seed-N); of params, the study's grid and the training's threshold and rolling window. Every
number in the report comes from those files; the statistics are :mod:`stages.analysis.study`'s.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stages.analysis import study as st
from stages.analysis.blog_numbers import BLOG
from stages.analysis.estimates import Estimate
from stages.analysis.tables import fmt_estimate, fmt_pp_estimate
from stages.io import InputError, atomic_dir, atomic_write_text, read_json, write_json

if TYPE_CHECKING:  # built by the CLI from params.yaml, whose values dvc.yaml tracks (not a dep)
    from stages.config import Config

log = logging.getLogger(__name__)

PROBE_LEVEL = 0.9  # the format (digit) rate whose crossing times the format lag


@dataclass
class ConfigResult:
    """One configuration over its seeds."""

    name: str
    strategy: str
    overrides: dict
    budget: int  # training steps
    seeds: list[int]
    steps: list[float]  # steps to the accuracy threshold per seed (inf: never)
    injected_frac: list[float]
    train_seconds: list[float]  # each seed's training time (its own timer)
    per_question: dict[str, list[np.ndarray]]  # "superclevr.acc" etc. -> per seed (n,) per-question rates
    greedy_superclevr: list[float]
    lags: list[tuple[float, float, float]] = field(default_factory=list)  # per seed (clevr, probe, lag)


def _rates(ev: dict, metric: str) -> np.ndarray:
    pq = ev["per_question"]
    return np.asarray(pq["correct" if metric == "acc" else "digit"], dtype=float) / pq["samples"]


def load_curves(live_dir: Path, tag: str) -> pd.DataFrame:
    """One seed's per-step curves (digit rate, accuracy) and its probe (NaN between probes)."""
    base = live_dir / tag / "plots" / "metrics"
    cols = {}
    for name in ("charts/digit_rate", "charts/accuracy", "charts/injected_frac", "probe/superclevr_digit_rate",
                 "probe/superclevr_accuracy"):
        tsv = base / f"{name}.tsv"
        if tsv.is_file():
            key = name.split("/")[-1]
            cols[key] = pd.read_csv(tsv, sep="\t").set_index("step")[key]
    if "accuracy" not in cols:
        raise InputError(f"{base}: no training curves; run `dvc repro study/dvc.yaml` (study_run stages) first")
    return pd.DataFrame(cols).sort_index()


def load(cfg: Config, metrics_dir: Path, live_dir: Path) -> tuple[list[ConfigResult], dict[str, list[pd.DataFrame]]]:
    results, curves = [], {}
    window = cfg.train.rolling_window
    for name in cfg.study.configs:
        path = metrics_dir / f"{name}.json"
        if not path.is_file():
            raise InputError(f"{path}: missing; run `dvc repro study/dvc.yaml` to train configuration {name}")
        m = read_json(path)
        runs = m["runs"]
        res = ConfigResult(
            name=name, strategy=m["strategy"], overrides=m["overrides"], budget=m["steps"],
            seeds=[r["seed"] for r in runs],
            steps=[math.inf if r["train"]["steps_to_threshold"] is None else float(r["train"]["steps_to_threshold"])
                   for r in runs],
            injected_frac=[r["train"]["mean_injected_frac"] for r in runs],
            train_seconds=[r["train"]["train_seconds"] for r in runs],
            per_question={f"{ds}.{metric}": [_rates(r[ds], metric) for r in runs]
                          for ds in ("superclevr", "clevr") for metric in ("acc", "digit")},
            greedy_superclevr=[(r["superclevr"].get("greedy") or {}).get("accuracy", math.nan) for r in runs],
        )
        curves[name] = []
        for r in runs:
            c = load_curves(live_dir / name, f"seed-{r['seed']}")
            curves[name].append(c)
            probe = c["superclevr_digit_rate"].dropna() if "superclevr_digit_rate" in c else pd.Series(dtype=float)
            # DVCLive's step i is the (i+1)-th step trained: report steps trained, as the training curves do
            res.lags.append(st.format_lag(c["digit_rate"].tolist(), (probe.index + 1).tolist(), probe.tolist(),
                                          window, PROBE_LEVEL))
        results.append(res)
    return results, curves


# ----------------------------------------------------------------------------------------------------------
# formatting


def _steps_text(steps: list[float]) -> str:
    mean, lo, hi = st.speed_summary(steps)
    per_seed = ", ".join("never" if math.isinf(s) else f"{s:.0f}" for s in steps)
    if math.isinf(mean):
        return f"not all seeds ({per_seed})"
    return f"{mean:.0f} [{lo:.0f}-{hi:.0f}] ({per_seed})"


def _range_text(steps: list[float]) -> str:
    """'120-135' over seeds; 'never' when no seed got there, '120-never' when some did not."""
    _, lo, hi = st.speed_summary(steps)
    if math.isinf(lo):
        return "never"
    return f"{lo:.0f}-" + ("never" if math.isinf(hi) else f"{hi:.0f}")


def _describe(res: ConfigResult) -> str:
    parts = [res.strategy]
    for section in ("train", "injection_params"):
        parts += [f"{k}={v}" for k, v in (res.overrides.get(section) or {}).items()]
    return ", ".join(parts)


@dataclass
class Study:
    """Everything the report states, computed once."""

    results: dict[str, ConfigResult]
    reps: dict[str, dict[str, np.ndarray]]  # "superclevr.acc" -> config -> replicates

    def level(self, name: str, key: str = "superclevr.acc") -> Estimate:
        return st.rate_interval(self.results[name].per_question[key], self.reps[key][name])

    def diff(self, a: str, b: str, key: str = "superclevr.acc") -> Estimate:
        return st.difference({n: r.per_question[key] for n, r in self.results.items()}, self.reps[key], a, b)

    def point(self, name: str) -> tuple[float, float]:
        return st.speed_summary(self.results[name].steps)[0], self.level(name).value

    def has(self, *names: str) -> bool:
        return all(n in self.results for n in names)


def build(results: list[ConfigResult]) -> Study:
    by_name = {r.name: r for r in results}
    keys = ("superclevr.acc", "superclevr.digit", "clevr.acc")
    reps = {k: st.replicates({n: r.per_question[k] for n, r in by_name.items()}) for k in keys}
    return Study(by_name, reps)


def compare(s: Study, a: str, b: str, key: str = "superclevr.acc") -> str:
    """'a vs b: speed <verdict> (steps a / b); SuperCLEVR <diff> (<verdict>)'."""
    ra, rb = s.results[a], s.results[b]
    speed = st.compare_speed(ra.steps, rb.steps)
    d = s.diff(a, b, key)
    what = {"superclevr.acc": "SuperCLEVR accuracy", "superclevr.digit": "SuperCLEVR digit rate"}[key]
    return (f"`{a}` vs `{b}`: {speed} (steps to 90% {_range_text(ra.steps)} vs {_range_text(rb.steps)}); "
            f"{what} {fmt_pp_estimate(d)}, {st.compare_level(d)}")


def _signed(x: float) -> str:
    """'+3', '-4', '+0' (never '-0')."""
    r = round(x)
    return f"{r:+d}" if r else "+0"


def _lag_value(x: float) -> str:
    return "n/a" if math.isnan(x) else "never" if math.isinf(x) else _signed(x)


def _lag_text(res: ConfigResult) -> str:
    """'+12 [+5, +20] (+5, +11, +20)' over seeds; 'never': the probe never reached 90% in that seed, 'n/a':
    the training's CLEVR digit rate never did (no lag to measure)."""
    lags = [lag for _, _, lag in res.lags]
    per_seed = ", ".join(_lag_value(x) for x in lags)
    mean, lo, hi = st.lag_summary(lags)
    if not math.isfinite(mean):
        return per_seed
    return f"{_signed(mean)} [{_signed(lo)}, {_signed(hi)}] ({per_seed})"


def config_table(s: Study, reference: str = "none") -> str:
    """One row per configuration; the last two columns compare it with ``reference`` (paired, seed ranges)."""
    ref = reference if reference in s.results else None
    rows = ["| configuration | what it is | steps to 90% CLEVR: mean [seed range] (per seed) | SuperCLEVR accuracy "
            "[95%] | SuperCLEVR digit rate [95%] | SuperCLEVR greedy acc. | held-out CLEVR acc. [95%] | injected "
            f"share | format lag, steps (probe - CLEVR, per seed) | vs `{reference}`: speed | vs `{reference}`: "
            "SuperCLEVR accuracy [95%] |",
            "| :--- | :--- | :--- | ---: | ---: | ---: | ---: | ---: | :--- | :--- | :--- |"]
    for name, r in s.results.items():
        if ref is None or name == ref:
            speed = diff = "-"
        else:
            speed = st.compare_speed(r.steps, s.results[ref].steps)
            d = s.diff(name, ref)
            diff = f"{fmt_pp_estimate(d)}: {st.compare_level(d)}"
        rows.append(
            f"| `{name}` | {_describe(r)} | {_steps_text(r.steps)} | {fmt_estimate(s.level(name))} | "
            f"{fmt_estimate(s.level(name, 'superclevr.digit'))} | {100 * np.nanmean(r.greedy_superclevr):.1f}% | "
            f"{fmt_estimate(s.level(name, 'clevr.acc'))} | {100 * np.mean(r.injected_frac):.1f}% | {_lag_text(r)} | "
            f"{speed} | {diff} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------------------
# the open questions


@dataclass(frozen=True)
class Answer:
    question: str
    source: str
    evidence: list[str]
    rule: str
    verdict: str


def _speed_ok(s: Study, a: str, b: str) -> bool:
    """a is not slower than b (seed ranges)."""
    return st.compare_speed(s.results[a].steps, s.results[b].steps) != st.SLOWER


def _speed_word(s: Study, a: str, b: str) -> str:
    """'faster than' / 'slower than' / 'as fast as (seed ranges overlap)': a against b."""
    return {st.FASTER: "faster than", st.SLOWER: "slower than",
            st.SAME_SPEED: "as fast as (seed ranges overlap)"}[st.compare_speed(s.results[a].steps, s.results[b].steps)]


def _level_word(s: Study, a: str, b: str, key: str = "superclevr.acc") -> str:
    """'higher than (+5.0 pp [+1.0, +9.0])' / 'lower than (...)' / 'no different from (...)': a against b."""
    d = s.diff(a, b, key)
    word = {st.HIGHER: "higher than", st.LOWER: "lower than", st.SAME_LEVEL: "no different from"}[st.compare_level(d)]
    return f"{word} ({fmt_pp_estimate(d)})"


def _names(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "none"


def answers(s: Study, probe_every: int) -> list[Answer]:
    out = []
    transfer_rule = ("transfer: the paired 95% interval of the SuperCLEVR difference entirely above 0 = higher, "
                     "below = lower, straddling = no difference measured")
    speed_rule = "speed: faster / slower only when the seed ranges of steps to 90% do not overlap"

    if s.has("decay", "cosine", "stochastic", "none"):
        tapers = ("decay", "cosine")
        ev = [compare(s, n, ref) for n in tapers for ref in ("stochastic", "none")]
        keeps = [n for n in tapers if _speed_ok(s, n, "stochastic")]
        no_cost = [n for n in tapers if st.compare_level(s.diff(n, "none")) != st.LOWER]
        both = [n for n in tapers if n in keeps and n in no_cost]
        lead = (f"Yes: {_names(both)} kept constant injection's speed with no transfer cost against no injection"
                if both else "Not without a cost here:")
        if both:
            cost = s.diff("stochastic", "none")
            lead += (f" (but constant injection shows no cost to avoid either: `stochastic` - `none` {fmt_pp_estimate(cost)})."
                     if st.compare_level(cost) != st.LOWER else ".")
        detail = "; ".join(f"`{n}` is {_speed_word(s, n, 'stochastic')} constant injection and "
                           f"{_speed_word(s, n, 'none')} no injection, its SuperCLEVR accuracy "
                           f"{_level_word(s, n, 'none')} no injection's" for n in tapers)
        out.append(Answer("Could we inject heavily early and then taper off?", "001, Limitations", ev,
                          f"yes = not slower than `stochastic` and transfer not lower than `none`; {speed_rule}; "
                          f"{transfer_rule}", f"{lead} {detail}."))

    if s.has("fixed-1", "fixed-2", "fixed-4"):
        ev = [compare(s, "fixed-4", "fixed-1", "superclevr.digit"), compare(s, "fixed-4", "fixed-1"),
              compare(s, "fixed-2", "fixed-1")]
        ev += [f"format lag `{n}`: {_lag_text(s.results[n])} steps" for n in ("fixed-1", "fixed-2", "fixed-4")]
        moved = [k for k in ("superclevr.digit", "superclevr.acc")
                 if st.compare_level(s.diff("fixed-4", "fixed-1", k)) != st.SAME_LEVEL]
        lag1 = [lag for *_, lag in s.results["fixed-1"].lags if not math.isnan(lag)]
        lag4 = [lag for *_, lag in s.results["fixed-4"].lags if not math.isnan(lag)]
        lag_moved = bool(lag1 and lag4) and st.compare_speed(lag4, lag1) != st.SAME_SPEED
        if moved or lag_moved:
            what = [{"superclevr.digit": "the SuperCLEVR digit rate", "superclevr.acc": "SuperCLEVR accuracy"}[k]
                    + f" ({_level_word(s, 'fixed-4', 'fixed-1', k)} 1 of 8's)" for k in moved]
            what += ["the format lag"] if lag_moved else []
            verdict = "Yes: 4 injected samples of 8 against 1 of 8 move " + " and ".join(what) + "."
        else:
            verdict = ("No effect measured: from 1 to 4 injected samples of 8, neither the SuperCLEVR digit rate, nor "
                       "SuperCLEVR accuracy, nor the format lag moves beyond its interval.")
        out.append(Answer("Does the injection rate affect the format-domain coupling?", "001, Limitations", ev,
                          f"{transfer_rule}; lag: seed ranges apart", verdict))

    if s.has("adaptive", "stochastic", "none"):
        ev = [compare(s, "adaptive", "stochastic"), compare(s, "adaptive", "none")]
        front = st.pareto_front({n: s.point(n) for n in s.results})
        better = (_speed_ok(s, "adaptive", "stochastic")
                  and st.compare_level(s.diff("adaptive", "stochastic")) == st.HIGHER)
        ev.append(f"Pareto front (mean steps, mean SuperCLEVR accuracy): {_names(front)}")
        verdict = (("Yes" if better else "Not measurably") + f": `adaptive` is {_speed_word(s, 'adaptive', 'stochastic')}"
                   f" constant injection, its SuperCLEVR accuracy {_level_word(s, 'adaptive', 'stochastic')} constant "
                   "injection's; it is " + ("" if "adaptive" in front else "not ") + "on the Pareto front of the means.")
        out.append(Answer("Would an adaptive schedule (stop once the format rate passes a threshold) get a better "
                          "speed-generalisation balance?", "001, Limitations; 000, Future Directions", ev,
                          f"better = not slower than `stochastic` and transfer higher; {speed_rule}; {transfer_rule}",
                          verdict))

    others = [n for n in ("partial-reward", "sft-decay") if n in s.results]
    if others and s.has("stochastic", "none"):
        ev = [compare(s, n, ref) for n in others for ref in ("stochastic", "none")]
        verdict = "; ".join(f"`{n}` is {_speed_word(s, n, 'stochastic')} injection and {_speed_word(s, n, 'none')} "
                            f"pure GRPO, its SuperCLEVR accuracy {_level_word(s, n, 'stochastic')} injection's"
                            for n in others)
        out.append(Answer("How does injection compare with other bootstraps (reward shaping, a supervised term)?",
                          "001, Limitations; 000, Future Directions", ev, f"{speed_rule}; {transfer_rule}",
                          verdict[0].upper() + verdict[1:] + "."))

    pairs = [(a, b) for a, b in (("stochastic-shaped", "stochastic"), ("fixed-1-shaped", "fixed-1"))
             if s.has(a, b)]
    if pairs and s.has("stochastic", "none"):
        cost = s.diff("stochastic", "none")
        ev = [compare(s, "stochastic", "none")] + [compare(s, a, b) for a, b in pairs] + \
             [compare(s, a, "none") for a, _ in pairs]
        lead = (f"Injection costs transfer here (`stochastic` - `none` {fmt_pp_estimate(cost)})."
                if st.compare_level(cost) == st.LOWER else
                f"There is no transfer cost of injection to remove here (`stochastic` - `none` {fmt_pp_estimate(cost)}).")
        detail = "; ".join(f"shaped `{b}` is {_speed_word(s, a, b)} unshaped, its SuperCLEVR accuracy "
                           f"{_level_word(s, a, b)} unshaped and {_level_word(s, a, 'none')} no injection's"
                           for a, b in pairs)
        out.append(Answer("Does shaping the injected tokens (LUFFY's p/(p+0.1)) remove the transfer cost of "
                          "injection under the default prompt, and at what cost in speed?", "issue 14 (LUFFY)", ev,
                          f"{speed_rule}; {transfer_rule}", f"{lead} {detail[0].upper() + detail[1:]}."))

    shown = [n for n in ("none", "stochastic", "fixed-1", "decay") if n in s.results]
    if shown:
        ev = [f"`{n}`: CLEVR digit rate 90% at {_range_text([c for c, _, _ in s.results[n].lags])} steps, SuperCLEVR "
              f"probe at {_range_text([p for _, p, _ in s.results[n].lags])}; lag {_lag_text(s.results[n])}"
              for n in shown] + ["every configuration: the table above, last column"]
        gaps = {n: st.has_gap([lag for *_, lag in r.lags], probe_every) for n, r in s.results.items()}
        parts = []
        if later := [n for n, g in gaps.items() if g]:
            parts.append(f"Yes for {_names(later)}: the cross-domain format rate reaches 90% more than one probe "
                         f"interval ({probe_every} steps) after the in-domain one in every seed")
        if not_later := [n for n, g in gaps.items() if g is False]:
            lags = [lag for n in not_later for *_, lag in s.results[n].lags if math.isfinite(lag)]
            span = f"lags {_signed(min(lags))} to {_signed(max(lags))} steps" if lags else "no finite lag"
            parts.append(f"no gap for {len(not_later)} of {len(gaps)} configurations ({span}, not beyond one probe "
                         f"interval in every seed)" if len(not_later) > 4 else f"no gap for {_names(not_later)} ({span})")
        if unmeasured := [n for n, g in gaps.items() if g is None]:
            parts.append(f"not measurable for {_names(unmeasured)} (the CLEVR digit rate never reached 90%)")
        verdict = "; ".join(parts) + "."
        out.append(Answer("Does the coupling show up as a format gap across domains?", "001, Limitations", ev,
                          f"a gap = the SuperCLEVR probe's rolling digit rate (3 probes of {{probe}} questions) "
                          f"reaches {PROBE_LEVEL:.0%} more than one probe interval ({probe_every} steps) after the "
                          "training's rolling CLEVR digit rate, in every seed",
                          verdict[0].upper() + verdict[1:]))
    return out


def answers_table(items: list[Answer], probe_questions: int) -> str:
    rows = ["| question (source) | measured (every comparison) | rule | answer |", "| :--- | :--- | :--- | :--- |"]
    for a in items:
        rows.append(f"| {a.question} ({a.source}) | {'<br>'.join(a.evidence)} | "
                    f"{a.rule.replace('{probe}', str(probe_questions))} | **{a.verdict}** |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------------------


def summary_metrics(s: Study) -> dict:
    """Flat per-configuration numbers for `dvc metrics show/diff`."""
    out = {}
    for name, r in s.results.items():
        mean, lo, hi = st.speed_summary(r.steps)
        out[name] = {"steps_to_90_mean": None if math.isinf(mean) else round(mean, 1),
                     "steps_to_90_max": None if math.isinf(hi) else hi,
                     "superclevr_acc": round(s.level(name).value, 4),
                     "superclevr_digit_rate": round(s.level(name, "superclevr.digit").value, 4),
                     "clevr_acc": round(s.level(name, "clevr.acc").value, 4)}
    return out


def report_markdown(cfg: Config, s: Study, items: list[Answer], seconds: float) -> str:
    st_cfg = cfg.study
    front = st.pareto_front({n: s.point(n) for n in s.results})
    budget = next(iter(s.results.values())).budget
    blog_i, blog_n = BLOG.arms[("default", "inject")], BLOG.arms[("default", "none")]
    lines = [
        "# The open questions, measured: injection strategies on one speed-vs-transfer map",
        "",
        f"Generated by `dvc repro study/dvc.yaml` (stage `study_report`) from {len(s.results)} configurations x "
        f"{len(st_cfg.seeds)} seeds (seeds {', '.join(map(str, st_cfg.seeds))}) of the mini world, "
        f"{st_cfg.prompt} prompt, {budget} steps each, on the calibrated base of the main pipeline. Every number "
        "below comes from that run's metrics (metrics/study/, dvclive/study/). Training time of all runs: "
        f"{seconds / 60:.1f} min (the sum of the runs' own timers, 2 CPU cores).",
        "",
        f"How to read it. Speed: steps until the rolling ({cfg.train.rolling_window}-step) training accuracy "
        "reaches 90%, per seed; two "
        "configurations differ in speed only when their seed ranges do not overlap. Transfer: SuperCLEVR-mini "
        "accuracy (200 questions, one sampled answer each, as the main report); its 95% interval is a bootstrap "
        "over questions and seeds, and differences are paired by question (bounds are rounded to 0.1 pp: a bound "
        "shown as +0.0 can lie just below 0, and the verdict is taken before rounding). Format lag: steps between the "
        "training's CLEVR digit rate reaching 90% and the SuperCLEVR probe's (the first "
        f"{st_cfg.probe_questions} SuperCLEVR questions, answered every {st_cfg.probe_every} steps during "
        "training; rolling mean of 3 probes).",
        "",
        "## The map",
        "",
        "![speed vs transfer](figures_study/study_map.png)",
        "",
        f"Pareto front (lower mean steps, higher mean SuperCLEVR accuracy): {', '.join(f'`{n}`' for n in front)}. "
        f"The blog's two points (default prompt, 2000-step budget, 1 seed): injection {blog_i.steps_to_90.text} "
        f"steps / {blog_i.superclevr_acc.text} SuperCLEVR, no injection {blog_n.steps_to_90.text} / "
        f"{blog_n.superclevr_acc.text}: drawn in their own panel, since their step scale is not ours.",
        "",
        "## Every configuration",
        "",
        config_table(s),
        "",
        "## The open questions, answered",
        "",
        answers_table(items, st_cfg.probe_questions),
        "",
        "## The cross-domain format lag",
        "",
        "![format lag](figures_study/study_format_lag.png)",
        "",
        "Each panel: the training's rolling CLEVR digit rate (solid) and the SuperCLEVR probe's digit rate "
        "(dots, mean over seeds) for one configuration.",
        "",
        "## Training curves",
        "",
        "![accuracy curves](figures_study/study_curves.png)",
        "",
        "## What this study is and is not",
        "",
        "- The mini world: a 2-layer Qwen2-VL pretrained by this pipeline on synthetic scenes, calibrated to the "
        "blog's base-model premises (main report, Premises). Its answers are about that world; they say what to "
        "test on the real model, not what the real model does.",
        "- Every configuration keeps at least one policy sample per group (the strategies' tests check it).",
        f"- The budget is {budget} steps, the main grid's; a configuration that has not reached 90% by then is "
        "shown at the budget with 'never'.",
        "- `sft-decay` follows CHORD (arXiv 2508.11408): an SFT loss on the expert answer with a weight decaying "
        "linearly to 0; `partial-reward` is the blog's partial credit (+0.5 when off by one); the shaped "
        "configurations use LUFFY's f(p) = p/(p+0.1) on injected tokens (arXiv 2504.14945).",
        "",
    ]
    return "\n".join(lines)


def main(cfg: Config, metrics_dir: Path, live_dir: Path, out_dir: Path, summary_path: Path) -> dict:
    os.environ.setdefault("MPLBACKEND", "Agg")
    from stages.plots import study as plots

    if not cfg.study.configs:
        raise InputError("params.yaml: study.configs is empty; add configurations to study (see README, 'Study')")
    results, curves = load(cfg, metrics_dir, live_dir)
    s = build(results)
    items = answers(s, cfg.study.probe_every)
    seconds = sum(sum(r.train_seconds) for r in results)
    with atomic_dir(out_dir / "figures_study") as tmp:
        plots.speed_transfer_map(s, cfg.train.rolling_window, tmp / "study_map.png")
        plots.format_lag(s, curves, [n for n in ("none", "stochastic", "fixed-1-shaped", "decay", "sft-decay",
                                                  "adaptive") if n in s.results],
                         cfg.train.rolling_window, tmp / "study_format_lag.png")
        plots.accuracy_curves(s, curves, cfg.train.rolling_window, tmp / "study_curves.png")
    md = report_markdown(cfg, s, items, seconds)
    atomic_write_text(out_dir / "study.md", md)
    summary = summary_metrics(s)
    write_json(summary_path, summary, sort_keys=False)
    log.info("study report: %d configurations -> %s", len(results), out_dir / "study.md")
    return summary
