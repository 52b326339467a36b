"""The batch kernels equal their references in rlpost.domain.trajectory / rlpost.domain.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from rlpost.domain.metrics import collides, mean_squared_jerk
from rlpost.domain.trajectory import unicycle_rollout
from rlpost.rewards.kernels import AgentFutures, collides_batch, mean_squared_jerk_batch, rollout_batch


def _controls(rng, b, t=64):
    return np.stack([rng.normal(0, 1.0, (b, t)), rng.normal(0, 0.03, (b, t))], axis=-1)


def test_rollout_batch_equals_unicycle_rollout():
    rng = np.random.default_rng(0)
    u, v0 = _controls(rng, 200), rng.uniform(0, 20, 200)
    states, cos, sin = rollout_batch(u, v0)
    ref = unicycle_rollout(u, v0)
    np.testing.assert_allclose(states, ref, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(cos, np.cos(ref[..., 2]), atol=1e-12)
    np.testing.assert_allclose(sin, np.sin(ref[..., 2]), atol=1e-12)


@pytest.mark.parametrize("prefix_len", [0, 1, 3, 5])
def test_mean_squared_jerk_batch_equals_metrics(prefix_len):
    rng = np.random.default_rng(prefix_len)
    u, v0 = _controls(rng, 50), rng.uniform(1, 15, 50)
    states, cos, sin = rollout_batch(u, v0)
    prefix = np.zeros((50, prefix_len, 4))
    prefix[..., 3] = v0[:, None]
    prefix[..., 0] = (np.arange(prefix_len) - prefix_len + 1) * 0.1 * v0[:, None]
    got = mean_squared_jerk_batch(states, cos, sin, prefix if prefix_len else None)
    full = np.concatenate([prefix, states], axis=1)
    np.testing.assert_allclose(got, mean_squared_jerk(full), rtol=1e-7, atol=1e-9)


def _agent_boxes(rng, n, t):
    """Agents scattered around the ego's reach, some crossing it, with random validity and sizes."""
    boxes = np.empty((n, t, 5))
    start = rng.uniform([-10, -15], [60, 15], (n, 2))
    vel = rng.normal(0, 6, (n, 2))
    steps = np.arange(1, t + 1)[:, None] * 0.1
    boxes[..., :2] = start[:, None] + vel[:, None] * steps
    boxes[..., 2] = np.arctan2(vel[:, 1], vel[:, 0])[:, None]
    boxes[..., 3] = rng.uniform(0.5, 12, (n, 1))
    boxes[..., 4] = rng.uniform(0.5, 3, (n, 1))
    valid = rng.random((n, t)) > 0.2
    return boxes, valid


def test_collides_batch_equals_metrics_collides():
    rng = np.random.default_rng(7)
    t, b, s = 64, 300, 12
    scen = [_agent_boxes(rng, int(rng.integers(0, 9)), t) for _ in range(s)]
    agents = AgentFutures([x[0] for x in scen], [x[0][:, 0, 3:] for x in scen], [x[1] for x in scen], t)
    row = rng.integers(0, s, b)
    states, _, _ = rollout_batch(_controls(rng, b), rng.uniform(0, 15, b))
    got = collides_batch(states, row, agents)
    want = np.array([
        bool(collides(states[i], scen[row[i]][0], scen[row[i]][1])) if scen[row[i]][0].shape[0] else False
        for i in range(b)
    ])
    assert want.sum() > 20 and (~want).sum() > 20, "the case mix must contain hits and misses"
    np.testing.assert_array_equal(got, want)


def test_collides_batch_touching_boxes_count_and_invalid_agents_do_not():
    t = 4
    ego = np.zeros((2, t, 4))  # standing at the origin, heading +x
    # Agent 0 touches the ego's front edge exactly (ego half-length 2 + agent half-length 2 = 4 m); agent 1 overlaps
    # but is invalid throughout.
    boxes = np.zeros((2, t, 5))
    boxes[0, :, 0], boxes[0, :, 3], boxes[0, :, 4] = 4.0, 4.0, 2.0
    boxes[1, :, 3], boxes[1, :, 4] = 4.0, 2.0
    valid = np.array([[True] * t, [False] * t])
    agents = AgentFutures([boxes, boxes[1:]], [boxes[:, 0, 3:], boxes[1:, 0, 3:]], [valid, valid[1:]], t)
    got = collides_batch(ego, np.array([0, 1]), agents)
    assert got.tolist() == [True, False]
