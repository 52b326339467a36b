"""Reward plugins for the tests: well-behaved, hanging, raising, crashing and malformed ones.

Workers import this module by reference (``reward_plugins:fn``); it imports nothing heavy (no torch), so a respawned
worker starts in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from rlpost.rewards.registry import register_reward
from rlpost.rewards.types import RewardResult

SLEEP_MARKER = "SLEEP-FOREVER"


@register_reward("test_trace_length", version="3")
def trace_length(completions, scenarios, /, *, scale: float = 1.0):
    """Length of the trace text × scale (a well-behaved plugin returning plain floats)."""
    return [scale * len(c.trace) for c in completions]


def unversioned_constant(completions, scenarios, /):
    return [1.0] * len(completions)


def sleeps_forever(completions, scenarios, /):
    """Hangs (ignores every signal but SIGKILL) whenever a trace carries SLEEP_MARKER, else scores 1."""
    if any(SLEEP_MARKER in c.trace for c in completions):
        while True:
            time.sleep(3600)
    return [1.0] * len(completions)


async def async_sleeper(completions, scenarios, /, *, delay: float = 0.0):
    """Async plugin: awaits ``delay`` seconds (forever for SLEEP_MARKER traces) then scores 2."""
    if any(SLEEP_MARKER in c.trace for c in completions):
        await asyncio.sleep(3600)
    await asyncio.sleep(delay)
    return [RewardResult(2.0, "ok", {"async": True}) for _ in completions]


def raises(completions, scenarios, /):
    raise RuntimeError("boom in plugin")


def wrong_length(completions, scenarios, /):
    return [0.0] * (len(completions) + 1)


def returns_nan(completions, scenarios, /):
    return [float("nan") if i == 0 else 1.0 for i in range(len(completions))]


def returns_dict(completions, scenarios, /):
    return {"value": 1.0}


def crashes_worker(completions, scenarios, /):
    os._exit(3)


def nondeterministic(completions, scenarios, /):
    return [float(np.random.default_rng().random()) for _ in completions]


def batch_dependent(completions, scenarios, /):
    return [float(len(completions))] * len(completions)


@dataclass(frozen=True)
class LightScenario:
    """A scenario stand-in defined here, so a worker needs no heavy import to unpickle it."""

    scenario_id: str


@dataclass(frozen=True)
class LightCompletion:
    scenario_id: str
    group_index: int
    trace: str
    controls: object = None
    decode_status: str | None = None


def light_batch(n: int, sleepers: tuple[int, ...] = ()):
    """n light completions/scenarios; the completions at ``sleepers`` carry SLEEP_MARKER."""
    scen = [LightScenario(f"s{i}") for i in range(n)]
    comps = [LightCompletion(f"s{i}", 0, SLEEP_MARKER if i in sleepers else f"trace {i}") for i in range(n)]
    return comps, scen


def unpicklable_info(completions, scenarios, /):
    return [RewardResult(1.0, "ok", {"lock": threading.Lock()}) for _ in completions]


def bad_status(completions, scenarios, /):
    return [RewardResult(1.0, "fine", {}) for _ in completions]  # type: ignore[arg-type]


def unparseable_nan(completions, scenarios, /):
    return [RewardResult(float("nan"), "unparseable", {}) for _ in completions]


def bool_values(completions, scenarios, /):
    return [True for _ in completions]


async def async_raises_timeout(completions, scenarios, /):
    """An async plugin whose own network call timed out: an error, not the guard's deadline."""
    raise TimeoutError("upstream judge did not answer")


def forwards_options(completions, scenarios, /, *, scale: float = 1.0, **options):
    """A plugin taking ``**options`` with no declared checker: any extra key is accepted."""
    return [scale * len(options) for _ in completions]


def needs_threshold(completions, scenarios, bonus=0.1, /, *, threshold: float):
    """A plugin with a required keyword parameter (and a positional-only one a config cannot pass)."""
    return [float(len(c.trace) > threshold) for c in completions]


def positional_or_keyword(completions, scenarios, bonus=0.1):
    """README style: the parameter is not keyword-only, yet params can set it."""
    return [bonus for _ in completions]


TRAIN_ONLY_MESSAGE = "lane map missing for a training scenario"


def raises_on_train(completions, scenarios, /):
    """Raises on any batch holding a scenario of split 'train' (held-out 'val' batches score 1): a component
    that fails on every training sample, for the error budget's end-to-end test."""
    if any(getattr(s, "split", None) == "train" for s in scenarios):
        raise RuntimeError(TRAIN_ONLY_MESSAGE)
    return [1.0 for _ in completions]
