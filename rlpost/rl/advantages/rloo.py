"""``rloo``: REINFORCE leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024, "Back to Basics")."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from rlpost.rl.advantages import AdvantageEstimator, check_rewards, register_advantage

Tensor = torch.Tensor


def rloo_advantages(rewards: Tensor) -> Tensor:
    """A_i = r_i − mean_{j≠i} r_j within each group: rewards ``(B, G)`` with G >= 2 -> ``(B, G)``.

    The baseline of each rollout is the mean reward of the other G − 1 rollouts of its group, so it does not
    depend on the rollout's own sample and the estimate stays unbiased; equal to G/(G − 1)·(r_i − mean(r)).
    For G = 2 with rewards {0, 1}: A = (−1, +1). Zero-variance groups get exactly 0.
    """
    check_rewards(rewards, min_group=2)
    group = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (group - 1)
    return rewards - others


@register_advantage
class RLOO(AdvantageEstimator):
    """``rloo_advantages``: each rollout's reward minus the mean of its group's other rollouts."""

    name: Literal["rloo"] = Field("rloo", description="r_i - mean of the other rollouts' rewards, RLOO")

    def __call__(self, rewards: Tensor) -> Tensor:
        return rloo_advantages(rewards)
