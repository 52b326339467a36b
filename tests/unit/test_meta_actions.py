"""The docs/design.md §4 meta-action detector on trajectories built from controls with the docs/design.md §2 unicycle
model."""

from __future__ import annotations

import numpy as np
import pytest

from rlpost.domain.meta_actions import (
    ACCEL_CUTS,
    HYSTERESIS,
    LATERAL_LABELS,
    LONGITUDINAL_LABELS,
    MIN_TICKS_LATERAL,
    MIN_TICKS_LONGITUDINAL,
    MIN_TICKS_MAINTAIN,
    SPEED_CUTS,
    STEER_TURN_RATE,
    TURN_RATE_CUTS,
    MetaActions,
    Segment,
    _bands,
    _hysteresis_levels,
    detect_meta_actions,
    future_meta_actions,
)
from rlpost.domain.trajectory import unicycle_rollout

H = 20  # history states prepended to every 64-step future


def rollout(v0: float, *phases: tuple[float, float, int], history=((0.0, 0.0, H),)) -> np.ndarray:
    """States (H + Σ steps, 4) from piecewise-constant (accel, curvature, steps) phases, history first."""
    controls = np.concatenate([np.tile([a, k], (n, 1)) for a, k, n in (*history, *phases)])
    return unicycle_rollout(controls, v0)


def labels(segments) -> tuple[str, ...]:
    return tuple(s.label for s in segments)


STRAIGHT = ("go_straight",)
SCENARIOS = [
    # id, v0, future phases, full longitudinal, full lateral, future longitudinal, future lateral
    ("cruise", 10.0, [(0, 0, 64)], ("maintain_speed",), STRAIGHT, ("maintain_speed",), STRAIGHT),
    ("hard_brake_to_stop", 10.0, [(-4, 0, 25), (0, 0, 39)],
     ("maintain_speed", "strong_decel", "stop"), STRAIGHT, ("strong_decel", "stop"), STRAIGHT),
    ("gentle_accel_from_stop", 0.0, [(0.8, 0, 64)], ("stop", "gentle_accel"), STRAIGHT, ("gentle_accel",), STRAIGHT),
    ("strong_accel", 5.0, [(2, 0, 30), (0, 0, 34)],
     ("maintain_speed", "strong_accel", "maintain_speed"), STRAIGHT, ("strong_accel", "maintain_speed"), STRAIGHT),
    ("gentle_decel", 10.0, [(-0.5, 0, 64)], ("maintain_speed", "gentle_decel"), STRAIGHT, ("gentle_decel",), STRAIGHT),
    ("left_turn_arc", 5.0, [(0, 0.1, 30), (0, 0, 34)], ("maintain_speed",),
     ("go_straight", "sharp_steer_left", "go_straight"), ("maintain_speed",), ("sharp_steer_left", "go_straight")),
    ("right_turn_arc", 5.0, [(0, -0.1, 30), (0, 0, 34)], ("maintain_speed",),
     ("go_straight", "sharp_steer_right", "go_straight"), ("maintain_speed",), ("sharp_steer_right", "go_straight")),
    ("gentle_curve_left", 10.0, [(0, 0.01, 64)], ("maintain_speed",), ("go_straight", "steer_left"),
     ("maintain_speed",), ("steer_left",)),
    ("gentle_curve_right", 10.0, [(0, -0.01, 64)], ("maintain_speed",), ("go_straight", "steer_right"),
     ("maintain_speed",), ("steer_right",)),
    # ~3.6 m lateral shift over 4 s at 15 m/s: a lane change, steering but never sharply.
    ("lane_change_s_curve", 15.0, [(0, 0.004, 20), (0, -0.004, 20), (0, 0, 24)], ("maintain_speed",),
     ("go_straight", "steer_left", "steer_right", "go_straight"), ("maintain_speed",),
     ("steer_left", "steer_right", "go_straight")),
    ("reverse_straight", -2.0, [(0, 0, 64)], ("reverse",), STRAIGHT, ("reverse",), STRAIGHT),
    # Wheel turned left while reversing: the car backs towards its left and its yaw decreases.
    ("reverse_left", -2.0, [(0, 0.05, 64)], ("reverse",), ("go_straight", "reverse_left"),
     ("reverse",), ("reverse_left",)),
    ("reverse_right", -2.0, [(0, -0.05, 64)], ("reverse",), ("go_straight", "reverse_right"),
     ("reverse",), ("reverse_right",)),
    ("standing", 0.0, [(0, 0, 64)], ("stop",), STRAIGHT, ("stop",), STRAIGHT),
]


