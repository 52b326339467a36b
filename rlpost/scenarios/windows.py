"""Ego windows cut from a :class:`~rlpost.scenarios.sumo_sim.Recording`, and the quality filters.

A window is one passenger car (the ego) around a keyframe step t0: ``HIST`` = 20 states at t = −1.9 … 0 s
(t0 included) and ``FUT`` = 64 states at t = 0.1 … 6.4 s, all in the **ego frame at t0** (ego centre at the
origin, heading +x, left +y). Neighbours within ``NEIGHBOUR_RADIUS`` over the window, lanes near the ego, and the
next traffic light on the ego's route are extracted with it.

Keyframes: a regular grid (every ``stride`` seconds) plus **reactive** keyframes placed ``REACT_LEAD`` = 0.5 s
before each onset of braking or lateral motion in the ego's track (docs/design.md §3), so the behaviour change is not
yet visible at t0.

Filters (each counted): ``standstill`` (the ego never moves in the window: queues, gridlock), ``degenerate``
(position jumps, off-road at t0),
``turnaround`` (route through a dead-end turnaround), ``comfort`` (docs/design.md §2 comfort bounds broken by history ⊕
future after smoothing), ``collision`` (the expert future overlaps an agent box).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlpost.domain.metrics import collides, comfort_violations

HIST = 20  # history states, t = −1.9 … 0 s (t0 included)
FUT = 64  # future states, t = 0.1 … 6.4 s
SPAN = HIST + FUT
NEIGHBOUR_RADIUS = 50.0  # m: agents closer than this to the ego at some step of the window
MAX_AGENTS = 32
LANE_RADIUS = 40.0  # m: lanes with a point this close to the ego at t0
MAX_LANES = 48
TLS_LOOKAHEAD = 150.0  # m: the farthest traffic light reported
REACT_LEAD = 5  # steps (0.5 s) between a reactive keyframe and the behaviour change
FILTERS = ("standstill", "degenerate", "turnaround", "comfort", "collision")


def to_ego_frame(xy: np.ndarray, yaw: np.ndarray, origin: np.ndarray, heading: float):
    """World (x, y) ``(..., 2)`` and yaw ``(...)`` -> the frame at ``origin`` (2,) heading ``heading`` [rad]."""
    c, s = np.cos(heading), np.sin(heading)
    d = xy - origin
    local = np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)
    return local, np.angle(np.exp(1j * (yaw - heading)))


@dataclass
class Window:
    """One ego window before labelling: the scene arrays of the ``Scenario`` plus context for the labeller.

    history ``(20, 4)`` / future ``(64, 4)``: (x [m], y [m], yaw [rad], v [m/s]) ego frame. agent_states
    ``(N, 84, 4)``, agent_size ``(N, 2)`` (length, width) [m], agent_type, agent_ids, agent_valid ``(N, 84)``.
    lanes: (lane id, ``(P, 2)`` polyline [m]) near the ego. tl_*: next signal on the route at t0. ctx: what the
    labeller reads (lane sequence, lateral offsets, signal history, agent lane functions, ...).
    """

    net: str
    seed: int
    track: int
    step: int
    t0: float
    keyframe: str
    history: np.ndarray
    future: np.ndarray
    ego_length: float
    ego_width: float
    agent_states: np.ndarray
    agent_size: np.ndarray
    agent_type: list[str]
    agent_ids: list[str]
    agent_valid: np.ndarray
    lanes: list[tuple[str, np.ndarray]]
    ego_lane_id: str
    tl_state: str
    tl_distance: float
    ctx: dict = field(default_factory=dict)


class WindowCutter:
    """Cuts and filters ego windows from one recording; ``counts`` tallies what each filter removed."""

    def __init__(self, rec):
        self.rec = rec
        self.starts = np.array([t.start for t in rec.tracks])
        self.ends = np.array([t.end for t in rec.tracks])
        self.counts = {name: 0 for name in FILTERS}
        self.counts["candidates"] = 0
        pts, owner = [], []
        for code, lid in enumerate(rec.lane_ids):
            ln = rec.lanes[lid]
            if ln.function == "walkingarea" or not (ln.cars or ln.function == "crossing"):
                continue
            dense = _densify(ln.shape, 4.0)
            pts.append(dense)
            owner.append(np.full(len(dense), code))
        self._lane_pts = np.concatenate(pts) if pts else np.zeros((0, 2))
        self._lane_owner = np.concatenate(owner) if owner else np.zeros(0, dtype=int)
        self._tls_code = {}
        for (in_lane, via), val in rec.tls_links.items():
            self._tls_code[(in_lane, via)] = val

    # ---------------------------------------------------------------- candidates and cheap filters
    def candidates(self, stride: float = 1.0) -> list[tuple[int, int, str]]:
        """(track index, t0 step, keyframe kind) of ego windows that pass the cheap filters.

        stride: seconds between grid keyframes. Reactive keyframes are added for braking / lateral-motion onsets.
        """
        rec = self.rec
        out = []
        stride_steps = max(1, int(round(stride / rec.dt)))
        for ti, tr in enumerate(rec.tracks):
            from rlpost.scenarios.sumo_sim import EGO_CLASSES

            if tr.injected or tr.kind != "vehicle" or tr.vclass not in EGO_CLASSES or len(tr.v) < SPAN:
                continue
            lo, hi = HIST - 1, len(tr.v) - FUT  # track-local t0 range
            grid = set(range(lo + (ti % stride_steps), hi, stride_steps))
            reactive = {k - REACT_LEAD for k in _onsets(tr, rec.dt)} & set(range(lo, hi))
            for k in sorted(grid | reactive):
                out.append((ti, tr.start + k, "reactive" if k in reactive else "grid"))
        self.counts["candidates"] += len(out)
        return self._cheap_filters(out)

    def _cheap_filters(self, cands):
        if not cands:
            return cands
        rec = self.rec
        keep = []
        by_track: dict[int, list] = {}
        for c in cands:
            by_track.setdefault(c[0], []).append(c)
        for ti, group in by_track.items():
            tr = rec.tracks[ti]
            ks = np.array([s - tr.start for _, s, _ in group])
            idx = ks[:, None] + np.arange(-HIST + 1, FUT + 1)[None, :]  # (K, 84)
            xy, v = tr.xy[idx], tr.v[idx]
            step_len = np.linalg.norm(np.diff(xy, axis=1), axis=-1)
            jump = (step_len > np.maximum(v[:, 1:], v[:, :-1]) * rec.dt + 0.5).any(1)
            still = v.max(1) < 0.2
            offroad = tr.lane[ks] < 0
            states = np.concatenate([xy, tr.yaw[idx][..., None], v[..., None]], axis=-1)
            comfort = comfort_violations(states)["any"]
            turn = np.array([self._has_turnaround(tr, k) for k in ks])
            for j, c in enumerate(group):
                if still[j]:
                    self.counts["standstill"] += 1
                elif jump[j] or offroad[j]:
                    self.counts["degenerate"] += 1
                elif turn[j]:
                    self.counts["turnaround"] += 1
                elif comfort[j]:
                    self.counts["comfort"] += 1
                else:
                    keep.append(c)
        keep.sort(key=lambda c: (c[0], c[1]))
        return keep

    def _has_turnaround(self, tr, k: int) -> bool:
        for a, b in _pairs(_lane_runs(tr.lane[max(0, k - HIST + 1): k + FUT + 1])):
            if self._link(a, b)[1] == "t":
                return True
        return False

    def _link(self, a: int, b: int):
        """(has_priority, direction) of the connection from lane code ``a`` to ``b`` (via or target); else
        (None, "")."""
        la, lb = self.rec.lane_ids[a], self.rec.lane_ids[b]
        for to, via, prio, direction in self.rec.lanes[la].links:
            if via == lb or to == lb:
                return prio, direction
        return None, ""

    # ---------------------------------------------------------------- the full window
    def cut(self, ti: int, step: int, keyframe: str = "grid") -> Window | None:
        """Extract the window of track ``ti`` at absolute step ``step``; None (counted) if its future collides."""
        rec, tr = self.rec, self.rec.tracks[ti]
        k = step - tr.start
        sl = slice(k - HIST + 1, k + FUT + 1)
        origin, heading = tr.xy[k], float(tr.yaw[k])
        exy, eyaw = to_ego_frame(tr.xy[sl], tr.yaw[sl], origin, heading)
        ego = np.concatenate([exy, eyaw[:, None], tr.v[sl][:, None]], axis=1)
        lo, hi = step - HIST + 1, step + FUT + 1
        ids = np.flatnonzero((self.starts < hi) & (self.ends > lo))
        agents, dmin = [], []
        for j in ids:
            if j == ti:
                continue
            o = rec.tracks[j]
            a, b = max(lo, o.start), min(hi, o.end)
            local, oyaw = to_ego_frame(o.xy[a - o.start: b - o.start], o.yaw[a - o.start: b - o.start], origin, heading)
            d = np.linalg.norm(local - exy[a - lo: b - lo], axis=1).min()
            if d <= NEIGHBOUR_RADIUS:
                agents.append((j, a, b, local, oyaw))
                dmin.append(d)
        order = np.argsort(dmin, kind="stable")[:MAX_AGENTS]
        n = len(order)
        states = np.zeros((n, SPAN, 4))
        valid = np.zeros((n, SPAN), dtype=bool)
        size = np.zeros((n, 2))
        types, aids, lane_fn, lane_codes = [], [], [], np.full((n, SPAN), -1)
        for row, i in enumerate(order):
            j, a, b, local, oyaw = agents[i]
            o = rec.tracks[j]
            states[row, a - lo: b - lo, :2] = local
            states[row, a - lo: b - lo, 2] = oyaw
            states[row, a - lo: b - lo, 3] = o.v[a - o.start: b - o.start]
            valid[row, a - lo: b - lo] = True
            lane_codes[row, a - lo: b - lo] = o.lane[a - o.start: b - o.start]
            size[row] = (o.length, o.width)
            types.append(o.kind)
            aids.append(o.actor_id)
            lane_fn.append(o.injected)
        if n:
            boxes = np.concatenate([states[:, HIST:, :3], np.broadcast_to(size[:, None, :], (n, FUT, 2))], axis=-1)
            if collides(ego[HIST:], boxes, valid[:, HIST:], tr.length, tr.width):
                self.counts["collision"] += 1
                return None
        tl = self._next_tls(tr, k)
        win = Window(
            rec.net, rec.seed, ti, step, rec.t_begin + step * rec.dt, keyframe,
            ego[:HIST], ego[HIST:], tr.length, tr.width, states, size, types, aids, valid,
            self._lanes_near(origin, heading), rec.lane_ids[tr.lane[k]], tl["state"], tl["distance"],
        )
        win.ctx = {
            "lane_runs": _lane_runs(tr.lane[k:]),  # the ego's route from t0 on: (code, first local step) runs
            "lane_hist": tr.lane[k - HIST + 1: k + 1],
            "lane_fut": tr.lane[k + 1: k + FUT + 1],
            "lat": tr.lat[sl],
            "lane_pos": float(tr.lane_pos[k]),
            "agent_lanes": lane_codes,
            "agent_injected": lane_fn,
            "tl_history": tl["history"],
            "speed_limit": rec.lanes[rec.lane_ids[tr.lane[k]]].speed,
            "cutter": self,
        }
        return win

    def _lanes_near(self, origin, heading) -> list[tuple[str, np.ndarray]]:
        if not len(self._lane_pts):
            return []
        d = np.linalg.norm(self._lane_pts - origin, axis=1)
        near = d <= LANE_RADIUS
        codes, best = {}, {}
        for code, dist in zip(self._lane_owner[near], d[near]):
            if dist < best.get(code, np.inf):
                best[code] = dist
        codes = sorted(best, key=lambda c: (best[c], c))[:MAX_LANES]
        out = []
        for code in sorted(codes):
            lid = self.rec.lane_ids[code]
            local, _ = to_ego_frame(self.rec.lanes[lid].shape, np.zeros(len(self.rec.lanes[lid].shape)), origin,
                                    heading)
            out.append((lid, local))
        return out

    def _next_tls(self, tr, k: int) -> dict:
        """The next signal on the ego's route within ``TLS_LOOKAHEAD``: state at t0, distance, state history."""
        rec = self.rec
        none = {"state": "none", "distance": float("nan"), "history": ["none"] * HIST, "tls": None}
        runs = _lane_runs(tr.lane[k:])
        if not runs or runs[0][0] < 0:
            return none
        dist = rec.lanes[rec.lane_ids[runs[0][0]]].length - tr.lane_pos[k]
        for (a, _), (b, _) in zip(runs, runs[1:]):
            la, lb = rec.lane_ids[a], rec.lane_ids[b] if b >= 0 else ""
            hit = self._tls_code.get((la, lb))
            if hit is not None:
                tls, idx = hit
                states = rec.tls_states[tls]
                hist = [_tl_word(states[s][idx]) for s in range(tr.start + k - HIST + 1, tr.start + k + 1)]
                return {"state": hist[-1], "distance": float(max(dist, 0.0)), "history": hist, "tls": hit}
            if b < 0 or dist > TLS_LOOKAHEAD:
                break
            dist += rec.lanes[lb].length
        return none


