import math

import numpy as np
import pytest

from rlpost.domain.trajectory import TrajectoryTokenizer, controls_from_waypoints, unicycle_rollout


def smooth_controls(rng, n, steps=64):
    """Random smooth controls (a few low-frequency sinusoids) within the comfort envelope."""
    t = np.arange(steps) * 0.1
    accel = np.zeros((n, steps))
    curv = np.zeros((n, steps))
    for f in (1, 2, 3):
        accel += rng.normal(0, 0.4 / f, (n, 1)) * np.sin(2 * np.pi * f * t / 6.4 + rng.uniform(0, 6, (n, 1)))
        curv += rng.normal(0, 0.02 / f, (n, 1)) * np.sin(2 * np.pi * f * t / 6.4 + rng.uniform(0, 6, (n, 1)))
    return np.stack([accel, curv], axis=-1)


def test_unicycle_golden_values_by_hand():
    # Step 1 from v0=10 with a=1, κ=0.1, dt=0.1:
    # v1 = 10.1; θ1 = 0.1*0.1*10 + 0.005*0.1*1 = 0.1005
    # x1 = 0.05*(10*cos0 + 10.1*cos0.1005); y1 = 0.05*(0 + 10.1*sin0.1005)
    states = unicycle_rollout([[1.0, 0.1], [0.0, 0.0]], 10.0)
    v1, th1 = 10.1, 0.1005
    x1 = 0.05 * (10.0 + v1 * math.cos(th1))
    y1 = 0.05 * (v1 * math.sin(th1))
    assert states.shape == (2, 4)
    np.testing.assert_allclose(states[0], [x1, y1, th1, v1], rtol=0, atol=1e-12)
    # Step 2 with zero controls: straight on at the new heading.
    np.testing.assert_allclose(
        states[1], [x1 + 0.1 * v1 * math.cos(th1), y1 + 0.1 * v1 * math.sin(th1), th1, v1], atol=1e-12
    )


def test_unicycle_constant_speed_straight_and_circle():
    straight = unicycle_rollout(np.zeros((64, 2)), 5.0)
    np.testing.assert_allclose(straight[:, 0], 0.5 * np.arange(1, 65), atol=1e-12)
    assert np.abs(straight[:, 1:3]).max() == 0
    # Constant curvature at constant speed: heading grows linearly, the path stays on the circle of radius 1/κ
    # up to the trapezoid's chord error.
    circle = unicycle_rollout(np.tile([0.0, 0.05], (64, 1)), 10.0)
    np.testing.assert_allclose(circle[:, 2], 0.05 * 10.0 * 0.1 * np.arange(1, 65), atol=1e-12)
    radius = np.hypot(circle[:, 0], circle[:, 1] - 20.0)
    np.testing.assert_allclose(radius, 20.0, atol=0.01)


