"""GRPO math: group advantages, KL estimators and policy losses in registries (pure torch, no Ray).

Shapes: B sequences (G rollouts per scenario, groups contiguous), T completion tokens. ``mask`` is 1 on
completion tokens (trace + trajectory) and 0 on padding; every loss covers completion tokens only (SPEC §6).
Researchers call these functions directly; the learner calls them by name from the config.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def group_advantages(rewards: Tensor, std_normalize: bool = True, eps: float = 1e-6) -> Tensor:
    """GRPO advantages within each scenario's group (Shao et al. 2024, DeepSeekMath §4.1).

    rewards: ``(B, G)`` total reward per rollout. Returns ``(B, G)``: A_i = (r_i − mean) / (std + eps), or
    r_i − mean when ``std_normalize`` is False (the mean-only variant of Dr.GRPO, Liu et al. 2025, which avoids
    up-weighting groups whose rewards barely differ). std is the population std (unbiased=False) so a group of
    two with rewards {0, 1} gets advantages ±1/(0.5+eps), independent of G's small-sample correction.
    Zero-variance groups get exactly 0 advantage (no signal); count them with ``zero_variance_groups``.
    """
    if rewards.ndim != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards: expected shape (B, G), got {tuple(rewards.shape)}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards: contains NaN or inf; give failed samples a finite fallback reward")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not std_normalize:
        return centred
    return centred / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)


def zero_variance_groups(rewards: Tensor, atol: float = 1e-8) -> Tensor:
    """``(B, G)`` rewards -> bool ``(B,)``: True where every rollout of the group got the same reward."""
    return (rewards.max(dim=1).values - rewards.min(dim=1).values) <= atol


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


# --- Aggregation ---------------------------------------------------------------------------------------------


def aggregate(token_loss: Tensor, mask: Tensor, mode: str, normalizer: float | None = None) -> Tensor:
    """Reduce a per-token loss ``(B, T)`` to a scalar over masked tokens.

    mode:
      - ``token_mean``: Σ loss·mask / Σ mask (DAPO, Yu et al. 2025): every token weighs the same, so long
        completions are not down-weighted.
      - ``seq_mean_token_mean``: mean over sequences of each sequence's token mean (the original GRPO).
      - ``seq_mean_token_sum_norm``: Σ loss·mask / (B · normalizer) with a constant normalizer, e.g. the max
        completion length (Dr.GRPO, Liu et al. 2025): removes the length bias of per-sequence means.
    normalizer: for ``token_mean`` the GLOBAL token count and for ``seq_mean_token_mean`` the global sequence
    count across data-parallel ranks × accumulation steps; the micro-batch loss is then the sum divided by it,
    so summing micro-batch losses (what gradient accumulation and all-reduce-sum do) gives exactly the
    full-batch loss whatever the split. None uses this batch's own count. Required for
    ``seq_mean_token_sum_norm`` (the constant).
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
            raise ValueError("normalizer: seq_mean_token_sum_norm needs the constant (e.g. max completion length)")
        return (token_loss * mask).sum() / (token_loss.shape[0] * float(normalizer))
    raise ValueError(f"agg: unknown aggregation {mode!r}; choose token_mean, seq_mean_token_mean, seq_mean_token_sum_norm")


# --- Policy losses -------------------------------------------------------------------------------------------

PolicyLoss = Callable[..., tuple[Tensor, dict[str, float]]]
POLICY_LOSSES: dict[str, PolicyLoss] = {}


def register_policy_loss(name: str) -> Callable[[PolicyLoss], PolicyLoss]:
    """Decorator adding a loss to the registry under ``name`` (the config's ``loss.name``)."""

    def add(fn: PolicyLoss) -> PolicyLoss:
        if name in POLICY_LOSSES:
            raise ValueError(f"policy loss {name!r} is already registered")
        POLICY_LOSSES[name] = fn
        return fn

    return add


