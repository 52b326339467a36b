"""Meta-actions from a trajectory: the rule-based detector of docs/design.md §4.

A trajectory of ego states at 10 Hz is cut into segments per axis (longitudinal, lateral) wherever a thresholded
per-tick indicator flips, each segment is classified first-match against the docs/design.md §4 rules, and segments
shorter than their minimum length are merged into a neighbour and re-classified. The consistency reward
(docs/design.md §5.2) compares the resulting labels with the decision parsed from the chain-of-causation text.

Units: metres, seconds, radians; speed m/s, acceleration m/s², turn rate rad/m. Left (counter-clockwise) is positive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlpost.common.checks import as_float_array, check_positive

DT = 0.1  # s, 10 Hz (docs/design.md §2, §4)

LONGITUDINAL_LABELS = (
    "reverse", "stop", "strong_accel", "gentle_accel", "strong_decel", "gentle_decel", "maintain_speed",
)
LATERAL_LABELS = (
    "reverse_right", "reverse_left", "sharp_steer_right", "sharp_steer_left", "steer_right", "steer_left",
    "go_straight",
)
AXES = ("longitudinal", "lateral")

# --- docs/design.md §4 longitudinal classification (segment mean accel a = Δv / duration) ---
REVERSE_SPEED = -0.12  # m/s: mean speed along heading at or below this -> reverse
STOP_SPEED = 0.12  # m/s: mean speed at or below this -> stop
STRONG_ACCEL = 1.4  # m/s²: |a| at or above this -> strong accel / decel
GENTLE_ACCEL = 0.15  # m/s²: |a| at or above this (and below STRONG_ACCEL) -> gentle accel / decel
MIN_SPEED_CHANGE = 0.8  # m/s: |Δv| an accel / decel segment must reach
# --- docs/design.md §4 longitudinal cut indicators ---
SPEED_CUTS = (-0.3, 0.3)  # m/s: reversing | standing | moving
ACCEL_CUTS = (-1.25, -0.1, 0.1, 1.25)  # m/s²: strong decel | decel | steady | accel | strong accel
HYSTERESIS = 0.15  # band half-width as a fraction of |threshold| ("15 % hysteresis")
MIN_TICKS_LONGITUDINAL = 8
MIN_TICKS_MAINTAIN = 12
# --- docs/design.md §4 lateral classification (turn rate r = Δheading / distance; total heading change Δh) ---
SHARP_TURN_RATE = 0.05  # rad/m
SHARP_HEADING_CHANGE = 0.2  # rad
STEER_TURN_RATE = 0.0015  # rad/m
STEER_HEADING_CHANGE = 0.015  # rad
MIN_TICKS_LATERAL = 10
# Lateral cut indicator (ours: docs/design.md §4 names none). The per-tick turn rate dθ/ds is cut at the classification
# rates themselves, ±STEER_TURN_RATE and ±SHARP_TURN_RATE, with the same 15 % hysteresis as the longitudinal
# indicators: a segment boundary then falls where the steering regime (straight / steer / sharp, left / right)
# changes, which is what the classifier distinguishes; heading change is a segment total, not a per-tick signal.
# Starting or ending a reverse (SPEED_CUTS) also cuts, because reverse labels are a separate class.
TURN_RATE_CUTS = (-SHARP_TURN_RATE, -STEER_TURN_RATE, STEER_TURN_RATE, SHARP_TURN_RATE)

_MIN_TICKS_LON = {label: MIN_TICKS_LONGITUDINAL for label in LONGITUDINAL_LABELS} | {
    "maintain_speed": MIN_TICKS_MAINTAIN
}
_MIN_TICKS_LAT = {label: MIN_TICKS_LATERAL for label in LATERAL_LABELS}


@dataclass(frozen=True)
class Segment:
    """One labelled stretch of a trajectory: ticks ``[start, end)`` of the states array (10 Hz ticks).

    Its statistics span the time from tick ``start`` to tick ``end`` (the next segment's first tick; the last tick
    for the final segment), so the segments of an axis tile the whole trajectory with no gap in time.
    """

    label: str
    start: int
    end: int


@dataclass(frozen=True)
class MetaActions:
    """Meta-action segments of one trajectory, per axis, in time order; each axis tiles ``[0, T)`` exactly."""

    longitudinal: tuple[Segment, ...]
    lateral: tuple[Segment, ...]

    def labels_from(self, axis: str, tick: int) -> tuple[str, ...]:
        """Labels (time order, consecutive duplicates collapsed) of the ``axis`` segments ending after ``tick``.

        axis: ``'longitudinal'`` or ``'lateral'``; tick: index into the states array (segments with ``end > tick``).
        """
        if axis not in AXES:
            raise ValueError(f"axis: expected one of {AXES}, got {axis!r}")
        labels: list[str] = []
        for seg in getattr(self, axis):
            if seg.end > tick and (not labels or labels[-1] != seg.label):
                labels.append(seg.label)
        return tuple(labels)


def _bands(cuts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ascending thresholds and their hysteresis band lows / highs (± HYSTERESIS·|threshold|)."""
    cuts = np.asarray(cuts, dtype=np.float64)
    half = HYSTERESIS * np.abs(cuts)
    return cuts, cuts - half, cuts + half


