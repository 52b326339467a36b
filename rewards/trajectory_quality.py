"""Built-in reward ``trajectory_quality`` (docs/design.md §5.3): closeness to the expert, no collision, low jerk.

    value = −(λ_L2 · L2² + λ_coll · 1[collision] + λ_jerk · jerk²)

- L2²: mean over the 64 steps of the squared distance [m²] between the predicted and the expert (x, y). The mean,
  not the sum, keeps λ_L2 independent of the horizon length.
- collision: the oriented ego box (4.0 × 2.0 m, AR1's evaluation box) overlaps a valid agent's box at the same
  step of the future (``rlpost.domain.metrics.collides`` semantics).
- jerk²: mean squared jerk [m²/s⁶] (``rlpost.domain.metrics.mean_squared_jerk``) of the last ``jerk_history_ticks``
  history states ⊕ the prediction: with 3 history states the jerk is defined at t0, so a plan that starts with an
  acceleration jump away from the current motion is penalised too.
Predicted states: ``unicycle_rollout(controls, v0=scenario.history[-1, 3])``.

Default weights (ours: AR1 publishes none): one collision costs as much as an RMS position error of ~3.2 m
(L2² = 10 m² at λ_L2 = 0.1), and a jerky plan (jerk² ≈ 50 m²/s⁶, step-to-step accel noise of 0.5 m/s²)
costs 0.5.

Everything is vectorised over the batch: bad samples (no trajectory, wrong shape, NaN) are set aside with status
``unparseable`` and value ``unparseable_value``, the rest are stacked and scored together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rlpost.domain.metrics import EGO_LENGTH, EGO_WIDTH
from rlpost.domain.trajectory import DT
from rlpost.rewards.kernels import AgentFutures, collides_batch, mean_squared_jerk_batch, rollout_batch
from rlpost.rewards.registry import register_reward
from rlpost.rewards.types import Completion, RewardResult, usable_controls


class ScenarioDataError(ValueError):
    """A scenario's arrays do not have the shapes the reward needs (a data defect, reported as status error)."""


def _prepare(scenario: Any, jerk_history_ticks: int) -> dict[str, Any]:
    """Per-scenario inputs: v0, expert xy (T, 2), history prefix (P, 4), agent future boxes (N, T, 5) and validity."""
    sid = getattr(scenario, "scenario_id", "?")
    try:
        history = np.asarray(scenario.history, dtype=np.float64)
        future = np.asarray(scenario.future, dtype=np.float64)
        agents = np.asarray(scenario.agent_states, dtype=np.float64)
        size = np.asarray(scenario.agent_size, dtype=np.float64)
        valid = np.asarray(scenario.agent_valid, dtype=bool)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ScenarioDataError(f"scenario {sid!r}: {exc}") from None
    if history.ndim != 2 or history.shape[1] < 4 or history.shape[0] < 1:
        raise ScenarioDataError(f"scenario {sid!r}: history has shape {history.shape}, expected (H, 4)")
    if future.ndim != 2 or future.shape[1] < 2:
        raise ScenarioDataError(f"scenario {sid!r}: future has shape {future.shape}, expected (T, 4)")
    h, t = history.shape[0], future.shape[0]
    agents = agents.reshape((0, h + t, 4)) if agents.size == 0 else agents
    if agents.ndim != 3 or agents.shape[1] < h + t or agents.shape[2] < 3:
        raise ScenarioDataError(f"scenario {sid!r}: agent_states has shape {agents.shape}, expected (N, {h + t}, 4)")
    n = agents.shape[0]
    if size.reshape(-1).size != 2 * n or valid.shape != agents.shape[:2]:
        raise ScenarioDataError(
            f"scenario {sid!r}: agent_size {size.shape} / agent_valid {valid.shape} do not match agent_states "
            f"{agents.shape}"
        )
    size = size.reshape(n, 2)
    prefix = history[max(h - jerk_history_ticks, 0):, :4] if jerk_history_ticks else history[:0, :4]
    if not (np.isfinite(history[-1, 3]) and np.isfinite(future[:, :2]).all() and np.isfinite(prefix).all()):
        raise ScenarioDataError(f"scenario {sid!r}: non-finite values in history or expert future")
    return {"v0": float(history[-1, 3]), "expert": future[:, :2], "prefix": prefix, "agents": agents[:, h: h + t],
            "size": size, "valid": valid[:, h: h + t], "steps": t}


