"""Curator: scores candidate scenarios with its own vLLM engine and the reward pipeline, publishes selections."""

from __future__ import annotations

import time

import numpy as np
import ray


@ray.remote
class Curator:
    def __init__(self, checkpoint: str, run: str, out_dir: str, redis_url: str, rollout_cfg, rewards_cfg,
                 curation_cfg, pool: list, seed: int):
        from rlpost.rewards.compose import RewardPipeline
        from rlpost.rl.rollout import RolloutEngine
        from rlpost.common.runtime import configure_cpu_runtime
        from rlpost.storage.store import SelectionStore

        configure_cpu_runtime(1)
        self.cfg, self.run, self.seed = curation_cfg, run, seed
        self.by_id = {s.scenario_id: s for s in pool}
        self.ids = sorted(self.by_id)
        self.store = SelectionStore(redis_url, run, f"{out_dir}/curation")
        self.engine = RolloutEngine(checkpoint, rollout_cfg, seed + 7919) if curation_cfg.scored else None
        self.rewards = RewardPipeline(rewards_cfg) if curation_cfg.scored else None
        self.num_params = _count_params(checkpoint)

    def run_round(self, round_id: int, step: int, weights=None) -> dict:
        """Score the round's candidates with the current policy (``weights``), publish the selection."""
        from rlpost.curation.rounds import candidate_pool, random_selection, score_and_select
        from rlpost.rewards.types import Completion

        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, round_id, 11])
        version, tokens = 0, 0
        if self.cfg.scored:
            if weights is not None:
                version = self.engine.load_weights(weights)["version"]
            candidates = [self.by_id[i] for i in candidate_pool(self.ids, round_id, self.cfg, self.seed)]
            records = self.engine.generate(candidates, self.cfg.group_size, run=f"{self.run}/curation",
                                           step=round_id, seed=self.seed)
            completions = [Completion(r.scenario_id, r.group_index, r.trace, r.controls) for r in records]
            for r, scored in zip(records, self.rewards.score(completions, [self.by_id[r.scenario_id] for r in records])):
                r.reward_total = scored.total
            tokens = sum(len(r.prompt_ids) + len(r.completion_ids) for r in records)
            parts = score_and_select(records, self.cfg, rng)
        else:
            parts = random_selection(self.ids, self.cfg, rng)
        wall = time.perf_counter() - t0
        # Forward-pass FLOPs of generation: ~2 x parameters per token processed (prompt and completion).
        record = {"round": round_id, "step": step, "policy_version": version, **parts, "wall_s": wall,
                  "tokens": tokens, "flops": 2.0 * self.num_params * tokens}
        self.store.publish(record)
        return {"round": round_id, "wall_s": wall, "tokens": tokens, "flops": record["flops"],
                "selected": len(parts["selected"]), "score_mean": parts["score_summary"].get("mean", 0.0)}

    def current(self) -> tuple[int, list[str]]:
        return self.store.current()

    def truncate_from(self, round_id: int) -> None:
        self.store.truncate_from(round_id)


def _count_params(checkpoint: str) -> int:
    from pathlib import Path

    from safetensors import safe_open

    total = 0
    for f in Path(checkpoint).glob("*.safetensors"):
        with safe_open(str(f), "pt") as handle:
            for key in handle.keys():
                total += int(np.prod(handle.get_slice(key).get_shape()))
    return total