_SPEED_BANDS = _bands(SPEED_CUTS)
_ACCEL_BANDS = _bands(ACCEL_CUTS)
_TURN_BANDS = _bands(TURN_RATE_CUTS)


def _hysteresis_levels(x: np.ndarray, bands) -> np.ndarray:
    """Quantise ``x`` (T,) into levels 0..n at n ascending thresholds with hysteresis; returns (T,) ints.

    Level k + 1 is entered from below only at x >= high_k and left downwards only at x < low_k, starting from the
    plain level of x[0]: level_t = clip(level_{t-1}, #(highs <= x_t), #(lows <= x_t)). Outside every band the two
    bounds agree, so only the (usually few) in-band ticks need the sequential recursion.
    """
    cuts, lo, hi = bands
    level = np.searchsorted(hi, x, side="right")
    top = np.searchsorted(lo, x, side="right")
    ambiguous = (level != top).nonzero()[0].tolist()
    if not ambiguous:
        return level
    out, tops = level.tolist(), top.tolist()
    for t in ambiguous:
        if t == 0:
            out[0] = int(np.searchsorted(cuts, x[0], side="right"))
        else:
            out[t] = min(max(out[t - 1], out[t]), tops[t])
    return np.array(out)


def _segments(key: np.ndarray, classify, min_ticks: dict[str, int]) -> tuple[Segment, ...]:
    """Cut where ``key`` changes, classify, then merge short and same-label neighbours until stable.

    Merge rule (ours): the shortest segment under its minimum length goes into the neighbour whose similarity score
    (mean accel for longitudinal, steering turn rate for lateral) is closest to its own, i.e. the regime it is most
    likely a transient of; ties go to the longer neighbour, then the earlier one. The union is re-classified, since
    its label can differ from both parts. Adjacent segments that end up with the same label are then joined (and
    re-classified) too, so an indicator flip that changes no label leaves no boundary behind.
    """
    flips = (key[1:] != key[:-1]).nonzero()[0] + 1
    bounds = [0, *flips.tolist(), key.size]
    starts, ends = bounds[:-1], bounds[1:]
    info = [classify(s, e) for s, e in zip(starts, ends)]  # (label, score)
    while len(starts) > 1:
        short = [(e - s, i) for i, (s, e, (lab, _)) in enumerate(zip(starts, ends, info)) if e - s < min_ticks[lab]]
        if short:
            i = min(short)[1]
            score = info[i][1]
            cand = [j for j in (i - 1, i + 1) if 0 <= j < len(starts)]
            j = min(cand, key=lambda j: (abs(info[j][1] - score), starts[j] - ends[j], j))
            left = min(i, j)
        else:
            left = next((i for i in range(len(starts) - 1) if info[i][0] == info[i + 1][0]), -1)
            if left < 0:
                break
        del starts[left + 1], ends[left], info[left + 1]
        info[left] = classify(starts[left], ends[left])
    return tuple(Segment(lab, s, e) for (lab, _), s, e in zip(info, starts, ends))


