"""Round-to-round analysis of curation selections: overlap, rank correlation, score summaries (docs/design.md §7)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two selections (1.0 for two empty ones)."""
    sa, sb = set(a), set(b)
    return 1.0 if not (sa or sb) else len(sa & sb) / len(sa | sb)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's definition requires."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def rank_correlation(scores_a: Mapping[str, float], scores_b: Mapping[str, float]) -> float:
    """Spearman correlation of two rounds' scores over the scenarios both scored (NaN if < 3 common
    scenarios or a constant ranking)."""
    common = sorted(set(scores_a) & set(scores_b))
    if len(common) < 3:
        return float("nan")
    ra = _ranks(np.array([scores_a[k] for k in common], dtype=np.float64))
    rb = _ranks(np.array([scores_b[k] for k in common], dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def score_summary(scores) -> dict[str, float]:
    """count, mean, std and quartiles of a round's scores."""
    s = np.asarray(list(scores), dtype=np.float64)
    if s.size == 0:
        return {"count": 0}
    q = np.quantile(s, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"count": int(s.size), "mean": float(s.mean()), "std": float(s.std()),
            "min": q[0], "p25": q[1], "median": q[2], "p75": q[3], "max": q[4]}


def zero_variance_share(rewards_by_id: Mapping[str, Sequence[float]], ids: Sequence[str], atol: float = 1e-8) -> float:
    """Share of ``ids`` whose group rewards are all equal (no GRPO signal); NaN for no ids."""
    if not ids:
        return float("nan")
    flat = [np.ptp(np.asarray(rewards_by_id[i], dtype=np.float64)) <= atol for i in ids]
    return float(np.mean(flat))
