"""The GRPO objective: PPO's clipped surrogate with group-relative advantages.

Per completion token t of sequence i (DeepSeekMath section 4.1, the blog's "PPO-style clipped
update"):

    ratio_it     = exp(logp_it - old_logp_it)                 # pi_theta / pi_theta_old
    objective_it = min(ratio_it * A_i, clip(ratio_it, 1 - eps, 1 + eps) * A_i)
    loss_it      = -objective_it + kl_coef * k3_it
    k3_it        = exp(ref_it - logp_it) - (ref_it - logp_it) - 1

k3 is Schulman's estimator of KL(pi_theta || pi_ref) from samples of pi_theta: unbiased
and never negative ("Approximating KL Divergence", 2020). The blog trains without a KL
term but logs it; so does this function (``kl`` is reported whenever ``ref_logp`` is given).

Aggregation is the original GRPO / DeepSeekMath form: the mean over each sequence's valid
tokens, then the mean over sequences, so every completion weighs the same whatever its
length. A known variant (DAPO, TRL's ``loss_type="dapo"``/"bnpo") instead divides the sum
over all valid tokens of the batch by their count, so that long completions weigh more;
Dr. GRPO divides by a constant. Only the first is implemented here.

CHORD (arXiv 2508.11408) adds a supervised term, ``sft_weight(step) * sft_loss``: the negative
log-likelihood of expert answers, averaged the same way, with a weight that decays linearly to 0
(:func:`sft_weight`, :func:`sft_loss`; off unless ``train.sft_coef`` > 0).
"""