def detect_meta_actions(states, dt: float = DT) -> MetaActions:
    """Rule-based meta-actions (docs/design.md §4) of one trajectory.

    states: ``(T, 4)`` = (x [m], y [m], yaw [rad], v [m/s]) at ticks spaced ``dt`` [s] (10 Hz), T >= 2, any fixed
    frame; yaw may be wrapped (it is unwrapped here); v is the signed speed along the heading (negative when
    reversing), as the docs/design.md §2 unicycle model produces. For a predicted trajectory prepend the history so that
    speed and accel are defined at t0 (see ``future_meta_actions``).
    Returns the longitudinal (labels in ``LONGITUDINAL_LABELS``) and lateral (``LATERAL_LABELS``) segments, each
    tiling ``[0, T)``. No segment is shorter than its minimum (8 ticks, 12 for maintain_speed; 10 lateral) unless it
    is the only one.

    Per-tick indicators: speed v, accel dv/dt (central finite differences), turn rate dθ/ds (path length s from
    the positions, sign flipped when reversing so it is the steering curvature; 0 where the ego is standing).
    """
    x = as_float_array("states", states, last_dims=(-1, 4))
    if x.ndim != 2:
        raise ValueError(f"states: expected shape (T, 4), got {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"states: need at least 2 states to difference, got shape {x.shape}")
    dt = check_positive("dt", dt)

    # Per-step increments: path length [m], yaw (unwrapped: true steps are far below π at 10 Hz), v, and the
    # trapezoid sums of v and |v|, so that one cumsum gives every segment statistic by a difference.
    n = x.shape[0]
    v = x[:, 3]
    speed = np.abs(v)
    d = np.diff(x, axis=0)
    inc = np.empty((n - 1, 5))
    inc[:, 0] = np.hypot(d[:, 0], d[:, 1])
    inc[:, 1] = d[:, 2] - (2 * np.pi) * np.round(d[:, 2] / (2 * np.pi))
    inc[:, 2] = d[:, 3]
    inc[:, 3] = v[1:] + v[:-1]
    inc[:, 4] = speed[1:] + speed[:-1]
    cum = np.zeros((n, 5))
    np.cumsum(inc, axis=0, out=cum[1:])
    cum[:, 3:] *= 0.5 * dt  # ∫v dt, ∫|v| dt
    # Per-tick changes: central differences inside, one-sided at the ends (as np.gradient).
    tick = np.empty((n, 3))
    tick[0], tick[-1] = inc[0, :3], inc[-1, :3]
    tick[1:-1] = 0.5 * (inc[:-1, :3] + inc[1:, :3])
    ds, dyaw, dv = tick.T
    # Below stop speed dθ/ds is noise over a vanishing denominator: call it straight.
    moving = ds > STOP_SPEED * dt
    turn = np.where(moving, dyaw / np.where(moving, ds, 1.0), 0.0)
    turn[v < 0] *= -1.0
    speed_level = _hysteresis_levels(v, _SPEED_BANDS)
    lon_key = speed_level * (len(ACCEL_CUTS) + 1) + _hysteresis_levels(dv / dt, _ACCEL_BANDS)
    lat_key = _hysteresis_levels(turn, _TURN_BANDS) + (len(TURN_RATE_CUTS) + 1) * (speed_level == 0)

    # Python floats: the per-segment rules below are scalar work where numpy indexing costs more than it saves.
    last = n - 1
    V = v.tolist()
    P, Y, _, VI, SI = cum.T.tolist()

    def kinematics(s: int, e: int):
        e = min(e, last)  # a segment's time span runs to the next segment's first tick
        dur = (e - s) * dt
        if dur <= 0.0:
            return dur, V[s], abs(V[s]), 0.0, 0.0, 0.0
        return dur, (VI[e] - VI[s]) / dur, (SI[e] - SI[s]) / dur, V[e] - V[s], Y[e] - Y[s], P[e] - P[s]

    def classify_lon(s: int, e: int):
        dur, mean_v, mean_speed, dv, _, _ = kinematics(s, e)
        a = dv / dur if dur > 0.0 else 0.0
        if mean_v <= REVERSE_SPEED:
            label = "reverse"
        elif mean_speed <= STOP_SPEED:
            label = "stop"
        elif a >= STRONG_ACCEL and dv >= MIN_SPEED_CHANGE:
            label = "strong_accel"
        elif GENTLE_ACCEL <= a < STRONG_ACCEL and dv >= MIN_SPEED_CHANGE:
            label = "gentle_accel"
        elif a <= -STRONG_ACCEL and dv <= -MIN_SPEED_CHANGE:
            label = "strong_decel"
        elif -STRONG_ACCEL < a <= -GENTLE_ACCEL and dv <= -MIN_SPEED_CHANGE:
            label = "gentle_decel"
        else:
            label = "maintain_speed"
        return label, a

    def classify_lat(s: int, e: int):
        dur, mean_v, _, _, dh, dist = kinematics(s, e)
        if dur <= 0.0 or dist <= STOP_SPEED * dur:  # standing: turn rate undefined
            return "go_straight", 0.0
        r = dh / dist
        if mean_v <= REVERSE_SPEED:
            # Reversing with the wheel turned left (κ > 0) moves the car back and to the left while its yaw
            # decreases, so the steering direction is -Δh. A straight reverse is go_straight (ours: docs/design.md §4
            # gives the reverse classes no thresholds; we reuse the steer ones).
            r, dh = -r, -dh
            if r >= STEER_TURN_RATE and dh >= STEER_HEADING_CHANGE:
                return "reverse_left", r
            if r <= -STEER_TURN_RATE and dh <= -STEER_HEADING_CHANGE:
                return "reverse_right", r
            return "go_straight", r
        if r <= -SHARP_TURN_RATE and dh <= -SHARP_HEADING_CHANGE:
            return "sharp_steer_right", r
        if r >= SHARP_TURN_RATE and dh >= SHARP_HEADING_CHANGE:
            return "sharp_steer_left", r
        if r <= -STEER_TURN_RATE and dh <= -STEER_HEADING_CHANGE:
            return "steer_right", r
        if r >= STEER_TURN_RATE and dh >= STEER_HEADING_CHANGE:
            return "steer_left", r
        return "go_straight", r

    return MetaActions(
        longitudinal=_segments(lon_key, classify_lon, _MIN_TICKS_LON),
        lateral=_segments(lat_key, classify_lat, _MIN_TICKS_LAT),
    )


def future_meta_actions(history, future, dt: float = DT) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Meta-action labels of a predicted future, with the history prepended (docs/design.md §4, ours).

    history: ``(H, 4)`` states up to and including t0; future: ``(T, 4)`` states at steps 1..T; both
    (x [m], y [m], yaw [rad], v [m/s]) in the same frame, ``dt`` [s] apart.
    Returns ``(longitudinal_labels, lateral_labels)``: the labels, in time order, of the segments of
    ``detect_meta_actions(history ⊕ future)`` that overlap the future part (``labels_from(axis, H)``).
    """
    hist = as_float_array("history", history, last_dims=(-1, 4))
    fut = as_float_array("future", future, last_dims=(-1, 4))
    if hist.ndim != 2:
        raise ValueError(f"history: expected shape (H, 4), got {hist.shape}")
    if fut.ndim != 2:
        raise ValueError(f"future: expected shape (T, 4), got {fut.shape}")
    meta = detect_meta_actions(np.concatenate((hist, fut)), dt)
    h = hist.shape[0]
    return meta.labels_from("longitudinal", h), meta.labels_from("lateral", h)
