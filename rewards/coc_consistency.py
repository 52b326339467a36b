"""Built-in reward ``coc_consistency`` (docs/design.md §5.2): does the trajectory do what the reasoning says?

For each completion: parse the trace (``rlpost.domain.coc.parse_trace``) into its decision; roll the controls out
(``unicycle_rollout``, v0 = the history's last speed); detect the meta-actions of history ⊕ prediction
(``rlpost.domain.meta_actions.future_meta_actions``, computed for the whole batch at once by
``meta_batch.future_labels_batch``); check the decision against them with the project's matching table
(``rlpost.domain.consistency.check_consistency``). Value 1 if both axes agree, else 0.

- A trace with no usable decision scores ``unparseable_value`` (0, docs/design.md §5.2) with status ``unparseable``; so
  does a completion with no usable trajectory (nothing to be consistent with), or a rollout that overflows.
- Batch structure: parsing is memoised per trace text (GRPO groups repeat traces), the rollout is vectorised over
  the batch, and only samples with both a decision and a trajectory reach the meta-action detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from rlpost.domain.coc import TraceParse, parse_trace
from rlpost.domain.trajectory import DT
from rlpost.rewards.kernels import rollout_batch
from rlpost.rewards.meta_batch import future_labels_batch
from rlpost.rewards.registry import register_reward
from rlpost.rewards.types import Completion, RewardResult, usable_controls


@lru_cache(maxsize=1 << 16)
def _parse(text: str) -> TraceParse:
    """``parse_trace`` memoised by text (it is a pure function of the text)."""
    return parse_trace(text)


def _history(scenario: Any) -> np.ndarray:
    sid = getattr(scenario, "scenario_id", "?")
    try:
        h = np.asarray(scenario.history, dtype=np.float64)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"scenario {sid!r}: history unusable: {exc}") from None
    if h.ndim != 2 or h.shape[0] < 1 or h.shape[1] < 4 or not np.isfinite(h[:, :4]).all():
        raise ValueError(f"scenario {sid!r}: history has shape {h.shape} or non-finite values, expected finite (H, 4)")
    return h[:, :4]


def meta_action_labels(histories: Sequence[np.ndarray], futures: np.ndarray, dt: float = DT):
    """(longitudinal labels, lateral labels) of each ``history ⊕ future``, equal to ``future_meta_actions``.

    Histories of one length go through the batched labeller together; other lengths are batched separately.
    """
    out: list = [None] * len(histories)
    by_length: dict[int, list[int]] = {}
    for i, h in enumerate(histories):
        by_length.setdefault(h.shape[0], []).append(i)
    for idx in by_length.values():
        labels = future_labels_batch(np.stack([histories[i] for i in idx]), futures[idx], dt)
        for i, lab in zip(idx, labels):
            out[i] = lab
    return out


@register_reward("coc_consistency", version="1")
def coc_consistency(
    completions: Sequence[Completion],
    scenarios: Sequence[Any],
    /,
    *,
    unparseable_value: float = 0.0,
    steps: int = 64,
    dt: float = DT,
) -> list[RewardResult]:
    """1.0 if the trace's decision matches the trajectory's meta-actions on both axes, else 0.0 (module docstring).

    steps: the expected trajectory length (controls must be ``(steps, 2)``). info per sample: decision, the future
    meta-action labels per axis, the per-axis verdicts and the matching table's reason.
    """
    from rlpost.domain.consistency import check_consistency

    n = len(completions)
    results: list[RewardResult | None] = [None] * n
    histories: dict[int, np.ndarray | str] = {}
    todo: list[int] = []
    controls: list[np.ndarray] = []
    shape = (steps, 2)
    for i, (c, s) in enumerate(zip(completions, scenarios)):
        parsed = _parse(c.trace) if type(c.trace) is str else parse_trace(c.trace)
        u = c.controls
        if type(u) is np.ndarray and u.shape == shape and u.dtype.kind in "fiu":
            why = ""  # NaN/inf are found for the whole batch at once below
        else:
            u, why = usable_controls(c, steps)
        if not parsed.ok or u is None:
            reasons = ([f"trace: {parsed.reason}"] if not parsed.ok else []) + ([why] if u is None else [])
            results[i] = RewardResult.unparseable(unparseable_value, "; ".join(reasons))
            continue
        if id(s) not in histories:
            try:
                histories[id(s)] = _history(s)
            except ValueError as exc:
                histories[id(s)] = str(exc)
        if isinstance(histories[id(s)], str):
            results[i] = RewardResult.failed("error", 0.0, f"reward 'coc_consistency': {histories[id(s)]}")
            continue
        todo.append(i)
        controls.append(u)
    if todo:
        hist = [histories[id(scenarios[i])] for i in todo]
        v0 = np.array([h[-1, 3] for h in hist])
        u = np.asarray(np.stack(controls), dtype=np.float64)
        finite_in = np.isfinite(u).all(axis=(1, 2))
        with np.errstate(over="ignore", invalid="ignore"):
            states, _, _ = rollout_batch(np.where(finite_in[:, None, None], u, 0.0), v0, dt)
        finite = finite_in & np.isfinite(states).all(axis=(1, 2))
        keep = np.nonzero(finite)[0]
        labels = meta_action_labels([hist[j] for j in keep], states[keep], dt)
        for j in np.nonzero(~finite)[0].tolist():
            why = "controls contain NaN or inf" if not finite_in[j] else "rollout diverged (non-finite states)"
            results[todo[j]] = RewardResult.unparseable(unparseable_value, why)
        verdicts: dict[tuple, tuple] = {}  # (decision, labels) -> verdict: groups repeat both
        for j, (lon, lat) in zip(keep.tolist(), labels):
            i = todo[j]
            decision = _parse(completions[i].trace).decision
            key = (decision, lon, lat)
            if key not in verdicts:
                v = check_consistency(decision, lon, lat)
                verdicts[key] = (1.0 if v.consistent else 0.0, decision.describe(), bool(v.longitudinal_ok),
                                 bool(v.lateral_ok), v.reason)
            value, described, lon_ok, lat_ok, reason = verdicts[key]
            results[i] = RewardResult(value, "ok", {
                "decision": described, "longitudinal": list(lon), "lateral": list(lat), "longitudinal_ok": lon_ok,
                "lateral_ok": lat_ok, "reason": reason})
    return results  # type: ignore[return-value]
