"""RewardWorker: the composed reward pipeline (each component guarded by its deadline) as a Ray actor."""

from __future__ import annotations

import ray


@ray.remote
class RewardWorker:
    def __init__(self, rewards_cfg, cache_url: str | None, run_name: str, threads: int = 1):
        from rlpost.rewards.cache import open_reward_cache, run_cache_prefix
        from rlpost.rewards.compose import RewardPipeline
        from rlpost.common.runtime import configure_cpu_runtime

        configure_cpu_runtime(threads)
        cache = open_reward_cache(rewards_cfg, cache_url, run_cache_prefix(rewards_cfg, run_name))
        self.pipeline = RewardPipeline(rewards_cfg, cache=cache)

    def score(self, completions, scenarios):
        return self.pipeline.score(completions, scenarios)

    def metrics(self) -> dict:
        return self.pipeline.metrics()

    def close(self) -> None:
        self.pipeline.close()
