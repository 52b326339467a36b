"""Guarded execution: deadlines kill hung plugins, failures become statuses, the run goes on."""

from __future__ import annotations

import json
import time

import pytest

import reward_plugins as P
from rlpost.rewards.compose import RewardPipeline, flatten_components
from rlpost.rewards.guard import GuardedReward
from rlpost.rewards.registry import resolve_reward
from rlpost.rewards.spec import RewardSpec


def _guard(fn: str, **kw) -> GuardedReward:
    kw.setdefault("deadline_s", 5.0)
    return GuardedReward(resolve_reward(f"reward_plugins:{fn}"), **kw)


@pytest.fixture
def sleeper():
    guard = _guard("sleeps_forever", deadline_s=0.5, chunk_size=2, max_timeouts_per_batch=3, fallback=-1.0)
    guard([], [])  # nothing to do: no worker is started for an empty batch
    yield guard
    guard.close()


def test_sleeping_plugin_is_killed_at_the_deadline_and_only_its_chunk_times_out(sleeper):
    comps, scen = P.light_batch(8, sleepers=(3,))
    start = time.perf_counter()
    results, latency = sleeper(comps, scen)
    elapsed = time.perf_counter() - start
    statuses = [r.status for r in results]
    assert statuses == ["ok", "ok", "timeout", "timeout", "ok", "ok", "ok", "ok"]
    assert [r.value for r in results] == [1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert "deadline of 0.5 s" in results[2].info["error"] and "sleeps_forever" in results[2].info["error"]
    assert 0.5 <= elapsed < 4.0, elapsed  # one deadline plus one worker restart
    assert latency[2] >= 0.5e3 / 2 and sleeper.restarts == 1
    # The respawned worker serves the next batch normally.
    again, _ = sleeper(*P.light_batch(4))
    assert [r.status for r in again] == ["ok"] * 4


def test_max_timeouts_per_batch_bounds_an_always_hanging_plugin():
    guard = _guard("sleeps_forever", deadline_s=0.3, chunk_size=1, max_timeouts_per_batch=2)
    try:
        start = time.perf_counter()
        results, _ = guard(*P.light_batch(6, sleepers=tuple(range(6))))
        assert time.perf_counter() - start < 3.0
        assert [r.status for r in results] == ["timeout"] * 6
        assert "not run" in results[5].info["error"]
    finally:
        guard.close()


def test_async_plugin_is_awaited_and_times_out_cooperatively():
    guard = _guard("async_sleeper", deadline_s=0.5, chunk_size=2)
    try:
        results, _ = guard(*P.light_batch(4, sleepers=(0,)))
        assert [r.status for r in results] == ["timeout", "timeout", "ok", "ok"]
        assert results[2].value == 2.0 and results[2].info == {"async": True}
        assert guard.restarts == 0  # asyncio.wait_for fired inside the worker: no kill needed
    finally:
        guard.close()


@pytest.mark.parametrize(
    ("fn", "needle"),
    [
        ("raises", "RuntimeError: boom in plugin"),
        ("wrong_length", "returned 4 results for 3 samples"),
        ("returns_dict", "returned dict"),
        ("crashes_worker", "worker process died (exit code 3)"),
        ("unpicklable_info", "cannot be sent back"),
        ("bad_status", "status 'fine'"),
        ("unparseable_nan", "not a finite real number"),
        ("bool_values", "expected a finite float"),
        ("async_raises_timeout", "TimeoutError: upstream judge did not answer"),
    ],
)
def test_failures_become_error_status_naming_the_reward(fn, needle):
    guard = _guard(fn, fallback=-2.0)
    try:
        results, _ = guard(*P.light_batch(3))
        assert [r.status for r in results] == ["error"] * 3
        assert all(r.value == -2.0 for r in results)
        assert needle in results[0].info["error"] and repr(fn) in results[0].info["error"]
    finally:
        guard.close()


def test_nan_on_one_sample_only_fails_that_sample():
    guard = _guard("returns_nan")
    try:
        results, _ = guard(*P.light_batch(3))
        assert [r.status for r in results] == ["error", "ok", "ok"]
    finally:
        guard.close()


def test_unloadable_plugin_fails_its_samples_without_retrying_per_chunk():
    spec_guard = GuardedReward(resolve_reward("reward_plugins:trace_length"), {"no_such_param": 1}, deadline_s=5.0,
                               chunk_size=1)
    try:
        results, _ = spec_guard(*P.light_batch(3))
        assert [r.status for r in results] == ["error"] * 3
        assert "no_such_param" in results[0].info["error"]
    finally:
        spec_guard.close()


def test_pipeline_other_components_of_hung_samples_are_unaffected():
    comps, scen = P.light_batch(6, sleepers=(1,))
    specs = [
        RewardSpec(fn="reward_plugins:sleeps_forever", deadline_s=0.5, chunk_size=3, fallback=-1.0, weight=2.0),
        RewardSpec(fn="reward_plugins:trace_length", in_process=True, deadline_s=None, weight=0.5),
        RewardSpec(fn="reward_plugins:raises", in_process=True, deadline_s=None, fallback=0.25),
    ]
    with RewardPipeline(specs) as pipeline:
        out = pipeline.score(comps, scen)
        metrics = pipeline.metrics()
    assert [o.components["sleeps_forever"].status for o in out] == ["timeout"] * 3 + ["ok"] * 3
    assert all(o.components["trace_length"].status == "ok" for o in out)
    assert all(o.components["raises"].status == "error" for o in out)
    # total = 2·(−1 | 1) + 0.5·len(trace) + 1·0.25
    assert out[1].total == pytest.approx(2 * -1.0 + 0.5 * len(P.SLEEP_MARKER) + 0.25)
    assert out[4].total == pytest.approx(2 * 1.0 + 0.5 * len("trace 4") + 0.25)
    assert metrics["rewards/sleeps_forever/timeout"] == 3 and metrics["rewards/raises/error"] == 6
    assert metrics["rewards/sleeps_forever/worker_restarts"] == 1
    rec = out[0].components["sleeps_forever"]
    assert rec.version == "unversioned" and rec.weight == 2.0 and rec.latency_ms > 0
    flat = flatten_components(out[0].components)
    assert flat["reward.sleeps_forever.status"] == "timeout" and "error" in json.loads(flat["reward.raises.info"])


def test_async_plugin_in_process_also_from_inside_a_running_event_loop():
    import asyncio

    guard = GuardedReward(resolve_reward("reward_plugins:async_sleeper"), deadline_s=None, in_process=True)
    comps, scen = P.light_batch(2)
    assert [r.value for r in guard(comps, scen)[0]] == [2.0, 2.0]

    async def from_an_async_actor():
        return guard(comps, scen)[0]

    assert [r.status for r in asyncio.run(from_an_async_actor())] == ["ok", "ok"]