@register_reward("trajectory_quality", version="1")
def trajectory_quality(
    completions: Sequence[Completion],
    scenarios: Sequence[Any],
    /,
    *,
    lambda_l2: float = 0.1,
    lambda_collision: float = 1.0,
    lambda_jerk: float = 0.01,
    jerk_history_ticks: int = 3,
    unparseable_value: float = -10.0,
    ego_length: float = EGO_LENGTH,
    ego_width: float = EGO_WIDTH,
    dt: float = DT,
) -> list[RewardResult]:
    """−(λ_L2·L2² + λ_coll·collision + λ_jerk·jerk²) per completion (see the module docstring); ≤ 0.

    lambda_l2 [1/m²], lambda_collision [-], lambda_jerk [s⁶/m²]: the weights. jerk_history_ticks: history states
    prepended for the jerk (0: the prediction only). unparseable_value: the value of a sample without a usable
    trajectory (no controls, wrong shape, NaN, a rollout that overflows): below any plausible real penalty, so
    GRPO pushes away from undecodable outputs. info per sample: l2_sq [m²], collision (bool), jerk_sq [m²/s⁶].
    A scenario with malformed arrays gives its samples status error naming the scenario.
    """
    n = len(completions)
    results: list[RewardResult | None] = [None] * n
    preps: list[dict[str, Any]] = []
    scenario_row: dict[int, int] = {}  # id(scenario) -> index in preps: G rollouts share one scenario object
    broken: dict[int, str] = {}
    good: list[int] = []
    rows: list[int] = []
    stacked: list[np.ndarray] = []
    shape: tuple[int, int] | None = None
    for i, (c, s) in enumerate(zip(completions, scenarios)):
        key = id(s)
        row = scenario_row.get(key)
        if row is None:
            if key not in broken:
                try:
                    prep = _prepare(s, jerk_history_ticks)
                    shape = shape or (prep["steps"], 2)
                    if (prep["steps"], 2) != shape:
                        raise ScenarioDataError(f"scenario {getattr(s, 'scenario_id', '?')!r}: horizon "
                                                f"{prep['steps']} differs from the batch's {shape[0]}")
                    scenario_row[key] = row = len(preps)
                    preps.append(prep)
                except ScenarioDataError as exc:
                    broken[key] = str(exc)
            if row is None:
                results[i] = RewardResult.failed("error", 0.0, f"reward 'trajectory_quality': {broken[key]}")
                continue
        u = c.controls
        if type(u) is not np.ndarray or u.shape != shape or u.dtype.kind not in "fiu":  # else the slow checks
            u, reason = usable_controls(c, shape[0])  # type: ignore[index]
            if u is None:
                results[i] = RewardResult.unparseable(unparseable_value, reason)
                continue
        good.append(i)
        rows.append(row)
        stacked.append(u)
    if good:
        controls = np.asarray(np.stack(stacked), dtype=np.float64)
        finite_in = np.isfinite(controls).all(axis=(1, 2))
        if not finite_in.all():  # NaN/inf controls: set aside without breaking the vectorised path
            for j in np.nonzero(~finite_in)[0].tolist():
                results[good[j]] = RewardResult.unparseable(unparseable_value, "controls contain NaN or inf")
            keep = np.nonzero(finite_in)[0]
            controls = controls[keep]
            good = [good[j] for j in keep.tolist()]
            rows = [rows[j] for j in keep.tolist()]
    if good:
        row = np.asarray(rows)
        v0 = np.array([p["v0"] for p in preps])[row]
        with np.errstate(over="ignore", invalid="ignore"):  # absurd but finite controls: caught as non-finite below
            states, cos, sin = rollout_batch(controls, v0, dt)
            expert = np.stack([p["expert"] for p in preps])[row]
            # Per coordinate plane: a (B, T, 2) temporary summed over its size-2 axis costs several times more.
            dx, dy = states[..., 0] - expert[..., 0], states[..., 1] - expert[..., 1]
            l2_sq = np.mean(dx * dx + dy * dy, axis=-1)
            prefix_len = {p["prefix"].shape[0] for p in preps}
            if len(prefix_len) == 1:
                prefix = np.stack([p["prefix"] for p in preps])[row]
                jerk_sq = mean_squared_jerk_batch(states, cos, sin, prefix, dt)
            else:  # histories shorter than jerk_history_ticks: group by prefix length
                jerk_sq = np.empty(len(good))
                plen = np.array([preps[r]["prefix"].shape[0] for r in rows])
                for length in prefix_len:
                    sel = np.nonzero(plen == length)[0]
                    pre = np.stack([preps[rows[j]]["prefix"] for j in sel])
                    jerk_sq[sel] = mean_squared_jerk_batch(states[sel], cos[sel], sin[sel], pre, dt)
            finite = np.isfinite(states).all(axis=(1, 2)) & np.isfinite(l2_sq) & np.isfinite(jerk_sq)
            agents = AgentFutures([p["agents"] for p in preps], [p["size"] for p in preps],
                                  [p["valid"] for p in preps], states.shape[1])
            collision = np.zeros(len(good), dtype=bool)
            ok = np.nonzero(finite)[0]
            collision[ok] = collides_batch(states[ok], row[ok], agents, ego_length, ego_width, cos[ok], sin[ok])
            value = -(lambda_l2 * l2_sq + lambda_collision * collision + lambda_jerk * jerk_sq)
        for i, v, l2, col, jerk, fin in zip(good, value.tolist(), l2_sq.tolist(), collision.tolist(),
                                           jerk_sq.tolist(), finite.tolist()):
            if fin:
                results[i] = RewardResult(v, "ok", {"l2_sq": l2, "collision": col, "jerk_sq": jerk})
            else:
                results[i] = RewardResult.unparseable(unparseable_value, "rollout diverged (non-finite states)")
    return results  # type: ignore[return-value]
