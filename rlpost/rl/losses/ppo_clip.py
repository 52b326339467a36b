"""``ppo_clip``: PPO-clip with decoupled clip range and dual clip, the public AR1 RL recipe (docs/design.md §6)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from rlpost.rl.losses import PolicyLoss, register_loss
from rlpost.rl.losses.common import KLPenalty, aggregate, aggregate_normalizer

Tensor = torch.Tensor


def ppo_clip_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, eps_low: float = 0.2,
                  eps_high: float = 0.28, dual_clip: float | None = 10.0, agg: str = "token_mean",
                  normalizer: float | None = None, kl: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip token loss with decoupled clip range and dual clip.

    logp, old_logp, mask: ``(B, T)``; advantages: ``(B,)`` one value per sequence; kl: ``(B, T)`` the weighted
    per-token KL-in-loss term (``KLPenalty.kl_term``) or None.
    ρ = exp(logπ − logπ_old); per token L = max(−A·ρ, −A·clip(ρ, 1−eps_low, 1+eps_high)) (Schulman et al. 2017;
    the asymmetric "clip-higher" range from DAPO, Yu et al. 2025). For A < 0 the loss is further capped at
    −A·dual_clip (Ye et al. 2020, "Mastering Complex Control in MOBA Games"), so one huge ratio on a bad sample
    cannot dominate the batch. + kl per token when given. Aggregated over masked tokens by ``agg`` with
    ``normalizer`` (see ``aggregate``). Returns (loss scalar, metrics).
    """
    if eps_low < 0 or eps_high < 0:
        raise ValueError(f"eps_low/eps_high: clip ranges must be >= 0, got {eps_low}/{eps_high}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip: must be > 1 (or None to disable), got {dual_clip}")
    adv = advantages[:, None].to(logp.dtype)
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)
    token_loss = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        token_loss = torch.where(adv < 0, torch.minimum(token_loss, -adv * dual_clip), token_loss)
    if kl is not None:
        token_loss = token_loss + kl
    loss = aggregate(token_loss, mask, agg, normalizer)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        n = m.sum().clamp_min(1.0)
        metrics = {
            "clip_frac": float(((clipped > unclipped).to(logp.dtype) * m).sum() / n),
            "ratio_mean": float((ratio * m).sum() / n),
            "approx_kl_old": float((0.5 * (logp - old_logp) ** 2 * m).sum() / n),
        }
    return loss, metrics


@register_loss
class PPOClip(KLPenalty, PolicyLoss):
    """PPO-clip (``ppo_clip_loss``) with optional KL-in-loss: + kl_coef·KL_k(π‖π_ref) per token (0 in the recipe)."""

    name: Literal["ppo_clip"] = Field("ppo_clip", description="PPO-clip, decoupled clip range, dual clip")
    eps_low: float = Field(0.2, ge=0, description="lower clip range (ratio >= 1 - eps_low)")
    eps_high: float = Field(0.28, ge=0, description="upper clip range (ratio <= 1 + eps_high), DAPO's clip-higher")
    dual_clip: float | None = Field(10.0, gt=1, description="cap on the loss of negative-advantage tokens (None: off)")
    agg: Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"] = Field(
        "token_mean", description="how token losses are reduced (see rlpost.rl.losses.common.aggregate)")

    def normalizer(self, *, completion_lengths: Sequence[int], group_size: int, completion_budget: int) -> float:
        return aggregate_normalizer(self.agg, completion_lengths, completion_budget)

    def compute(self, logp, old_logp, advantages, mask, *, group_size, normalizer, ref_logp):
        kl = self.kl_term(logp, ref_logp)
        loss, metrics = ppo_clip_loss(logp, old_logp, advantages, mask, self.eps_low, self.eps_high, self.dual_clip,
                                      self.agg, normalizer, kl)
        return loss, {**metrics, **self.kl_metrics(kl, mask)}
