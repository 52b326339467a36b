"""The Curator actor (its own vLLM engine + reward pipeline: scores candidates, publishes selections) and the
driver's client for it."""

from __future__ import annotations

import time

import numpy as np
import ray

from rlpost.actors.common import ActorDiedError, actor_env, revive, wait
from rlpost.curation.rounds import CurationRound, RoundFailed


@ray.remote
class Curator:
    def __init__(self, checkpoint: str, run: str, out_dir: str, redis_url: str, rollout_cfg, rewards_cfg,
                 curation_cfg, pool: list, seed: int):
        from rlpost.common.runtime import configure_cpu_runtime
        from rlpost.rewards.compose import RewardPipeline
        from rlpost.rl.rollout import RolloutEngine
        from rlpost.storage.store import SelectionStore

        configure_cpu_runtime(1)
        self.cfg, self.run, self.seed = curation_cfg, run, seed
        self.by_id = {s.scenario_id: s for s in pool}
        self.ids = sorted(self.by_id)
        self.store = SelectionStore(redis_url, run, f"{out_dir}/curation")
        self.engine = RolloutEngine(checkpoint, rollout_cfg, seed + 7919) if curation_cfg.scored else None
        self.rewards = RewardPipeline(rewards_cfg) if curation_cfg.scored else None
        self.num_params = _count_params(checkpoint)

    def run_round(self, round_id: int, step: int, weights=None) -> CurationRound:
        """Score the round's candidates with the current policy (``weights``), publish the selection."""
        from rlpost.curation.rounds import candidate_pool, random_selection, score_and_select
        from rlpost.rl.rollout import GenerateRequest

        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, round_id, 11])
        version, tokens = 0, 0
        if self.cfg.scored:
            if weights is not None:
                version = self.engine.load_weights(weights)["version"]
            candidates = [self.by_id[i] for i in candidate_pool(self.ids, round_id, self.cfg, self.seed)]
            records = self.engine.generate(GenerateRequest(candidates, self.cfg.group_size, f"{self.run}/curation",
                                                           round_id, self.seed))
            scored = self.rewards.score([r.completion() for r in records], [self.by_id[r.scenario_id] for r in records])
            for r, sample in zip(records, scored):
                r.reward_total = sample.total
            tokens = sum(len(r.prompt_ids) + len(r.completion_ids) for r in records)
            scores = score_and_select(records, self.cfg, rng)
        else:
            scores = random_selection(self.ids, self.cfg, rng)
        # Forward-pass FLOPs of generation: ~2 x parameters per token processed (prompt and completion).
        done = CurationRound(round_id, step, version, scores, time.perf_counter() - t0, tokens,
                             2.0 * self.num_params * tokens)
        self.store.publish(done)
        return done

    def current(self) -> tuple[int, list[str]]:
        return self.store.current()

    def truncate_from(self, round_id: int) -> None:
        self.store.truncate_from(round_id)


class CuratorClient:
    """The driver's side of the Curator: start rounds, poll them, read the live selection."""

    def __init__(self, cfg, checkpoint: str, redis_url: str, pool: list):
        cc = cfg.curation
        self.timeout_s = cfg.rollout.timeout_s
        self.actor = Curator.options(num_cpus=cc.num_cpus, runtime_env=actor_env(1), name=f"rlpost:{cfg.name}:curator",
                                     max_restarts=cfg.trainer.max_restarts, max_task_retries=0).remote(
            checkpoint, cfg.name, cfg.out, redis_url, cfg.rollout, cfg.rewards, cc, ray.put(pool), cfg.trainer.seed)

    def start_round(self, step: int, weights):
        """Start the round of ``step`` (its id) with ``weights`` (the last synced message); returns its ref."""
        return self.actor.run_round.remote(step, step, weights)

    def round_done(self, ref, block_s: float) -> CurationRound | RoundFailed | None:
        """The round if it finished within ``block_s`` seconds, else None (training goes on). A round lost to the
        curator's death is ``RoundFailed``, after Ray restarted the curator."""
        ready, _ = ray.wait([ref], timeout=block_s)
        if not ready:
            return None
        try:
            return wait(ref, "curation round", 60)
        except ActorDiedError as exc:
            revive(self.actor, "curator", self.timeout_s)
            return RoundFailed(str(exc))

    def forget_rounds_from(self, step: int) -> None:
        wait(self.actor.truncate_from.remote(step), "curator truncate", 60)

    def selection(self) -> tuple[int, list[str]]:
        return wait(self.actor.current.remote(), "curator selection", 60)


def _count_params(checkpoint: str) -> int:
    from pathlib import Path

    from safetensors import safe_open

    total = 0
    for f in Path(checkpoint).glob("*.safetensors"):
        with safe_open(str(f), "pt") as handle:
            for key in handle.keys():
                total += int(np.prod(handle.get_slice(key).get_shape()))
    return total