def policy_loss(name: str, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, **params):
    """Look up ``name`` in the registry and compute (loss scalar, metrics dict).

    logp, old_logp, mask: ``(B, T)``; advantages: ``(B,)`` one value per sequence. ``params`` go to the loss.
    """
    if name not in POLICY_LOSSES:
        raise ValueError(f"name: unknown policy loss {name!r}; registered: {sorted(POLICY_LOSSES)}")
    if logp.ndim != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(
            f"logp/old_logp/mask: expected equal (B, T) shapes, got {tuple(logp.shape)}, "
            f"{tuple(old_logp.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages: expected shape ({logp.shape[0]},), got {tuple(advantages.shape)}")
    return POLICY_LOSSES[name](logp, old_logp, advantages, mask, **params)


def _kl_term(logp, ref_logp, kl_coef, kl_kind):
    if ref_logp is None or kl_coef == 0.0:
        return None
    return kl_coef * kl_estimate(kl_kind, logp, ref_logp)


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    dual_clip: float | None = 10.0,
    agg: str = "token_mean",
    normalizer: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: str = "k3",
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip token loss with decoupled clip range and dual clip (the public AR1 RL recipe, SPEC §6).

    ρ = exp(logπ − logπ_old); per token L = max(−A·ρ, −A·clip(ρ, 1−eps_low, 1+eps_high)) (Schulman et al. 2017;
    the asymmetric "clip-higher" range from DAPO, Yu et al. 2025). For A < 0 the loss is further capped at
    −A·dual_clip (Ye et al. 2020, "Mastering Complex Control in MOBA Games"), so one huge ratio on a bad sample
    cannot dominate the batch. Optional KL-in-loss: + kl_coef·KL_k(π‖π_ref) per token (β_KL = 0 in the recipe).
    Aggregated over masked tokens by ``agg`` (see ``aggregate``).
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
    kl = _kl_term(logp, ref_logp, kl_coef, kl_kind)
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
        if kl is not None:
            metrics["kl_ref"] = float((kl / kl_coef * m).sum() / n)
    return loss, metrics


@register_policy_loss("ar1_softmax")
def ar1_softmax_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    group_size: int,
    beta: float = 1.0,
    normalizer: float | None = None,
    ref_logp: Tensor | None = None,
    kl_coef: float = 0.0,
    kl_kind: str = "k3",
) -> tuple[Tensor, dict[str, float]]:
    """The AR1 paper's form: −E[softmax_i(β·A_i) · (log π(τ_i) − λ_KL·KL(π‖π_ref))] (arXiv 2511.00088, §5).

    A softmax-weighted likelihood: within each group of ``group_size`` contiguous sequences, the weights
    w_i = softmax(β·A) (treated as constants) sum to 1, so each group contributes one weighted log-likelihood
    of its sequences (log π(τ_i) = Σ_t mask·logp). ``old_logp`` is unused (no importance ratio in this form).
    The loss is averaged over groups; ``normalizer`` is the global group count across ranks × accumulation
    (None: this batch's).
    """
    batch = logp.shape[0]
    if group_size < 1 or batch % group_size:
        raise ValueError(f"group_size: must divide the batch of {batch} sequences, got {group_size}")
    m = mask.to(logp.dtype)
    per_token = logp
    kl = _kl_term(logp, ref_logp, kl_coef, kl_kind)
    if kl is not None:
        per_token = per_token - kl
    seq_objective = (per_token * m).sum(dim=1).view(-1, group_size)
    weights = torch.softmax(beta * advantages.detach().to(logp.dtype).view(-1, group_size), dim=1)
    groups = batch // group_size if normalizer is None else normalizer
    loss = -(weights * seq_objective).sum() / max(float(groups), 1.0)
    with torch.no_grad():
        entropy = -(weights * weights.clamp_min(1e-30).log()).sum(dim=1).mean()
        metrics = {"weight_entropy": float(entropy), "seq_logp_mean": float((logp * m).sum(dim=1).mean())}
    return loss, metrics