def test_unicycle_batches_and_broadcasts_v0():
    rng = np.random.default_rng(1)
    u = smooth_controls(rng, 6).reshape(2, 3, 64, 2)
    batched = unicycle_rollout(u, np.full((2, 3), 7.0))
    assert batched.shape == (2, 3, 64, 4)
    np.testing.assert_allclose(batched[1, 2], unicycle_rollout(u[1, 2], 7.0))
    np.testing.assert_allclose(unicycle_rollout(u, 7.0), batched)


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        (dict(controls=np.zeros((64, 3)), v0=1.0), "controls"),
        (dict(controls=np.zeros(64), v0=1.0), "controls"),
        (dict(controls=np.full((64, 2), np.nan), v0=1.0), "controls"),
        (dict(controls=np.zeros((0, 2)), v0=1.0), "controls"),
        (dict(controls=np.zeros((64, 2)), v0=float("nan")), "v0"),
        (dict(controls=np.zeros((64, 2)), v0=1.0, dt=0.0), "dt"),
        (dict(controls="fast", v0=1.0), "controls"),
    ],
)
def test_unicycle_rejects_bad_input_naming_the_argument(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        unicycle_rollout(**kwargs)


def test_controls_round_trip_under_5cm_on_many_smooth_trajectories():
    rng = np.random.default_rng(0)
    n = 300
    controls = smooth_controls(rng, n)
    v0 = rng.uniform(0.0, 20.0, n)
    states = unicycle_rollout(controls, v0)
    fitted = controls_from_waypoints(states[..., :2], v0)
    error = np.linalg.norm(unicycle_rollout(fitted, v0)[..., :2] - states[..., :2], axis=-1)
    worst = error.max()
    print(f"round-trip worst case over {n} trajectories: {worst * 100:.2f} cm")
    assert worst < 0.05


def test_controls_from_noisy_waypoints_stay_smooth():
    # 2 cm position noise must not turn into saw-tooth controls: the regulariser's whole point.
    rng = np.random.default_rng(3)
    controls = smooth_controls(rng, 20)
    v0 = rng.uniform(3.0, 15.0, 20)
    xy = unicycle_rollout(controls, v0)[..., :2] + rng.normal(0, 0.02, (20, 64, 2))
    fitted = controls_from_waypoints(xy, v0)
    assert np.abs(np.diff(fitted[..., 0], axis=-1)).max() < 1.0  # m/s² per step
    error = np.linalg.norm(unicycle_rollout(fitted, v0)[..., :2] - xy, axis=-1)
    assert error.mean() < 0.05


def test_controls_standing_still_are_zero():
    fitted = controls_from_waypoints(np.zeros((64, 2)), 0.0)
    assert np.abs(fitted).max() < 1e-3


@pytest.mark.parametrize(
    "kwargs, culprit",
    [
        (dict(xy=np.zeros((64, 3)), v0=1.0), "xy"),
        (dict(xy=np.full((64, 2), np.inf), v0=1.0), "xy"),
        (dict(xy=np.zeros((64, 2)), v0=np.nan), "v0"),
        (dict(xy=np.zeros((64, 2)), v0=1.0, dt=-0.1), "dt"),
    ],
)
def test_controls_from_waypoints_rejects_bad_input(kwargs, culprit):
    with pytest.raises(ValueError, match=culprit):
        controls_from_waypoints(**kwargs)


def test_tokenizer_round_trip_within_half_a_bin():
    tok = TrajectoryTokenizer(64, accel_range=(-4.0, 4.0), curvature_range=(-0.2, 0.2))
    rng = np.random.default_rng(0)
    controls = np.stack([rng.uniform(-4, 4, (100, 64)), rng.uniform(-0.2, 0.2, (100, 64))], axis=-1)
    tokens = tok.encode(controls)
    assert tokens.shape == (100, 128) and tokens.dtype == np.int64
    assert tokens.min() >= 0 and tokens.max() < 64
    error = np.abs(tok.decode(tokens) - controls)
    assert (error <= tok.bin_widths / 2 + 1e-12).all()


def test_tokenizer_interleaves_and_clamps():
    tok = TrajectoryTokenizer(10, accel_range=(-5.0, 5.0), curvature_range=(-0.1, 0.1))
    tokens = tok.encode([[-5.0, 0.1], [100.0, -100.0], [0.0, 0.0]])
    # a1, κ1, a2, κ2, a3, κ3; out-of-range values clamp to the end bins; the top edge maps to the last bin.
    np.testing.assert_array_equal(tokens, [0, 9, 9, 0, 5, 5])
    np.testing.assert_allclose(tok.decode(tokens)[0], [-4.5, 0.09])


def test_tokenizer_ar1_release_setting():
    tok = TrajectoryTokenizer.ar1_release()
    assert tok.num_bins == 3000
    np.testing.assert_allclose(tok.accel_range, (0.029 - 6.81, 0.029 + 6.81))
    np.testing.assert_allclose(tok.curvature_range, (0.000269 - 0.261, 0.000269 + 0.261))


@pytest.mark.parametrize(
    "make, culprit",
    [
        (lambda: TrajectoryTokenizer(1), "num_bins"),
        (lambda: TrajectoryTokenizer(8, accel_range=(1.0, -1.0)), "accel_range"),
        (lambda: TrajectoryTokenizer(8, curvature_range=(0.0, float("nan"))), "curvature_range"),
        (lambda: TrajectoryTokenizer(8).decode([1, 2, 3]), "tokens"),
        (lambda: TrajectoryTokenizer(8).decode([1, 8]), "tokens"),
        (lambda: TrajectoryTokenizer(8).decode([-1, 0]), "tokens"),
        (lambda: TrajectoryTokenizer(8).decode([0.5, 1.0]), "tokens"),
        (lambda: TrajectoryTokenizer(8).encode([[np.nan, 0.0]]), "controls"),
    ],
)
def test_tokenizer_rejects_bad_input(make, culprit):
    with pytest.raises(ValueError, match=culprit):
        make()
