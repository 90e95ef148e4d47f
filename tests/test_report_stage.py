"""The report stage on fixture metrics: every figure and table, and the flat summary keyed by role."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from stages import report
from stages.analysis import intervals as iv
from stages.analysis.curves import steps_to_reach
from stages.analysis.tables import CALIBRATION_PARAMS
from stages.config import config_from_dict, load_config
from stages.plots.render import FIGURE_FILES


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


N_QUESTIONS, K = 60, 4  # per-question fixture: questions per dataset, sampled answers per question


def _eval(accuracy: float, digit_rate: float, per_question: bool, seed: int = 0) -> dict:
    """An eval metrics file. Old format: accuracy, digit rate and n only. New: a per-question record with K
    samples per question (right answers drawn around ``accuracy``) and a greedy accuracy, as stages/evaluate.py
    writes them."""
    if not per_question:
        return {"accuracy": accuracy, "digit_rate": digit_rate, "n": N_QUESTIONS}
    rng = np.random.default_rng(seed)
    correct = rng.binomial(K, accuracy, N_QUESTIONS)
    digit = np.maximum(correct, rng.binomial(K, digit_rate, N_QUESTIONS))
    return {"accuracy": float(correct.mean() / K), "digit_rate": float(digit.mean() / K), "n": N_QUESTIONS,
            "per_question": {"rows": list(range(N_QUESTIONS)), "samples": K, "correct": correct.tolist(),
                             "digit": digit.tolist()},
            "greedy": {"n": N_QUESTIONS, "digit_rate": 1.0, "accuracy": 0.75, "accuracy_given_digit": 0.75},
            "decoding": {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 50,
                         "samples_per_question": K}}


def _fixture(root: Path, cfg, per_question: bool = False) -> None:
    m = root / "metrics"
    _write(m / "baseline.json", {
        "prompts": {"default": {"digit_rate": 0.15, "accuracy": 0.12, "accuracy_given_digit": 0.8, "n": 100},
                    "r1v": {"digit_rate": 0.99, "accuracy": 0.6, "accuracy_given_digit": 0.61, "n": 100}},
        "decoding": {"do_sample": True, "temperature": 1.0, "top_p": 1.0}})
    rng = np.random.default_rng(0)
    for prompt, arm, seed in report.grid(cfg):
        cell = f"{prompt}-{arm}-{seed}"
        fast = arm != "none"
        _write(m / "train" / f"{cell}.json", {"steps": 60, "steps_to_threshold": 20 if fast else 45,
                                             "train_seconds": 30.0})
        _write(m / "eval" / "clevr" / f"{cell}.json", _eval(0.9, 0.99, per_question, seed))
        _write(m / "eval" / "superclevr" / f"{cell}.json",
               _eval(0.5 if fast else 0.6, 0.9, per_question, seed + (0 if fast else 100)))
        live = root / "live" / cell / "plots" / "metrics" / "charts"
        live.mkdir(parents=True)
        steps = np.arange(60)
        curves = {"digit_rate": np.clip(0.15 + steps / (20 if fast else 40), 0, 1),
                  "accuracy": np.clip(0.1 + steps / (25 if fast else 50), 0, 0.95),
                  "mean_reward": rng.uniform(-1, 1, 60), "injected_frac": np.full(60, 0.5 if fast else 0.0)}
        for name, values in curves.items():
            lines = [f"step\t{name}"] + [f"{s}\t{v}" for s, v in zip(steps, values, strict=True)]
            (live / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    for prompt in cfg.prompt_styles:
        _write(m / "eval" / "clevr" / f"{prompt}-base.json", _eval(0.1, 0.15, per_question, 7))
        _write(m / "eval" / "superclevr" / f"{prompt}-base.json", _eval(0.08, 0.12, per_question, 8))


def test_report_renders_every_figure_and_table(tmp_path, repo_root):
    import dataclasses

    cfg = dataclasses.replace(load_config(repo_root / "params.yaml"), seeds=[0])  # one seed: a Wilson interval
    _fixture(tmp_path, cfg)
    summary = report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports",
                          tmp_path / "reports" / "summary.json")
    text = (tmp_path / "reports" / "report.md").read_text()
    for name in FIGURE_FILES.values():
        assert (tmp_path / "reports" / "figures" / name).stat().st_size > 5000
        assert f"figures/{name}" in text
    for heading in ("## Claims", "## Premises: the base model against the blog's", "## Baseline", "## Learning speed",
                    "## Transfer to SuperCLEVR", "## Complete results"):
        assert heading in text
    assert text.index("## Claims") < text.index("## Premises") < text.index("## Baseline")
    # old metrics (no per-question record): Wilson intervals on n, no greedy accuracy, one answer per question
    lo, hi = iv.wilson_interval(round(0.5 * N_QUESTIONS), N_QUESTIONS)
    assert f"50.0% [{lo * 100:.1f}–{hi * 100:.1f}]" in text
    assert "answers each question once" in text and "Greedy accuracy was not measured" in text
    assert f"hierarchical bootstrap with {iv.N_BOOT:,} replicates" in text and "Wilson" in text
    assert "| CLEVR, default prompt: digit rate | 14.5%" in text and "default_digit_frac = " in text
    assert "14.5%" in text and "48%" in text  # the blog's numbers stand beside ours
    # the two-phase claim's boundary: curves.steps_to_reach on the logged digit rate, in steps trained
    digit = np.clip(0.15 + np.arange(60) / 40, 0, 1).tolist()
    boundary = steps_to_reach(digit, 0.9, cfg.train.rolling_window)
    assert boundary is not None and f"90% after {boundary} steps trained" in text
    assert summary["default.inject.superclevr_acc"] == 0.5
    assert summary["default.none.superclevr_acc"] == 0.6
    assert summary["r1v.base.clevr_acc"] == 0.1
    assert summary["default.inject.steps_to_threshold"] == 20
    on_disk = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert on_disk == summary


def test_report_copes_with_cells_not_run(tmp_path, repo_root):
    cfg = load_config(repo_root / "params.yaml")
    (tmp_path / "metrics").mkdir()
    report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports", tmp_path / "summary.json")
    assert (tmp_path / "reports" / "report.md").is_file()
    assert json.loads((tmp_path / "summary.json").read_text()) == {}


def test_report_with_per_question_records(tmp_path, repo_root):
    """New eval metrics: the intervals resample the per-question records (paired by question), the greedy accuracy
    stands beside the sampled one and the intro states K answers per question; the summary keys do not change."""
    cfg = load_config(repo_root / "params.yaml")
    _fixture(tmp_path, cfg, per_question=True)
    old_root = tmp_path / "old"
    _fixture(old_root, cfg)
    summary = report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports",
                          tmp_path / "reports" / "summary.json")
    old = report.main(cfg, old_root / "metrics", old_root / "live", old_root / "reports", old_root / "summary.json")
    assert set(summary) == set(old)
    text = (tmp_path / "reports" / "report.md").read_text()
    assert f"answers each question {K} times" in text
    assert "once greedily" in text and "75.0% [" in text  # the greedy accuracy, Wilson over its n questions
    assert "paired by question" in text  # the claims' differences
    cells = report.load_cells(cfg, tmp_path / "metrics")
    pq = cells["superclevr_pq"].iloc[0]
    assert pq.samples == K and len(pq.rows) == N_QUESTIONS
    assert report.load_cells(cfg, old_root / "metrics")["superclevr_pq"].isna().all()


def test_calibration_follows_the_profile(repo_root):
    """The premises table's "calibrated by": the fetch_model params under mini; nothing under blog (the real model)."""
    raw = yaml.safe_load((repo_root / "params.yaml").read_text())
    mini = config_from_dict({**raw, "profile": "mini"})
    cal = report.calibration(mini)
    assert cal["r1v_frac"] == mini.fetch_model.r1v_frac and set(cal) == set(CALIBRATION_PARAMS)
    assert report.calibration(config_from_dict({**raw, "profile": "blog"})) is None


