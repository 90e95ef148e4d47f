"""The pure core of GRPO: rewards, group advantages, guidance injection, the clipped loss.

Nothing here knows about models, tokenizers or files; every function is tested on
hand-computed cases in tests/test_{rewards,advantages,injection,loss}.py.
"""

from stages.grpo.advantages import frac_zero_std_groups, group_advantages
from stages.grpo.injection import (
    STRATEGIES,
    STRATEGY_NAMES,
    GroupContext,
    InjectionParams,
    InjectionStrategy,
    apply_injection,
    choose_injected,
    get_strategy,
    injection_rate,
)
from stages.grpo.loss import grpo_loss, k3_kl, masked_mean
from stages.grpo.rewards import (
    ANSWER_CAP,
    MAX_ANSWER_DIGITS,
    REWARD_NAMES,
    REWARDS,
    RewardFn,
    count_reward,
    extract_answer,
    get_reward,
    has_number,
)

__all__ = [
    "ANSWER_CAP",
    "MAX_ANSWER_DIGITS",
    "REWARDS",
    "REWARD_NAMES",
    "STRATEGIES",
    "STRATEGY_NAMES",
    "GroupContext",
    "InjectionParams",
    "InjectionStrategy",
    "RewardFn",
    "apply_injection",
    "choose_injected",
    "count_reward",
    "extract_answer",
    "frac_zero_std_groups",
    "get_reward",
    "get_strategy",
    "group_advantages",
    "grpo_loss",
    "has_number",
    "injection_rate",
    "k3_kl",
    "masked_mean",
]
