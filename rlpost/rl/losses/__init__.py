"""Policy losses in a registry (docs/design.md §6): one module per loss, each a ``PolicyLoss`` subclass that is its
config.

A loss module declares, in one class registered with ``@register_loss``: its config (``name: Literal["..."]`` plus
its own described fields), its ``normalizer`` (the global count it divides by, from what the driver knows about
the whole step's batch), its ``check_layout`` (what it needs of group size, ranks and micro-batches, checked when
the run config loads and again by the learner), and ``compute``. Every module of this package is imported below,
so a new loss is one new module; ``learner.loss`` in the run config validates through ``LOSSES`` by ``name``.

Shapes: B sequences (G rollouts per scenario, groups contiguous), T completion tokens. ``mask`` is 1 on
completion tokens (trace + trajectory) and 0 on padding; every loss covers completion tokens only (docs/design.md §6).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlpost.common.config import StrictModel
from rlpost.rl.losses.common import aggregate, check_shapes, kl_estimate
from rlpost.rl.registry import Registry

Tensor = torch.Tensor

__all__ = ["LOSSES", "Layout", "LossConfig", "PolicyLoss", "aggregate", "kl_estimate", "register_loss"]


@dataclass(frozen=True)
class Layout:
    """How one step's batch is cut: ``per_rank`` sequences (whole groups of ``group_size``, contiguous) on each of
    ``num_ranks`` ranks, in micro-batches of ``micro_batch`` (the config's value; ``micro`` is what runs)."""

    group_size: int
    num_ranks: int
    per_rank: int
    micro_batch: int

    @property
    def micro(self) -> int:
        return min(self.micro_batch, self.per_rank)


class PolicyLoss(StrictModel):
    """Base of a registered policy loss: subclasses add ``name: Literal["..."]`` and their own fields."""

    name: str

    @property
    def needs_reference(self) -> bool:
        """Whether the learner must hold a frozen reference model for ``ref_logp``."""
        return False

    @abstractmethod
    def normalizer(self, *, completion_lengths: Sequence[int], group_size: int, completion_budget: int) -> float:
        """The global count the loss of one step divides by, over all ranks × accumulation steps.

        completion_lengths: tokens of every completion of the step's batch (B_total = its length);
        group_size: G; completion_budget: the max completion length the sampler allows.
        """

    def check_layout(self, layout: Layout) -> None:
        """Raise a ValueError naming the config fields (``learner.micro_batch``, ...) if this loss cannot run on
        ``layout``. The default needs nothing beyond what ``RunConfig`` checks for every loss."""

    @abstractmethod
    def compute(self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, group_size: int,
                normalizer: float | None, ref_logp: Tensor | None) -> tuple[Tensor, dict[str, float]]:
        """(loss scalar, metrics) of one micro-batch; shapes as in ``__call__``, already checked."""

    def __call__(self, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, group_size: int,
                 normalizer: float | None = None, ref_logp: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
        """The loss of a micro-batch of whole groups: logp, old_logp, mask, ref_logp ``(B, T)``; advantages ``(B,)``.

        normalizer: ``self.normalizer(...)`` of the whole step (None: this micro-batch's own count), so the
        micro-batch losses of all ranks sum to the step's loss. Returns (loss scalar, metrics).
        """
        check_shapes(logp, old_logp, advantages, mask)
        return self.compute(logp, old_logp, advantages, mask, group_size=group_size, normalizer=normalizer,
                            ref_logp=ref_logp)


LOSSES: Registry[PolicyLoss] = Registry("policy loss", PolicyLoss)
register_loss = LOSSES.register

# The field type of ``learner.loss``: ``{name: <registered loss>, <its fields>}``, ppo_clip when name is missing.
LossConfig = LOSSES.config_type(default="ppo_clip")

LOSSES.discover(__name__)
