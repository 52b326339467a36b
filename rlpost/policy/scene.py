"""Scene encoder: a Scenario -> a short, deterministic list of scene words (the prompt), docs/design.md §1 "(ours)".

Numbers are quantised into a small closed set of word tokens, so a tiny model reads a whole scene in ~40-70 tokens
(prompt length dominates CPU time). The prompt is, in this order (every group always present except agents):

    ego   v<speed>  acc<accel over the last 1 s>  yr<yaw rate over the last 1 s>
    light tl_<state>  td<distance to the light or td_none>
    route nav_none | nav_left | nav_right (lane-level) | nav_turn_left | nav_turn_right (at the next junction)
    lane  la<heading of the ego lane 10 m ahead> lb<... 25 m> lc<... 45 m>  le<lane length left>
          lo<lateral offset from the ego lane centre>  nl<lanes to the left> nr<lanes to the right>
    agents, most relevant first, up to ``max_agents``:  t_<type> x<ahead> y<left> h<rel. heading> s<speed> m<accel>

Word shapes: a prefix, then ``n`` for a negative bin, then the bin magnitude (``xn3`` = x bin −3). Bins (value =
bin × step, clipped to the listed range) are in :data:`BINS`. Every word :func:`encode_scene` can emit is in
:func:`scene_vocabulary`, so the tokenizer has one token for each.

Route (ours): the navigation command a driver has at t0 (AR1's "routing intent" factor): read from the scenario's
``routing_intent`` factors that are observable at t0 (observed_at ≤ 0); "junction" in the text makes it a turn.

Agent relevance (ours): agents present at t0, ranked by ``|x|·(1 if ahead else 2) + 3·|y|`` (ahead and in the
ego's corridor first); ties broken by index, so the encoding is deterministic.
Input contract: a ``Scenario`` (rlpost.scenarios.schema) or any object with the same attributes: history (20, 4)
(x, y, yaw, v) in the ego frame at t0 (t0 last), agent_states (N, 84, 4), agent_valid (N, 84), agent_type,
lanes [(id, polyline (P, 2))], ego_lane_id, tl_state, tl_distance.
"""

from __future__ import annotations

import math

import numpy as np

# prefix -> (step, lo_bin, hi_bin): value v gives bin clip(round(v / step), lo, hi).
BINS: dict[str, tuple[float, int, int]] = {
    "v": (1.0, 0, 40),        # ego speed [m/s]
    "acc": (0.5, -8, 6),      # ego accel over the last 1 s [m/s²]
    "yr": (0.05, -12, 12),    # ego yaw rate over the last 1 s [rad/s]
    "td": (5.0, 0, 24),       # distance to the traffic light / stop line [m]
    "la": (0.1, -16, 16),     # ego-lane heading 10 m ahead [rad]
    "lb": (0.1, -16, 16),     # ... 25 m ahead
    "lc": (0.1, -16, 16),     # ... 45 m ahead
    "le": (5.0, 0, 12),       # ego lane length left ahead [m] (60+ = 12)
    "lo": (0.25, -8, 8),      # ego lateral offset from its lane centre [m] (left positive)
    "nl": (1.0, 0, 3),        # lanes to the left
    "nr": (1.0, 0, 3),        # lanes to the right
    "x": (2.0, -15, 40),      # agent position ahead [m]
    "y": (1.0, -15, 15),      # agent position to the left [m]
    "h": (math.pi / 6, -6, 6),  # agent heading relative to the ego [rad]
    "s": (1.0, 0, 30),        # agent speed [m/s]
    "m": (1.0, -4, 3),        # agent accel over the last 1 s [m/s²]
}
TL_STATES = ("red", "yellow", "green", "off", "none", "other")
AGENT_TYPES = ("vehicle", "truck", "bus", "bicycle", "motorcycle", "pedestrian", "other")
NAV_WORDS = ("nav_none", "nav_left", "nav_right", "nav_turn_left", "nav_turn_right")
T0 = 19  # index of t0 in history (20 steps) and in agent tracks (20 history + 64 future)
LOOKAHEAD = {"la": 10.0, "lb": 25.0, "lc": 45.0}


