"""Curation config and schedules: when a round scores the candidate pool, and with which policy (docs/design.md §7).

- ``none``: no curation, every training scenario is eligible (round 0 = the whole pool).
- ``random``: a uniformly random subset of ``size`` scenarios, redrawn every ``every`` steps (the control).
- ``offline``: one scored round at step 0 with the start (SFT) policy; the selection never changes.
- ``online``: a scored round at step 0 and every ``every`` steps with the current policy. ``refresh: full``
  re-generates for the whole pool every round; ``refresh: amortised`` scores the pool once (round 0), then keeps
  each scenario's score fresh from the training steps' own rollouts and re-scores only a budgeted subsample per round
  (``rlpost.curation.amortised``).
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
    refresh: Literal["full", "amortised"] = Field(
        "full", description="online rounds: re-score the whole pool, or amortise scores from training rollouts")
    rescore_share: float = Field(
        0.05, ge=0, le=1,
        description="amortised: a round re-scores at most this share of the training tokens since the last round")
    rescore_tokens: int | None = Field(
        None, ge=0, description="amortised: a fixed token budget per round instead of rescore_share (None: share)")
    rescore_order: Literal["oldest", "boundary"] = Field(
        "oldest", description="amortised: re-score the oldest scores first, or those nearest the selection boundary")
    score_half_life: float | None = Field(
        None, gt=0, description="amortised: shrink a score toward the pool mean by half every this many steps of age")
    audit: bool = Field(
        False, description="amortised: also re-score the whole pool each round, uncharged, to measure the agreement "
                           "between amortised and full scores (costs a full round; for studies)")
    reuse_round0: str | None = Field(
        None, description="a finished run folder whose round-0 scores this run adopts instead of generating them "
                          "(same start checkpoint, seed, pool and group_size: a study's arms); its cost is charged")
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
    def amortised(self) -> bool:
        return self.schedule == "online" and self.refresh == "amortised"

    @property
    def arm(self) -> str:
        """The schedule's name in studies: none, random, offline, online-full or online-amortised."""
        return f"online-{self.refresh}" if self.schedule == "online" else self.schedule

    @property
    def scored(self) -> bool:
        """Rounds of this schedule generate and score rollouts (random and none cost nothing)."""
        return self.schedule in ("offline", "online")
