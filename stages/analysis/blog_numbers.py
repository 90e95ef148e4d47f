"""Every number the two blog posts report, in one typed constant structure.

The posts (``/work/shared/seeds``):

* ``000`` "Building GRPO from Scratch: Format Learning, Guidance Injection, and Why
  Baselines Matter" (2026-01-13): the short post with the "What We Observed" list.
* ``001`` "Breaking the Cold Start Barrier: How Guidance Injection Accelerates
  Reinforcement Learning in Vision-Language Models" (2025-01-14): the long post that
  has every table.

Where the two posts disagree, ``value``/``text`` follow 001 (the post with the tables)
and ``alt`` records the other figure, so a report can show both.

Units: rates and accuracies are fractions in [0, 1]; accuracy differences are
fractions too (-0.18 is "-18 pp"); steps are optimizer steps; times are seconds.
Nothing here is measured by this project: this module is pure data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

HOUR = 3600.0


@dataclass(frozen=True)
class BlogValue:
    """One number as the blog states it."""

    value: float  # central value used for plots and comparisons
    text: str  # as the blog writes it, e.g. "~600" or "74-75%"
    low: float | None = None  # range the blog gives ("74-75%" -> 0.74)
    high: float | None = None  # ("74-75%" -> 0.75)
    alt: str | None = None  # the other post's figure for the same quantity

    def display(self) -> str:
        """The blog's wording, with the other post's figure when they disagree."""
        return f"{self.text} ({self.alt})" if self.alt else self.text


@dataclass(frozen=True)
class BaselineNumbers:
    """Base model (no training) on CLEVR counting, per prompt style."""

    digit_rate: BlogValue
    accuracy: BlogValue
    accuracy_given_digit: BlogValue | None  # None: the blog does not say
    n_questions: int | None


@dataclass(frozen=True)
class BaseEvalNumbers:
    """Base model on both evaluation sets, per prompt style."""

    clevr_acc: BlogValue
    clevr_digit_rate: BlogValue
    superclevr_acc: BlogValue
    superclevr_digit_rate: BlogValue | None


@dataclass(frozen=True)
class ArmNumbers:
    """One trained configuration (prompt x injection arm)."""

    steps_to_90: BlogValue  # steps until CLEVR accuracy reaches 90%
    clevr_acc: BlogValue  # final in-domain accuracy
    superclevr_acc: BlogValue  # cross-domain accuracy
    superclevr_digit_rate: BlogValue | None  # "number present rate" on SuperCLEVR
    steps_trained: BlogValue  # the "Steps" column of the complete results table
    train_seconds: BlogValue | None


@dataclass(frozen=True)
class ThresholdBand:
    """A row of the blog's "critical threshold" table (digit rate -> viability)."""

    low: float  # inclusive
    high: float  # exclusive, except the last band which includes 1.0
    label: str
    viability: str
    recommendation: str


@dataclass(frozen=True)
class RewardExample:
    """A (response, ground truth) -> reward example the blog gives or implies."""

    response: str
    truth: int
    reward: int
    source: str  # where the blog states (or implies) it


@dataclass(frozen=True)
class BlogNumbers:
    threshold: float
    group_size: int
    prompts_per_step: int
    clip_epsilon: float
    learning_rate: float
    total_steps: int
    n_superclevr: int
    baseline: Mapping[str, BaselineNumbers]
    base_eval: Mapping[str, BaseEvalNumbers]
    arms: Mapping[tuple[str, str], ArmNumbers]  # key: (prompt, arm), arm in {"inject", "none"}
    speedup: Mapping[str, BlogValue]  # steps_to_90(none) / steps_to_90(inject), per prompt
    injection_effect_superclevr: Mapping[str, BlogValue]  # superclevr(inject) - superclevr(none)
    signal_chance: tuple[tuple[float, BlogValue], ...]  # p -> 1-(1-p)^8
    digit_rate_bands: tuple[ThresholdBand, ...]
    reward_examples: tuple[RewardExample, ...]
    format_phase_end_step: BlogValue
    phase2_accuracy: BlogValue
    cold_start_mean_reward: BlogValue
    r1v_start_accuracy: BlogValue
    injection_rate: BlogValue
    strong_transfer_level: float
    observed: tuple[str, ...] = field(default=())


