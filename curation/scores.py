"""Disagreement scores between the explicit reward and the policy's implicit preference (docs/design.md §7).

For a scenario with G rollouts, rewards r_i and sequence log-probs ℓ_i (summed over L_i completion tokens)
under the current policy:

    p_reward = softmax(β·r)            what the reward says is good in this group
    p_model  = softmax(ℓ / L)          what the policy already prefers (length-normalised, ours)
    score    = D(p_reward ‖ p_model)   high = the policy disagrees with the reward = an informative scenario

All functions take ``(B, G)`` arrays or tensors and return a float64 numpy ``(B,)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# A log-prob of −inf (a completion the policy cannot produce, e.g. after a constraint change) would make the
# KL infinite and the ranking meaningless; it is floored here, far below any reachable per-token mean.
LOGPROB_FLOOR = -1e4


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _inputs(rewards, seq_logprobs, lengths, beta):
    r = np.asarray(rewards, dtype=np.float64)
    lp = np.asarray(seq_logprobs, dtype=np.float64)
    n = np.asarray(lengths, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError(f"rewards: expected shape (B, G), got {r.shape}")
    if lp.shape != r.shape or n.shape != r.shape:
        raise ValueError(f"seq_logprobs/lengths: expected shape {r.shape}, got {lp.shape} and {n.shape}")
    if not np.isfinite(r).all():
        raise ValueError("rewards: contains NaN or inf")
    if np.isnan(lp).any() or (lp == np.inf).any():
        raise ValueError("seq_logprobs: contains NaN or +inf (log-probs are <= 0)")
    if not (np.isfinite(n).all() and (n >= 1).all()):
        raise ValueError("lengths: every completion length must be a finite number >= 1")
    if not np.isfinite(beta) or beta < 0:
        raise ValueError(f"beta: must be a finite number >= 0, got {beta!r}")
    return r, np.maximum(lp / n, LOGPROB_FLOOR), lp, n


def _kl(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    return np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)


def kl_score(rewards, seq_logprobs, lengths, beta: float = 1.0) -> np.ndarray:
    """KL(p_reward ‖ p_model) with length-normalised log-probs (the default, docs/design.md §7). ``(B,)`` nats, ≥ 0."""
    r, mean_lp, _, _ = _inputs(rewards, seq_logprobs, lengths, beta)
    return np.maximum(_kl(_log_softmax(beta * r), _log_softmax(mean_lp)), 0.0)


def js_score(rewards, seq_logprobs, lengths, beta: float = 1.0) -> np.ndarray:
    """Jensen-Shannon divergence between p_reward and p_model: symmetric and bounded by log 2. ``(B,)`` nats."""
    r, mean_lp, _, _ = _inputs(rewards, seq_logprobs, lengths, beta)
    log_p, log_q = _log_softmax(beta * r), _log_softmax(mean_lp)
    log_m = np.logaddexp(log_p, log_q) - np.log(2.0)
    return np.clip(0.5 * _kl(log_p, log_m) + 0.5 * _kl(log_q, log_m), 0.0, np.log(2.0))


def kl_unnormalized_score(rewards, seq_logprobs, lengths, beta: float = 1.0) -> np.ndarray:
    """KL(p_reward ‖ softmax(ℓ)) on raw sequence log-probs (no length normalisation): longer completions are
    penalised by the policy's distribution, the bias that the length-normalised default removes. ``(B,)``."""
    r, _, lp, n = _inputs(rewards, seq_logprobs, lengths, beta)
    return np.maximum(_kl(_log_softmax(beta * r), _log_softmax(np.maximum(lp, LOGPROB_FLOOR * n))), 0.0)


SCORES: dict[str, Callable[..., np.ndarray]] = {
    "kl": kl_score,
    "js": js_score,
    "kl_unnormalized": kl_unnormalized_score,
}


def disagreement_score(rewards, seq_logprobs, lengths, beta: float = 1.0, kind: str = "kl") -> np.ndarray:
    """Score each scenario's group by the registered divergence ``kind``: ``(B, G)`` inputs -> ``(B,)``.

    rewards: total reward per rollout; seq_logprobs: Σ_t log π(token_t) per rollout (≤ 0, −inf allowed);
    lengths: completion tokens per rollout (≥ 1); beta: the reward temperature (0 = uniform p_reward).
    """
    if kind not in SCORES:
        raise ValueError(f"kind: unknown disagreement score {kind!r}; registered: {sorted(SCORES)}")
    return SCORES[kind](rewards, seq_logprobs, lengths, beta)