from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is nonzero (optionally along ``dim``).

    ``mask`` (bool or 0/1 float, same shape as ``x``) weights the positions. Masked-out
    values are excluded with ``torch.where``, not multiplied by zero, so that inf or NaN at
    padding cannot leak into the result. A reduction over no valid position gives 0, not
    NaN, and so does its gradient.
    """
    weights = mask.to(x.dtype)
    values = torch.where(mask != 0, x, torch.zeros_like(x))
    if dim is None:
        total, count = (values * weights).sum(), weights.sum()
    else:
        total, count = (values * weights).sum(dim=dim), weights.sum(dim=dim)
    # Dividing by 1 where there is nothing to average keeps 0 / 0 (and its NaN gradient) out.
    safe_count = torch.where(count > 0, count, torch.ones_like(count))
    return total / safe_count


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = ref_logp - logp.

    Zero where the two log-probs agree, positive elsewhere (exp(d) >= 1 + d).
    """
    log_ratio_ref = ref_logp - logp  # (B, T), log(pi_ref / pi)
    return torch.exp(log_ratio_ref) - log_ratio_ref - 1


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    shaped: torch.Tensor | None = None,
    shaping_gamma: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped GRPO loss to minimise, and detached statistics for the logs.

    Args:
        logp: (B, T) log-probs of the completion tokens under the policy being trained.
        old_logp: (B, T) the same under the policy that sampled them (treated as constant).
        advantages: (B,) one group-relative advantage per completion (constant).
        mask: (B, T) bool or 0/1, True on the completion's tokens, False on padding.
        clip_eps: PPO's clip range epsilon.
        ref_logp: (B, T) log-probs under the frozen reference model, or None.
        kl_coef: weight of the k3 penalty; > 0 requires ``ref_logp``.
        shaped: (B,) bool, the rows whose tokens are policy-shaped (the injected, off-policy
            completions), or None.
        shaping_gamma: LUFFY's policy shaping (arXiv 2504.14945, "regularized importance
            sampling") when > 0: on a shaped row the token's objective is f(p) * A with
            p = exp(logp) and f(p) = p / (p + gamma), not clipped. Its gradient,
            gamma / (p + gamma)^2 * dp, stays large on tokens the policy finds unlikely, where
            the clipped ratio (old_logp of an injected row is the policy's own) would let
            learning of the guidance concentrate on tokens it already predicts. 0: off.

    Returns:
        loss: scalar; mean over sequences of each sequence's mean per-token loss. A sequence
            with no valid token contributes 0 (and still counts in the mean over B).
        stats: detached scalars
            ``loss``;
            ``clip_frac``: fraction of valid tokens where the clipped term is the one ``min``
                selects, so the token gets no gradient: ratio > 1 + eps with A > 0, or
                ratio < 1 - eps with A < 0 (TRL's is_high_clipped | is_low_clipped);
                ``clip_frac_high`` and ``clip_frac_low`` are the two parts;
            ``ratio_mean``: mean ratio over valid tokens;
            ``kl``: mean k3 over valid tokens, only when ``ref_logp`` is given (even with
                kl_coef == 0).
    """
    if logp.dim() != 2:
        raise ValueError(f"logp must be (B, T), got shape {tuple(logp.shape)}")
    for name, tensor in (("old_logp", old_logp), ("mask", mask), ("ref_logp", ref_logp)):
        if tensor is not None and tensor.shape != logp.shape:
            raise ValueError(f"{name} shape {tuple(tensor.shape)} != logp shape {tuple(logp.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be ({logp.shape[0]},), got {tuple(advantages.shape)}")
    if not 0.0 <= clip_eps < 1.0:
        raise ValueError(f"clip_eps must be in [0, 1), got {clip_eps}")
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    if shaping_gamma < 0:
        raise ValueError(f"shaping_gamma must be >= 0, got {shaping_gamma}")
    if shaped is not None and shaped.shape != logp.shape[:1]:
        raise ValueError(f"shaped must be ({logp.shape[0]},), got {tuple(shaped.shape)}")
    if kl_coef > 0 and ref_logp is None:
        raise ValueError(f"kl_coef={kl_coef} > 0 needs ref_logp (the reference model's log-probs)")

    valid = mask != 0  # (B, T)
    # Padding positions are set to 0 in every log-prob before any arithmetic: their ratio is
    # then 1 and their k3 is 0, and whatever the caller left there (even -inf) cannot turn
    # into NaN values or NaN gradients.
    logp = torch.where(valid, logp, torch.zeros_like(logp))  # (B, T)
    old_logp = torch.where(valid, old_logp.detach(), torch.zeros_like(logp))  # (B, T)
    advantages = advantages.detach().to(logp.dtype).unsqueeze(1)  # (B, 1), broadcast over T

    ratio = torch.exp(logp - old_logp)  # (B, T)
    unclipped = ratio * advantages  # (B, T)
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages  # (B, T)
    per_token_loss = -torch.minimum(unclipped, clipped)  # (B, T)
    if shaped is not None and shaping_gamma > 0 and bool(shaped.any()):
        prob = torch.exp(logp)  # (B, T) pi_theta of each token
        shaped_loss = -(prob / (prob + shaping_gamma)) * advantages  # (B, T)
        per_token_loss = torch.where(shaped.to(torch.bool).unsqueeze(1), shaped_loss, per_token_loss)

    per_token_kl = None
    if ref_logp is not None:
        ref_logp = torch.where(valid, ref_logp.detach(), torch.zeros_like(logp))  # (B, T)
        per_token_kl = k3_kl(logp, ref_logp)  # (B, T)
        if kl_coef > 0:
            per_token_loss = per_token_loss + kl_coef * per_token_kl

    per_sequence_loss = masked_mean(per_token_loss, mask, dim=1)  # (B,)
    loss = per_sequence_loss.mean() if per_sequence_loss.numel() else per_token_loss.sum()

    with torch.no_grad():
        # Where min() picks the clipped term, the token's gradient is zero.
        clipped_high = (ratio > 1.0 + clip_eps) & (advantages > 0)  # (B, T)
        clipped_low = (ratio < 1.0 - clip_eps) & (advantages < 0)  # (B, T)
        stats = {
            "loss": loss.detach(),
            "clip_frac": masked_mean((clipped_high | clipped_low).to(logp.dtype), mask),
            "clip_frac_high": masked_mean(clipped_high.to(logp.dtype), mask),
            "clip_frac_low": masked_mean(clipped_low.to(logp.dtype), mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
        if per_token_kl is not None:
            stats["kl"] = masked_mean(per_token_kl, mask)
    return loss, {name: value.detach() for name, value in stats.items()}


def sft_weight(step: int, total_steps: int, coef: float, decay_fraction: float) -> float:
    """CHORD's (arXiv 2508.11408) weight of the supervised term at ``step``: ``coef`` at step 0, falling
    linearly to 0 at ``decay_fraction * total_steps`` and 0 after. ``coef`` 0: off at every step."""
    if coef == 0:
        return 0.0
    return coef * max(0.0, 1.0 - step / (decay_fraction * total_steps))


def sft_loss(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the expert completions (CHORD's SFT term), a scalar to minimise.

    Args:
        logp: (N, T) log-probs of the expert completion tokens under the policy being trained.
        mask: (N, T) bool or 0/1, True on the completion's tokens, False on padding.

    The mean over each row's valid tokens, then the mean over rows: every prompt counts the same whatever the
    length of its answer, as :func:`grpo_loss` averages. A row with no valid token contributes 0 (and still
    counts in the mean over N).
    """
    if logp.dim() != 2 or mask.shape != logp.shape:
        raise ValueError(f"logp and mask must be the same (N, T), got {tuple(logp.shape)} and {tuple(mask.shape)}")
    per_row = masked_mean(-logp, mask, dim=1)  # (N,)
    return per_row.mean() if per_row.numel() else logp.sum() * 0.0