@pytest.mark.parametrize(
    "v0, phases, lon, lat, future_lon, future_lat", [pytest.param(*s[1:], id=s[0]) for s in SCENARIOS]
)
def test_scenarios(v0, phases, lon, lat, future_lon, future_lat):
    states = rollout(v0, *phases)
    meta = detect_meta_actions(states)
    assert labels(meta.longitudinal) == lon
    assert labels(meta.lateral) == lat
    assert future_meta_actions(states[:H], states[H:]) == (future_lon, future_lat)


def test_wrapped_yaw_and_frame_do_not_matter():
    states = rollout(5.0, (0, 0.15, 64))  # > 2π of heading change: the yaw column wraps once wrapped
    expected = detect_meta_actions(states)
    assert labels(expected.lateral) == ("go_straight", "sharp_steer_left")
    wrapped = states.copy()
    wrapped[:, 2] = np.angle(np.exp(1j * states[:, 2]))
    assert detect_meta_actions(wrapped) == expected
    # A rigid motion of the whole trajectory (new frame) changes nothing either.
    c, s = np.cos(2.0), np.sin(2.0)
    moved = wrapped.copy()
    moved[:, :2] = wrapped[:, :2] @ np.array([[c, s], [-s, c]]) + [30.0, -7.0]
    moved[:, 2] += 2.0
    assert detect_meta_actions(moved) == expected


def _sine_controls(mean_accel_amp: float, curvature, steps: int = 84, period_s: float = 4.0) -> np.ndarray:
    t = np.arange(steps) * 0.1
    accel = mean_accel_amp * np.cos(2 * np.pi * t / period_s)
    return np.stack([accel, np.broadcast_to(curvature, t.shape)], axis=-1)


@pytest.mark.parametrize("axis", ["longitudinal", "lateral"])
def test_hysteresis_suppresses_flicker_around_a_threshold(axis):
    # A slow oscillation that crosses the cut threshold every 2 s (20 ticks, longer than any minimum segment, so
    # merging alone would not hide the flicker) but stays inside the hysteresis band. Laterally the flicker pieces
    # would classify differently (steer_left / go_straight), so this fails without hysteresis; longitudinally they
    # would all be maintain_speed and coalesce anyway, so the mechanism itself is pinned by the next test.
    omega = 2 * np.pi / 4.0
    t = np.arange(84) * 0.1
    if axis == "longitudinal":
        threshold, amp = SPEED_CUTS[1], 0.03  # speed 0.3 ± 0.03 m/s; accel amplitude 0.047 < 0.085 m/s²
        states = unicycle_rollout(_sine_controls(amp * omega, 0.0), threshold)
        signal = states[:, 3]
    else:
        threshold, amp = STEER_TURN_RATE, 0.0002  # turn rate 0.0015 ± 0.0002 rad/m at 10 m/s
        states = unicycle_rollout(_sine_controls(0.0, threshold + amp * np.sin(omega * t)), 10.0)
        signal = threshold + amp * np.sin(omega * t)
    assert amp < HYSTERESIS * threshold
    assert np.count_nonzero(np.diff(signal > threshold)) >= 3  # it really crosses the threshold repeatedly
    assert len(getattr(detect_meta_actions(states), axis)) == 1


def _sequential_levels(x, cuts):
    """Reference: the textbook sequential multi-threshold hysteresis."""
    cuts = np.asarray(cuts)
    lo, hi = cuts - HYSTERESIS * np.abs(cuts), cuts + HYSTERESIS * np.abs(cuts)
    level = int(np.searchsorted(cuts, x[0], side="right"))
    out = []
    for value in x:
        while level < len(cuts) and value >= hi[level]:
            level += 1
        while level > 0 and value < lo[level - 1]:
            level -= 1
        out.append(level)
    return np.array(out)


@pytest.mark.parametrize("cuts", [SPEED_CUTS, ACCEL_CUTS, TURN_RATE_CUTS], ids=["speed", "accel", "turn"])
@pytest.mark.parametrize("seed", range(5))
def test_vectorised_hysteresis_matches_sequential_rule(cuts, seed):
    rng = np.random.default_rng(seed)
    # Values drawn near the thresholds so that bands are entered, left and jumped across.
    x = rng.choice(np.asarray(cuts), 300) * (1 + rng.uniform(-0.3, 0.3, 300))
    np.testing.assert_array_equal(_hysteresis_levels(x, _bands(cuts)), _sequential_levels(x, cuts))


