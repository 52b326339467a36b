"""Helpers for the reward tests: batches of real ``rlpost.scenarios.schema.Scenario`` records and completions.

Scenarios come from ``rlpost.rewards.synthetic`` (deterministic, no simulator). Plugins that tests run in worker
processes live in ``reward_plugins`` (kept free of torch imports so that a respawned worker starts fast).
"""

from __future__ import annotations

from rlpost.rewards.synthetic import expert_completion, synthetic_scenario, synthetic_scenarios  # noqa: F401
from rlpost.rewards.types import Completion


def make_batch(n_scenarios: int = 5, group: int = 4, noise: float = 0.3, seed: int = 0):
    """``n_scenarios × group`` completions (the first of each group is the expert itself) and aligned scenarios."""
    scen = synthetic_scenarios(n_scenarios, seed=seed)
    comps, scens = [], []
    for s in scen:
        for g in range(group):
            comps.append(expert_completion(s, g, noise=noise * (g > 0), seed=seed))
            scens.append(s)
    return comps, scens


def with_trace(c: Completion, trace: str) -> Completion:
    return Completion(c.scenario_id, c.group_index, trace, c.controls, c.decode_status)


def with_controls(c: Completion, controls) -> Completion:
    return Completion(c.scenario_id, c.group_index, c.trace, controls, c.decode_status)
