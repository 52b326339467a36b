"""Input validation shared by the domain core: clear errors that name the culprit argument."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_float_array(
    name: str,
    value,
    *,
    min_ndim: int = 1,
    last_dims: Sequence[int] = (),
    allow_empty: bool = False,
    allow_nan: bool = False,
) -> np.ndarray:
    """Convert ``value`` to a float64 array and check its shape and contents.

    ``last_dims`` fixes the size of the trailing axes (e.g. ``(2,)`` for ``(..., 2)``; use -1 for "any").
    Raises ``ValueError`` naming ``name`` for a wrong shape, an empty array or a non-finite value.
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a numeric array, got {type(value).__name__} ({exc})") from None
    if arr.ndim < max(min_ndim, len(last_dims)):
        raise ValueError(
            f"{name}: expected at least {max(min_ndim, len(last_dims))} dimensions "
            f"(trailing shape {_fmt_dims(last_dims)}), got shape {arr.shape}"
        )
    if last_dims:
        tail = arr.shape[arr.ndim - len(last_dims):]
        for got, want in zip(tail, last_dims):
            if want != -1 and got != want:
                raise ValueError(f"{name}: expected trailing shape {_fmt_dims(last_dims)}, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name}: is empty (shape {arr.shape})")
    if not allow_nan and arr.size and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name}: contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float, raising ``ValueError`` naming ``name`` unless it is finite and > 0."""
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return v


def _fmt_dims(dims: Sequence[int]) -> str:
    return "(..., " + ", ".join("*" if d == -1 else str(d) for d in dims) + ")"