def qword(prefix: str, value: float) -> str:
    """Quantise ``value`` with ``BINS[prefix]``: ``qword("x", -6.2)`` -> ``"xn3"``. NaN/inf clip to the range ends."""
    step, lo, hi = BINS[prefix]
    if not np.isfinite(value):
        b = hi if (np.isnan(value) or value > 0) else lo
    else:
        b = int(np.clip(np.round(value / step), lo, hi))
    return f"{prefix}{'n' if b < 0 else ''}{abs(b)}"


def scene_vocabulary() -> list[str]:
    """Every word :func:`encode_scene` can emit, in a fixed order."""
    words = []
    for prefix, (_, lo, hi) in BINS.items():
        words += [f"{prefix}{'n' if b < 0 else ''}{abs(b)}" for b in range(lo, hi + 1)]
    words += [f"tl_{s}" for s in TL_STATES] + ["td_none"] + [f"t_{t}" for t in AGENT_TYPES] + list(NAV_WORDS)
    return list(dict.fromkeys(words))


def _tl_word(state) -> str:
    s = str(state or "none").lower()
    for known, aliases in (("red", ("r", "red", "stop")), ("yellow", ("y", "yellow", "amber")),
                           ("green", ("g", "green", "go")), ("off", ("o", "off")), ("none", ("none", "", "unknown"))):
        if s in aliases:
            return f"tl_{known}"
    return "tl_other"


def _nav_word(scenario) -> str:
    for factor in getattr(scenario, "factors", None) or []:
        category, text, observed_at = (tuple(factor) + (0.0,))[:3]
        if str(category) != "routing_intent" or not (observed_at is None or float(observed_at) <= 0.0):
            continue
        t = str(text).lower()
        side = "left" if "left" in t else "right" if "right" in t else None
        if side:
            return f"nav_turn_{side}" if "junction" in t else f"nav_{side}"
    return "nav_none"


def _agent_type(kind) -> str:
    k = str(kind).lower()
    aliases = {"car": "vehicle", "bike": "bicycle", "cyclist": "bicycle", "ped": "pedestrian", "person": "pedestrian"}
    k = aliases.get(k, k)
    return f"t_{k}" if k in AGENT_TYPES else "t_other"


def _polyline_frame(poly: np.ndarray):
    """Cumulative arc length (P,) and segment headings (P-1,) of a polyline."""
    seg = np.diff(poly, axis=0)
    length = np.linalg.norm(seg, axis=-1)
    return np.concatenate([[0.0], np.cumsum(length)]), np.arctan2(seg[:, 1], seg[:, 0]), length


def _project(poly: np.ndarray, point: np.ndarray):
    """(arc length of the nearest point, signed lateral offset of ``point`` (left +), segment index)."""
    s, heading, length = _polyline_frame(poly)
    seg = np.diff(poly, axis=0)
    rel = point[None] - poly[:-1]
    t = np.clip((rel * seg).sum(-1) / np.maximum(length**2, 1e-9), 0.0, 1.0)
    nearest = poly[:-1] + t[:, None] * seg
    d = np.linalg.norm(point[None] - nearest, axis=-1)
    i = int(np.argmin(d))
    cross = seg[i, 0] * rel[i, 1] - seg[i, 1] * rel[i, 0]
    return s[i] + t[i] * length[i], float(np.sign(cross) * d[i]), i


