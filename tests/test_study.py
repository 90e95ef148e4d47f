"""The open-questions study: its params (study.configs resolved into full configs), its statistics (speed
verdicts, paired transfer differences, the Pareto front, the format lag) on hand-computed cases, and the
study/dvc.yaml pipeline (deps derived from the code, never run by the main `dvc repro`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from stages.analysis import study as st
from stages.analysis.estimates import Estimate
from stages.config import ConfigError, config_from_dict, study_variant

REPO = Path(__file__).resolve().parents[1]


def _raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


# --------------------------------------------------------------------------------------------------------
# params


def test_a_configuration_resolves_to_the_profile_with_its_overrides_and_the_probe_on():
    cfg = config_from_dict(_raw())
    v = study_variant(cfg, "fixed-1-shaped")
    assert v.injection == "fixed"
    assert v.injection_params.fixed_count == 1 and v.injection_params.shaping_gamma == 0.1
    assert v.train.steps == cfg.train.steps == 250  # the mini profile's budget, not the section's 2000
    assert v.train.probe_every == cfg.study.probe_every and v.train.probe_questions == cfg.study.probe_questions
    assert v.prompt_styles == [cfg.study.prompt] and v.seeds == cfg.study.seeds
    # the main grid's config is untouched: the probe stays off there
    assert cfg.train.probe_every == 0 and cfg.injection_params.shaping_gamma == 0.0
    none = study_variant(cfg, "sft-decay")
    assert none.injection == "none" and none.train.sft_coef == 1.0


@pytest.mark.parametrize("configs, message", [
    ({"bad name": {"injection": "none"}}, "invalid name"),
    ({"x": {"injection": "sometimes"}}, "study.configs.x.injection = 'sometimes' is invalid"),
    ({"x": {"train": {"stepz": 3}}}, "unknown key study.configs.x.train.stepz"),
    ({"x": {"train": {"steps": 0}}}, "study.configs.x.train.steps = 0 is invalid"),
    ({"x": {"eval": {"seed": 1}}}, "unknown key study.configs.x.eval"),
    ({"x": {"injection": "fixed", "injection_params": {"fixed_count": 0}}}, "fixed_count"),
])
def test_a_bad_configuration_fails_when_params_are_read_with_one_line(configs, message):
    raw = _raw()
    raw["study"]["configs"] = configs
    with pytest.raises(ConfigError, match=message) as err:
        config_from_dict(raw)
    assert "\n" not in str(err.value)


def test_a_params_file_without_a_study_still_loads():
    raw = _raw()
    del raw["study"]
    assert config_from_dict(raw).study.configs == {}


def test_an_unknown_configuration_is_named_with_the_known_ones():
    cfg = config_from_dict(_raw())
    with pytest.raises(ConfigError, match="'nope' is not in params.yaml study.configs .*none, stochastic"):
        study_variant(cfg, "nope")


# --------------------------------------------------------------------------------------------------------
# statistics


def test_speed_differs_only_when_the_seed_ranges_are_apart():
    assert st.compare_speed([100, 110, 120], [130, 140, 150]) == st.FASTER
    assert st.compare_speed([130, 140, 150], [100, 110, 120]) == st.SLOWER
    assert st.compare_speed([100, 110, 135], [130, 140, 150]) == st.SAME_SPEED
    # a seed that never reached the threshold is the slowest of all
    assert st.compare_speed([100, 110, 120], [130, 140, math.inf]) == st.FASTER
    assert st.compare_speed([100, 110, math.inf], [130, 140, 150]) == st.SAME_SPEED
    assert st.speed_summary([100, 110, 120]) == (110.0, 100.0, 120.0)
    assert math.isinf(st.speed_summary([100, math.inf])[0])


def test_steps_to_threshold_uses_the_training_curves_rule():
    acc = [0.0] * 5 + [1.0] * 10
    # window 5: the rolling mean first reaches 0.9 once 5 ones are in the window: after 10 steps
    assert st.steps_to_threshold(acc, 0.9, 5) == 10.0
    assert math.isinf(st.steps_to_threshold([0.5] * 20, 0.9, 5))


def test_a_paired_difference_and_its_verdict():
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 2, 200).astype(float) for _ in range(3)]
    better = [np.maximum(x, (rng.random(200) < 0.5).astype(float)) for x in a]  # a's right answers and more
    pq = {"a": a, "b": better}
    reps = st.replicates(pq)
    d = st.difference(pq, reps, "b", "a")
    assert d.value == pytest.approx(np.mean([y.mean() for y in better]) - np.mean([x.mean() for x in a]))
    assert d.lo > 0 and st.compare_level(d) == st.HIGHER
    assert st.compare_level(st.difference(pq, reps, "a", "b")) == st.LOWER
    assert st.compare_level(st.difference(pq, reps, "a", "a")) == st.SAME_LEVEL
    assert st.compare_level(Estimate(0.01, -0.02, 0.04)) == st.SAME_LEVEL


def test_the_pareto_front_by_hand():
    points = {
        "fast-low": (100, 0.40),
        "slow-high": (200, 0.60),
        "dominated": (150, 0.35),  # slower and lower than fast-low
        "tie-worse": (100, 0.38),  # as fast as fast-low, lower
        "middle": (150, 0.50),
        "never-best": (math.inf, 0.70),  # never reached 90%, but the best transfer of all
        "never-low": (math.inf, 0.30),
    }
    assert st.pareto_front(points) == ["fast-low", "middle", "slow-high", "never-best"]


def test_the_format_lag_by_hand():
    # CLEVR digit rate: 0 for 10 steps, then 1: rolling window 5 reaches 0.9 after 15 steps trained
    clevr = [0.0] * 10 + [1.0] * 20
    probe_steps = [5, 10, 15, 20, 25, 30]
    probe = [0.0, 0.5, 0.9, 0.9, 1.0, 1.0]  # rolling 3: 0, .25, .467, .767, .933, .967 -> 25
    assert st.format_lag(clevr, probe_steps, probe, window=5) == (15.0, 25.0, 10.0)
    c, p, lag = st.format_lag(clevr, probe_steps, [0.5] * 6, window=5)
    assert c == 15.0 and math.isinf(p) and math.isinf(lag)


# --------------------------------------------------------------------------------------------------------
# the pipeline


def test_the_study_is_a_pipeline_of_its_own_with_a_stage_per_configuration():
    spec = yaml.safe_load((REPO / "study" / "dvc.yaml").read_text())
    run = spec["stages"]["study_run"]
    assert run["foreach"] == "${study.configs}"
    assert "study.configs.${key}" in run["do"]["params"]  # editing one configuration re-runs that one only
    assert "study_run" not in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


# --------------------------------------------------------------------------------------------------------
# end to end on a tiny world: the run stage (and its resume), then the report


@pytest.fixture(scope="module")
def study_world(tmp_path_factory, make_tiny_world):
    root = make_tiny_world(tmp_path_factory.mktemp("study"), seed=5, n_train=12, n_heldout=4, n_superclevr=6)
    raw = _raw()
    small = {"steps": 4, "prompts_per_step": 2, "group_size": 4, "epochs": 1, "max_new_tokens": 8,
             "lr": 1e-3, "warmup_frac": 0.0, "rolling_window": 2}
    raw["execution"]["checkpoint_every"] = 2
    raw["train"].update(small)
    raw["profiles"]["mini"]["train"] = dict(small)
    raw["eval"].update(clevr_questions=4, max_new_tokens=8, batch_size=4)
    raw["study"].update(seeds=[0], probe_every=2, probe_questions=3)
    raw["study"]["configs"] = {n: raw["study"]["configs"][n]
                               for n in ("none", "stochastic", "stochastic-shaped", "sft-decay")}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))  # for the CLI, as DVC runs it
    return root, config_from_dict(raw)


def _run_config(study_world, name, out, seeds=None):
    from stages import study

    root, cfg = study_world
    v = study_variant(cfg, name)
    return study.main(v, name, v.injection, cfg.study.prompt, seeds or cfg.study.seeds, cfg.study.configs[name],
                      root / "base", root / "data", out / "live" / name, out / "work" / name,
                      out / "metrics" / f"{name}.json")


def test_a_killed_study_run_resumes_without_redoing_a_finished_seed(study_world, tmp_path, monkeypatch):
    from stages import study

    real, calls = study.seed_run, []

    def dies_on_seed_1(cfg, strategy, prompt, seed, *args):
        calls.append(seed)
        if seed == 1:
            raise KeyboardInterrupt("killed")
        return real(cfg, strategy, prompt, seed, *args)

    monkeypatch.setattr(study, "seed_run", dies_on_seed_1)
    with pytest.raises(KeyboardInterrupt):
        _run_config(study_world, "stochastic", tmp_path, seeds=[0, 1])
    assert not (tmp_path / "metrics" / "stochastic.json").exists()  # nothing half-written
    monkeypatch.setattr(study, "seed_run", lambda *a: (calls.append(a[3]), real(*a))[1])
    out = _run_config(study_world, "stochastic", tmp_path, seeds=[0, 1])
    assert calls == [0, 1, 1]  # seed 0 was not trained again
    assert [r["seed"] for r in out["runs"]] == [0, 1]
    assert sorted(p.name for p in (tmp_path / "live" / "stochastic").iterdir()) == ["seed-0", "seed-1"]
    assert not (tmp_path / "work" / "stochastic").exists()


def test_the_study_end_to_end_writes_the_report(study_world, tmp_path):
    root, cfg = study_world
    for name in cfg.study.configs:
        out = _run_config(study_world, name, tmp_path)
        run = out["runs"][0]
        assert set(run) == {"seed", "train", "superclevr", "clevr"}
        assert len(run["superclevr"]["per_question"]["correct"]) == 6
    probe = tmp_path / "live" / "none" / "seed-0" / "plots" / "metrics" / "probe" / "superclevr_digit_rate.tsv"
    assert len(probe.read_text().splitlines()) == 1 + 2  # probed after steps 2 and 4
    # the report through the CLI, the way study/dvc.yaml runs it (its wiring broke once: a NameError at the end)
    proc = subprocess.run([sys.executable, "-m", "stages.cli", "study-report", "--params", str(root / "params.yaml"),
                           "--metrics", str(tmp_path / "metrics"), "--live", str(tmp_path / "live"),
                           "--out", str(tmp_path / "reports"), "--summary", str(tmp_path / "summary.json")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary) == list(cfg.study.configs)
    md = (tmp_path / "reports" / "study.md").read_text()
    for name in cfg.study.configs:
        assert f"| `{name}` |" in md
    assert "Does shaping the injected tokens" in md and "Does the coupling show up as a format gap" in md
    assert "How does injection compare with other bootstraps" in md
    for fig in ("study_map.png", "study_format_lag.png", "study_curves.png"):
        assert (tmp_path / "reports" / "figures_study" / fig).stat().st_size > 10_000


def test_the_report_names_a_missing_configuration(study_world, tmp_path):
    from stages import study_report
    from stages.io import InputError

    _, cfg = study_world
    with pytest.raises(InputError, match=r"none.json: missing; run `dvc repro study/dvc.yaml`"):
        study_report.main(cfg, tmp_path / "metrics", tmp_path / "live", tmp_path / "reports", tmp_path / "s.json")


def test_a_format_gap_must_exceed_the_probe_interval_in_every_seed():
    assert st.has_gap([12.0, 15.0, 11.0], resolution=10) is True
    assert st.has_gap([12.0, 5.0, 11.0], resolution=10) is False  # one seed within the probe's resolution
    assert st.has_gap([12.0, math.nan], resolution=10) is False  # a seed with no lag to measure
    assert st.has_gap([math.inf, 20.0], resolution=10) is True  # the probe never got there in one seed
    assert st.has_gap([math.nan, math.nan]) is None
    assert st.lag_summary([math.nan, 4.0, -2.0]) == (1.0, -2.0, 4.0)
