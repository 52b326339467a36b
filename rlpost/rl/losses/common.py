"""Pieces every policy loss may use: KL estimators, token-loss aggregation, and the KL-in-loss config fields.

Shapes: B sequences, T completion tokens; ``mask`` ``(B, T)`` is 1 on completion tokens and 0 on padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from pydantic import Field

from rlpost.common.config import StrictModel

Tensor = torch.Tensor


# --- KL estimators (Schulman, "Approximating KL Divergence", 2020) -------------------------------------------


def _kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return logp - ref_logp


def _kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    return 0.5 * (logp - ref_logp) ** 2


def _kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    # exp(r) − r − 1 with r = ref − logp: unbiased for KL(π‖π_ref) under π, always ≥ 0. The log-ratio is
    # clamped so a single far-off token cannot overflow exp (the same guard as verl's low_var_kl).
    log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"k1": _kl_k1, "k2": _kl_k2, "k3": _kl_k3}


def kl_estimate(kind: str, logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from samples of π: logp, ref_logp ``(B, T)`` -> ``(B, T)``.

    k1 = log π − log π_ref (unbiased, high variance, can be negative); k2 = ½(log π − log π_ref)²
    (biased, low variance); k3 = π_ref/π − log(π_ref/π) − 1 (unbiased, low variance, ≥ 0).
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"kind: unknown KL estimator {kind!r}; choose one of {sorted(KL_ESTIMATORS)}")
    if logp.shape != ref_logp.shape:
        raise ValueError(f"ref_logp: shape {tuple(ref_logp.shape)} differs from logp {tuple(logp.shape)}")
    return KL_ESTIMATORS[kind](logp, ref_logp)


class KLPenalty(StrictModel):
    """Mixin for losses with an optional KL(π‖π_ref)-in-loss term; a coefficient > 0 makes the learner load a
    frozen reference model."""

    kl_coef: float = Field(
        0.0, ge=0,
        description="weight of KL(pi || pi_ref) in the loss (the recipe uses 0; > 0 loads a frozen reference)")
    kl_kind: Literal["k1", "k2", "k3"] = Field("k3", description="KL estimator (Schulman 2020): k1, k2 or k3")

    @property
    def needs_reference(self) -> bool:
        return self.kl_coef > 0

    def kl_term(self, logp: Tensor, ref_logp: Tensor | None) -> Tensor | None:
        """kl_coef · KL_k per token ``(B, T)``, or None without a reference or at kl_coef 0."""
        if ref_logp is None or self.kl_coef == 0.0:
            return None
        return self.kl_coef * kl_estimate(self.kl_kind, logp, ref_logp)

    @torch.no_grad()
    def kl_metrics(self, kl: Tensor | None, mask: Tensor) -> dict[str, float]:
        """``kl_ref``: the token mean of KL_k(π‖π_ref) (unweighted) from ``kl_term``'s output; {} without one."""
        if kl is None:
            return {}
        m = mask.to(kl.dtype)
        return {"kl_ref": float((kl / self.kl_coef * m).sum() / m.sum().clamp_min(1.0))}


# --- Aggregation ---------------------------------------------------------------------------------------------

AGG_MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


def aggregate(token_loss: Tensor, mask: Tensor, mode: str, normalizer: float | None = None) -> Tensor:
    """Reduce a per-token loss ``(B, T)`` to a scalar over masked tokens.

    mode:
      - ``token_mean``: Σ loss·mask / Σ mask (DAPO, Yu et al. 2025): every token weighs the same, so long
        completions are not down-weighted. normalizer: the global completion-token count.
      - ``seq_mean_token_mean``: mean over sequences of each sequence's token mean (the original GRPO).
        normalizer: the global sequence count.
      - ``seq_mean_token_sum_norm``: Σ loss·mask / (B · L) with a constant L, the max completion length
        (Dr.GRPO, Liu et al. 2025): removes the length bias of per-sequence means. normalizer: the global
        B · L (sequences × max completion length); required, since L is not a property of the batch.
    The normalizer counts across data-parallel ranks × accumulation steps; the micro-batch loss is then the sum
    divided by it, so summing micro-batch losses (what gradient accumulation and all-reduce-sum do) gives exactly
    the full-batch loss whatever the split. None uses this batch's own count.
    """
    mask = mask.to(token_loss.dtype)
    if mode == "token_mean":
        denom = mask.sum() if normalizer is None else normalizer
        return (token_loss * mask).sum() / max(float(denom), 1.0)
    if mode == "seq_mean_token_mean":
        per_seq = (token_loss * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        denom = token_loss.shape[0] if normalizer is None else normalizer
        return per_seq.sum() / max(float(denom), 1.0)
    if mode == "seq_mean_token_sum_norm":
        if normalizer is None:
            raise ValueError("normalizer: seq_mean_token_sum_norm needs the global sequences x max completion length")
        return (token_loss * mask).sum() / float(normalizer)
    raise ValueError(f"agg: unknown aggregation {mode!r}; choose one of {list(AGG_MODES)}")


def aggregate_normalizer(mode: str, completion_lengths: Sequence[int], completion_budget: int) -> float:
    """The global ``normalizer`` of ``aggregate(..., mode)`` for a step whose completions have these lengths:
    completion tokens, sequences, or sequences × the max completion length."""
    if mode == "token_mean":
        return float(sum(completion_lengths))
    if mode == "seq_mean_token_mean":
        return float(len(completion_lengths))
    if mode == "seq_mean_token_sum_norm":
        return float(len(completion_lengths) * completion_budget)
    raise ValueError(f"agg: unknown aggregation {mode!r}; choose one of {list(AGG_MODES)}")


def check_shapes(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor) -> None:
    """logp, old_logp, mask ``(B, T)`` alike and advantages ``(B,)``, else a ValueError naming the argument."""
    if logp.ndim != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(
            f"logp/old_logp/mask: expected equal (B, T) shapes, got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages: expected shape ({logp.shape[0]},), got {tuple(advantages.shape)}")
