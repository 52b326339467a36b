"""Driving metrics (docs/design.md §8): displacement errors, oriented-box collisions, jerk and comfort bounds.

Units: metres, seconds, radians. Trajectories are sampled at ``dt`` = 0.1 s; step i (0-based) is time (i+1)·dt.
"""

from __future__ import annotations

import numpy as np

from rlpost.common.checks import as_float_array, check_positive
from rlpost.domain.trajectory import DT

EGO_LENGTH = 4.0  # m, AR1's evaluation box
EGO_WIDTH = 2.0  # m

# Comfort bounds of the AR1 release (10 Hz finite differences), docs/design.md §2.
COMFORT_BOUNDS = {
    "lon_accel": (-4.05, 2.40),  # m/s²
    "lat_accel": (-4.89, 4.89),  # m/s²
    "jerk": (-8.37, 8.37),  # m/s³, magnitude of the jerk vector
    "lon_jerk": (-4.13, 4.13),  # m/s³
    "yaw_rate": (-0.95, 0.95),  # rad/s
    "yaw_accel": (-1.93, 1.93),  # rad/s²
}


def _steps_for(horizon_s: float | None, steps: int, dt: float) -> int:
    if horizon_s is None:
        return steps
    n = int(round(check_positive("horizon_s", horizon_s) / check_positive("dt", dt)))
    if n > steps:
        raise ValueError(f"horizon_s: {horizon_s} s needs {n} steps but the trajectory has {steps}")
    return n


def _pair(pred, gt, pred_name="pred", gt_name="gt"):
    p = as_float_array(pred_name, pred, last_dims=(-1, 2))
    g = as_float_array(gt_name, gt, last_dims=(-1, 2))
    if p.shape[-2] != g.shape[-2]:
        raise ValueError(f"{pred_name}/{gt_name}: step counts differ ({p.shape[-2]} vs {g.shape[-2]})")
    return p, g


def displacement_errors(pred, gt) -> np.ndarray:
    """L2 distance per step: pred ``(..., T, 2)``, gt ``(..., T, 2)`` (broadcast) -> ``(..., T)`` [m]."""
    p, g = _pair(pred, gt)
    return np.linalg.norm(p - g, axis=-1)


def ade(pred, gt, horizon_s: float | None = None, dt: float = DT) -> np.ndarray:
    """Average displacement error over the first ``horizon_s`` seconds (all steps if None): ``(...)`` [m]."""
    err = displacement_errors(pred, gt)
    return err[..., : _steps_for(horizon_s, err.shape[-1], dt)].mean(axis=-1)


def fde(pred, gt, horizon_s: float | None = None, dt: float = DT) -> np.ndarray:
    """Final displacement error at ``horizon_s`` seconds (the last step if None): ``(...)`` [m]."""
    err = displacement_errors(pred, gt)
    return err[..., _steps_for(horizon_s, err.shape[-1], dt) - 1]


def min_ade(preds, gt, horizon_s: float | None = None, dt: float = DT) -> np.ndarray:
    """Best-of-K ADE: preds ``(..., K, T, 2)``, gt ``(..., T, 2)`` -> ``(...)`` [m] (minADE_K)."""
    p = as_float_array("preds", preds, last_dims=(-1, -1, 2))
    return ade(p, np.expand_dims(as_float_array("gt", gt, last_dims=(-1, 2)), -3), horizon_s, dt).min(axis=-1)


def min_fde(preds, gt, horizon_s: float | None = None, dt: float = DT) -> np.ndarray:
    """Best-of-K FDE: preds ``(..., K, T, 2)``, gt ``(..., T, 2)`` -> ``(...)`` [m]."""
    p = as_float_array("preds", preds, last_dims=(-1, -1, 2))
    return fde(p, np.expand_dims(as_float_array("gt", gt, last_dims=(-1, 2)), -3), horizon_s, dt).min(axis=-1)


def displacement_metrics(pred, gt, dt: float = DT) -> dict[str, np.ndarray]:
    """ADE/FDE at 3 s and over the full horizon (6.4 s for 64 steps): dict of ``(...)`` arrays [m]."""
    full = as_float_array("pred", pred, last_dims=(-1, 2)).shape[-2] * dt
    return {
        "ade_3s": ade(pred, gt, 3.0, dt),
        "fde_3s": fde(pred, gt, 3.0, dt),
        f"ade_{full:.1f}s": ade(pred, gt, None, dt),
        f"fde_{full:.1f}s": fde(pred, gt, None, dt),
    }


def boxes_overlap(box_a, box_b) -> np.ndarray:
    """Separating-axis test for oriented rectangles, vectorised with broadcasting.

    box_a, box_b: ``(..., 5)`` = (x [m], y [m], yaw [rad], length [m], width [m]), centre-referenced.
    Returns bool ``(...)``: True where the rectangles overlap (touching counts as overlap).
    Two convex boxes are disjoint iff some edge normal of either box separates their projections.
    """
    a = as_float_array("box_a", box_a, last_dims=(5,))
    b = as_float_array("box_b", box_b, last_dims=(5,))
    centre_gap = b[..., :2] - a[..., :2]
    overlap = np.ones(np.broadcast_shapes(a.shape[:-1], b.shape[:-1]), dtype=bool)
    for yaw in (a[..., 2], a[..., 2] + np.pi / 2, b[..., 2], b[..., 2] + np.pi / 2):
        axis_c, axis_s = np.cos(yaw), np.sin(yaw)
        gap = np.abs(centre_gap[..., 0] * axis_c + centre_gap[..., 1] * axis_s)
        overlap &= gap <= _half_extent(a, axis_c, axis_s) + _half_extent(b, axis_c, axis_s)
    return overlap


