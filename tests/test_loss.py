"""Tests for stages.grpo.loss: the clipped GRPO objective on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from stages.grpo.loss import grpo_loss, k3_kl, masked_mean, sft_loss, sft_weight


def test_masked_mean() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    # all valid: (1 + 2) / 2 = 1.5
    assert masked_mean(x, mask).item() == 1.5
    # per row: row 0 (1 + 2) / 2 = 1.5; row 1 has no valid token -> 0
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.5, 0.0]))
    # float mask works the same as bool
    torch.testing.assert_close(masked_mean(x, mask.float(), dim=1), torch.tensor([1.5, 0.0]))
    # no valid position at all: 0, not NaN
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0


def test_on_policy_loss_is_minus_mean_advantage_and_gradient_is_hand_computed() -> None:
    # B = 2 sequences, T = 3; sequence 0 has 3 valid tokens, sequence 1 has 2.
    # At logp == old_logp every ratio is 1, so every token's objective is A_i:
    #   per-sequence loss = -A_i, loss = -(A_0 + A_1) / 2 = -(1.5 + (-0.5)) / 2 = -0.5
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]], requires_grad=True)
    old_logp = logp.detach().clone()
    advantages = torch.tensor([1.5, -0.5])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    loss, stats = grpo_loss(logp, old_logp, advantages, mask)
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()
    # d loss / d logp_it = -(1/B) * (1/|o_i|) * A_i * ratio = -A_i / (B * |o_i|)
    #   sequence 0: -1.5 / (2 * 3) = -0.25 per token
    #   sequence 1: +0.5 / (2 * 2) = +0.125 per valid token, 0 on padding
    expected_grad = torch.tensor([[-0.25, -0.25, -0.25], [0.125, 0.125, 0.0]])
    torch.testing.assert_close(logp.grad, expected_grad)
    assert stats["clip_frac"].item() == 0.0
    assert stats["ratio_mean"].item() == pytest.approx(1.0)
    assert stats["loss"].item() == pytest.approx(-0.5)
    assert "kl" not in stats  # no reference model given
    assert all(not value.requires_grad for value in stats.values())


def test_ratio_above_range_with_positive_advantage_is_clipped() -> None:
    # ratio = exp(log 1.5) = 1.5 > 1.2, A = +1:
    #   unclipped 1.5 * 1 = 1.5, clipped 1.2 * 1 = 1.2, min = 1.2: the clipped term,
    #   a constant, so no gradient; loss = -1.2
    old_logp = torch.tensor([[-2.0]])
    logp = (old_logp + math.log(1.5)).requires_grad_()
    loss, stats = grpo_loss(logp, old_logp, torch.tensor([1.0]), torch.ones(1, 1), clip_eps=0.2)
    loss.backward()
    assert loss.item() == pytest.approx(-1.2)
    assert logp.grad.item() == 0.0
    assert stats["clip_frac"].item() == 1.0
    assert stats["clip_frac_high"].item() == 1.0
    assert stats["clip_frac_low"].item() == 0.0
    assert stats["ratio_mean"].item() == pytest.approx(1.5)


def test_ratio_below_range_with_negative_advantage_is_clipped() -> None:
    # ratio = 0.5 < 0.8, A = -1:
    #   unclipped 0.5 * -1 = -0.5, clipped 0.8 * -1 = -0.8, min = -0.8 (clipped): loss = 0.8
    old_logp = torch.tensor([[-1.0]])
    logp = (old_logp + math.log(0.5)).requires_grad_()
    loss, stats = grpo_loss(logp, old_logp, torch.tensor([-1.0]), torch.ones(1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(0.8)
    assert logp.grad.item() == 0.0
    assert stats["clip_frac"].item() == 1.0
    assert stats["clip_frac_low"].item() == 1.0


def test_clipping_does_not_bind_in_the_other_direction() -> None:
    # ratio = 1.5 > 1.2 but A = -1: unclipped -1.5 < clipped -1.2, min = -1.5 is the
    # UNclipped term, so the gradient flows: d(-ratio * A)/d logp = -A * ratio = 1.5
    old_logp = torch.tensor([[-2.0]])
    logp = (old_logp + math.log(1.5)).requires_grad_()
    loss, stats = grpo_loss(logp, old_logp, torch.tensor([-1.0]), torch.ones(1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(1.5)
    assert logp.grad.item() == pytest.approx(1.5)
    assert stats["clip_frac"].item() == 0.0


def test_clip_frac_counts_valid_tokens_only() -> None:
    # A = +1 for both sequences; ratios: [[1.5, 1.0], [1.0, 1.5 (padding)]]
    # valid tokens: 3, clipped among them: 1 -> clip_frac = 1/3
    ratio = torch.tensor([[1.5, 1.0], [1.0, 1.5]])
    old_logp = torch.zeros(2, 2)
    mask = torch.tensor([[True, True], [True, False]])
    _, stats = grpo_loss(ratio.log(), old_logp, torch.tensor([1.0, 1.0]), mask)
    assert stats["clip_frac"].item() == pytest.approx(1 / 3)
    # ratio_mean over valid tokens: (1.5 + 1.0 + 1.0) / 3 = 1.1667
    assert stats["ratio_mean"].item() == pytest.approx(3.5 / 3)


def test_k3_values() -> None:
    # d = ref - logp = 0: e^0 - 0 - 1 = 0
    assert k3_kl(torch.tensor(-1.3), torch.tensor(-1.3)).item() == 0.0
    # d = 0.5: e^0.5 - 0.5 - 1 = 1.648721 - 1.5 = 0.148721
    assert k3_kl(torch.tensor(-1.0), torch.tensor(-0.5)).item() == pytest.approx(0.148721, abs=1e-6)
    # d = -0.5: e^-0.5 + 0.5 - 1 = 0.606531 - 0.5 = 0.106531
    assert k3_kl(torch.tensor(-0.5), torch.tensor(-1.0)).item() == pytest.approx(0.106531, abs=1e-6)


def test_kl_is_logged_without_entering_the_loss_when_coef_is_zero() -> None:
    logp = torch.tensor([[-1.0, -1.0]])
    ref_logp = torch.tensor([[-0.5, -1.0]])  # d = [0.5, 0] -> k3 = [0.148721, 0]
    advantages = torch.tensor([2.0])
    mask = torch.ones(1, 2)
    loss_without, _ = grpo_loss(logp, logp, advantages, mask)
    loss, stats = grpo_loss(logp, logp, advantages, mask, ref_logp=ref_logp, kl_coef=0.0)
    assert loss.item() == loss_without.item() == pytest.approx(-2.0)
    # kl = (0.148721 + 0) / 2 = 0.074361
    assert stats["kl"].item() == pytest.approx(0.074361, abs=1e-6)


def test_kl_penalty_adds_coef_times_k3() -> None:
    # loss = -A + kl_coef * mean(k3) = -2.0 + 0.1 * 0.074361 = -1.992564
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    ref_logp = torch.tensor([[-0.5, -1.0]])
    loss, _ = grpo_loss(logp, logp.detach(), torch.tensor([2.0]), torch.ones(1, 2), ref_logp=ref_logp, kl_coef=0.1)
    assert loss.item() == pytest.approx(-1.992564, abs=1e-6)
    loss.backward()
    # token 0: d/d logp of [-ratio * A + c * (e^(ref - logp) - (ref - logp) - 1)] / 2
    #   = [-A + c * (1 - e^0.5)] / 2 = [-2 + 0.1 * (1 - 1.648721)] / 2 = -1.032436
    # token 1: d = 0 -> [-2 + 0] / 2 = -1.0
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.032436, -1.0]]), atol=1e-6, rtol=0)


def test_kl_coef_without_reference_is_an_error() -> None:
    logp = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="needs ref_logp"):
        grpo_loss(logp, logp, torch.zeros(1), torch.ones(1, 2), kl_coef=0.04)


def test_masked_out_values_do_not_change_loss_or_gradient() -> None:
    advantages = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    base = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.6, -0.7]])
    old = base - 0.1
    ref = base + 0.2
    results = []
    for padding in (0.0, 50.0, -float("inf"), float("nan")):
        logp = torch.where(mask, base, torch.full_like(base, padding)).requires_grad_()
        old_logp = torch.where(mask, old, torch.full_like(old, padding))
        ref_logp = torch.where(mask, ref, torch.full_like(ref, padding))
        loss, stats = grpo_loss(logp, old_logp, advantages, mask, ref_logp=ref_logp, kl_coef=0.1)
        loss.backward()
        results.append((loss.detach(), logp.grad.clone(), {k: v.clone() for k, v in stats.items()}))
    for loss, grad, stats in results[1:]:
        torch.testing.assert_close(loss, results[0][0])
        torch.testing.assert_close(grad, results[0][1])
        for name, value in stats.items():
            torch.testing.assert_close(value, results[0][2][name])
    assert torch.equal(results[0][1][~mask], torch.zeros(3))  # no gradient on padding


def test_zero_length_sequence_contributes_zero_without_nan() -> None:
    # sequence 1 has no valid token: its per-sequence loss is 0 and it still counts in B.
    # loss = (-A_0 + 0) / 2 = -3.0 / 2 = -1.5 (on-policy, ratio 1)
    logp = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[True, True], [False, False]])
    loss, stats = grpo_loss(logp, logp.detach(), torch.tensor([3.0, 5.0]), mask, ref_logp=logp.detach())
    loss.backward()
    assert loss.item() == pytest.approx(-1.5)
    assert torch.isfinite(logp.grad).all()
    # d loss / d logp_0t = -A_0 / (B * 2) = -3 / 4 = -0.75; sequence 1 gets nothing
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.75, -0.75], [0.0, 0.0]]))
    assert all(torch.isfinite(value) for value in stats.values())


def test_all_masked_batch_is_zero_not_nan() -> None:
    logp = torch.zeros(2, 3, requires_grad=True)
    loss, stats = grpo_loss(logp, logp.detach(), torch.ones(2), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logp.grad, torch.zeros(2, 3))
    assert stats["clip_frac"].item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"old_logp": torch.zeros(2, 4)}, r"old_logp shape \(2, 4\) != logp shape \(2, 3\)"),
        ({"mask": torch.ones(3, 3)}, r"mask shape"),
        ({"advantages": torch.zeros(2, 1)}, r"advantages must be \(2,\)"),
        ({"clip_eps": 1.5}, r"clip_eps must be in \[0, 1\)"),
    ],
)
def test_invalid_arguments(kwargs: dict, message: str) -> None:
    arguments = {
        "logp": torch.zeros(2, 3),
        "old_logp": torch.zeros(2, 3),
        "advantages": torch.zeros(2),
        "mask": torch.ones(2, 3),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        grpo_loss(**arguments)


def test_policy_shaping_weighs_injected_tokens_by_p_over_p_plus_gamma() -> None:
    # Row 0 is injected (shaped), row 1 is the policy's own. gamma = 0.1, A = (+1, -1), one token each.
    # Row 0: p = exp(log 0.5) = 0.5, objective f(p) * A = 0.5 / 0.6 = 0.833333, so its loss is -0.833333
    #   and d loss / d logp = -(1/B) * gamma * p / (p + gamma)^2 = -(1/2) * 0.1 * 0.5 / 0.36 = -0.069444
    #   (not clipped: old_logp is far off, yet the gradient is not zero).
    # Row 1: ratio 1 -> objective -1, loss +1, gradient +1/2.
    logp = torch.tensor([[math.log(0.5)], [-0.2]], requires_grad=True)
    old_logp = torch.tensor([[math.log(0.05)], [-0.2]])  # row 0's ratio 10 would be clipped without shaping
    advantages = torch.tensor([1.0, -1.0])
    mask = torch.ones(2, 1)
    shaped = torch.tensor([True, False])
    loss, _ = grpo_loss(logp, old_logp, advantages, mask, shaped=shaped, shaping_gamma=0.1)
    assert loss.item() == pytest.approx((-0.5 / 0.6 + 1.0) / 2)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5 * 0.1 * 0.5 / 0.36], [0.5]]))


def test_shaping_off_or_without_shaped_rows_is_the_clipped_loss() -> None:
    logp = torch.tensor([[-0.1, -0.3], [-1.0, -0.2]])
    old_logp = torch.tensor([[-0.4, -0.3], [-0.5, -0.9]])
    advantages, mask = torch.tensor([0.7, -1.2]), torch.tensor([[1, 1], [1, 0]])
    plain, _ = grpo_loss(logp, old_logp, advantages, mask)
    for shaped, gamma in ((torch.tensor([True, True]), 0.0), (torch.tensor([False, False]), 0.1), (None, 0.1)):
        same, _ = grpo_loss(logp, old_logp, advantages, mask, shaped=shaped, shaping_gamma=gamma)
        assert same.item() == plain.item()
    with pytest.raises(ValueError, match="shaping_gamma must be >= 0"):
        grpo_loss(logp, old_logp, advantages, mask, shaping_gamma=-0.1)
    with pytest.raises(ValueError, match=r"shaped must be \(2,\)"):
        grpo_loss(logp, old_logp, advantages, mask, shaped=torch.tensor([True]), shaping_gamma=0.1)


def test_sft_weight_decays_linearly_to_zero() -> None:
    # coef 0.5 falling to 0 over 0.5 * 100 = 50 steps: 0.5 * (1 - step / 50)
    assert [sft_weight(s, 100, 0.5, 0.5) for s in (0, 25, 50, 80)] == pytest.approx([0.5, 0.25, 0.0, 0.0])
    assert sft_weight(80, 100, 0.5, 0.5) == 0.0  # clamped, not negative
    assert all(sft_weight(s, 100, 0.0, f) == 0.0 for s in (0, 25, 99) for f in (0.1, 1.0))


def test_sft_loss_is_the_mean_over_rows_of_each_row_s_mean_nll_and_gradient_is_hand_computed() -> None:
    # N = 2, T = 3; row 0 has 3 valid tokens, row 1 has 2 (its padding holds -inf: ignored)
    #   row 0: (1 + 2 + 3) / 3 = 2; row 1: (0.5 + 1.5) / 2 = 1; loss (2 + 1) / 2 = 1.5
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -1.5, -math.inf]], requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    loss = sft_loss(logp, mask)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    # d loss / d logp_it = -1 / (len_i * N): row 0 -1/6, row 1 -1/4, 0 on padding
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [-0.25, -0.25, 0.0]]))
