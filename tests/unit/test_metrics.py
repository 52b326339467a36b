import numpy as np
import pytest

from rlpost.domain import metrics
from rlpost.domain.trajectory import unicycle_rollout


def line(speed, steps=64, y=0.0):
    t = np.arange(1, steps + 1) * 0.1
    return np.stack([speed * t, np.full(steps, y)], axis=-1)


def test_ade_fde_golden():
    gt = line(10.0)
    pred = gt + np.array([3.0, 4.0])  # a constant 5 m offset
    assert metrics.ade(pred, gt) == pytest.approx(5.0)
    assert metrics.fde(pred, gt) == pytest.approx(5.0)
    growing = gt.copy()
    growing[:, 1] = np.arange(1, 65) * 0.1  # lateral error = t
    assert metrics.ade(growing, gt, horizon_s=3.0) == pytest.approx(np.mean(np.arange(1, 31) * 0.1))
    assert metrics.fde(growing, gt, horizon_s=3.0) == pytest.approx(3.0)
    assert metrics.fde(growing, gt) == pytest.approx(6.4)


def test_min_ade_picks_the_best_mode():
    gt = line(10.0)
    modes = np.stack([gt + 2.0, gt + 0.5, gt - 1.0])  # (K=3, T, 2)
    assert metrics.min_ade(modes, gt) == pytest.approx(np.hypot(0.5, 0.5))
    assert metrics.min_fde(modes, gt) == pytest.approx(np.hypot(0.5, 0.5))
    batch = np.stack([modes, modes[::-1]])  # (B=2, K, T, 2)
    np.testing.assert_allclose(metrics.min_ade(batch, np.stack([gt, gt])), [np.hypot(0.5, 0.5)] * 2)


def test_displacement_metrics_keys():
    gt = line(10.0)
    out = metrics.displacement_metrics(gt + 1.0, gt)
    assert set(out) == {"ade_3s", "fde_3s", "ade_6.4s", "fde_6.4s"}


@pytest.mark.parametrize(
    "call, culprit",
    [
        (lambda: metrics.ade(np.zeros((64, 3)), np.zeros((64, 2))), "pred"),
        (lambda: metrics.ade(np.zeros((64, 2)), np.full((64, 2), np.nan)), "gt"),
        (lambda: metrics.ade(np.zeros((64, 2)), np.zeros((32, 2))), "step counts"),
        (lambda: metrics.ade(np.zeros((64, 2)), np.zeros((64, 2)), horizon_s=7.0), "horizon_s"),
        (lambda: metrics.ade(np.zeros((0, 2)), np.zeros((0, 2))), "pred"),
        (lambda: metrics.min_ade(np.zeros((64, 2)), np.zeros((64, 2))), "preds"),
    ],
)
def test_displacement_rejects_bad_input(call, culprit):
    with pytest.raises(ValueError, match=culprit):
        call()


@pytest.mark.parametrize(
    "other, expected",
    [
        ((0.0, 0.0, 0.0, 4.0, 2.0), True),  # identical
        ((3.9, 0.0, 0.0, 4.0, 2.0), True),  # nose to tail, overlapping by 0.1 m
        ((4.1, 0.0, 0.0, 4.0, 2.0), False),  # 0.1 m gap
        ((0.0, 2.1, 0.0, 4.0, 2.0), False),  # side by side, 0.1 m apart
        ((0.0, 1.9, 0.0, 4.0, 2.0), True),
        # Rotated 45°: the axis-aligned bounding boxes overlap but the rectangles do not (separated along the
        # diagonal box's own axis), the case a circle or AABB test gets wrong.
        ((3.6, 2.2, np.pi / 4, 4.0, 0.5), False),
        ((3.0, 1.0, np.pi / 4, 4.0, 0.5), True),
        ((0.0, 0.0, np.pi / 2, 10.0, 0.2), True),  # a long thin bar crossing the box
    ],
)
def test_boxes_overlap_cases(other, expected):
    ego = (0.0, 0.0, 0.0, 4.0, 2.0)
    assert bool(metrics.boxes_overlap(ego, other)) is expected
    assert bool(metrics.boxes_overlap(other, ego)) is expected  # symmetric


