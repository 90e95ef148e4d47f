"""params.yaml validation: every bad value stops with one line naming the key and what is allowed."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.cells import INJECTION_STRATEGIES, PROMPT_STYLES, CellError, cell_name, cell_strategy, parse_cell
from stages.config import ConfigError, config_from_dict, load_config
from stages.grpo.injection import STRATEGY_NAMES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_are_valid(raw):
    cfg = config_from_dict(raw)
    assert cfg.profile == "mini"
    assert cfg.train.steps == raw["profiles"]["mini"]["train"]["steps"]  # the profile override wins
    assert cfg.train.lr == raw["train"]["lr"]


def test_blog_profile_keeps_the_blog_training_config(raw):
    cfg = config_from_dict({**raw, "profile": "blog"})
    # the appendix of seeds/001: lr 1e-5, 2000 steps, G=8, 4 prompts, 4 epochs, clip 0.2, no KL
    assert (cfg.train.lr, cfg.train.steps, cfg.train.group_size) == (1e-5, 2000, 8)
    assert (cfg.train.prompts_per_step, cfg.train.epochs, cfg.train.clip_eps, cfg.train.kl_coef) == (4, 4, 0.2, 0.0)
    assert (cfg.train.weight_decay, cfg.train.warmup_frac, cfg.train.max_grad_norm) == (0.01, 0.1, 1.0)
    assert (cfg.train.temperature, cfg.train.top_p, cfg.train.max_new_tokens) == (1.0, 1.0, 50)


def test_injection_choices_match_the_registered_strategies():
    assert set(INJECTION_STRATEGIES) == set(STRATEGY_NAMES) - {"none"}


def _set(raw: dict, dotted: str, value):
    out = copy.deepcopy(raw)
    node = out
    *path, last = dotted.split(".")
    for key in path:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return out


DELETE = object()

# (dotted key, bad value, words the one-line message must contain)
BAD_PARAMS = [
    ("profile", "huge", ["profile", "mini", "blog"]),
    ("injection", "always", ["injection", "stochastic", "decay"]),
    ("prompt_styles", ["default", "cot"], ["prompt_styles", "r1v"]),
    ("prompt_styles", [], ["prompt_styles"]),
    ("seeds", [0, 0], ["seeds", "distinct"]),
    ("seeds", "zero", ["seeds", "list"]),
    ("train.group_size", 1, ["train.group_size", ">= 2"]),
    ("train.prompts_per_step", 0, ["train.prompts_per_step", ">= 1"]),
    ("train.epochs", 0, ["train.epochs", ">= 1"]),
    ("train.clip_eps", 0.0, ["train.clip_eps", "> 0"]),
    ("train.clip_eps", -0.2, ["train.clip_eps", "> 0"]),
    ("train.lr", -1e-5, ["train.lr", "> 0"]),
    ("train.max_new_tokens", 0, ["train.max_new_tokens", ">= 1"]),
    ("train.lr", "fast", ["train.lr", "number"]),
    ("train.steps", 10.5, ["train.steps", "integer"]),
    ("train.steps", True, ["train.steps", "integer"]),
    ("train.top_p", 1.5, ["train.top_p", "<= 1"]),
    ("train.precision", "bf16", ["train.precision", "fp32", "bf16-mixed"]),
    ("eval.dtype", "int8", ["eval.dtype", "float32", "bfloat16"]),
    ("injection_params.decay_fraction", 0.0, ["injection_params.decay_fraction", "> 0"]),
    ("injection_params.decay_final_rate", 0.9, ["injection_params.decay_final_rate", "decay_initial_rate"]),
    ("train.kl_coef", -0.1, ["train.kl_coef", ">= 0"]),
    ("train.learning_rate", 1e-5, ["unknown key train.learning_rate", "lr"]),
    ("train", DELETE, ["missing key train"]),
    ("train", [1, 2], ["train", "mapping"]),
    ("extra_section", {}, ["unknown key extra_section"]),
    ("eval.do_sample", "yes", ["eval.do_sample", "true or false"]),
    ("fetch_data.clevr_max_count", 0, ["fetch_data.clevr_max_count", ">= 1"]),
    ("fetch_data.clevr_max_count", 17, ["fetch_data.clevr_max_count", "<= 16"]),
    ("baseline_assess.p_values", [0.1, "x"], ["baseline_assess.p_values[1]", "number"]),
    ("profiles.mini.train", {"stepz": 3}, ["profiles.mini.train.stepz", "unknown"]),
    ("profiles.blog.train", {"group_size": 1}, ["profiles.blog.train.group_size", ">= 2"]),
    ("profiles.laptop", {}, ["profiles.laptop", "mini", "blog"]),
]


@pytest.mark.parametrize(("key", "value", "words"), BAD_PARAMS, ids=[f"{k}={'<deleted>' if v is DELETE else repr(v)}"[:40] for k, v, _ in BAD_PARAMS])
def test_bad_params_give_one_line_naming_the_key(raw, key, value, words):
    with pytest.raises(ConfigError) as err:
        config_from_dict(_set(raw, key, value))
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_unreadable_yaml_is_one_line(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_cell_names_round_trip():
    for prompt in PROMPT_STYLES:
        for role in ("none", "inject"):
            assert parse_cell(cell_name(prompt, role, 3)) == (prompt, role, 3)
    with pytest.raises(CellError, match="PROMPT-ROLE-SEED"):
        parse_cell("default-0")
    with pytest.raises(CellError, match="role 'stochastic'"):
        parse_cell("default-stochastic-0")  # cells are named by role, the strategy is an option


def test_cell_strategy_fits_the_role():
    assert cell_strategy("none", None) == "none"
    for strategy in INJECTION_STRATEGIES:
        assert cell_strategy("inject", strategy) == strategy
    with pytest.raises(CellError, match="none cell"):
        cell_strategy("none", "decay")
    with pytest.raises(CellError, match="must be one of stochastic"):
        cell_strategy("inject", None)
    with pytest.raises(CellError, match="inject cell"):
        cell_strategy("inject", "magic")


@pytest.mark.parametrize("command", ["fetch-data", "fetch-model", "train default-none-0"])
def test_cli_stops_before_any_work_on_bad_params(raw, tmp_path, command):
    """Exit status 2, one line on stderr, and no output written: the check runs before data or models."""
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(_set(raw, "train.group_size", 1)))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "stages.cli", *command.split(), "--params", str(bad), "--out", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: params.yaml: train.group_size = 1 is invalid: must be >= 2"]
    assert not out.exists()


def test_params_yaml_sets_every_key_and_code_defaults_agree(raw):
    """Every value a stage reads comes from params.yaml, which DVC tracks (stages.config is no dep of any stage),
    and the dataclass defaults say the same as params.yaml, so reading either tells the truth."""
    import dataclasses

    from stages.config import SECTIONS

    for name, cls in SECTIONS.items():
        keys = {f.name for f in dataclasses.fields(cls)}
        assert set(raw[name]) == keys, f"params.yaml section {name}: missing {sorted(keys - set(raw[name]))}"
        defaults = cls()
        for key, value in raw[name].items():
            assert getattr(defaults, key) == value, f"{name}.{key}: code default {getattr(defaults, key)!r}, " \
                                                     f"params.yaml {value!r}"
        for profile in ("mini", "blog"):
            assert name in raw["profiles"][profile], f"profiles.{profile}.{name} (dvc.yaml declares it) is missing"