def _random_states(seed: int, steps: int = 84) -> np.ndarray:
    rng = np.random.default_rng(seed)
    accel = np.cumsum(rng.normal(0, 0.4, steps)) * rng.uniform(0.1, 1.0)
    curvature = np.cumsum(rng.normal(0, 0.01, steps)) * rng.uniform(0.05, 1.0)
    return unicycle_rollout(np.stack([accel, curvature], -1), rng.choice([-2.0, 0.0, 3.0, 12.0]))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("steps", [84, 9, 2])
def test_segments_tile_and_respect_minimum_lengths(seed, steps):
    meta = detect_meta_actions(_random_states(seed, steps))
    for segments, valid, minimum in (
        (meta.longitudinal, LONGITUDINAL_LABELS,
         lambda lab: MIN_TICKS_MAINTAIN if lab == "maintain_speed" else MIN_TICKS_LONGITUDINAL),
        (meta.lateral, LATERAL_LABELS, lambda lab: MIN_TICKS_LATERAL),
    ):
        assert segments[0].start == 0 and segments[-1].end == steps
        assert all(a.end == b.start for a, b in zip(segments, segments[1:]))  # no gaps, no overlaps
        assert all(a.label != b.label for a, b in zip(segments, segments[1:]))
        assert all(s.label in valid for s in segments)
        if len(segments) > 1:
            assert all(s.end - s.start >= minimum(s.label) for s in segments)


def test_future_reports_only_segments_overlapping_the_future():
    # Braking to a standstill inside the history, then standing: the past strong_decel is not the future's.
    states = rollout(8.0, (0, 0, 64), history=((-4.0, 0.0, H),))
    assert labels(detect_meta_actions(states).longitudinal) == ("strong_decel", "stop")
    assert future_meta_actions(states[:H], states[H:])[0] == ("stop",)
    for seed in range(4):
        states = _random_states(seed)
        meta = detect_meta_actions(states)
        assert future_meta_actions(states[:H], states[H:]) == (
            meta.labels_from("longitudinal", H), meta.labels_from("lateral", H))


def test_labels_from_uses_segment_ends_and_collapses_repeats():
    meta = MetaActions(
        longitudinal=(Segment("maintain_speed", 0, 20), Segment("stop", 20, 30), Segment("stop", 30, 40)),
        lateral=(Segment("go_straight", 0, 21), Segment("steer_left", 21, 40)),
    )
    assert meta.labels_from("longitudinal", 19) == ("maintain_speed", "stop")
    assert meta.labels_from("longitudinal", 20) == ("stop",)
    assert meta.labels_from("lateral", 20) == ("go_straight", "steer_left")
    assert meta.labels_from("lateral", 40) == ()
    with pytest.raises(ValueError, match="axis"):
        meta.labels_from("vertical", 0)


GOOD = rollout(5.0, (0, 0, 10))
NAN = GOOD.copy()
NAN[3, 1] = np.nan


@pytest.mark.parametrize(
    "states, dt, culprit",
    [
        pytest.param(GOOD[:, :3], 0.1, "states", id="three-columns"),
        pytest.param(GOOD[:, 0], 0.1, "states", id="1d"),
        pytest.param(GOOD[None], 0.1, "states", id="batched"),
        pytest.param(GOOD[:1], 0.1, "states", id="one-state"),
        pytest.param(NAN, 0.1, "states", id="nan"),
        pytest.param("fast", 0.1, "states", id="not-numeric"),
        pytest.param(GOOD, 0.0, "dt", id="dt-zero"),
        pytest.param(GOOD, -0.1, "dt", id="dt-negative"),
        pytest.param(GOOD, float("nan"), "dt", id="dt-nan"),
    ],
)
def test_detect_rejects_bad_input(states, dt, culprit):
    with pytest.raises(ValueError, match=culprit):
        detect_meta_actions(states, dt)


@pytest.mark.parametrize(
    "history, future, culprit",
    [
        (GOOD[:5, :3], GOOD[5:], "history"),
        (GOOD[:5], GOOD[5:, 0], "future"),
        (GOOD[:5], NAN, "future"),
        (NAN, GOOD, "history"),
        (GOOD[:5], GOOD[5:][None], "future"),
    ],
)
def test_future_rejects_bad_input(history, future, culprit):
    with pytest.raises(ValueError, match=culprit):
        future_meta_actions(history, future)
