"""Small synthetic scenarios and completions for contract tests, unit tests and benchmarks (no simulator needed).

Each scenario is an ego on a straight road at constant speed for 2 s of history, with an expert plan for one of a
few behaviours (cruise, stop, follow a braking lead, turn left, lane change right), a handful of agents, and a
ground-truth CoC trace written by ``rlpost.domain.coc.compose_trace`` from the behaviour's decision and factors. They
are real ``rlpost.scenarios.schema.Scenario`` records (no lanes, no traffic light), so tests exercise the real class.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from rlpost.domain.trajectory import DT, HORIZON, unicycle_rollout
from rlpost.rewards.types import Completion
from rlpost.scenarios.schema import Scenario

HISTORY_STEPS = 20


def _behaviour_controls(kind: str, v0: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth expert controls (64, 2) for a behaviour: ramps, never steps, so the expert's jerk stays small."""
    t = np.arange(HORIZON) * DT
    a = np.zeros(HORIZON)
    k = np.zeros(HORIZON)
    ramp = np.clip(t / 0.8, 0, 1)  # 0.8 s to build up any control: keeps jerk realistic
    if kind == "stop":
        decel = min(v0 / rng.uniform(3.0, 4.5), 3.5)  # standing after 3-5 s, inside the horizon
        v = v0
        for i in range(HORIZON):  # brake until standing, then hold
            a[i] = -decel * ramp[i] if v > 0.05 else 0.0
            a[i] = max(a[i], -v / DT)
            v += DT * a[i]
    elif kind == "follow":
        a[:] = -1.0 * ramp
        a[40:] = np.linspace(-1.0, 0.0, HORIZON - 40)
    elif kind == "turn_left":
        a[:30] = -1.0 * ramp[:30]
        a[30:40] = np.linspace(-1.0, 0.0, 10)
        k[15:55] = 0.08 * np.sin(np.linspace(0, np.pi, 40))
    elif kind == "lane_change_right":
        k[5:35] = -0.012 * np.sin(np.linspace(0, 2 * np.pi, 30))
    return np.stack([a, k], axis=-1)


_BEHAVIOURS = {
    # kind: (longitudinal, lateral, direction, factor categories)
    "cruise": ("set_speed_tracking", "lane_keeping", None, ("lane",)),
    "stop": ("stop_for_static_constraint", "lane_keeping", None, ("traffic_light",)),
    "follow": ("lead_obstacle_following", "lane_keeping", None, ("critical_object",)),
    "turn_left": ("speed_adaptation", "turn", "left", ("routing_intent", "road_event")),
    "lane_change_right": ("set_speed_tracking", "lane_change", "right", ("lane", "routing_intent")),
}
BEHAVIOURS = tuple(_BEHAVIOURS)


def synthetic_scenario(index: int, kind: str | None = None, seed: int = 0, n_agents: int = 4) -> Scenario:
    """Scenario ``index`` of a deterministic family (same arguments, same scenario).

    kind: one of ``BEHAVIOURS`` (default: cycles by index). n_agents: agents besides the ego, the first a lead
    vehicle 25–40 m ahead in the ego lane, the others in the adjacent lanes or parked far ahead.
    """
    from rlpost.domain.coc import CausalFactor, Decision, compose_trace

    kind = kind or BEHAVIOURS[index % len(BEHAVIOURS)]
    rng = np.random.default_rng([seed, index])
    v0 = float(rng.uniform(5.0, 8.0) if kind == "turn_left" else rng.uniform(6.0, 14.0))
    history = np.zeros((HISTORY_STEPS, 4))
    history[:, 0] = (np.arange(HISTORY_STEPS) - (HISTORY_STEPS - 1)) * DT * v0  # t0 at the origin, last row
    history[:, 3] = v0
    controls = _behaviour_controls(kind, v0, rng)
    future = unicycle_rollout(controls, v0)
    steps = HISTORY_STEPS + HORIZON
    t = (np.arange(steps) - (HISTORY_STEPS - 1)) * DT  # seconds relative to t0
    agents = np.zeros((n_agents, steps, 4))
    valid = np.ones((n_agents, steps), dtype=bool)
    size = np.tile([4.5, 1.9], (n_agents, 1))
    for j in range(n_agents):
        if j == 0:  # lead in the ego lane, as fast as the ego's plan needs to stay clear
            gap, speed, lane_y = float(rng.uniform(25, 40)), v0 + 1.0, 0.0
        elif j % 2 and kind != "turn_left":  # oncoming traffic in the left lane
            gap, speed, lane_y = float(rng.uniform(20, 80)), -float(rng.uniform(8, 14)), 3.5
        elif j % 2:  # turning left across the left lane: put this one behind, in the right lane
            gap, speed, lane_y = -float(rng.uniform(15, 30)), v0, -3.5
        else:  # parked far ahead on the right shoulder
            gap, speed, lane_y = float(rng.uniform(90, 140)), 0.0, -3.0
        agents[j, :, 0] = gap + speed * t
        agents[j, :, 1] = lane_y
        agents[j, :, 2] = np.pi if speed < 0 else 0.0
        agents[j, :, 3] = abs(speed)
        if j == n_agents - 1 and n_agents > 2:
            valid[j, : HISTORY_STEPS + 10] = False  # appears only later: exercises agent_valid
    lon, lat, direction, cats = _BEHAVIOURS[kind]
    decision = Decision(lon, lat, direction)
    factors = tuple(CausalFactor(c, "", -float(rng.uniform(0.1, 1.5))) for c in cats)
    trace = compose_trace(decision, factors, random.Random(f"{seed}:{index}"))
    return Scenario(
        scenario_id=f"synthetic-{seed}-{index}-{kind}", source="synthetic", seed=seed, t0=0.0, split="train",
        history=history, future=future, expert_controls=controls, ego_length=4.0, ego_width=2.0,
        agent_states=agents, agent_size=size, agent_type=["vehicle"] * n_agents, agent_valid=valid, lanes=[],
        ego_lane_id="", tl_state="none", tl_distance=float("nan"), decision_longitudinal=lon,
        decision_lateral=lat, decision_direction=direction,
        factors=[(f.category.value, f.text, f.observed_at) for f in factors], meta_longitudinal=(),
        meta_lateral=(), coc_trace=trace, keyframe="grid", agent_ids=[f"a{j}" for j in range(n_agents)],
    )


