"""Chain-of-Causation auto-labels for an ego window (docs/design.md §3, §4).

- **Decision per axis at t0** from what the expert does next: the meta-actions of its future (docs/design.md §4, history
  prepended) plus the route's lane sequence (lane changes, merges, turns through junction links) and the scene
  (signal, lead vehicle, pedestrians, parked cars). Rules are tried "interesting first", as the simplified
  auto-labeller does: stop for a signal, yield, passing / gap search before lead following, speed adaptation and
  set-speed tracking; turn, merge, lane change, nudge before lane keeping.
- **Causal factors from the history only**: each is computed from the 20 observed states, carries the time it
  became observable (``observed_at`` ∈ [−1.9, 0] s: the start of the last run of history steps where its condition
  holds; static map facts are visible from −1.9 s), and only factors relevant to the decision are kept, ranked,
  at most ``MAX_FACTORS``.
- **Trace** via :func:`rlpost.domain.coc.compose_trace` with several wordings per factor (and the composer's own
  templates and synonyms per decision), seeded per scenario.

Each factor also carries a machine key (``FACTOR_KEYS``) that the validator uses to re-check its evidence.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from rlpost.domain.coc import CausalFactor, Decision, compose_trace
from rlpost.domain.meta_actions import future_meta_actions
from rlpost.scenarios.windows import HIST

MAX_FACTORS = 3
H_TIMES = (np.arange(HIST) - (HIST - 1)) * 0.1  # s, history step times: −1.9 … 0
LANE_HALF = 1.6  # m: half a typical lane width, for ego-frame corridor tests

# key -> (category, wordings); "{side}" is filled with left/right.
FACTOR_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    "lead_braking": ("critical_object", (
        "the lead vehicle is braking", "the car ahead started braking", "brake lights came on at the car in front")),
    "lead_stopped": ("critical_object", (
        "the vehicle ahead is standing still", "the car in front is not moving", "a queue of cars ahead is at rest")),
    "lead_slower": ("critical_object", (
        "a slower vehicle is ahead in the lane", "the lead vehicle is moving slowly", "the car in front is slower")),
    "lead_close": ("critical_object", (
        "the lead vehicle is close ahead", "a car is a short distance ahead", "the vehicle in front is near")),
    "lead_away": ("critical_object", (
        "the lead vehicle is pulling away", "the gap to the car ahead is growing")),
    "cut_in": ("critical_object", (
        "a car is cutting in from the {side}", "a vehicle from the {side} is squeezing in ahead",
        "a car on the {side} is moving in just ahead")),
    "parked_in_lane": ("critical_object", (
        "a parked car blocks part of the lane", "a parked vehicle sticks out into the lane ahead",
        "a car is parked partly in the lane ahead")),
    "pedestrian_crossing": ("critical_object", (
        "a pedestrian entered the crosswalk ahead", "a pedestrian is on the crosswalk ahead",
        "pedestrians are walking across the crosswalk")),
    "cyclist_crossing": ("critical_object", (
        "a cyclist is riding across ahead", "a bicycle is crossing in front")),
    "light_red": ("traffic_light", (
        "the traffic light ahead turned red", "the signal ahead just turned red", "the light ahead changed to red")),
    "light_is_red": ("traffic_light", ("the light ahead is red", "a red light is showing ahead")),
    "light_yellow": ("traffic_light", (
        "the traffic light ahead turned yellow", "the signal ahead just turned amber")),
    "light_green": ("traffic_light", (
        "the traffic light turned green", "the signal ahead changed to green", "a green light is showing ahead")),
    "no_priority": ("yield_stop_control", (
        "the ego does not have the right of way at the junction", "cross traffic has the right of way here")),
    "adjacent_free": ("lane", ("the {side} lane is clear", "the {side} lane is free", "the {side} lane is open")),
    "lane_ends": ("lane", ("the current lane ends ahead", "the lane ends soon", "the acceleration lane ends ahead")),
    "lane_clear": ("lane", ("the current lane is clear", "the ego lane is free ahead")),
    "route_turn": ("routing_intent", (
        "the route goes {side} at the junction ahead", "navigation points {side} at the next junction",
        "the destination lies to the {side} at this junction")),
    "route_lane": ("routing_intent", (
        "the route continues from the {side} side", "navigation asks for the {side} side")),
    "curve_ahead": ("road_event", ("a sharp curve is coming up", "the road bends ahead", "a tight bend lies ahead")),
}

# Which factor keys can explain which decision kind (the validator's "causal link" table).
RELEVANT: dict[str, tuple[str, ...]] = {
    "stop_for_static_constraint": ("light_red", "light_is_red", "light_yellow", "no_priority"),
    "yield": ("pedestrian_crossing", "cyclist_crossing", "no_priority"),
    "acceleration_for_passing": ("lead_slower", "parked_in_lane", "adjacent_free", "lead_stopped"),
    "gap_searching": ("lane_ends", "route_lane", "adjacent_free", "lead_slower"),
    "lead_obstacle_following": ("cut_in", "lead_braking", "lead_stopped", "lead_slower", "lead_close",
                                "light_is_red", "light_red"),
    "speed_adaptation": ("curve_ahead", "route_turn"),
    "set_speed_tracking": ("light_green", "lead_away", "lane_clear"),
    "turn": ("route_turn", "curve_ahead", "light_green"),
    "lane_change": ("lead_slower", "adjacent_free", "route_lane", "lead_stopped", "parked_in_lane"),
    "merge_split": ("lane_ends", "route_lane", "adjacent_free"),
    "in_lane_nudge": ("parked_in_lane",),
    "out_of_lane_nudge": ("parked_in_lane",),
    "lane_keeping": (),
}


@dataclass
class Labels:
    """The labels of one window: decision per axis, history-only factors, future meta-actions, the trace.

    factors: (category, text, observed_at [s, ≤ 0]); factor_keys: the ``FACTOR_KEYS`` key of each factor.
    """

    longitudinal: str | None
    lateral: str | None
    direction: str | None
    factors: list[tuple[str, str, float]] = field(default_factory=list)
    factor_keys: list[str] = field(default_factory=list)
    meta_longitudinal: tuple[str, ...] = ()
    meta_lateral: tuple[str, ...] = ()
    coc_trace: str = ""

    @property
    def decision_key(self) -> str:
        """Stratum key: "longitudinal/lateral[_direction]"."""
        lat = self.lateral + (f"_{self.direction}" if self.direction else "") if self.lateral else "none"
        return f"{self.longitudinal or 'none'}/{lat}"


def _since(mask) -> float | None:
    """Time [s] the condition in ``mask`` (20 history steps) has held since, or None if it does not hold at t0."""
    m = np.asarray(mask, dtype=bool)
    if not m[-1]:
        return None
    false = np.flatnonzero(~m)
    return float(H_TIMES[false[-1] + 1]) if len(false) else float(H_TIMES[0])


class _Scene:
    """History-side facts of a window that both decisions and factors use."""

    def __init__(self, win):
        self.win, self.ctx = win, win.ctx
        cutter = self.ctx["cutter"]
        self.rec = cutter.rec
        self.v0 = float(win.history[-1, 3])
        self.route = [c for c, _ in self.ctx["lane_runs"][:5] if c >= 0]
        st, valid = win.agent_states, win.agent_valid
        self.now = valid[:, HIST - 1] if len(valid) else np.zeros(0, bool)
        lanes_now = self.ctx["agent_lanes"][:, HIST - 1] if len(valid) else np.zeros(0, int)
        self.fn = lambda code: self.rec.lanes[self.rec.lane_ids[code]].function if code >= 0 else "off"
        movers = np.array([t not in ("pedestrian",) for t in win.agent_type], dtype=bool)
        ahead = st[:, HIST - 1, 0] > 0 if len(valid) else np.zeros(0, bool)
        on_route = np.isin(lanes_now, self.route)
        cand = np.flatnonzero(self.now & movers & ahead & on_route)
        self.leader = int(cand[np.argmin(st[cand, HIST - 1, 0])]) if len(cand) else None
        self.gap = np.inf
        if self.leader is not None:
            self.gap = float(st[self.leader, HIST - 1, 0] - 0.5 * (win.ego_length + win.agent_size[self.leader, 0]))

    def agent_hist(self, i):
        return self.win.agent_states[i, :HIST], self.win.agent_valid[i, :HIST]


def _lane_events(win, scene):
    """Lane-sequence facts of the future: (kind, direction, step) for a lane change / merge / turn, or None."""
    rec, ctx = scene.rec, win.ctx
    codes = ctx["lane_fut"]
    runs = [(int(ctx["lane_hist"][-1]), -1)] + [(c, i) for c, i in _runs(codes)]
    for (a, _), (b, step) in zip(runs, runs[1:]):
        if a < 0 or b < 0:
            continue
        la, lb = rec.lanes[rec.lane_ids[a]], rec.lanes[rec.lane_ids[b]]
        if la.function == "normal" and lb.function == "normal" and la.edge == lb.edge and la.index != lb.index:
            side = "left" if lb.index > la.index else "right"
            kind = "merge_split" if not la.links else "lane_change"
            return kind, side, step
        if la.function == "normal" and lb.function == "internal":
            _, direction = ctx["cutter"]._link(a, b)
            yaw_change = float(win.future[-1, 2])
            if direction in ("l", "L", "r", "R") and abs(yaw_change) > 0.5:
                return "turn", "left" if yaw_change > 0 else "right", step
    return None


def _runs(codes):
    if len(codes) == 0:
        return []
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    return [(int(codes[i]), int(i)) for i in np.concatenate([[0], change])]


def _parked_ahead(win) -> tuple[int | None, float | None]:
    """An agent at rest through the history that sticks into the ego corridor ahead: (index, observed_at)."""
    best, since = None, None
    for i in range(len(win.agent_type)):
        if win.agent_type[i] == "pedestrian" or not win.agent_valid[i, HIST - 1]:
            continue
        s, valid = win.agent_states[i, :HIST], win.agent_valid[i, :HIST]
        x, y = s[-1, 0], s[-1, 1]
        inside = abs(y) - 0.5 * win.agent_size[i, 1] < LANE_HALF - 0.2 and abs(y) > 0.5
        if 0 < x < 60 and inside and (s[valid, 3] < 0.2).all():
            t = _since(valid & (np.linalg.norm(s[:, :2], axis=1) < 70))
            if t is not None and (best is None or x < win.agent_states[best, HIST - 1, 0]):
                best, since = i, t
    return best, since


def _crossers(win, scene) -> list[tuple[str, float]]:
    """Pedestrians / cyclists on a crossing or walking area in front: [(key, observed_at)]."""
    out = []
    for i, kind in enumerate(win.agent_type):
        if kind not in ("pedestrian", "bicycle") or not win.agent_valid[i, HIST - 1]:
            continue
        x, y = win.agent_states[i, HIST - 1, :2]
        if not (0 < x < 35 and abs(y) < 12):
            continue
        codes = win.ctx["agent_lanes"][i, :HIST]
        on = np.array([scene.fn(c) in ("crossing", "walkingarea") for c in codes]) & win.agent_valid[i, :HIST]
        if kind == "bicycle":
            on = win.agent_valid[i, :HIST] & (np.abs(win.agent_states[i, :HIST, 1]) < 6)
        t = _since(on)
        if t is not None:
            out.append(("pedestrian_crossing" if kind == "pedestrian" else "cyclist_crossing", t))
    return sorted(out, key=lambda kv: kv[1])


def _factors(win, scene, lat_event) -> dict[str, tuple[float, str]]:
    """Every factor observable in the history: key -> (observed_at, side or "")."""
    f: dict[str, tuple[float, str]] = {}
    hist_t = win.ctx["tl_history"]
    if win.tl_state != "none" and win.tl_distance < 80:
        for colour in ("red", "yellow", "green"):
            t = _since([s == colour for s in hist_t])
            if t is not None:
                key = f"light_{colour}" if t > H_TIMES[0] else ("light_is_red" if colour == "red" else None)
                if key:
                    f[key] = (t, "")
    if scene.leader is not None:
        s, valid = scene.agent_hist(scene.leader)
        accel = np.gradient(s[:, 3], 0.1)
        t_lead = _since(valid)
        if t_lead is not None:
            t = _since(valid & (accel < -0.8))
            if t is not None and accel[-5:].mean() < -1.0:
                f["lead_braking"] = (t, "")
            if s[-1, 3] < 0.3:
                f["lead_stopped"] = (_since(valid & (s[:, 3] < 0.3)), "")
            elif s[-1, 3] < scene.v0 - 1.5:
                f["lead_slower"] = (_since(valid & (s[:, 3] < scene.v0 - 1.0)) or t_lead, "")
            if s[-1, 3] > scene.v0 + 1.0:
                f["lead_away"] = (_since(valid & (s[:, 3] > s[-1, 3] - 1.0)) or t_lead, "")
            if scene.gap < max(15.0, 1.5 * scene.v0):
                f["lead_close"] = (t_lead, "")
            y0 = s[valid, 1][0]
            lateral_v = np.gradient(s[:, 1], 0.1) * -np.sign(y0)
            if valid[0] and abs(y0) > 1.8 and abs(s[-1, 1]) < abs(y0) - 1.0:
                t = _since(valid & (lateral_v > 0.2))
                f["cut_in"] = (t if t is not None else t_lead, "left" if y0 > 0 else "right")
    if scene.leader is None or scene.gap > 60:
        f["lane_clear"] = (float(H_TIMES[0]), "")
    parked, t = _parked_ahead(win)
    if parked is not None:
        f["parked_in_lane"] = (t, "")
    for key, t in _crossers(win, scene):
        f.setdefault(key, (t, ""))
    link_prio = _next_link_priority(win, scene)
    if link_prio is False:
        f["no_priority"] = (float(H_TIMES[0]), "")
    lane = scene.rec.lanes[win.ego_lane_id]
    if not lane.links and lane.function == "normal":
        f["lane_ends"] = (float(H_TIMES[0]), "")
    if lat_event is not None:
        kind, side, _ = lat_event
        if kind == "turn":
            f["route_turn"] = (float(H_TIMES[0]), side)
        else:
            sign = 1 if side == "left" else -1
            busy = np.zeros(HIST, bool)
            for i in range(len(win.agent_type)):
                s, valid = scene.agent_hist(i)
                busy |= valid & (np.abs(s[:, 0]) < 20) & (sign * s[:, 1] > 1.6) & (sign * s[:, 1] < 5.0)
            t = _since(~busy)
            if t is not None:
                f["adjacent_free"] = (t, side)
            f["route_lane"] = (float(H_TIMES[0]), side)
    if _curve_ahead(win):
        f["curve_ahead"] = (float(H_TIMES[0]), "")
    return f


def _next_link_priority(win, scene):
    """Priority of the route's next junction link within 40 m (True/False), or None if none is that close."""
    runs, rec = win.ctx["lane_runs"], scene.rec
    dist = rec.lanes[win.ego_lane_id].length - win.ctx["lane_pos"]
    for (a, _), (b, _) in zip(runs, runs[1:]):
        if a < 0 or b < 0 or dist > 40:
            return None
        if rec.lanes[rec.lane_ids[a]].function == "normal" and rec.lanes[rec.lane_ids[b]].function == "internal":
            prio, _ = win.ctx["cutter"]._link(a, b)
            return prio
        dist += rec.lanes[rec.lane_ids[b]].length
    return None


