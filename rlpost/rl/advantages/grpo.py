"""``grpo``: group-normalised advantages (Shao et al. 2024, DeepSeekMath §4.1)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rlpost.rl.advantages import AdvantageEstimator, check_rewards, register_advantage

Tensor = torch.Tensor


def grpo_advantages(rewards: Tensor, unbiased_std: bool = True, eps: float = 1e-6) -> Tensor:
    """A_i = (r_i − mean(r)) / (std(r) + eps) within each group: rewards ``(B, G)`` -> ``(B, G)``.

    std is the unbiased sample std (ddof 1) by default, as in verl (``compute_grpo_outcome_advantage``) and TRL's
    GRPOTrainer; ``unbiased_std=False`` takes the population std (ddof 0). For G = 2 with rewards {0, 1} that is
    ±0.5/0.707 = ±0.707 (ddof 1) against ±1 (ddof 0). Zero-variance groups get exactly 0 (no signal).
    """
    check_rewards(rewards, min_group=2 if unbiased_std else 1)
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, unbiased=unbiased_std, keepdim=True) + eps)


@register_advantage
class GRPO(AdvantageEstimator):
    """``grpo_advantages``: the group's rewards centred and scaled by its std."""

    name: Literal["grpo"] = Field("grpo", description="(r - group mean) / (group std + eps), DeepSeekMath")
    unbiased_std: bool = Field(
        True, description="group std with ddof 1 as verl and TRL; false: population std (ddof 0)")
    eps: float = Field(1e-6, gt=0, description="added to the group std so near-constant groups stay finite")

    def __call__(self, rewards: Tensor) -> Tensor:
        return grpo_advantages(rewards, self.unbiased_std, self.eps)
