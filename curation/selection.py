"""Selection strategies: which scenarios the next training steps draw from, given their scores (docs/design.md §7).

Every strategy is ``(ids, scores, size, rng, **params) -> list of ids`` (scores ``(B,)`` aligned with ids;
``size`` the number to select; ``rng`` a ``numpy.random.Generator``), deterministic for a given rng state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _validate(ids: Sequence[str], scores, size: int) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (len(ids),):
        raise ValueError(f"scores: expected shape ({len(ids)},) aligned with ids, got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores: contains NaN or inf")
    if len(set(ids)) != len(ids):
        raise ValueError("ids: contains duplicates")
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: must be an integer >= 1, got {size!r}")
    return s


def top_plus_random(ids, scores, size: int, rng: np.random.Generator, random_share: float = 1.0) -> list[str]:
    """The top-scored scenarios plus a share of uniformly random others (AR1: "a similar proportion").

    random_share = random picks per top pick (1.0: half top, half random). The random half keeps the
    selection from collapsing onto what the current score can see, and is the control group for analysis.
    Ties in score are broken by id so the selection is deterministic.
    """
    s = _validate(ids, scores, size)
    if random_share < 0:
        raise ValueError(f"random_share: must be >= 0, got {random_share}")
    size = min(size, len(ids))
    n_top = max(1, int(round(size / (1.0 + random_share)))) if size else 0
    order = sorted(range(len(ids)), key=lambda i: (-s[i], ids[i]))
    top = order[:n_top]
    rest = order[n_top:]
    picked = rng.choice(len(rest), size=min(size - n_top, len(rest)), replace=False) if rest else []
    return [ids[i] for i in top] + [ids[rest[j]] for j in sorted(picked)]


def proportional(ids, scores, size: int, rng: np.random.Generator, floor: float = 1e-6) -> list[str]:
    """Sample without replacement with probability ∝ max(score, 0) + floor (the floor keeps zero scores alive)."""
    s = _validate(ids, scores, size)
    weights = np.maximum(s, 0.0) + floor
    picked = rng.choice(len(ids), size=min(size, len(ids)), replace=False, p=weights / weights.sum())
    return [ids[i] for i in sorted(picked)]


def uniform_random(ids, scores, size: int, rng: np.random.Generator) -> list[str]:
    """Uniformly random scenarios, ignoring scores (the 'random' baseline of the curation study)."""
    _validate(ids, scores, size)
    picked = rng.choice(len(ids), size=min(size, len(ids)), replace=False)
    return [ids[i] for i in sorted(picked)]


def all_scenarios(ids, scores, size: int, rng: np.random.Generator) -> list[str]:
    """Every candidate (the 'none' schedule: no curation)."""
    _validate(ids, scores, size)
    return list(ids)


STRATEGIES: dict[str, Callable[..., list[str]]] = {
    "top_plus_random": top_plus_random,
    "proportional": proportional,
    "random": uniform_random,
    "all": all_scenarios,
}


def select(strategy: str, ids, scores, size: int, rng: np.random.Generator, **params) -> list[str]:
    """Run the registered ``strategy`` (see ``STRATEGIES``)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown selection strategy {strategy!r}; registered: {sorted(STRATEGIES)}")
    return STRATEGIES[strategy](list(ids), scores, size, rng, **params)
