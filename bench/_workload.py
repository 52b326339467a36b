"""The one workload both arms of ``bench/grpo_vs_trl.py`` run, and what every arm reports back.

A ``Workload`` is plain JSON: the driver writes it once, each arm (a fresh subprocess) reads it. The scenarios of
step k are drawn exactly as ``rlpost.loop`` draws them (``scenario_batch(sorted pool ids, k, size, seed)``), and the
peer's dataset lists them in that same order (no shuffling), so both frameworks see the same prompts at every step.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The three AR1 rewards with rlpost's default weights (rlpost.rl.config.DEFAULT_REWARDS).
REWARDS = [
    {"name": "reasoning_critic", "weight": 0.2},
    {"name": "coc_consistency", "weight": 1.0},
    {"name": "trajectory_quality", "weight": 1.0},
]


@dataclass
class Workload:
    checkpoint: str
    data: str = "data/scenarios"
    split: str = "train"
    pool_size: int = 256            # scenarios the steps draw from (the first N of the split, by id)
    steps: int = 8                  # optimizer steps per arm (warm-up included)
    warmup: int = 2                 # leading steps left out of the steady-state numbers
    group_size: int = 8             # G
    scenarios_per_step: int = 8     # prompts per step; batch = scenarios_per_step * G completions
    temperature: float = 0.6
    top_p: float = 0.98
    lr: float = 2e-5                # AdamW, constant schedule, no warm-up
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    micro_batch: int = 16           # sequences per forward/backward; batch / micro_batch accumulation steps
    eps_low: float = 0.2
    eps_high: float = 0.28
    seed: int = 0
    rewards: list = field(default_factory=lambda: [dict(r) for r in REWARDS])

    @property
    def batch(self) -> int:
        return self.scenarios_per_step * self.group_size

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Workload:
        return cls(**json.loads(Path(path).read_text()))


def pool(w: Workload) -> list:
    """The scenario pool (the first ``pool_size`` of the split, sorted by id)."""
    from rlpost.scenarios.schema import read_scenarios

    scenarios = sorted(read_scenarios(w.data, w.split), key=lambda s: s.scenario_id)
    return scenarios[: w.pool_size]


def step_batches(w: Workload, ids: list[str]) -> list[list[str]]:
    """Scenario ids of every step, drawn exactly as rlpost's loop draws them."""
    from rlpost.loop.steps import scenario_batch

    ids = sorted(ids)
    return [scenario_batch(ids, k, w.scenarios_per_step, w.seed) for k in range(w.steps)]


def max_new_tokens(checkpoint: str) -> int:
    """rlpost's completion budget for the checkpoint: trace + <|cot_end|> + <|traj_start|> + 128 bins + <|traj_end|>."""
    from rlpost.policy.generate import completion_budget
    from rlpost.policy.model import load_model_config

    return completion_budget(load_model_config(checkpoint))


def summarize(wall: list[float], start: float, completions: list[int], tokens: list[int], warmup: int) -> dict:
    """Steady-state numbers from per-step end times (``wall``; ``start`` = when step 0 began being prepared)."""
    ends = [start, *wall]
    periods = [b - a for a, b in zip(ends[:-1], ends[1:])]
    steady = periods[warmup:] or periods
    steady_completions = completions[warmup:] or completions
    steady_tokens = tokens[warmup:] or tokens
    span = sum(steady)
    return {
        "periods_s": periods,
        "step_s_median": statistics.median(steady),
        "step_s_mean": span / len(steady),
        "completions_per_s": sum(steady_completions) / span,
        "tokens_per_s": sum(steady_tokens) / span,
        "completion_tokens_per_step": statistics.mean(steady_tokens),
        "steady_steps": len(steady),
    }


def arm_env_report() -> dict:
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "loadavg_start": os.getloadavg()[0],
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
