"""Meta-action labels of many predicted trajectories at once: ``future_meta_actions`` restructured for a batch.

``rlpost.domain.meta_actions.future_meta_actions`` handles one trajectory per call; about half of its time is numpy
call overhead on 84-tick arrays. Here the per-tick part (increments, cumulative sums, indicators with hysteresis)
runs once over the whole ``(B, H + T)`` batch, and only the segment merging and the per-segment classification
run per sample, in plain Python on the few boundary values they read.

Equivalence: ``future_labels_batch`` returns exactly what ``future_meta_actions`` returns for every sample; the
merge rule and the classification rules below mirror ``detect_meta_actions``' (they use its constants and
hysteresis bands), and a differential unit test
(tests/unit/test_rewards_meta_batch.py) compares the two on thousands of smooth and noisy trajectories, so a change
of the reference that is not mirrored here fails the tests.
"""

from __future__ import annotations

import numpy as np

from rlpost.domain import meta_actions as M

_TWO_PI = 2 * np.pi


def _count_at_or_below(thresholds: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.searchsorted(thresholds, x, side="right")`` for a handful of ascending thresholds: how many are ≤ x.

    A comparison per threshold beats a binary search per element when there are only 2–4 thresholds.
    """
    count = (x >= thresholds[0]).astype(np.int64)
    for t in thresholds[1:]:
        count += x >= t
    return count


def _levels_batch(x: np.ndarray, bands) -> np.ndarray:
    """``meta_actions._hysteresis_levels`` for every row of ``x`` ``(B, n)`` at once: ``(B, n)`` int levels.

    The reference's recursion for in-band ticks, level_t = min(max(level_{t-1}, level_t), top_t), is a no-op on
    ticks outside every band (there level_t == top_t), so it can run on whole columns, left to right, visiting
    only the columns where some row is in a band.
    """
    cuts, lo, hi = bands
    level = _count_at_or_below(hi, x)
    top = _count_at_or_below(lo, x)
    ambiguous = level != top
    cols = np.nonzero(ambiguous.any(axis=0))[0].tolist()
    if not cols:
        return level
    level, top = level.T.copy(), top.T  # (n, B): contiguous columns for the sweep
    if cols[0] == 0:
        level[0] = np.where(ambiguous[:, 0], _count_at_or_below(cuts, x[:, 0]), level[0])
        cols = cols[1:]
    for t in cols:
        np.minimum(np.maximum(level[t - 1], level[t]), top[t], out=level[t])
    return level.T


def future_labels_batch(histories: np.ndarray, futures: np.ndarray, dt: float = M.DT):
    """(longitudinal labels, lateral labels) of ``history ⊕ future`` per sample, as ``future_meta_actions``.

    histories ``(B, H, 4)``, futures ``(B, T, 4)``: finite (x [m], y [m], yaw [rad], v [m/s]) states, ``dt`` [s]
    apart. Returns a list of B pairs of label tuples (time order, consecutive duplicates collapsed, segments that
    overlap the future part only).
    """
    x = np.concatenate([histories, futures], axis=1)
    b, n, h = x.shape[0], x.shape[1], histories.shape[1]
    if b == 0:
        return []
    v = x[..., 3]
    d = np.diff(x, axis=1)
    inc = np.empty((b, n - 1, 5))
    inc[..., 0] = np.hypot(d[..., 0], d[..., 1])
    inc[..., 1] = d[..., 2] - _TWO_PI * np.round(d[..., 2] / _TWO_PI)
    inc[..., 2] = d[..., 3]
    inc[..., 3] = v[:, 1:] + v[:, :-1]
    speed = np.abs(v)
    inc[..., 4] = speed[:, 1:] + speed[:, :-1]
    cum = np.zeros((b, n, 5))
    np.cumsum(inc, axis=1, out=cum[:, 1:])
    cum[..., 3:] *= 0.5 * dt
    tick = np.empty((b, n, 3))
    tick[:, 0], tick[:, -1] = inc[:, 0, :3], inc[:, -1, :3]
    tick[:, 1:-1] = 0.5 * (inc[:, :-1, :3] + inc[:, 1:, :3])
    ds, dyaw, dv = tick[..., 0], tick[..., 1], tick[..., 2]
    moving = ds > M.STOP_SPEED * dt
    turn = np.where(moving, dyaw / np.where(moving, ds, 1.0), 0.0)
    turn[v < 0] *= -1.0
    speed_level = _levels_batch(v, M._SPEED_BANDS)
    lon_key = speed_level * (len(M.ACCEL_CUTS) + 1) + _levels_batch(dv / dt, M._ACCEL_BANDS)
    lat_key = _levels_batch(turn, M._TURN_BANDS) + (len(M.TURN_RATE_CUTS) + 1) * (speed_level == 0)

    # Segment statistics are only ever read at segment boundaries, which lie at key flips, the first tick or the
    # last one: convert just those values to Python floats (the per-sample rules are scalar Python work).
    lon_flip, lat_flip = lon_key[:, 1:] != lon_key[:, :-1], lat_key[:, 1:] != lat_key[:, :-1]
    boundary = np.zeros((b, n), dtype=bool)
    boundary[:, 0] = boundary[:, -1] = True
    boundary[:, 1:] |= lon_flip | lat_flip
    rows, cols = np.nonzero(boundary)
    values = np.concatenate([v[rows, cols][:, None], cum[rows, cols]], axis=1)  # (K, 6): v, P, Y, _, VI, SI
    per_row = _split_rows(rows, cols, b)
    values_l = values.tolist()
    lon_cuts, lat_cuts = _split_rows(*np.nonzero(lon_flip), b), _split_rows(*np.nonzero(lat_flip), b)
    out = []
    offset = 0
    for i in range(b):
        ticks = per_row[i]
        at = dict(zip(ticks, values_l[offset: offset + len(ticks)]))
        offset += len(ticks)
        lon = _segments(lon_cuts[i], n, _classify_lon, M._MIN_TICKS_LON, at, dt)
        lat = _segments(lat_cuts[i], n, _classify_lat, M._MIN_TICKS_LAT, at, dt)
        out.append((_future(lon, h), _future(lat, h)))
    return out


def _split_rows(rows: np.ndarray, cols: np.ndarray, b: int) -> list[list[int]]:
    """Column indices of a row-major ``np.nonzero`` result, grouped by row: B Python lists."""
    cuts = np.searchsorted(rows, np.arange(1, b)).tolist()
    flat = cols.tolist()
    return [flat[lo:hi] for lo, hi in zip([0, *cuts], [*cuts, len(flat)])]


def _segments(flips: list[int], n: int, classify, min_ticks: dict[str, int], at: dict,
              dt: float) -> list[tuple[str, int, int]]:
    """``meta_actions._segments`` on precomputed cut positions (a flip at k cuts before tick k + 1).

    Same rule, same tie-breaks: the shortest segment under its minimum merges into the neighbour with the closest
    score (ties: the longer, then the earlier); then adjacent same-label segments are joined; repeat until stable.
    ``classify(at, start, end, last, dt)`` -> (label, score). Returns (label, start, end) triples.
    """
    last = n - 1
    starts = [0, *[k + 1 for k in flips]]
    ends = [*starts[1:], n]
    info = [classify(at, s, e, last, dt) for s, e in zip(starts, ends)]
    while len(starts) > 1:
        best = None  # (length, index) of the shortest segment under its minimum; ties: the earliest
        for i, (s, e, (lab, _)) in enumerate(zip(starts, ends, info)):
            if e - s < min_ticks[lab] and (best is None or e - s < best[0]):
                best = (e - s, i)
        if best is not None:
            i = best[1]
            score = info[i][1]
            if i == 0:
                j = 1
            elif i == len(starts) - 1:
                j = i - 1
            else:  # the closer score, then the longer neighbour, then the earlier one
                before = (abs(info[i - 1][1] - score), starts[i - 1] - ends[i - 1], i - 1)
                after = (abs(info[i + 1][1] - score), starts[i + 1] - ends[i + 1], i + 1)
                j = min(before, after)[2]
            left = min(i, j)
        else:
            left = next((i for i in range(len(starts) - 1) if info[i][0] == info[i + 1][0]), -1)
            if left < 0:
                break
        del starts[left + 1], ends[left], info[left + 1]
        info[left] = classify(at, starts[left], ends[left], last, dt)
    return [(lab, s, e) for (lab, _), s, e in zip(info, starts, ends)]


def _classify_lon(at: dict, s: int, e: int, last: int, dt: float) -> tuple[str, float]:
    """The longitudinal classifier of ``detect_meta_actions`` (docs/design.md §4): (label, mean accel).

    at: tick -> (v, path length, yaw, -, ∫v dt, ∫|v| dt) for every boundary tick; a segment's time span runs to
    the next segment's first tick (clipped to the last tick).
    """
    e = min(e, last)
    dur = (e - s) * dt
    vs, _, _, _, vis, sis = at[s]
    if dur <= 0.0:
        mean_v, mean_speed, dv = vs, abs(vs), 0.0
    else:
        ve, _, _, _, vie, sie = at[e]
        mean_v, mean_speed, dv = (vie - vis) / dur, (sie - sis) / dur, ve - vs
    a = dv / dur if dur > 0.0 else 0.0
    if mean_v <= M.REVERSE_SPEED:
        return "reverse", a
    if mean_speed <= M.STOP_SPEED:
        return "stop", a
    if a >= M.STRONG_ACCEL and dv >= M.MIN_SPEED_CHANGE:
        return "strong_accel", a
    if M.GENTLE_ACCEL <= a < M.STRONG_ACCEL and dv >= M.MIN_SPEED_CHANGE:
        return "gentle_accel", a
    if a <= -M.STRONG_ACCEL and dv <= -M.MIN_SPEED_CHANGE:
        return "strong_decel", a
    if -M.STRONG_ACCEL < a <= -M.GENTLE_ACCEL and dv <= -M.MIN_SPEED_CHANGE:
        return "gentle_decel", a
    return "maintain_speed", a


def _classify_lat(at: dict, s: int, e: int, last: int, dt: float) -> tuple[str, float]:
    """The lateral classifier of ``detect_meta_actions`` (docs/design.md §4): (label, turn rate). ``at`` as above."""
    e = min(e, last)
    dur = (e - s) * dt
    if dur <= 0.0:
        return "go_straight", 0.0
    _, ps, ys, _, vis, _ = at[s]
    _, pe, ye, _, vie, _ = at[e]
    dist = pe - ps
    if dist <= M.STOP_SPEED * dur:  # standing: turn rate undefined
        return "go_straight", 0.0
    dh = ye - ys
    r = dh / dist
    if (vie - vis) / dur <= M.REVERSE_SPEED:  # reversing: the steering direction is -Δh
        r, dh = -r, -dh
        if r >= M.STEER_TURN_RATE and dh >= M.STEER_HEADING_CHANGE:
            return "reverse_left", r
        if r <= -M.STEER_TURN_RATE and dh <= -M.STEER_HEADING_CHANGE:
            return "reverse_right", r
        return "go_straight", r
    if r <= -M.SHARP_TURN_RATE and dh <= -M.SHARP_HEADING_CHANGE:
        return "sharp_steer_right", r
    if r >= M.SHARP_TURN_RATE and dh >= M.SHARP_HEADING_CHANGE:
        return "sharp_steer_left", r
    if r <= -M.STEER_TURN_RATE and dh <= -M.STEER_HEADING_CHANGE:
        return "steer_right", r
    if r >= M.STEER_TURN_RATE and dh >= M.STEER_HEADING_CHANGE:
        return "steer_left", r
    return "go_straight", r


def _future(segments: list[tuple[str, int, int]], tick: int) -> tuple[str, ...]:
    """``MetaActions.labels_from``: labels of segments ending after ``tick``, consecutive duplicates collapsed."""
    labels: list[str] = []
    for label, _, end in segments:
        if end > tick and (not labels or labels[-1] != label):
            labels.append(label)
    return tuple(labels)
