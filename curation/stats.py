"""Across-seed statistics for studies: t intervals, paired differences and the smallest detectable effect.

Seeds are few (5), so intervals use Student's t, not the normal approximation (t_{0.975, 4} = 2.78 vs 1.96).
"""

from __future__ import annotations

import math

import numpy as np


def t_quantile(p: float, dof: int) -> float:
    """The ``p`` quantile of Student's t with ``dof`` degrees of freedom (0 < p < 1, dof >= 1): bisection on the
    CDF, integrated with Simpson's rule (accurate to ~1e-6, ample for intervals)."""
    if not 0 < p < 1 or dof < 1:
        raise ValueError(f"t_quantile: need 0 < p < 1 and dof >= 1, got p={p}, dof={dof}")
    if p < 0.5:
        return -t_quantile(1 - p, dof)
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)

    def cdf(x: float) -> float:
        grid = np.linspace(0.0, x, 2001)
        pdf = np.exp(log_c - (dof + 1) / 2 * np.log1p(grid**2 / dof))
        return 0.5 + (grid[1] - grid[0]) / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum())

    lo, hi = 0.0, 1.0
    while cdf(hi) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the ``level`` t interval) over seeds, NaNs dropped; half-width NaN for < 2 values."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), t_quantile(0.5 + level / 2, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)


def paired_difference(a, b, level: float = 0.95, power: float = 0.8) -> dict[str, float]:
    """``a - b`` paired by seed (same index = same seed): n, mean, the ``level`` interval (lo, hi) and the smallest
    true difference a two-sided paired t-test at 1 - level would detect with ``power`` given the observed spread:
    (t_{1-α/2, n-1} + t_{power, n-1}) · sd / √n."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[~np.isnan(d)]
    mean, half = mean_ci(d, level)
    mde = float("nan")
    if d.size >= 2:
        mde = (t_quantile(0.5 + level / 2, d.size - 1) + t_quantile(power, d.size - 1)) * float(d.std(ddof=1)) \
            / math.sqrt(d.size)
    return {"n": int(d.size), "mean": mean, "lo": mean - half, "hi": mean + half, "mde": mde}
