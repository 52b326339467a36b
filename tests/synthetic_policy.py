"""Tiny synthetic scenarios with the ``Scenario`` attributes the policy reads (tests and smoke runs only).

Four behaviours driven by the scene, so a model can learn them: cruise (keep speed), follow a slower lead vehicle,
stop for a red light, turn left/right where the ego lane bends. The future is the unicycle rollout of the expert
controls; the trace is written by ``rlpost.domain.coc.compose_trace`` when available.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from rlpost.domain.trajectory import unicycle_rollout


@dataclass
class SyntheticScenario:
    scenario_id: str
    split: str
    history: np.ndarray
    future: np.ndarray
    expert_controls: np.ndarray
    agent_states: np.ndarray
    agent_size: np.ndarray
    agent_type: list
    agent_valid: np.ndarray
    lanes: list
    ego_lane_id: str
    tl_state: str
    tl_distance: float
    decision_longitudinal: str | None
    decision_lateral: str | None
    decision_direction: str | None
    coc_trace: str
    factors: list = field(default_factory=list)


def _trace(lon: str, lat: str | None, direction: str | None, factor_cat: str | None, rng: random.Random) -> str:
    try:
        from rlpost.domain.coc import CausalFactor, Decision, compose_trace

        factors = [CausalFactor(factor_cat)] if factor_cat else []
        return compose_trace(Decision(lon, lat, direction), factors, rng)
    except ImportError:  # pragma: no cover - coc is part of the package
        return f"{lon} {lat or ''} {direction or ''}".replace("_", " ")


def make_scenario(i: int, split: str = "train", seed: int = 0) -> SyntheticScenario:
    rng = np.random.default_rng(seed * 100_003 + i)
    prng = random.Random(seed * 100_003 + i)
    kind = ["cruise", "follow", "stop", "turn"][i % 4]
    v0 = float(rng.uniform(4.0, 14.0))
    controls = np.zeros((64, 2))
    agents = np.zeros((0, 84, 4))
    tl_state, tl_distance = "none", float("nan")
    lane = np.stack([np.linspace(-30, 80, 23), np.zeros(23)], -1)
    lat = "lane_keeping"
    direction = None
    factor = None
    if kind == "cruise":
        lon = "set_speed_tracking"
    elif kind == "follow":
        lon, factor = "lead_obstacle_following", "critical_object"
        gap, v_lead = float(rng.uniform(12, 30)), max(0.0, v0 - float(rng.uniform(2, 5)))
        controls[:30, 0] = (v_lead - v0) / 3.0
        t = np.arange(-19, 65) * 0.1
        agents = np.zeros((1, 84, 4))
        agents[0, :, 0] = gap + v_lead * t
        agents[0, :, 3] = v_lead
    elif kind == "stop":
        lon, factor = "stop_for_static_constraint", "traffic_light"
        tl_state, tl_distance = "red", float(rng.uniform(15, 45))
        decel = v0**2 / (2 * max(tl_distance - 3.0, 5.0))
        n = min(63, int(np.ceil(v0 / decel / 0.1)))
        controls[:n, 0] = -v0 / (n * 0.1)
    else:
        lon = "set_speed_tracking"
        lat, direction = "turn", ("left" if (i // 4) % 2 == 0 else "right")
        sign = 1.0 if direction == "left" else -1.0
        controls[10:40, 1] = sign * 0.06
        s = np.linspace(0, 60, 31)
        k = np.where((s > 8) & (s < 40), sign * 0.06, 0.0)
        heading = np.concatenate([[0.0], np.cumsum(k[:-1] * 2.0)])
        lane = np.concatenate([np.stack([np.linspace(-30, -2, 15), np.zeros(15)], -1),
                               np.stack([np.cumsum(np.cos(heading) * 2.0), np.cumsum(np.sin(heading) * 2.0)], -1)])
    future = unicycle_rollout(controls, v0)
    hist = np.zeros((20, 4))
    hist[:, 0] = v0 * (np.arange(20) - 19) * 0.1
    hist[:, 3] = v0
    agent_valid = np.ones(agents.shape[:2], dtype=bool)
    return SyntheticScenario(
        f"syn-{seed}-{i}", split, hist, future, controls, agents, np.tile([[4.5, 1.9]], (agents.shape[0], 1)),
        ["vehicle"] * agents.shape[0], agent_valid, [("ego", lane)], "ego", tl_state, tl_distance,
        lon, lat, direction, _trace(lon, lat, direction, factor, prng),
    )


def make_scenarios(n: int, split: str = "train", seed: int = 0) -> list[SyntheticScenario]:
    return [make_scenario(i, split, seed) for i in range(n)]