def _half_extent(box: np.ndarray, axis_c, axis_s) -> np.ndarray:
    """Half the projection of a box onto the unit axis (axis_c, axis_s)."""
    c, s = np.cos(box[..., 2]), np.sin(box[..., 2])
    along = np.abs(c * axis_c + s * axis_s)
    across = np.abs(-s * axis_c + c * axis_s)
    return 0.5 * box[..., 3] * along + 0.5 * box[..., 4] * across


def collision_steps(
    ego_states, agents, agent_valid=None, ego_length: float = EGO_LENGTH, ego_width: float = EGO_WIDTH
) -> np.ndarray:
    """Per-step collision flags of an ego trajectory against agents' futures.

    ego_states: ``(..., T, >=3)`` with (x, y, yaw) first [m, m, rad] (extra columns such as v are ignored).
    agents: ``(..., N, T, 5)`` = (x, y, yaw, length, width) per agent and step, same frame and times.
    agent_valid: optional bool ``(..., N, T)``; False where an agent is absent (padding). Default all valid.
    Returns bool ``(..., T)``: True at steps where the ego box overlaps any valid agent box.
    """
    ego = as_float_array("ego_states", ego_states, last_dims=(-1, -1))
    if ego.shape[-1] < 3:
        raise ValueError(f"ego_states: expected (..., T, >=3) with (x, y, yaw) first, got shape {ego.shape}")
    agt = as_float_array("agents", agents, last_dims=(-1, -1, 5), allow_empty=True)
    if agt.shape[-2] != ego.shape[-2]:
        raise ValueError(f"agents: has {agt.shape[-2]} steps but ego_states has {ego.shape[-2]}")
    dims = np.broadcast_to(np.array([ego_length, ego_width]), ego.shape[:-1] + (2,))
    ego_box = np.concatenate([ego[..., :3], dims], axis=-1)[..., None, :, :]  # (..., 1, T, 5)
    hit = boxes_overlap(ego_box, agt) if agt.size else np.zeros(agt.shape[:-1], dtype=bool)
    if agent_valid is not None:
        valid = np.asarray(agent_valid, dtype=bool)
        if valid.shape != agt.shape[:-1]:
            raise ValueError(f"agent_valid: expected shape {agt.shape[:-1]}, got {valid.shape}")
        hit = hit & valid
    return hit.any(axis=-2)


def collides(ego_states, agents, agent_valid=None, ego_length: float = EGO_LENGTH, ego_width: float = EGO_WIDTH):
    """True where the ego box overlaps any valid agent box at any step: bool ``(...)``. See ``collision_steps``."""
    return collision_steps(ego_states, agents, agent_valid, ego_length, ego_width).any(axis=-1)


def kinematics(states, dt: float = DT) -> dict[str, np.ndarray]:
    """Finite-difference kinematics at 10 Hz of states ``(..., T, 4)`` = (x, y, yaw, v), T >= 4.

    Returns ``(..., T-k)`` arrays (k = the order of the difference): lon_accel [m/s²] (dv/dt),
    lat_accel [m/s²] (v·yaw rate), yaw_rate [rad/s], yaw_accel [rad/s²], lon_jerk [m/s³], and jerk [m/s³]:
    the magnitude of the derivative of the planar acceleration vector (from the velocity v·(cosθ, sinθ)).
    Prepend the history to a predicted future so the differences are defined at t0.
    """
    s = as_float_array("states", states, last_dims=(-1, 4))
    if s.shape[-2] < 4:
        raise ValueError(f"states: need at least 4 steps for third differences, got {s.shape[-2]}")
    dt = check_positive("dt", dt)
    yaw = np.unwrap(s[..., 2], axis=-1)
    v = s[..., 3]
    yaw_rate = np.diff(yaw, axis=-1) / dt
    lon_accel = np.diff(v, axis=-1) / dt
    velocity = v[..., None] * np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)
    accel_vec = np.diff(velocity, axis=-2) / dt
    return {
        "lon_accel": lon_accel,
        "lat_accel": 0.5 * (v[..., 1:] + v[..., :-1]) * yaw_rate,
        "yaw_rate": yaw_rate,
        "yaw_accel": np.diff(yaw_rate, axis=-1) / dt,
        "lon_jerk": np.diff(lon_accel, axis=-1) / dt,
        "jerk": np.linalg.norm(np.diff(accel_vec, axis=-2) / dt, axis=-1),
    }


def comfort_violations(states, dt: float = DT) -> dict[str, np.ndarray]:
    """Which comfort bounds (``COMFORT_BOUNDS``) a trajectory breaks: dict name -> bool ``(...)``, plus "any"."""
    kin = kinematics(states, dt)
    out = {}
    for name, (low, high) in COMFORT_BOUNDS.items():
        out[name] = ((kin[name] < low) | (kin[name] > high)).any(axis=-1)
    out["any"] = np.any(np.stack(list(out.values())), axis=0)
    return out


def mean_squared_jerk(states, dt: float = DT) -> np.ndarray:
    """Mean of the squared jerk magnitude over the trajectory: ``(...)`` [m²/s⁶] (the jerk penalty of
    docs/design.md §5.3)."""
    return np.mean(kinematics(states, dt)["jerk"] ** 2, axis=-1)