def synthetic_scenarios(n: int = 8, seed: int = 0, n_agents: int = 4) -> list[Scenario]:
    """``n`` scenarios cycling through every behaviour."""
    return [synthetic_scenario(i, seed=seed, n_agents=n_agents) for i in range(n)]


def expert_completion(scenario: Any, group_index: int = 0, noise: float = 0.0, seed: int = 0) -> Completion:
    """A completion that repeats the scenario's ground truth: its trace and its expert controls (+ Gaussian noise
    of ``noise`` m/s² on acceleration and ``noise``/50 1/m on curvature)."""
    controls = np.array(scenario.expert_controls, dtype=np.float64)
    if noise:
        rng = np.random.default_rng([seed, group_index])
        controls = controls + rng.normal(0.0, 1.0, controls.shape) * np.array([noise, noise / 50])
    return Completion(scenario.scenario_id, group_index, scenario.coc_trace, controls, "ok")


_GARBAGE_WORDS = ("stop", "left", "lane", "the", "yield", "<|traj_start|>", "ego", "right", "and", "not", "turn",
                  "because", "light", "car", "\x00", "🚗", "Decision:", ".", "speed", "merge")


def garbage_completion(scenario: Any, rng: np.random.Generator, group_index: int = 0) -> Completion:
    """A random broken completion: random-token or truncated text, missing/NaN/inf/huge/wrong-shape controls."""
    text_kind = rng.integers(5)
    if text_kind == 0:
        trace = ""
    elif text_kind == 1:
        trace = " ".join(rng.choice(_GARBAGE_WORDS, size=int(rng.integers(1, 40))))
    elif text_kind == 2:
        trace = scenario.coc_trace[: int(rng.integers(0, len(scenario.coc_trace) + 1))]
    elif text_kind == 3:
        trace = "".join(chr(int(c)) for c in rng.integers(1, 0x3000, size=int(rng.integers(1, 80))))
    else:
        trace = scenario.coc_trace
    ctl_kind = rng.integers(8)
    controls: Any
    if ctl_kind == 0:
        controls = None
    elif ctl_kind == 1:
        controls = np.full((HORIZON, 2), np.nan)
    elif ctl_kind == 2:
        controls = rng.normal(0, 1, (HORIZON, 2))
        controls[rng.integers(HORIZON), rng.integers(2)] = rng.choice([np.nan, np.inf, -np.inf])
    elif ctl_kind == 3:
        controls = rng.normal(0, 1, (int(rng.integers(0, HORIZON)), 2))  # truncated trajectory
    elif ctl_kind == 4:
        controls = rng.normal(0, 1e150, (HORIZON, 2))  # finite but absurd: the rollout overflows
    elif ctl_kind == 5:
        controls = rng.normal(0, 3, (HORIZON, 2))  # wild but decodable
    elif ctl_kind == 6:
        controls = rng.normal(0, 1, (HORIZON, 3))  # wrong trailing shape
    else:
        controls = np.array(scenario.expert_controls)
    return Completion(scenario.scenario_id, group_index, trace, controls,
                      None if controls is None else str(rng.choice(["ok", "truncated"])))