def _lane_words(scenario) -> list[str]:
    lanes = [(lid, np.asarray(poly, dtype=np.float64)) for lid, poly in (getattr(scenario, "lanes", None) or [])]
    lanes = [(lid, p) for lid, p in lanes if p.ndim == 2 and p.shape[0] >= 2 and np.isfinite(p).all()]
    ego_id = getattr(scenario, "ego_lane_id", None)
    ego = next((p for lid, p in lanes if str(lid) == str(ego_id)), None)
    origin = np.zeros(2)
    if ego is None and lanes:  # fall back to the nearest lane roughly aligned with the ego
        cands = []
        for _, p in lanes:
            s0, off, i = _project(p, origin)
            hd = _polyline_frame(p)[1][i]
            if abs(math.remainder(hd, 2 * math.pi)) < 0.8:
                cands.append((abs(off), len(cands), p))
        ego = min(cands)[2] if cands else None
    if ego is None:
        return ["la0", "lb0", "lc0", "le0", "lo0", "nl0", "nr0"]
    s_arr, heading, _ = _polyline_frame(ego)
    s0, offset, _ = _project(ego, origin)
    words = []
    for prefix, ahead in LOOKAHEAD.items():
        j = int(np.clip(np.searchsorted(s_arr, s0 + ahead) - 1, 0, len(heading) - 1))
        words.append(qword(prefix, math.remainder(float(heading[j]), 2 * math.pi)))
    words.append(qword("le", s_arr[-1] - s0))
    words.append(qword("lo", -offset))  # ego offset from the lane centre = −(lane offset seen from the ego)
    left = right = 0
    for _lid, p in lanes:
        if p is ego:
            continue
        _, off, i = _project(p, origin)
        hd = _polyline_frame(p)[1][i]
        if abs(off) < 8.0 and abs(off) > 1.5 and abs(math.remainder(hd, 2 * math.pi)) < 0.5:
            left += off > 0
            right += off < 0
    words += [qword("nl", left), qword("nr", right)]
    return words


def _agent_words(scenario, max_agents: int) -> list[str]:
    states = np.asarray(getattr(scenario, "agent_states", np.zeros((0, 84, 4))), dtype=np.float64)
    if states.ndim != 3 or states.shape[0] == 0 or max_agents == 0:
        return []
    valid = np.asarray(getattr(scenario, "agent_valid", np.ones(states.shape[:2], bool)), dtype=bool)
    types = list(getattr(scenario, "agent_type", ["vehicle"] * states.shape[0]))
    ranked = []
    for i in range(states.shape[0]):
        if not valid[i, T0] or not np.isfinite(states[i, T0]).all():
            continue
        x, y = states[i, T0, 0], states[i, T0, 1]
        ranked.append((abs(x) * (1.0 if x >= 0 else 2.0) + 3.0 * abs(y), i))
    words = []
    for _, i in sorted(ranked)[:max_agents]:
        x, y, yaw, v = states[i, T0]
        past = T0 - 10
        acc = (v - states[i, past, 3]) / 1.0 if valid[i, past] else 0.0
        words += [_agent_type(types[i]), qword("x", x), qword("y", y), qword("h", math.remainder(yaw, 2 * math.pi)),
                  qword("s", v), qword("m", acc)]
    return words


def encode_scene(scenario, max_agents: int = 6, max_words: int | None = None) -> list[str]:
    """The scene words of ``scenario`` (see the module docstring). Deterministic; ``max_words`` truncates agents."""
    hist = np.asarray(scenario.history, dtype=np.float64)
    v0 = float(hist[-1, 3])
    back = min(10, hist.shape[0] - 1)
    dt_back = 0.1 * back if back else 1.0
    acc = (v0 - hist[-1 - back, 3]) / dt_back
    yaw_rate = (hist[-1, 2] - hist[-1 - back, 2]) / dt_back
    words = [qword("v", v0), qword("acc", acc), qword("yr", yaw_rate)]
    words.append(_tl_word(getattr(scenario, "tl_state", None)))
    dist = getattr(scenario, "tl_distance", None)
    words.append(qword("td", float(dist)) if dist is not None and np.isfinite(dist) else "td_none")
    words.append(_nav_word(scenario))
    words += _lane_words(scenario)
    agents = _agent_words(scenario, max_agents)
    if max_words is not None:
        room = max(0, (max_words - len(words)) // 6 * 6)
        agents = agents[:room]
    return words + agents