def _curve_ahead(win) -> bool:
    """Whether the ego lane's own shape (map data) bends by more than 0.4 rad within 50 m ahead of the ego."""
    for lid, pts in win.lanes:
        if lid != win.ego_lane_id or len(pts) < 3:
            continue
        ahead = pts[(pts[:, 0] > -2) & (pts[:, 0] < 50)]
        if len(ahead) < 3:
            return False
        h = np.unwrap(np.arctan2(np.diff(ahead[:, 1]), np.diff(ahead[:, 0])))
        return bool(np.ptp(h) > 0.4)
    return False


def _lateral(win, scene, event, parked):
    """(lateral kind, direction) from the lane events and the lateral offsets of the future."""
    if event is not None and event[2] < 45:
        return event[0], event[1]
    if parked is not None:
        lat, lane_codes = win.ctx["lat"], np.concatenate([win.ctx["lane_hist"], win.ctx["lane_fut"]])
        same = lane_codes[HIST:HIST + 45] == lane_codes[HIST - 1]
        shift = (lat[HIST:HIST + 45] - lat[HIST - 1])[same]
        if len(shift) and np.abs(shift).max() >= 0.4:
            side = "left" if shift[np.argmax(np.abs(shift))] > 0 else "right"
            width = scene.rec.lanes[win.ego_lane_id].width
            outside = (np.abs(lat[HIST:HIST + 45][same]) + 0.5 * win.ego_width).max() > 0.5 * width + 0.1
            return ("out_of_lane_nudge" if outside else "in_lane_nudge"), side
    return "lane_keeping", None


