"""``rewards.cache_prefix`` and ``rewards.cache_ttl_s`` reach the keys in a real Redis (the ``redis_url`` fixture)."""

from __future__ import annotations

import uuid

import pytest

from rlpost.rewards.cache import RewardCache, open_reward_cache, run_cache_prefix
from rlpost.rewards.compose import RewardPipeline
from rlpost.rewards.spec import RewardsConfig
from rlpost.rewards.synthetic import expert_completion, synthetic_scenarios


def critic_config(**cache) -> RewardsConfig:
    return RewardsConfig(components=[{"name": "reasoning_critic", "cache": True, "in_process": True,
                                      "deadline_s": None}], **cache)


def batch():
    scens = synthetic_scenarios(2)
    return [expert_completion(s, 0) for s in scens], scens


def stored_keys(cache: RewardCache, prefix: str) -> list[str]:
    return sorted(k.decode() for k in cache.client.scan_iter(f"{prefix}:*"))


@pytest.fixture
def prefix(redis_url):
    prefix = f"test-{uuid.uuid4().hex}"
    yield prefix
    cache = RewardCache(redis_url, prefix)
    for key in cache.client.scan_iter(f"{prefix}*"):
        cache.client.delete(key)
    cache.close()


def test_a_runs_cache_uses_the_configured_prefix_and_ttl_and_keeps_runs_apart(redis_url, prefix):
    cfg = critic_config(cache_prefix=prefix, cache_ttl_s=123)
    comps, scens = batch()
    caches = {run: open_reward_cache(cfg, redis_url, run_cache_prefix(cfg, run)) for run in ("run-a", "run-b")}
    for run, cache in caches.items():
        with RewardPipeline(cfg, cache=cache) as pipeline:
            pipeline.score(comps, scens)
        keys = stored_keys(cache, f"{prefix}:{run}")
        assert len(keys) == 2
        assert all(0 < cache.client.ttl(k) <= 123 for k in keys)
    # run-b computed its own results: the same completions under another run's name are not shared
    assert (caches["run-b"].hits, caches["run-b"].misses) == (0, 2)
    assert len(stored_keys(caches["run-a"], prefix)) == 4
    for cache in caches.values():
        cache.close()


def test_no_ttl_means_entries_never_expire_and_the_standalone_pipeline_honours_both(redis_url, prefix):
    cfg = critic_config(cache_url=redis_url, cache_prefix=prefix, cache_ttl_s=None)
    comps, scens = batch()
    with RewardPipeline(cfg) as pipeline:  # opens its own cache at cache_url
        pipeline.score(comps, scens)
        keys = stored_keys(pipeline.cache, prefix)
        assert len(keys) == 2 and all(pipeline.cache.client.ttl(k) == -1 for k in keys)  # -1: no expiry


def test_without_a_url_there_is_no_cache():
    assert open_reward_cache(critic_config(), None, "p") is None
