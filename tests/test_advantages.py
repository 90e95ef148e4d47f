"""Tests for stages.grpo.advantages on hand-computed groups."""

from __future__ import annotations

import math

import pytest
import torch

from stages.grpo.advantages import frac_zero_std_groups, group_advantages


def test_hand_computed_group_of_four() -> None:
    # rewards [1, 0, 0, -1]: mean = 0
    # sample variance = (1 + 0 + 0 + 1) / (4 - 1) = 2/3, std = sqrt(2/3) = 0.816497
    # A = r / (0.816497 + 1e-4) = r / 0.816597 = [1.224595, 0, 0, -1.224595]
    std = math.sqrt(2 / 3)
    expected = torch.tensor([1 / (std + 1e-4), 0.0, 0.0, -1 / (std + 1e-4)])
    advantages = group_advantages([1, 0, 0, -1], group_size=4)
    torch.testing.assert_close(advantages, expected)
    assert advantages[0].item() == pytest.approx(1.224595, abs=1e-6)


def test_one_correct_among_eight_wrong_format() -> None:
    # The cold-start group: one +1 (e.g. injected) and seven -1.
    # mean = (1 - 7) / 8 = -0.75
    # deviations: +1.75 once, -0.25 seven times
    # sample variance = (1.75^2 + 7 * 0.25^2) / 7 = (3.0625 + 0.4375) / 7 = 0.5, std = 0.707107
    # A_correct = 1.75 / (0.707107 + 1e-4) = 1.75 / 0.707207 = 2.474524
    # A_wrong = -0.25 / 0.707207 = -0.353503
    advantages = group_advantages([1, -1, -1, -1, -1, -1, -1, -1], group_size=8)
    assert advantages[0].item() == pytest.approx(1.75 / (math.sqrt(0.5) + 1e-4), rel=1e-6)
    assert advantages[0].item() == pytest.approx(2.474524, abs=1e-5)
    assert advantages[1:].tolist() == pytest.approx([-0.353503] * 7, abs=1e-5)
    # Advantages within a group sum to zero.
    assert advantages.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_all_equal_group_gives_exact_zeros() -> None:
    for value in (-1, 0, 1):
        advantages = group_advantages([value] * 8, group_size=8)
        assert torch.equal(advantages, torch.zeros(8))
    # Equal floats whose mean rounds: 8 x 0.1 sums to 0.8000001 in float32, yet still zeros.
    assert torch.equal(group_advantages(torch.full((8,), 0.1), group_size=8), torch.zeros(8))


def test_two_groups_are_normalised_separately() -> None:
    # group 0: [1, 1, 0, 0]: mean 0.5, sample std = sqrt(4 * 0.25 / 3) = sqrt(1/3) = 0.577350
    #   A = +-0.5 / (0.577350 + 1e-4) = +-0.865875
    # group 1: [-1, -1, -1, -1]: constant, zeros
    rewards = torch.tensor([1, 1, 0, 0, -1, -1, -1, -1])
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    expected = torch.tensor([a, a, -a, -a, 0.0, 0.0, 0.0, 0.0])
    torch.testing.assert_close(group_advantages(rewards, group_size=4), expected)
    assert a == pytest.approx(0.865875, abs=1e-6)
    # One of the two groups has zero std.
    assert frac_zero_std_groups(rewards, group_size=4) == 0.5


def test_output_is_flat_float_in_input_order() -> None:
    rewards = torch.tensor([0, 1, 1, 0], dtype=torch.int64)
    advantages = group_advantages(rewards, group_size=2)
    assert advantages.shape == (4,)
    assert advantages.dtype == torch.float32
    # [0, 1]: mean 0.5, sample std sqrt(0.5) = 0.707107
    #   A = -+0.5 / (0.707107 + 1e-4) = -+0.707007
    expected = torch.tensor([-1.0, 1.0, 1.0, -1.0]) * 0.707007
    torch.testing.assert_close(advantages, expected, atol=1e-6, rtol=0)


def test_frac_zero_std_groups() -> None:
    # groups: [1, 1] zero std, [0, 1] not, [-1, -1] zero std, [0, 0] zero std -> 3 / 4
    assert frac_zero_std_groups([1, 1, 0, 1, -1, -1, 0, 0], group_size=2) == 0.75
    assert frac_zero_std_groups([1, 0, 0, 1], group_size=2) == 0.0
    assert frac_zero_std_groups([], group_size=8) == 0.0


@pytest.mark.parametrize(
    ("rewards", "group_size", "message"),
    [
        ([1, 0, 0], 2, "not a multiple of group_size 2"),
        ([1, 0], 1, "group_size must be >= 2"),
        ([1, 0], 0, "group_size must be >= 2"),
        ([[1, 0], [0, 1]], 2, r"flat \(N,\) tensor"),
    ],
)
def test_invalid_shapes(rewards: list, group_size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        group_advantages(rewards, group_size)
    with pytest.raises(ValueError, match=message):
        frac_zero_std_groups(rewards, group_size)
