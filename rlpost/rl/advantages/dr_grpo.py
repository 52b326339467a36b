"""``dr_grpo``: mean-only group advantages (Liu et al. 2025, "Understanding R1-Zero-Like Training", Dr.GRPO)."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rlpost.rl.advantages import AdvantageEstimator, check_rewards, register_advantage

Tensor = torch.Tensor


def dr_grpo_advantages(rewards: Tensor) -> Tensor:
    """A_i = r_i − mean(r) within each group: rewards ``(B, G)`` -> ``(B, G)``.

    Without GRPO's division by the group std, groups whose rewards barely differ are not up-weighted (the
    question-difficulty bias Dr.GRPO removes). Zero-variance groups get exactly 0.
    """
    check_rewards(rewards)
    return rewards - rewards.mean(dim=1, keepdim=True)


@register_advantage
class DrGRPO(AdvantageEstimator):
    """``dr_grpo_advantages``: the group's rewards centred, not scaled."""

    name: Literal["dr_grpo"] = Field("dr_grpo", description="r - group mean (no std scaling), Dr.GRPO")

    def __call__(self, rewards: Tensor) -> Tensor:
        return dr_grpo_advantages(rewards)
