"""``ar1_softmax``: the AR1 paper's softmax-weighted likelihood over each group (arXiv 2511.00088, §5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from rlpost.rl.losses import Layout, PolicyLoss, register_loss
from rlpost.rl.losses.common import KLPenalty

Tensor = torch.Tensor


def ar1_softmax_loss(logp: Tensor, advantages: Tensor, mask: Tensor, group_size: int, beta: float = 1.0,
                     normalizer: float | None = None, kl: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """−E[softmax_i(β·A_i) · (log π(τ_i) − λ_KL·KL(π‖π_ref))] over groups of ``group_size`` contiguous sequences.

    logp, mask: ``(B, T)`` with B a multiple of G = ``group_size``; advantages: ``(B,)``; kl: ``(B, T)`` the
    weighted per-token KL term or None. Within each group the weights w_i = softmax(β·A) (treated as constants)
    sum to 1, so each group contributes one weighted log-likelihood of its sequences (log π(τ_i) = Σ_t mask·logp).
    There is no importance ratio in this form, so the sampler's log-probs are not used. The loss is averaged over
    groups; ``normalizer`` is the global group count across ranks × accumulation (None: this batch's).
    """
    batch = logp.shape[0]
    if group_size < 1 or batch % group_size:
        raise ValueError(f"group_size: must divide the batch of {batch} sequences, got {group_size}")
    m = mask.to(logp.dtype)
    per_token = logp if kl is None else logp - kl
    seq_objective = (per_token * m).sum(dim=1).view(-1, group_size)
    weights = torch.softmax(beta * advantages.detach().to(logp.dtype).view(-1, group_size), dim=1)
    groups = batch // group_size if normalizer is None else normalizer
    loss = -(weights * seq_objective).sum() / max(float(groups), 1.0)
    with torch.no_grad():
        entropy = -(weights * weights.clamp_min(1e-30).log()).sum(dim=1).mean()
        metrics = {"weight_entropy": float(entropy), "seq_logp_mean": float((logp * m).sum(dim=1).mean())}
    return loss, metrics


@register_loss
class AR1Softmax(KLPenalty, PolicyLoss):
    """``ar1_softmax_loss``; every micro-batch must hold whole groups, since the softmax runs within a group."""

    name: Literal["ar1_softmax"] = Field("ar1_softmax", description="AR1's softmax(beta * A)-weighted likelihood")
    beta: float = Field(1.0, ge=0, description="temperature of softmax(beta * A) within a group")

    def normalizer(self, *, completion_lengths: Sequence[int], group_size: int, completion_budget: int) -> float:
        return float(len(completion_lengths) // group_size)  # groups

    def check_layout(self, layout: Layout) -> None:
        if layout.group_size > layout.per_rank:
            raise ValueError(
                f"rollout.group_size: ar1_softmax needs whole groups on each rank, but a group of "
                f"{layout.group_size} is larger than the {layout.per_rank} sequences per rank; lower "
                f"learner.num_ranks ({layout.num_ranks}) or raise trainer.scenarios_per_step")
        if layout.micro % layout.group_size:
            raise ValueError(
                f"learner.micro_batch: ar1_softmax needs whole groups in every micro-batch, but "
                f"{layout.micro} sequences is not a multiple of rollout.group_size {layout.group_size}; set "
                f"learner.micro_batch to a multiple of {layout.group_size} that divides the {layout.per_rank} "
                f"sequences per rank")

    def compute(self, logp, old_logp, advantages, mask, *, group_size, normalizer, ref_logp):
        kl = self.kl_term(logp, ref_logp)
        loss, metrics = ar1_softmax_loss(logp, advantages, mask, group_size, self.beta, normalizer, kl)
        return loss, {**metrics, **self.kl_metrics(kl, mask)}
