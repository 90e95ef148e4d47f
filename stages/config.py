"""Typed, validated parameters loaded from ``params.yaml``.

``params.yaml`` has a few top-level switches (``profile``, ``injection``, ``prompt_styles``, ``seeds``),
one section per stage, and a ``profiles`` section whose ``mini`` / ``blog`` entries override stage keys
for that profile.  The resolved config is ``section defaults <- params.yaml section <- profiles[profile]``.

Every value is checked before any data or model is touched: an unknown key, a wrong type or a value outside
its range stops the command with :class:`ConfigError`, whose message is one line naming the key and what
is allowed (the CLI prints it and exits with status 2).
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stages.cells import INJECTION_STRATEGIES, PROMPT_STYLES
from stages.grpo.injection import InjectionParams, range_error
from stages.grpo.rewards import REWARD_NAMES

PROFILES = ("mini", "blog")
# Training precision. bf16-mixed: fp32 master weights and optimizer state, bf16 compute (autocast). There is
# deliberately no pure-bf16 choice: AdamW steps of lr 1e-5 on bf16 weights round away (the spacing of bf16
# numbers near 0.02 is 1.2e-4), so most weights would never move.
PRECISIONS = ("fp32", "bf16-mixed")
INFERENCE_DTYPES = ("float32", "bfloat16")  # evaluation only: no optimizer, so bf16 weights are fine
DEVICES = ("auto", "cuda", "cpu")  # execution.device (stages/devices.py)
# LoRA targets: the language model's linear layers (stages/training/lora.py never adapts the vision tower)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A bad value in params.yaml; the message is one line naming the key and what is allowed."""


def _f(default: Any, **rules: Any) -> Any:
    """A dataclass field with validation rules: min / max (inclusive), gt (exclusive), choices."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=rules)
    return field(default=default, metadata=rules)


@dataclass(frozen=True)
class FetchDataParams:
    """mini: the offline renderer's settings; blog: where the real data comes from."""

    seed: int = _f(1234, min=0)
    image_size: int = _f(112, min=28)
    clevr_train: int = _f(3000, min=1)
    clevr_heldout: int = _f(1000, min=1)
    superclevr: int = _f(200, min=1)
    clevr_min_count: int = _f(1, min=0)
    clevr_max_count: int = _f(6, min=1, max=16)  # CLEVR-mini stands one object per cell of a 4x4 grid
    superclevr_min_count: int = _f(1, min=0)
    superclevr_max_count: int = _f(6, min=1)
    clevr_repo: str = "leonardPKU/clevr_cogen_a_train"
    clevr_eval_rows: int = _f(15000, min=1)
    superclevr_repo: str = "jigsaw-r1/super_clevr"
    superclevr_check: bool = True  # blog: stop unless the SuperCLEVR set is R1-V's 200 counting questions
    raw_dir: str = "data/raw"