def test_boxes_overlap_matches_brute_force_on_random_boxes():
    rng = np.random.default_rng(0)
    boxes_a = np.column_stack([rng.uniform(-3, 3, (200, 2)), rng.uniform(-np.pi, np.pi, 200),
                               rng.uniform(1, 5, (200, 2))])
    boxes_b = np.column_stack([rng.uniform(-3, 3, (200, 2)), rng.uniform(-np.pi, np.pi, 200),
                               rng.uniform(1, 5, (200, 2))])
    fast = metrics.boxes_overlap(boxes_a, boxes_b)

    def inside(points, box):
        x, y, yaw, length, width = box
        d = points - np.array([x, y])
        along = d @ np.array([np.cos(yaw), np.sin(yaw)])
        across = d @ np.array([-np.sin(yaw), np.cos(yaw)])
        return (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)

    grid = np.stack(np.meshgrid(np.linspace(-8, 8, 241), np.linspace(-8, 8, 241)), -1).reshape(-1, 2)
    disagreements = 0
    for a, b, f in zip(boxes_a, boxes_b, fast):
        brute = bool((inside(grid, a) & inside(grid, b)).any())
        # The grid can miss a sliver overlap (fast True, brute False) but never invent one.
        assert not (brute and not f)
        disagreements += f != brute
    assert disagreements < 5


def test_collision_over_a_trajectory_with_padding_mask():
    ego = unicycle_rollout(np.zeros((64, 2)), 10.0)  # 1 m per step along +x
    parked = np.tile([[30.0, 0.0, 0.0, 4.5, 1.8]], (64, 1))  # stopped car in the ego's lane at x = 30 m
    beside = np.tile([[30.0, 3.5, 0.0, 4.5, 1.8]], (64, 1))  # in the next lane
    agents = np.stack([parked, beside])
    steps = metrics.collision_steps(ego, agents)
    assert steps.shape == (64,)
    # Ego centre x = step+1 metres; overlap when |x - 30| <= (4 + 4.5) / 2 = 4.25.
    np.testing.assert_array_equal(np.flatnonzero(steps), np.arange(25, 34))
    assert metrics.collides(ego, agents)
    valid = np.ones((2, 64), dtype=bool)
    valid[0] = False  # the parked car is padding
    assert not metrics.collides(ego, agents, valid)
    assert not metrics.collides(ego, agents[1:])


def test_collision_batched_and_empty_agents():
    ego = unicycle_rollout(np.zeros((3, 64, 2)), np.array([0.0, 10.0, 20.0]))
    agents = np.tile([[[45.0, 0.0, 0.0, 4.0, 2.0]]], (3, 1, 64, 1))
    np.testing.assert_array_equal(metrics.collides(ego, agents), [False, True, True])
    assert not metrics.collides(ego[0], np.zeros((0, 64, 5))).any()


def test_collision_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="agents"):
        metrics.collides(np.zeros((64, 4)), np.zeros((2, 32, 5)))
    with pytest.raises(ValueError, match="ego_states"):
        metrics.collides(np.zeros((64, 2)), np.zeros((2, 64, 5)))
    with pytest.raises(ValueError, match="agent_valid"):
        metrics.collides(np.zeros((64, 4)), np.zeros((2, 64, 5)), np.ones((3, 64), bool))


def test_kinematics_and_comfort():
    cruise = unicycle_rollout(np.zeros((64, 2)), 10.0)
    kin = metrics.kinematics(cruise)
    for name in ("lon_accel", "lat_accel", "yaw_rate", "yaw_accel", "lon_jerk", "jerk"):
        assert np.abs(kin[name]).max() < 1e-9, name
    assert not metrics.comfort_violations(cruise)["any"]
    assert metrics.mean_squared_jerk(cruise) == pytest.approx(0.0, abs=1e-12)

    brake = unicycle_rollout(np.tile([-6.0, 0.0], (20, 1)), 15.0)  # -6 m/s² < -4.05
    flags = metrics.comfort_violations(brake)
    assert flags["lon_accel"] and flags["any"] and not flags["yaw_rate"]
    np.testing.assert_allclose(metrics.kinematics(brake)["lon_accel"], -6.0)

    swerve = unicycle_rollout(np.tile([0.0, 0.2], (20, 1)), 10.0)  # yaw rate 2 rad/s > 0.95
    assert metrics.comfort_violations(swerve)["yaw_rate"]
    assert metrics.comfort_violations(swerve)["lat_accel"]  # v²κ = 20 m/s²

    step_accel = np.concatenate([np.zeros((10, 2)), np.tile([2.0, 0.0], (10, 1))])
    jerky = unicycle_rollout(step_accel, 10.0)  # 0 -> 2 m/s² within 0.1 s: 20 m/s³
    assert metrics.comfort_violations(jerky)["lon_jerk"]
    assert metrics.mean_squared_jerk(jerky) > 0


def test_kinematics_rejects_short_or_bad_states():
    with pytest.raises(ValueError, match="states"):
        metrics.kinematics(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="states"):
        metrics.kinematics(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="dt"):
        metrics.kinematics(np.zeros((10, 4)), dt=0)
