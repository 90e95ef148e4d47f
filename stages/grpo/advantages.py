"""Group-relative advantages: GRPO's replacement for a learned critic.

For a prompt with G sampled completions and rewards r_1..r_G, each completion's advantage
is its reward standardised within its own group (DeepSeekMath, section 4.1.2, outcome supervision):

    A_i = (r_i - mean(r)) / (std(r) + eps)

Rewards arrive flat, ordered group by group: the G completions of prompt 0, then the G of
prompt 1, and so on (the order in which a group is expanded with ``repeat_interleave``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def _as_groups(rewards: torch.Tensor | Sequence[float], group_size: int) -> torch.Tensor:
    """Validate flat rewards (N,) and reshape them to (N // G, G), one row per prompt."""
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 to compare completions, got {group_size}")
    flat = torch.as_tensor(rewards)
    if not flat.is_floating_point():
        # Integer rewards (+1/0/-1) become floats so that means and stds are defined.
        flat = flat.to(torch.get_default_dtype())
    if flat.dim() != 1:
        raise ValueError(f"rewards must be a flat (N,) tensor, got shape {tuple(flat.shape)}")
    if flat.numel() % group_size != 0:
        raise ValueError(f"number of rewards {flat.numel()} is not a multiple of group_size {group_size}")
    return flat.view(-1, group_size)  # (N // G, G)


def _constant_groups(groups: torch.Tensor) -> torch.Tensor:
    """Which groups have all G rewards equal, as a (N // G,) bool tensor.

    Tested by equality rather than ``std == 0`` so that a group of equal floats whose mean
    rounds (e.g. eight times 0.1) is still recognised as carrying no signal.
    """
    return (groups == groups[:, :1]).all(dim=1)  # (N // G,)


def group_advantages(rewards: torch.Tensor | Sequence[float], group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Standardise rewards within each group of ``group_size``: (r - mean) / (std + eps).

    Args:
        rewards: (N,) rewards ordered group by group; N must be a multiple of group_size.
        group_size: G, the number of completions sampled per prompt (>= 2).
        eps: added to the std so that a group with a tiny spread does not explode.

    Returns:
        (N,) float advantages. A group whose rewards are all equal gets exactly zeros: it
        carries no learning signal (every completion is as good as the others).

    The std is the sample std (ddof=1, Bessel-corrected): torch's default, and what TRL's
    GRPOTrainer computes (``rewards.view(-1, G).std(dim=1)``); the DeepSeekMath paper does not
    say which it uses. The population std (ddof=0) would only scale every non-constant
    group's advantages up by the constant factor sqrt(G/(G-1)) (1.069 for G=8; eps aside),
    which the learning rate absorbs.
    """
    groups = _as_groups(rewards, group_size)  # (P, G), P = N // G prompts
    mean = groups.mean(dim=1, keepdim=True)  # (P, 1)
    std = groups.std(dim=1, keepdim=True)  # (P, 1), ddof=1
    advantages = (groups - mean) / (std + eps)  # (P, G)
    constant = _constant_groups(groups).unsqueeze(1)  # (P, 1)
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)
    return advantages.reshape(-1)  # (N,)


def frac_zero_std_groups(rewards: torch.Tensor | Sequence[float], group_size: int) -> float:
    """Fraction of groups whose rewards are all equal (TRL's ``frac_reward_zero_std``).

    These groups get zero advantage and so contribute nothing to the policy gradient: the
    blog's cold-start problem is this fraction being close to 1. Returns 0.0 for no groups.
    """
    groups = _as_groups(rewards, group_size)  # (P, G)
    if groups.shape[0] == 0:
        return 0.0
    return _constant_groups(groups).float().mean().item()


def signal_chance(p: float, group_size: int) -> float:
    """The blog's chance of any learning signal in a group of G: 1 - (1 - p)^G.

    ``p`` is the probability that one completion is scoreable (contains a number); a group with none
    has all rewards equal (-1) and so zero advantages.
    """
    return 1.0 - (1.0 - p) ** group_size
