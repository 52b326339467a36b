"""Trajectories: the unicycle model, controls from logged waypoints, and control tokenisation.

Units everywhere: metres, seconds, radians; acceleration in m/s², curvature in 1/m. The ego frame at the
keyframe t0 has the ego at the origin heading along +x (docs/design.md §2). Arrays are float64 numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlpost.common.checks import as_float_array, check_positive

DT = 0.1  # s, the 10 Hz step of every trajectory in the project
HORIZON = 64  # future steps (6.4 s)


def unicycle_rollout(controls, v0, dt: float = DT) -> np.ndarray:
    """Integrate per-step controls with the docs/design.md §2 unicycle model.

    controls: ``(..., T, 2)`` = (acceleration a [m/s²], curvature κ [1/m]) applied over each step.
    v0: ``(...)`` initial speed [m/s] (a scalar broadcasts over the batch).
    Returns states ``(..., T, 4)`` = (x [m], y [m], yaw [rad], v [m/s]) at steps 1..T, starting from
    (0, 0, 0, v0), with exactly

        v' = v + dt·a;  θ' = θ + dt·κ·v + dt²/2·κ·a;
        x' = x + dt/2·(v·cosθ + v'·cosθ');  y' = y + dt/2·(v·sinθ + v'·sinθ').
    """
    u = as_float_array("controls", controls, last_dims=(-1, 2))
    dt = check_positive("dt", dt)
    speed = np.broadcast_to(as_float_array("v0", v0, min_ndim=0), u.shape[:-2]).astype(np.float64)
    x = np.zeros_like(speed)
    y = np.zeros_like(speed)
    yaw = np.zeros_like(speed)
    out = np.empty(u.shape[:-1] + (4,), dtype=np.float64)
    for t in range(u.shape[-2]):
        a, k = u[..., t, 0], u[..., t, 1]
        v_next = speed + dt * a
        yaw_next = yaw + dt * k * speed + 0.5 * dt * dt * k * a
        x = x + 0.5 * dt * (speed * np.cos(yaw) + v_next * np.cos(yaw_next))
        y = y + 0.5 * dt * (speed * np.sin(yaw) + v_next * np.sin(yaw_next))
        speed, yaw = v_next, yaw_next
        out[..., t, 0], out[..., t, 1], out[..., t, 2], out[..., t, 3] = x, y, yaw, speed
    return out


def _rollout_xy_torch(controls: torch.Tensor, v0: torch.Tensor, dt: float) -> torch.Tensor:
    """The same integrator in torch (for the Jacobian in ``controls_from_waypoints``): (T, 2), () -> (T, 2)."""
    speed, yaw = v0, torch.zeros_like(v0)
    x, y = torch.zeros_like(v0), torch.zeros_like(v0)
    points = []
    for t in range(controls.shape[0]):
        a, k = controls[t, 0], controls[t, 1]
        v_next = speed + dt * a
        yaw_next = yaw + dt * k * speed + 0.5 * dt * dt * k * a
        x = x + 0.5 * dt * (speed * torch.cos(yaw) + v_next * torch.cos(yaw_next))
        y = y + 0.5 * dt * (speed * torch.sin(yaw) + v_next * torch.sin(yaw_next))
        speed, yaw = v_next, yaw_next
        points.append(torch.stack([x, y]))
    return torch.stack(points)


def _initial_controls(pts: np.ndarray, v0: np.ndarray, dt: float) -> np.ndarray:
    """A geometric first guess for the fit: speeds from segment lengths, headings from central differences.

    pts ``(B, T, 2)``, v0 ``(B,)`` -> controls ``(B, T, 2)``. Curvature is left at 0 where the ego barely moves.
    """
    path = np.concatenate([np.zeros_like(pts[:, :1]), pts], axis=1)  # (B, T+1, 2) including the origin
    seg = np.diff(path, axis=1)  # (B, T, 2): displacement over each step
    mid_speed = np.linalg.norm(seg, axis=-1) / dt  # speed at each step's midpoint
    speed = np.concatenate([v0[:, None], 0.5 * (mid_speed[:, 1:] + mid_speed[:, :-1]), mid_speed[:, -1:]], axis=1)
    heading = np.unwrap(np.arctan2(seg[..., 1], seg[..., 0]), axis=1)  # midpoint headings
    # The heading at t0 is 0 by construction of the ego frame.
    yaw = np.concatenate([np.zeros_like(heading[:, :1]), 0.5 * (heading[:, 1:] + heading[:, :-1]), heading[:, -1:]], 1)
    mean_speed = 0.5 * (speed[:, 1:] + speed[:, :-1])
    moving = mean_speed > 0.5
    curvature = np.where(moving, np.diff(yaw, axis=1) / (dt * np.where(moving, mean_speed, 1.0)), 0.0)
    return np.stack([np.diff(speed, axis=1) / dt, np.clip(curvature, -0.5, 0.5)], axis=-1)


# Scales that make the two control channels comparable in the regulariser (AR1 release statistics, docs/design.md §2).
_CONTROL_STD = np.array([0.681, 0.0261])


def controls_from_waypoints(
    xy,
    v0,
    dt: float = DT,
    smoothness: float = 1e-3,
    ridge: float = 1e-6,
    iterations: int = 8,
) -> np.ndarray:
    """Fit per-step controls whose unicycle rollout reproduces logged waypoints (Tikhonov-regularised LS).

    xy: ``(..., T, 2)`` waypoints [m] at steps 1..T in the ego frame at t0 (ego at the origin, heading +x).
    v0: ``(...)`` speed at t0 [m/s].
    Returns controls ``(..., T, 2)`` = (a [m/s²], κ [1/m]) minimising

        Σ_t ‖rollout(u)_t − xy_t‖² + smoothness·Σ_t ‖(u_t − u_{t−1}) / σ‖² + ridge·Σ_t ‖u_t / σ‖²

    with σ the AR1 control standard deviations, by damped Gauss-Newton on the exact integrator.

    Why regularise: inverting the trapezoid integrator step by step is exact on clean data but has a marginally
    stable mode (speed errors alternate in sign), so centimetre noise in logged positions becomes saw-tooth
    controls. The smoothness term (first differences, as AR1's release smooths) suppresses that mode; the tiny
    ridge fixes curvature where it is unobservable (standing still, v ≈ 0).
    """
    pts = as_float_array("xy", xy, last_dims=(-1, 2))
    dt = check_positive("dt", dt)
    if smoothness < 0 or ridge < 0:
        raise ValueError(f"smoothness/ridge: must be >= 0, got {smoothness!r}/{ridge!r}")
    batch_shape, steps = pts.shape[:-2], pts.shape[-2]
    speeds = np.broadcast_to(as_float_array("v0", v0, min_ndim=0), batch_shape).reshape(-1)
    flat_pts = pts.reshape(-1, steps, 2)

    n = steps * 2
    scale = np.tile(1.0 / _CONTROL_STD, steps)  # per-parameter 1/σ, parameters ordered (a1, κ1, a2, κ2, ...)
    diff = np.eye(n)[2:] - np.eye(n)[:-2]  # first differences within each channel
    reg = smoothness * (diff * scale).T @ (diff * scale) + ridge * np.diag(scale**2)
    reg_t = torch.as_tensor(reg)

    def flat_rollout(p: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        return _rollout_xy_torch(p.view(steps, 2), speed, dt).reshape(-1)

    batched_jac = torch.func.vmap(torch.func.jacfwd(flat_rollout))
    batched_roll = torch.func.vmap(flat_rollout)

    def cost(u: torch.Tensor, speed: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        res = batched_roll(u, speed) - target
        return (res * res).sum(-1) + ((u @ reg_t) * u).sum(-1)

    eye = torch.eye(n, dtype=torch.float64)
    result = np.empty((flat_pts.shape[0], n))
    for start in range(0, flat_pts.shape[0], 256):  # chunks bound the (chunk, 2T, 2T) Jacobians' memory
        chunk = slice(start, start + 256)
        target = torch.as_tensor(flat_pts[chunk].reshape(-1, n))
        speed = torch.as_tensor(speeds[chunk].copy())
        u = torch.as_tensor(_initial_controls(flat_pts[chunk], speeds[chunk], dt).reshape(-1, n))
        current = cost(u, speed, target)
        damping = torch.full_like(current, 1e-3)
        # Levenberg-Marquardt: Gauss-Newton steps, damped per sample and accepted only if the cost falls, so
        # hard samples (near standstill, sharp turns) cannot diverge.
        for _ in range(iterations):
            jac = batched_jac(u, speed)  # (B, 2T, 2T)
            res = batched_roll(u, speed) - target
            grad = jac.transpose(1, 2) @ res.unsqueeze(-1) + (reg_t @ u.unsqueeze(-1))
            hess = jac.transpose(1, 2) @ jac + reg_t
            diag = torch.diagonal(hess, dim1=1, dim2=2).clamp_min(1e-12)
            step = torch.linalg.solve(hess + damping[:, None, None] * torch.diag_embed(diag) + 1e-12 * eye, grad)
            candidate = u - step.squeeze(-1)
            new = cost(candidate, speed, target)
            better = new < current
            if not better.any() or (current - new).clamp_min(0).max() < 1e-12:
                break
            u = torch.where(better[:, None], candidate, u)
            current = torch.where(better, new, current)
            damping = torch.where(better, damping * 0.3, damping * 10.0).clamp(1e-9, 1e9)
        result[chunk] = u.numpy()
    return result.reshape(batch_shape + (steps, 2))


@dataclass(frozen=True)
class TrajectoryTokenizer:
    """Uniform binning of controls into ``2T`` interleaved tokens (a1, κ1, a2, κ2, ...), docs/design.md §2.

    num_bins: bins per channel (AR1 release: 3000; a tiny CPU model wants far fewer).
    accel_range / curvature_range: (low, high) covered by the bins [m/s²] / [1/m]; values outside are clamped.
    Token ids are bin indices in ``[0, num_bins)`` per channel; the policy's vocabulary maps them to its own ids.
    Decoding returns bin centres, so the error inside the range is at most half a bin width.
    Prefer an odd ``num_bins`` over a range symmetric about 0: then zero control is a bin centre. With an even
    count zero sits on a bin edge and "drive straight" decodes to a half-bin curvature, a systematic drift.
    """

    num_bins: int
    accel_range: tuple[float, float] = (-9.8, 9.8)
    curvature_range: tuple[float, float] = (-0.33, 0.33)

    def __post_init__(self):
        if not isinstance(self.num_bins, (int, np.integer)) or self.num_bins < 2:
            raise ValueError(f"num_bins: must be an integer >= 2, got {self.num_bins!r}")
        for name in ("accel_range", "curvature_range"):
            low, high = getattr(self, name)
            if not (np.isfinite(low) and np.isfinite(high) and low < high):
                raise ValueError(f"{name}: must be finite (low, high) with low < high, got {getattr(self, name)!r}")

    @classmethod
    def ar1_release(cls) -> TrajectoryTokenizer:
        """AR1's public setting: 3000 bins over mean ± 10σ of each channel, within the physical bounds."""
        def span(mean, std, bound):
            return (max(mean - 10 * std, -bound), min(mean + 10 * std, bound))
        return cls(3000, span(0.0290, 0.681, 9.8), span(0.000269, 0.0261, 0.33))

    @property
    def bin_widths(self) -> np.ndarray:
        """(2,) bin width per channel: [m/s², 1/m]."""
        return (self._highs - self._lows) / self.num_bins

    @property
    def _lows(self) -> np.ndarray:
        return np.array([self.accel_range[0], self.curvature_range[0]])

    @property
    def _highs(self) -> np.ndarray:
        return np.array([self.accel_range[1], self.curvature_range[1]])

    def encode(self, controls) -> np.ndarray:
        """controls ``(..., T, 2)`` -> tokens ``(..., 2T)`` int64 in ``[0, num_bins)``; out-of-range values clamp."""
        u = as_float_array("controls", controls, last_dims=(-1, 2))
        idx = np.floor((u - self._lows) / self.bin_widths).astype(np.int64)
        idx = np.clip(idx, 0, self.num_bins - 1)
        return idx.reshape(u.shape[:-2] + (-1,))

    def decode(self, tokens) -> np.ndarray:
        """tokens ``(..., 2T)`` integer bin indices -> controls ``(..., T, 2)`` at the bin centres."""
        tok = np.asarray(tokens)
        if tok.ndim < 1 or tok.shape[-1] == 0 or tok.shape[-1] % 2:
            raise ValueError(f"tokens: expected shape (..., 2T) with an even, non-zero last axis, got {tok.shape}")
        if not np.issubdtype(tok.dtype, np.integer):
            raise ValueError(f"tokens: expected integer bin indices, got dtype {tok.dtype}")
        if tok.min() < 0 or tok.max() >= self.num_bins:
            raise ValueError(
                f"tokens: bin indices must lie in [0, {self.num_bins}), got range [{tok.min()}, {tok.max()}]"
            )
        pairs = tok.reshape(tok.shape[:-1] + (-1, 2)).astype(np.float64)
        return self._lows + (pairs + 0.5) * self.bin_widths