@dataclass(frozen=True)
class FetchModelParams:
    """mini: architecture of the tiny Qwen2-VL and its supervised pretraining; blog: the hub model."""

    hub_id: str = "Qwen/Qwen2-VL-2B-Instruct"
    local_dir: str = "data/raw/Qwen2-VL-2B-Instruct"  # blog: a local copy here is used before the hub
    seed: int = _f(0, min=0)
    # tiny architecture: a configuration that trains on 2 CPU cores (vision hidden = text hidden; mrope sums to head_dim/2)
    vocab_size: int = _f(1024, min=300)
    text_hidden: int = _f(128, min=16)
    text_layers: int = _f(2, min=1)
    text_heads: int = _f(4, min=1)
    text_kv_heads: int = _f(2, min=1)
    text_intermediate: int = _f(512, min=16)
    vision_embed: int = _f(64, min=16)
    vision_depth: int = _f(4, min=1)
    vision_heads: int = _f(4, min=1)
    initializer_range: float = _f(0.08, gt=0)
    # pretraining (SFT on answer tokens only)
    pretrain_steps: int = _f(1000, min=0)
    pretrain_batch: int = _f(32, min=1)
    pretrain_lr: float = _f(1e-3, gt=0)
    pretrain_warmup_frac: float = _f(0.05, min=0, max=1)
    pretrain_images: int = _f(4000, min=1)
    r1v_frac: float = _f(0.5, min=0, max=1)
    default_digit_frac: float = _f(0.24, min=0, max=1)  # default prompt, CLEVR: answers given as a digit
    default_digit_max_count: int = _f(3, min=0)  # ... for scenes of at most this many objects
    default_digit_frac_above: float = _f(0.05, min=0, max=1)  # ... and for larger scenes (unsure: noisier)
    default_digit_noise_above: float = _f(0.5, min=0, max=1)  # miscounts of those digits above the max count
    superclevr_default_digit_frac: float = _f(0.45, min=0, max=1)  # default prompt, SuperCLEVR questions
    default_digit_noise: float = _f(0.03, min=0, max=1)
    r1v_answer_noise: float = _f(0.30, min=0, max=1)  # R1V answers that miscount by one, CLEVR
    superclevr_r1v_answer_noise: float = _f(0.0, min=0, max=1)  # ... SuperCLEVR
    superclevr_frac: float = _f(0.5, min=0, max=1)
    check_questions: int = _f(64, min=1)
    check_max_new_tokens: int = _f(50, min=1)  # the quick check's answer length (as train/eval: 50)


@dataclass(frozen=True)
class BaselineParams:
    n_questions: int = _f(500, min=1)
    group_size: int = _f(8, min=2)
    p_values: list[float] = _f([0.05, 0.145, 0.30])
    batch_size: int = _f(64, min=1)


@dataclass(frozen=True)
class TrainParams:
    """The blog's training config (001_*, appendix); the mini profile overrides the budget."""

    steps: int = _f(2000, min=1)
    prompts_per_step: int = _f(4, min=1)
    group_size: int = _f(8, min=2)
    epochs: int = _f(4, min=1)
    clip_eps: float = _f(0.2, gt=0)
    kl_coef: float = _f(0.0, min=0)
    lr: float = _f(1e-5, gt=0)
    weight_decay: float = _f(0.01, min=0)
    warmup_frac: float = _f(0.1, min=0, max=1)
    max_grad_norm: float = _f(1.0, gt=0)
    temperature: float = _f(1.0, gt=0)
    top_p: float = _f(1.0, gt=0, max=1)
    max_new_tokens: int = _f(50, min=1)
    kl_log_every: int = _f(1, min=1)  # reference forward for the KL log every N steps (always if kl_coef > 0)
    accuracy_threshold: float = _f(0.9, gt=0, max=1)
    rolling_window: int = _f(20, min=1)
    reward: str = _f("count", choices=REWARD_NAMES)  # count: the blog's +1/0/-1; partial: +0.5 off by one
    sft_coef: float = _f(0.0, min=0)  # CHORD: weight at step 0 of an SFT loss on the expert answers (0: off)
    sft_decay_fraction: float = _f(0.5, gt=0, max=1)  # the SFT weight falls linearly to 0 over this fraction of steps
    probe_every: int = _f(0, min=0)  # > 0: every N steps, the policy answers a fixed SuperCLEVR probe (0: off)
    probe_questions: int = _f(50, min=1)  # the probe: the first N SuperCLEVR questions, sampled as in training
    precision: str = _f("fp32", choices=PRECISIONS)
    gradient_checkpointing: bool = False  # recompute activations in the backward: less memory, ~1/3 more compute
    lora_rank: int = _f(0, min=0)  # 0: full fine-tune; r > 0: LoRA adapters of rank r (peft), merged at the end
    lora_alpha: float = _f(32.0, gt=0)  # the adapters' scale is lora_alpha / lora_rank
    lora_dropout: float = _f(0.0, min=0, max=0.9)
    lora_targets: list[str] = _f(list(LORA_TARGETS), choices=LORA_TARGETS)

    def __post_init__(self) -> None:
        if self.lora_rank > 0 and not self.lora_targets:
            raise ValueError("lora_targets is empty: LoRA (lora_rank > 0) needs at least one of "
                             + ", ".join(LORA_TARGETS))


