"""The Redis reward cache against a real server (the session fixture ``redis_url``)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from rlpost.rewards.cache import RewardCache
from rlpost.rewards.compose import RewardPipeline
from rlpost.rewards.spec import RewardsConfig
from rlpost.rewards.synthetic import expert_completion, synthetic_scenarios
from rlpost.rewards.types import Completion, RewardResult

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(redis_url):
    c = RewardCache(redis_url, prefix=f"test:{uuid.uuid4().hex}", ttl_s=60)
    yield c
    for key in c.client.scan_iter(f"{c.prefix}:*"):
        c.client.delete(key)
    c.close()


def test_get_set_many_round_trip_and_only_deterministic_statuses_are_stored(cache):
    comps = [Completion("s", i, f"t{i}", np.full((64, 2), float(i))) for i in range(4)]
    keys = cache.keys("r", "1", comps)
    assert cache.get_many(keys) == [None] * 4
    results = [RewardResult(0.5, "ok", {"grade": 3}), RewardResult(0.0, "unparseable", {"reason": "x"}),
               RewardResult(-1.0, "timeout", {"error": "slow"}), RewardResult(-1.0, "error", {"error": "boom"})]
    assert cache.set_many(keys, results) == 2
    got = cache.get_many(keys)
    assert got[:2] == results[:2] and got[2:] == [None, None]
    assert cache.client.ttl(keys[0]) > 0
    assert (cache.hits, cache.misses) == (2, 6)
    assert cache.get_many(cache.keys("r", "2", comps)) == [None] * 4  # a version bump invalidates


def test_pipeline_serves_repeats_from_the_cache(redis_url, cache):
    cfg = RewardsConfig(components=[{"name": "reasoning_critic", "cache": True, "in_process": True,
                                     "deadline_s": None}])
    scen = synthetic_scenarios(3)
    scens = [s for s in scen for _ in range(2)]
    comps = [expert_completion(s, g % 2, noise=0.3 * (g % 2)) for g, s in enumerate(scens)]
    with RewardPipeline(cfg, cache=cache) as pipeline:
        first = pipeline.score(comps, scens)
        c = comps[1]
        comps[1] = Completion(c.scenario_id, c.group_index, "I will come to a stop.", c.controls)  # a new one
        second = pipeline.score(comps, scens)
        metrics = pipeline.metrics()
    assert not any(o.components["reasoning_critic"].cached for o in first)
    cached = [o.components["reasoning_critic"].cached for o in second]
    assert cached == [True, False, True, True, True, True]
    assert [o.components["reasoning_critic"].value for o in second if o.components["reasoning_critic"].cached] == \
        [o.components["reasoning_critic"].value for i, o in enumerate(first) if i != 1]
    assert metrics["rewards/cache/hits"] == 5 and metrics["rewards/cache/errors"] == 0


def test_unreachable_redis_is_a_logged_miss_not_a_crash(caplog):
    dead = RewardCache("redis://127.0.0.1:1/0", prefix="x")
    dead.client.connection_pool.connection_kwargs["socket_connect_timeout"] = 0.2
    comps = [Completion("s", 0, "t", None)]
    assert dead.get_many(dead.keys("r", "1", comps)) == [None]
    assert dead.set_many(dead.keys("r", "1", comps), [RewardResult(1.0)]) == 0
    assert dead.errors == 2 and "reward cache" in caplog.text