def _longitudinal(win, scene, facts, lateral, meta_lon) -> str:
    decel = any(m in ("strong_decel", "gentle_decel") for m in meta_lon[:2])
    stops = "stop" in meta_lon[:3]
    accel = meta_lon[0] in ("strong_accel", "gentle_accel")
    slowing = decel or stops
    if win.tl_state in ("red", "yellow") and win.tl_distance <= max(30.0, 0.5 * scene.v0**2 + 15.0):
        if scene.gap > win.tl_distance and (slowing or scene.v0 < 0.5) and (
                "light_red" in facts or "light_is_red" in facts or "light_yellow" in facts):
            return "stop_for_static_constraint"
    if slowing and scene.gap > 10 and ("pedestrian_crossing" in facts or "cyclist_crossing" in facts):
        return "yield"
    if slowing and scene.gap > 15 and "no_priority" in facts and win.tl_state not in ("red", "yellow"):
        return "yield"
    if lateral[0] in ("lane_change", "out_of_lane_nudge") and lateral[1] == "left" and accel and (
            "lead_slower" in facts or "parked_in_lane" in facts or "lead_stopped" in facts):
        return "acceleration_for_passing"
    if lateral[0] in ("lane_change", "merge_split") and not accel and (
            "lane_ends" in facts or (slowing and scene.gap > 10)):
        return "gap_searching"
    if scene.leader is not None and scene.gap < max(25.0, 2.5 * scene.v0):
        return "lead_obstacle_following"
    if decel and ("curve_ahead" in facts or lateral[0] == "turn"):
        return "speed_adaptation"
    if decel or stops:
        return "speed_adaptation" if "curve_ahead" in facts or "route_turn" in facts else "unexplained"
    return "set_speed_tracking"