@dataclass(frozen=True)
class EvalParams:
    clevr_questions: int = _f(500, min=1)
    batch_size: int = _f(64, min=1)
    do_sample: bool = True
    temperature: float = _f(1.0, gt=0)
    top_p: float = _f(1.0, gt=0, max=1)
    max_new_tokens: int = _f(50, min=1)
    seed: int = _f(0, min=0)
    dtype: str = _f("float32", choices=INFERENCE_DTYPES)
    samples_per_question: int = _f(1, min=1)  # sampled answers per question (eval noise: bootstrap over questions)
    greedy: bool = True  # also answer every question greedily: an accuracy free of sampling noise


@dataclass(frozen=True)
class ExecutionParams:
    """How a stage runs, never what it computes: no stage declares these as DVC params and no checkpoint
    fingerprint holds them, so changing one after a kill keeps every finished cell cached and resumes the rest."""

    device: str = _f("auto", choices=DEVICES)  # auto: CUDA when usable (the blog profile requires it), else CPU
    num_processes: int = _f(1, min=1)  # > 1: `vlm-grpo train` relaunches itself under torch.distributed.run (DDP)
    checkpoint_every: int = _f(25, min=1)  # training steps between checkpoints (only the newest is kept)


SECTIONS: dict[str, type] = {
    "fetch_data": FetchDataParams,
    "fetch_model": FetchModelParams,
    "baseline_assess": BaselineParams,
    "train": TrainParams,
    "injection_params": InjectionParams,
    "eval": EvalParams,
    "execution": ExecutionParams,
}
TOP_LEVEL = ("profile", "injection", "prompt_styles", "seeds", "profiles", *SECTIONS, "study")

# what a study configuration may override: the strategy, and keys of these sections
STUDY_SECTIONS = ("train", "injection_params")
STUDY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")  # names a DVC stage (study_run@NAME) and its files


@dataclass(frozen=True)
class StudyParams:
    """The open-questions study (``dvc repro study/dvc.yaml``, reports/study.md): each configuration trains
    ``seeds`` on one prompt style, with the training's SuperCLEVR probe every ``probe_every`` steps."""

    prompt: str = _f("default", choices=PROMPT_STYLES)
    seeds: list[int] = _f([0, 1, 2], min=0)
    probe_every: int = _f(10, min=1)
    probe_questions: int = _f(50, min=1)
    # name -> overrides: {injection: STRATEGY or none, train: {...}, injection_params: {...}}
    configs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Config:
    profile: str
    injection: str
    prompt_styles: list[str]
    seeds: list[int]
    fetch_data: FetchDataParams
    fetch_model: FetchModelParams
    baseline_assess: BaselineParams
    train: TrainParams
    injection_params: InjectionParams
    eval: EvalParams
    execution: ExecutionParams = field(default_factory=ExecutionParams)
    study: StudyParams = field(default_factory=StudyParams)


# ----------------------------------------------------------------------------------------------------------
# validation helpers: each returns the checked value or raises ConfigError with a one-line message


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        item = typing.get_args(tp)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(item, str(item))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check_type(key: str, value: Any, tp: Any) -> Any:
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(f"params.yaml: {key} = {value!r} is invalid: must be {_type_name(tp)}")
        (item_tp,) = typing.get_args(tp)
        return [_check_type(f"{key}[{i}]", v, item_tp) for i, v in enumerate(value)]
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
    }[tp](value)
    if not ok:
        raise ConfigError(f"params.yaml: {key} = {value!r} is invalid: must be {_type_name(tp)}")
    return float(value) if tp is float else value


