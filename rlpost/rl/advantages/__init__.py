"""Advantage estimators in a registry: one module per estimator, each an ``AdvantageEstimator`` that is its config.

An estimator maps the rewards of a step, ``(B, G)`` (B scenarios × G rollouts, one group per row), to one
advantage per rollout, ``(B, G)``, and rejects non-finite rewards. Every module of this package is imported below,
so a new estimator is one new module registered with ``@register_advantage``; ``learner.advantage`` in the run
config validates through ``ADVANTAGES`` by ``name`` (``grpo`` when missing).
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from rlpost.common.config import StrictModel
from rlpost.rl.registry import Registry

Tensor = torch.Tensor

__all__ = ["ADVANTAGES", "AdvantageConfig", "AdvantageEstimator", "check_rewards", "register_advantage",
           "zero_variance_groups"]


def check_rewards(rewards: Tensor, min_group: int = 1) -> None:
    """Rewards must be ``(B, G)`` with G >= ``min_group`` and finite, else a ValueError naming ``rewards``."""
    if rewards.ndim != 2 or rewards.shape[1] < min_group:
        raise ValueError(f"rewards: expected shape (B, G) with G >= {min_group}, got {tuple(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards: contains NaN or inf; give failed samples a finite fallback reward")


def zero_variance_groups(rewards: Tensor, atol: float = 1e-8) -> Tensor:
    """``(B, G)`` rewards -> bool ``(B,)``: True where every rollout of the group got the same reward (no signal)."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) <= atol


class AdvantageEstimator(StrictModel):
    """Base of a registered estimator: subclasses add ``name: Literal["..."]`` and their own fields."""

    name: str

    @abstractmethod
    def __call__(self, rewards: Tensor) -> Tensor:
        """rewards ``(B, G)`` -> advantages ``(B, G)``; a ValueError for non-finite rewards."""


ADVANTAGES: Registry[AdvantageEstimator] = Registry("advantage estimator", AdvantageEstimator)
register_advantage = ADVANTAGES.register

# The field type of ``learner.advantage``: ``{name: <registered estimator>, <its fields>}``, grpo when missing.
AdvantageConfig = ADVANTAGES.config_type(default="grpo")

ADVANTAGES.discover(__name__)