def label_window(win, rng: random.Random) -> Labels | None:
    """Decision, factors, meta-actions and CoC trace of ``win``; None when no rule explains the behaviour.

    rng: seeds the trace wording. A window whose expert brakes with no observable reason (no signal, lead,
    crossing or curve) is returned as None: it would teach a decision without a cause (counted as "unexplained").
    """
    scene = _Scene(win)
    meta_lon, meta_lat = future_meta_actions(win.history, win.future)
    event = _lane_events(win, scene)
    facts = _factors(win, scene, event)
    parked = facts.get("parked_in_lane")
    lateral = _lateral(win, scene, event, parked)
    lon = _longitudinal(win, scene, facts, lateral, meta_lon)
    if lon == "unexplained":
        return None
    lat_kind, direction = lateral
    keys = [k for k in RELEVANT[lon] if k in facts]
    keys += [k for k in RELEVANT[lat_kind] if k in facts and k not in keys]
    keys = keys[:MAX_FACTORS]
    factors, cfs = [], []
    for k in keys:
        t, side = facts[k]
        category, wordings = FACTOR_KEYS[k]
        text = rng.choice(wordings).format(side=side or direction or "left")
        factors.append((category, text, round(float(t), 1)))
        cfs.append(CausalFactor(category, text, round(float(t), 1)))
    trace = compose_trace(Decision(lon, lat_kind, direction), cfs, rng)
    return Labels(lon, lat_kind, direction, factors, keys, tuple(meta_lon), tuple(meta_lat), trace)