def _check_rules(key: str, value: Any, rules: dict[str, Any]) -> None:
    items = value if isinstance(value, list) else [value]
    for v in items:
        if "choices" in rules and v not in rules["choices"]:
            allowed = ", ".join(rules["choices"])
            raise ConfigError(f"params.yaml: {key} = {v!r} is invalid: must be one of {allowed}")
        problem = range_error(key, v, rules)
        if problem:
            raise ConfigError(f"params.yaml: {problem}")


def _build_section(name: str, cls: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown key {name}.{unknown[0]}; allowed keys in {name}: {', '.join(fields)}"
        )
    checked = {}
    for key, value in values.items():
        full = f"{name}.{key}"
        checked[key] = _check_type(full, value, hints[key])
        _check_rules(full, checked[key], dict(fields[key].metadata))
    try:
        return cls(**checked)
    except ValueError as err:  # a rule across keys of the section (e.g. InjectionParams' decay rates)
        raise ConfigError(f"params.yaml: {name}.{err}") from None


def _section_dict(raw: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"params.yaml: {where}{name} must be a mapping of keys to values, got {value!r}")
    return value


def _cross_checks(cfg: Config) -> None:
    d, m = cfg.fetch_data, cfg.fetch_model
    if d.clevr_min_count > d.clevr_max_count:
        raise ConfigError("params.yaml: fetch_data.clevr_min_count must be <= fetch_data.clevr_max_count")
    if d.superclevr_min_count > d.superclevr_max_count:
        raise ConfigError(
            "params.yaml: fetch_data.superclevr_min_count must be <= fetch_data.superclevr_max_count"
        )
    if m.text_hidden % m.text_heads or (m.text_hidden // m.text_heads) % 2:
        raise ConfigError("params.yaml: fetch_model.text_hidden must be divisible by text_heads (even head_dim)")
    if m.text_heads % m.text_kv_heads:
        raise ConfigError("params.yaml: fetch_model.text_heads must be a multiple of text_kv_heads")
    if m.vision_embed % m.vision_heads:
        raise ConfigError("params.yaml: fetch_model.vision_embed must be divisible by vision_heads")
    if cfg.train.prompts_per_step % cfg.execution.num_processes:
        raise ConfigError(f"params.yaml: train.prompts_per_step ({cfg.train.prompts_per_step}) must be divisible by "
                          f"execution.num_processes ({cfg.execution.num_processes}): each process takes an equal share")


def config_from_dict(raw: Any) -> Config:
    """Validate a params mapping (as read from params.yaml) and resolve the active profile."""
    if not isinstance(raw, dict):
        raise ConfigError("params.yaml: must be a mapping of keys to values")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    if unknown:
        raise ConfigError(f"params.yaml: unknown key {unknown[0]}; allowed top-level keys: {', '.join(TOP_LEVEL)}")
    for required in ("profile", "injection", "prompt_styles", "seeds", *SECTIONS):
        if required not in raw:
            raise ConfigError(f"params.yaml: missing key {required}; add it (see README, 'Parameters')")

    profile = _check_type("profile", raw["profile"], str)
    _check_rules("profile", profile, {"choices": PROFILES})
    injection = _check_type("injection", raw["injection"], str)
    _check_rules("injection", injection, {"choices": INJECTION_STRATEGIES})
    prompt_styles = _check_type("prompt_styles", raw["prompt_styles"], list[str])
    _check_rules("prompt_styles", prompt_styles, {"choices": PROMPT_STYLES})
    if not prompt_styles or len(set(prompt_styles)) != len(prompt_styles):
        raise ConfigError("params.yaml: prompt_styles must be a non-empty list of distinct styles: default, r1v")
    seeds = _check_type("seeds", raw["seeds"], list[int])
    _check_rules("seeds", seeds, {"min": 0})
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("params.yaml: seeds must be a non-empty list of distinct integers >= 0")

    profiles = _section_dict(raw, "profiles", "")
    unknown = sorted(set(profiles) - set(PROFILES))
    if unknown:
        raise ConfigError(f"params.yaml: unknown profile profiles.{unknown[0]}; allowed: {', '.join(PROFILES)}")
    overrides = _section_dict(profiles, profile, "profiles.")
    unknown = sorted(set(overrides) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"params.yaml: unknown section profiles.{profile}.{unknown[0]}; allowed: {', '.join(SECTIONS)}"
        )
    # Every profile's overrides are validated, not only the active one, so a typo never waits for a switch.
    for other in PROFILES:
        for name, cls in SECTIONS.items():
            values = _section_dict(_section_dict(profiles, other, "profiles."), name, f"profiles.{other}.")
            _build_section(f"profiles.{other}.{name}", cls, values)

    sections = {}
    for name, cls in SECTIONS.items():
        _build_section(name, cls, _section_dict(raw, name, ""))  # a bad value is an error even if overridden
        merged = {**_section_dict(raw, name, ""), **_section_dict(overrides, name, f"profiles.{profile}.")}
        sections[name] = _build_section(name, cls, merged)
    cfg = Config(profile=profile, injection=injection, prompt_styles=prompt_styles, seeds=seeds, **sections,
                 study=_study_params(raw))
    _cross_checks(cfg)
    for name in cfg.study.configs:  # every configuration of the study must make a valid config, checked now
        study_variant(cfg, name)
    return cfg


def _study_params(raw: dict[str, Any]) -> StudyParams:
    values = dict(_section_dict(raw, "study", ""))
    configs = values.pop("configs", {}) or {}
    study = _build_section("study", StudyParams, values)
    if not isinstance(configs, dict):
        raise ConfigError(f"params.yaml: study.configs must be a mapping of names to overrides, got {configs!r}")
    if len(set(study.seeds)) != len(study.seeds) or not study.seeds:
        raise ConfigError("params.yaml: study.seeds must be a non-empty list of distinct integers >= 0")
    for name, overrides in configs.items():
        if not isinstance(name, str) or not STUDY_NAME.match(name):
            raise ConfigError(f"params.yaml: study.configs.{name} is an invalid name: use lower-case letters, "
                              "digits and '-' (it names a DVC stage and files)")
        if not isinstance(overrides, dict):
            raise ConfigError(f"params.yaml: study.configs.{name} must be a mapping (injection, train, "
                              f"injection_params), got {overrides!r}")
        unknown = sorted(set(overrides) - {"injection", *STUDY_SECTIONS})
        if unknown:
            raise ConfigError(f"params.yaml: unknown key study.configs.{name}.{unknown[0]}; allowed: injection, "
                              + ", ".join(STUDY_SECTIONS))
    return dataclasses.replace(study, configs=configs)


def study_variant(cfg: Config, name: str) -> Config:
    """The resolved config of study configuration ``name``: ``cfg`` (profile applied) with the configuration's
    strategy and section keys on top, and the study's probe switched on. Raises ConfigError (one line)."""
    if name not in cfg.study.configs:
        known = ", ".join(cfg.study.configs) or "none defined"
        raise ConfigError(f"study configuration {name!r} is not in params.yaml study.configs ({known})")
    overrides = cfg.study.configs[name]
    where = f"study.configs.{name}"
    injection = _check_type(f"{where}.injection", overrides.get("injection", "none"), str)
    _check_rules(f"{where}.injection", injection, {"choices": ("none", *INJECTION_STRATEGIES)})
    sections = {}
    for section in STUDY_SECTIONS:
        values = {**dataclasses.asdict(getattr(cfg, section)),
                  **_section_dict(overrides, section, f"{where}.")}
        if section == "train":
            values.update(probe_every=cfg.study.probe_every, probe_questions=cfg.study.probe_questions)
        sections[section] = _build_section(f"{where}.{section}", SECTIONS[section], values)
    return dataclasses.replace(cfg, injection=injection, prompt_styles=[cfg.study.prompt],
                               seeds=list(cfg.study.seeds), **sections)


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate params.yaml; raises ConfigError (one line) on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run from the repository root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else "syntax error"
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    return config_from_dict(raw)