def _tl_word(ch: str) -> str:
    """SUMO signal char -> "red" / "yellow" / "green" / "none" (off or blinking)."""
    if ch in "rsu":
        return "red"
    if ch in "yY":
        return "yellow"
    if ch in "Gg":
        return "green"
    return "none"


def _lane_runs(codes: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs of lane codes: [(code, index of its first element), ...]."""
    if len(codes) == 0:
        return []
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    firsts = np.concatenate([[0], change])
    return [(int(codes[i]), int(i)) for i in firsts]


def _pairs(runs):
    return [(a, b) for (a, _), (b, _) in zip(runs, runs[1:]) if a >= 0 and b >= 0]


def _densify(shape: np.ndarray, spacing: float) -> np.ndarray:
    """Points along a polyline ``(P, 2)`` no more than ``spacing`` metres apart (vertices included)."""
    out = [shape[:1]]
    for a, b in zip(shape[:-1], shape[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / spacing)))
        out.append(a + (b - a) * (np.arange(1, n + 1) / n)[:, None])
    return np.concatenate(out)


def _onsets(tr, dt: float) -> list[int]:
    """Track-local steps where braking or lateral motion begins (the reactive behaviour changes)."""
    accel = np.gradient(tr.v, dt)
    braking = accel < -0.8
    lat_rate = np.abs(np.gradient(tr.lat, dt))
    lat_rate[np.abs(np.diff(tr.lane, prepend=tr.lane[0])) > 0] = 0.0  # lane switches re-reference lat
    sideways = lat_rate > 0.25
    out = []
    for flag in (braking, sideways):
        rises = np.flatnonzero(flag[1:] & ~flag[:-1]) + 1
        for r in rises:
            if not flag[max(0, r - 10): r].any():  # calm for 1 s before: a new behaviour, not a wobble
                out.append(int(r))
    return out