def _pct(value: float, text: str | None = None, **kw) -> BlogValue:
    return BlogValue(value=value, text=text or f"{value * 100:g}%", **kw)


BLOG = BlogNumbers(
    # 000: "Reaches 90% accuracy at ~470 steps"; 001 table header "Steps to 90% Accuracy".
    threshold=0.9,
    # 001 appendix: "num_samples_per_experience = 8,  # G = 8 responses per prompt"
    group_size=8,
    # 001 appendix: "num_experiences_per_update = 4,   # 4 prompts per batch"
    prompts_per_step=4,
    # 001 appendix: "clip_epsilon = 0.2,"
    clip_epsilon=0.2,
    # 001 appendix: "learning_rate = 1e-5,"
    learning_rate=1e-5,
    # 001 appendix: "total_steps = 2000,"
    total_steps=2000,
    # 001 appendix: "SuperCLEVR ... 200 samples evaluated"
    n_superclevr=200,
    baseline=MappingProxyType(
        {
            "default": BaselineNumbers(
                # 001: "| **Digit Extraction Rate** | 14.5% |"; 000 Figure 1: "The Default
                # prompt achieves only 14.5% digit extraction rate"; 000 text: "~14%".
                digit_rate=_pct(0.145, "14.5%", alt="~14% in the text of both posts"),
                # 001: "| **Overall Accuracy** | 14.0% |"
                accuracy=_pct(0.14, "14.0%"),
                # 001: "| **Accuracy (when digit found)** | ~95% |"
                accuracy_given_digit=_pct(0.95, "~95%"),
                # 001: "We evaluated Qwen2-VL-2B-Instruct on 1000 CLEVR counting questions"
                n_questions=1000,
            ),
            "r1v": BaselineNumbers(
                # 001: "| R1V (Strong) | 99% | 68% |"; 000: "achieves **~99% digit extraction rate**"
                digit_rate=_pct(0.99, "99%"),
                # 001: "| R1V (Strong) | 99% | 68% |" (Base Accuracy)
                accuracy=_pct(0.68, "68%"),
                accuracy_given_digit=None,
                n_questions=None,
            ),
        }
    ),
    base_eval=MappingProxyType(
        {
            "default": BaseEvalNumbers(
                # 001: "| **Overall Accuracy** | 14.0% |" (CLEVR, base model)
                clevr_acc=_pct(0.14, "14%"),
                # 001: "| **Digit Extraction Rate** | 14.5% |"
                clevr_digit_rate=_pct(0.145, "14.5%"),
                # 001: "| Base Model | 28% | 40% |" (SuperCLEVR accuracy, number present rate)
                superclevr_acc=_pct(0.28, "28%"),
                superclevr_digit_rate=_pct(0.40, "40%"),
            ),
            "r1v": BaseEvalNumbers(
                # 001: "| R1V (Strong) | 99% | 68% |"
                clevr_acc=_pct(0.68, "68%"),
                clevr_digit_rate=_pct(0.99, "99%"),
                # 001: "| R1V Base Model | 68% |"; 000: "even the base model achieved 68% on SuperCLEVR"
                superclevr_acc=_pct(0.68, "68%"),
                superclevr_digit_rate=None,
            ),
        }
    ),
    arms=MappingProxyType(
        {
            ("default", "inject"): ArmNumbers(
                # 001: "| With Injection | ~600 | 93% | ~3 hours |"; 000: "Reaches 90% accuracy at ~470 steps"
                steps_to_90=BlogValue(600, "~600", alt="~470 in post 000"),
                clevr_acc=_pct(0.93, "93%"),
                # 001: "| With Injection | 30% | 67% |"
                superclevr_acc=_pct(0.30, "30%"),
                superclevr_digit_rate=_pct(0.67, "67%"),
                # 001: "| Weak (14%) | Yes | 93% | 30% | 634 |"
                steps_trained=BlogValue(634, "634"),
                train_seconds=BlogValue(3 * HOUR, "~3 h"),
            ),
            ("default", "none"): ArmNumbers(
                # 001 table: "| Without Injection | ~1,600 | 93% | ~8 hours |"; 001 text: "Reaches 90%
                # accuracy by step ~1,400"; 000: "Reaches 90% accuracy at ~1,490 steps"
                steps_to_90=BlogValue(1600, "~1,600", low=1400, high=1600, alt="~1,400 in 001's text, ~1,490 in post 000"),
                clevr_acc=_pct(0.93, "93%"),
                # 001: "| Without Injection | **48%** | 67% |"
                superclevr_acc=_pct(0.48, "48%"),
                superclevr_digit_rate=_pct(0.67, "67%"),
                # 001: "| Weak (14%) | No | 93% | 48% | 1,612 |"
                steps_trained=BlogValue(1612, "1,612"),
                train_seconds=BlogValue(8 * HOUR, "~8 h"),
            ),
            ("r1v", "inject"): ArmNumbers(
                # 001: "| R1V + Injection | ~800 | 97% |"
                steps_to_90=BlogValue(800, "~800"),
                clevr_acc=_pct(0.97, "97%"),
                # 001: "| R1V + Injection | 74-75% |"; 000: "| R1V + Injection | 74.5% | 1,574 |"
                superclevr_acc=BlogValue(0.745, "74-75%", low=0.74, high=0.75, alt="74.5% in post 000"),
                superclevr_digit_rate=None,
                # 001: "| Strong (99%) | Yes | 97% | 74-75% | 1,574 |"
                steps_trained=BlogValue(1574, "1,574"),
                train_seconds=None,
            ),
            ("r1v", "none"): ArmNumbers(
                # 001: "| R1V + No Injection | ~700 | 95% |"
                steps_to_90=BlogValue(700, "~700"),
                clevr_acc=_pct(0.95, "95%"),
                # 001: "| R1V + No Injection | 72% |"; 000: "| R1V + No Injection | 71.5% | 776* |"
                superclevr_acc=BlogValue(0.72, "72%", low=0.715, high=0.72, alt="71.5% in post 000"),
                superclevr_digit_rate=None,
                # 001: "| Strong (99%) | No | 95% | 72% | 776* |" ("trained for fewer steps due to early convergence")
                steps_trained=BlogValue(776, "776*"),
                train_seconds=None,
            ),
        }
    ),
    speedup=MappingProxyType(
        {
            # 001: "the **2.5x speedup** from injection"; 000: "**Speedup**: ~3.2x" and
            # "injection provides ~3x speedup to reach 90% accuracy"
            "default": BlogValue(2.5, "2.5x", low=2.5, high=3.2, alt="~3.2x in post 000"),
            # 001: "The speedup from injection is minimal (if any)"; its table gives ~700/~800
            "r1v": BlogValue(700 / 800, "minimal (if any); ~700/~800 = 0.9x"),
        }
    ),
    injection_effect_superclevr=MappingProxyType(
        {
            # 001: "**Injection hurt generalization by 18 percentage points.**" (30% vs 48%)
            "default": BlogValue(-0.18, "-18 pp"),
            # 001: "(74% vs. 72%)" with 74-75%; 000: 74.5% vs 71.5% (+3 pp)
            "r1v": BlogValue(0.0275, "+2.5 to +3 pp", low=0.025, high=0.03),
        }
    ),
    # 001: "For $G=8$ samples: p = 5%: 34% ...; p = 14.5%: 71% ...; p = 30%: 94% chance of any learning signal"
    signal_chance=(
        (0.05, _pct(0.34, "34%")),
        (0.145, _pct(0.71, "71%")),
        (0.30, _pct(0.94, "94%")),
    ),
    # 001: "| **0-5%** | Will fail | Injection required |", "| **5-15%** | Slow start | Consider
    # injection |", "| **15-30%** | Works | Injection optional |", "| **>30%** | Works well | No injection needed |"
    digit_rate_bands=(
        ThresholdBand(0.00, 0.05, "0-5%", "Will fail", "Injection required"),
        ThresholdBand(0.05, 0.15, "5-15%", "Slow start", "Consider injection"),
        ThresholdBand(0.15, 0.30, "15-30%", "Works", "Injection optional"),
        ThresholdBand(0.30, 1.00, ">30%", "Works well", "No injection needed"),
    ),
    reward_examples=(
        # 000 reward table: '| "The answer is **5**" | 5 | +1 (correct) |'
        RewardExample("The answer is 5", 5, 1, "000 reward table"),
        # 000 reward table: '| "The answer is **3**" | 5 | 0 (incorrect) |'
        RewardExample("The answer is 3", 5, 0, "000 reward table"),
        # 000 reward table: '| "There are several objects" | 5 | -1 (no number) |'
        RewardExample("There are several objects", 5, -1, "000 reward table"),
        # 000: 'extracts the *last* number ... "I see 3 red objects and 2 blue objects, so **5** total"'
        RewardExample("I see 3 red objects and 2 blue objects, so 5 total", 5, 1, "000 text (last number)"),
        # 001 code: numbers = re.findall(r'\b(\d+)\b', response) -- number words are not digits
        RewardExample("I count five objects in total", 5, -1, "001 code (digits only)"),
        # 001 appendix: 'match = re.search(r"<answer>\s*(\d+)\s*</answer>", response)'
        RewardExample("<think>2 cubes and 3 spheres</think><answer> 5 </answer>", 5, 1, "001 code (answer tag first)"),
        RewardExample("<think>2 cubes and 2 spheres</think><answer>4</answer>", 5, 0, "001 code (answer tag first)"),
    ),
    # 001: "### Phase 1: Format Learning (Steps 0-600)" / "### Phase 2: Accuracy Learning (Steps 600+)"
    format_phase_end_step=BlogValue(600, "~600"),
    # 001: "Accuracy improves dramatically in this phase, climbing from ~50% to >90%."
    phase2_accuracy=BlogValue(0.5, "~50% -> >90%", low=0.5, high=0.9),
    # 001: "Mean reward ≈ -0.8 to -1.0 (very few digits in output)" (steps 0-200)
    cold_start_mean_reward=BlogValue(-0.9, "-0.8 to -1.0", low=-1.0, high=-0.8),
    # 000: "**Both methods start strong**: ~68-70% accuracy from step 1"
    r1v_start_accuracy=BlogValue(0.69, "~68-70%", low=0.68, high=0.70),
    # 001: "Correct answers injected for 50-87% of samples"; "Typical: 4-6 samples injected (~50-75% injection rate)"
    injection_rate=BlogValue(0.625, "50-87% (typical 50-75%)", low=0.5, high=0.875),
    # 000: "both methods achieve strong transfer performance (>70% on SuperCLEVR)"
    strong_transfer_level=0.70,
    # 000, "### What We Observed"
    observed=(
        "GRPO works with sparse signals: even with only 14% of outputs scoreable, GRPO eventually learns.",
        "Learning has two phases: format learning precedes accuracy learning when baseline digit rate is low.",
        "Guidance injection accelerates learning: with weak baseline, ~3x speedup to reach 90% accuracy.",
        "Injection can hurt generalization: with weak baseline, -18 pp cross-domain transfer.",
        "Strong baseline changes everything: with R1V prompt, both methods transfer well (>70% on SuperCLEVR).",
        "Prompt engineering may matter more than training tricks.",
    ),
)

#: Display names shared by tables, figures and claims.
PROMPT_LABELS = MappingProxyType({"default": "Default", "r1v": "R1V"})
BASELINE_STRENGTH = MappingProxyType({"default": "weak", "r1v": "strong"})
ARM_LABELS = MappingProxyType({"inject": "injection", "none": "no injection", "base": "base model"})