def test_the_mechanism_shows_what_each_arm_writes_on_both_domains(tmp_path, repo_root, tiny_processor):
    """Answers on disk (the evaluations' jsonl, greedy rows and later samples left out) and the base's tokenizer
    give the mechanism table; the training curves give Figure 11."""
    import dataclasses

    import pandas as pd

    cfg = dataclasses.replace(load_config(repo_root / "params.yaml"), seeds=[0], prompt_styles=["default"])
    _fixture(tmp_path, cfg)
    answers = tmp_path / "answers"
    for ds in ("clevr", "superclevr"):
        (answers / ds).mkdir(parents=True)
        for name, texts in {"default-base": ["I can see five objects.", "4"],
                            "default-none-0": ["There are 5 objects.", "3"],
                            "default-inject-0": ["5", "3"]}.items():
            rows = [{"truth": t, "response": r, "reward": (1 if str(t) in r else 0) if any(c.isdigit() for c in r) else -1,
                     "decoding": "sampled", "sample": 0} for t, r in zip([5, 3], texts, strict=True)]
            rows.append({"truth": 5, "response": "5", "reward": 1, "decoding": "greedy", "sample": 0})
            pd.DataFrame(rows).to_json(answers / ds / f"{name}.jsonl", orient="records", lines=True)
    tiny_processor.tokenizer.save_pretrained(tmp_path / "base")
    report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports", tmp_path / "summary.json",
                answers, tmp_path / "base")
    text = (tmp_path / "reports" / "report.md").read_text()
    assert "## Why the arms differ, or do not" in text and "figures/mechanism.png" in text
    table = text[text.index("## Why the arms differ"):]
    # the injection arm writes only bare numbers, all right; no injection and the base half of the time
    assert "| default | clevr | injection | 1.0 | 100.0% | 100.0% | 100.0% |" in table
    assert "| default | superclevr | no injection |" in table and "| default | clevr | base model |" in table
    base_row = next(line for line in table.splitlines() if line.startswith("| default | clevr | base model |"))
    cells = [c.strip() for c in base_row.split("|")]
    assert cells[5:8] == ["50.0%", "50.0%", "0.0%"]  # the bare "4" (wrong: the truth is 3); words hold no number
