"""RolloutWorker: a Ray actor around one ``RolloutEngine`` (a vLLM engine with phase-constrained decoding)."""

from __future__ import annotations

import ray

from rlpost.rl.config import RolloutConfig


@ray.remote
class RolloutWorker:
    def __init__(self, checkpoint: str, cfg: RolloutConfig, seed: int, threads: int = 1):
        from rlpost.rl.rollout import RolloutEngine
        from rlpost.common.runtime import configure_cpu_runtime

        configure_cpu_runtime(threads)
        self.engine = RolloutEngine(checkpoint, cfg, seed)

    def generate(self, scenarios, group_size: int, run: str, step: int, seed: int, curation_round: int = 0,
                 min_version: int = 0):
        return self.engine.generate(scenarios, group_size, run=run, step=step, seed=seed,
                                    curation_round=curation_round, min_version=min_version)

    def load_weights(self, message) -> dict:
        return self.engine.load_weights(message)

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.engine.probe_logprobs(token_ids)

    def version(self) -> int:
        return self.engine.version
