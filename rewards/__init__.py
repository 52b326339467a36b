"""Rewards for GRPO (docs/design.md §5): the plugin protocol, registry, guarded execution, composition and the
built-ins.

Public API (import from here):
    Completion, RewardResult, Status           the data a reward sees and returns (``rlpost.rewards.types``)
    register_reward, resolve_reward, available_rewards     the registry (built-ins, dotted paths, entry points)
    RewardSpec, RewardsConfig                  the typed config of the components
    RewardPipeline, SampleRewards, ComponentRecord        guarded, weighted, per-component scoring
    RewardCache                                the Redis cache for expensive rewards
    check_reward, ContractReport               the plugin contract test
    check_error_budget, RewardBudgetError      a step's share of errors per component against its budget
Built-ins (resolved by name): ``trajectory_quality``, ``coc_consistency``, ``reasoning_critic`` (backend ``rubric``;
a ``judge`` backend plugs in through ``critic.register_critic_backend``).

Modules: types (data + signature), registry, spec (config), guard (worker processes, deadlines), pipeline
(composition), cache (Redis), contract (plugin contract test), cli (``rlpost rewards list|check``), the built-ins
trajectory_quality / coc_consistency / critic + rubric, their batch kernels (kernels, meta_batch), and synthetic
(small deterministic scenarios for tests, the contract and the benchmark).
Heavy modules (the built-ins import the torch-based domain core) load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from rlpost.rewards.registry import available_rewards, register_reward, resolve_reward
from rlpost.rewards.types import Completion, RewardResult, Status

_LAZY = {
    "RewardSpec": "rlpost.rewards.spec",
    "RewardsConfig": "rlpost.rewards.spec",
    "RewardPipeline": "rlpost.rewards.compose",
    "SampleRewards": "rlpost.rewards.compose",
    "ComponentRecord": "rlpost.rewards.compose",
    "RewardCache": "rlpost.rewards.cache",
    "check_reward": "rlpost.rewards.contract",
    "check_error_budget": "rlpost.rewards.budget",
    "RewardBudgetError": "rlpost.rewards.budget",
    "ContractReport": "rlpost.rewards.contract",
}

__all__ = ["Completion", "RewardResult", "Status", "available_rewards", "register_reward", "resolve_reward", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rlpost.rewards' has no attribute {name!r}")
