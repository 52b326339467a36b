"""Curation config and schedules: when a round scores the candidate pool, and with which policy (docs/design.md §7).

- ``none``: no curation, every training scenario is eligible (round 0 = the whole pool).
- ``random``: a uniformly random subset of ``size`` scenarios, redrawn every ``every`` steps (the control).
- ``offline``: one scored round at step 0 with the start (SFT) policy; the selection never changes.
- ``online``: a scored round at step 0 and every ``every`` steps with the current policy.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from rlpost.common.config import StrictModel


class CurationConfig(StrictModel):
    """Which scenarios the loop trains on, and how they are chosen."""

    schedule: Literal["none", "random", "offline", "online"] = Field(
        "none", description="curation schedule (module docstring)")
    every: int = Field(10, ge=1, description="steps between rounds (online, random)")
    pool_size: int | None = Field(256, ge=1, description="candidates scored per round (None: the whole training split)")
    size: int = Field(64, ge=1, description="scenarios in a selection")
    strategy: Literal["top_plus_random", "proportional", "random", "all"] = Field(
        "top_plus_random", description="selection strategy from rlpost.curation.selection")
    random_share: float = Field(
        1.0, ge=0, description="top_plus_random: random picks per top pick (AR1: a similar proportion)")
    score: Literal["kl", "js", "kl_unnormalized"] = Field(
        "kl", description="disagreement score from rlpost.curation.scores")
    beta: float = Field(1.0, ge=0, description="reward temperature of p_reward = softmax(beta * r)")
    group_size: int = Field(4, ge=2, description="samples per candidate when scoring")
    max_block_s: float = Field(
        0.0, ge=0,
        description="longest the loop waits for a due online round before training on the previous selection",
    )
    num_cpus: float = Field(0.0, ge=0, description="Ray CPUs reserved for the curator actor (its own vLLM engine)")

    def due(self, step: int) -> bool:
        """Whether a round starts at ``step`` (round 0 at step 0 for every schedule but none)."""
        if self.schedule == "none":
            return False
        if self.schedule == "offline":
            return step == 0
        return step % self.every == 0

    @property
    def scored(self) -> bool:
        """Rounds of this schedule generate and score rollouts (random and none cost nothing)."""
        return self.schedule in ("offline", "online")
