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
        from rlpost.curation.amortised import ScoreTable
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
        self.rewards_cfg = rewards_cfg
        self.num_params = _count_params(checkpoint)
        self.version = 0
        # Amortised mode: the score table survives a restart in Redis; training tokens since the last round set
        # the next round's budget, their mean sequence length its cost per candidate.
        self.table = ScoreTable.from_json(self.store.load_scores()) if curation_cfg.amortised else None
        self.train_tokens, self.train_sequences = 0, 0

    def observe(self, step: int, version: int, ids: list[str], scores: list[float], tokens: int, sequences: int):
        """A training step's groups, scored by the driver from its own rollouts: fresh scores at no generation."""
        self.table.update(ids, scores, step, version, "training")
        self.train_tokens += tokens
        self.train_sequences += sequences
        self.store.save_scores(self.table.to_json())

    def run_round(self, round_id: int, step: int, weights=None) -> CurationRound:
        """Score the round's candidates with the current policy (``weights``), publish the selection."""
        from rlpost.curation.rounds import adopt_round0, candidate_pool, random_selection, score_and_select

        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, round_id, 11])
        tokens, stats, wall_s = 0, {}, None
        if weights is not None and self.cfg.scored:
            self.version = self.engine.load_weights(weights)["version"]
        if not self.cfg.scored:
            scores = random_selection(self.ids, self.cfg, rng)
        elif round_id == 0 and self.cfg.reuse_round0:
            candidates = candidate_pool(self.ids, round_id, self.cfg, self.seed)
            scores, wall_s, tokens = adopt_round0(self.cfg.reuse_round0, candidates, self.cfg, rng)
            if self.cfg.amortised:
                self.table.update(scores.candidates, scores.scores, 0, 0, "round")
                self.store.save_scores(self.table.to_json())
        elif self.cfg.amortised:
            scores, tokens, stats = self._amortised_round(round_id, step, rng)
        else:
            candidates = candidate_pool(self.ids, round_id, self.cfg, self.seed)
            records, tokens = self._generate(candidates, round_id, "curation")
            scores = score_and_select(records, self.cfg, rng)
        # Forward-pass FLOPs of generation: ~2 x parameters per token processed (prompt and completion).
        done = CurationRound(round_id, step, self.version, scores,
                             time.perf_counter() - t0 if wall_s is None else wall_s, tokens,
                             2.0 * self.num_params * tokens, stats)
        self.store.publish(done)
        return done

    def _amortised_round(self, round_id: int, step: int, rng):
        """Re-score the never-scored candidates and then, within the budget, the oldest (or most uncertain)
        scores; select from the whole table. Returns (RoundScores, charged tokens, stats)."""
        from rlpost.curation.amortised import freshness, rescore_budget
        from rlpost.curation.analysis import rank_correlation, score_summary
        from rlpost.curation.rounds import RoundScores, candidate_pool, choose, score_groups

        cfg, table = self.cfg, self.table
        candidates = candidate_pool(self.ids, round_id, cfg, self.seed)
        missing = table.missing(candidates)
        if self.train_sequences:
            per_candidate = cfg.group_size * self.train_tokens / self.train_sequences
            budget = cfg.rescore_tokens if cfg.rescore_tokens is not None else cfg.rescore_share * self.train_tokens
            n = max(rescore_budget(budget, per_candidate), len(missing))
        else:
            n = len(missing)  # round 0 (or a restart before any training step): only what was never scored
        picked = table.rescore_order(candidates, step, cfg.rescore_order, cfg.size, cfg.score_half_life)[:n]
        stats, tokens = {"rescored": len(picked)}, 0
        if picked:
            records, tokens = self._generate(picked, round_id, "curation")
            fresh = score_groups(records, cfg)
            before = table.scores(fresh.ids)
            stats["agreement_rescored"] = rank_correlation(before, dict(zip(fresh.ids, fresh.scores.tolist())))
            table.update(fresh.ids, fresh.scores, step, self.version, "rescore" if round_id else "round")
        if cfg.audit and round_id:
            records, stats["audit_tokens"] = self._generate(candidates, round_id, "curation-audit")
            full = score_groups(records, cfg)
            stats["agreement_full"] = rank_correlation(table.scores(candidates),
                                                       dict(zip(full.ids, full.scores.tolist())))
        scored = [i for i in candidates if i in table.entries]
        effective = table.effective(scored, step, cfg.score_half_life)
        selected = choose(scored, effective, cfg, rng)
        stats.update(freshness(table, selected, step))
        self.train_tokens, self.train_sequences = 0, 0
        self.store.save_scores(table.to_json())
        entries = [table.entries[i] for i in scored]
        return (RoundScores(scored, [e.score for e in entries], [False] * len(scored), [float("nan")] * len(scored),
                            selected, score_summary(effective), [e.step for e in entries], [e.source for e in entries]),
                tokens, stats)

    def _generate(self, ids: list[str], round_id: int, tag: str) -> tuple[list, int]:
        """G rollouts per candidate with the curator's engine, scored (``reward_total`` set); and their tokens."""
        from rlpost.rewards.budget import check_error_budget
        from rlpost.rl.rollout import GenerateRequest

        records = self.engine.generate(GenerateRequest([self.by_id[i] for i in ids], self.cfg.group_size,
                                                       f"{self.run}/{tag}", round_id, self.seed))
        scored = self.rewards.score([r.completion() for r in records], [self.by_id[r.scenario_id] for r in records])
        check_error_budget(scored, self.rewards_cfg.components, f"curation round {round_id} ({tag})")
        for r, sample in zip(records, scored):
            r.reward_total = sample.total
        return records, sum(len(r.prompt_ids) + len(r.completion_ids) for r in records)

    def current(self) -> tuple[int, list[str]]:
        return self.store.current()

    def truncate_from(self, round_id: int) -> None:
        self.store.truncate_from(round_id)
        if self.table is not None:
            self.table.drop_from(round_id)
            self.store.save_scores(self.table.to_json())


class CuratorClient:
    """The driver's side of the Curator: start rounds, poll them, read the live selection."""

    def __init__(self, cfg, checkpoint: str, redis_url: str, pool: list):
        cc = cfg.curation
        self.timeout_s = cfg.rollout.timeout_s
        self.actor = Curator.options(num_cpus=cc.num_cpus, runtime_env=actor_env(1), name=f"rlpost:{cfg.name}:curator",
                                     max_restarts=cfg.trainer.max_restarts, max_task_retries=0).remote(
            checkpoint, cfg.name, cfg.out, redis_url, cfg.rollout, cfg.rewards, cc, ray.put(pool), cfg.trainer.seed)
        self.observed: list = []

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

    def observe(self, step: int, version: int, groups, tokens: int, sequences: int) -> None:
        """Send a training step's group scores (``GroupScores``) to the amortised table; fire and forget (the
        curator's calls run in order, so a round sees every step observed before it was started). An earlier
        observation that failed raises here, naming it."""
        done, self.observed = ray.wait(self.observed, num_returns=len(self.observed), timeout=0) if self.observed \
            else ([], [])
        for ref in done:
            try:
                wait(ref, "curator observe (amortised scores of a training step)", 60)
            except ActorDiedError:
                pass  # lost with the curator: those scenarios keep their older score (from Redis), nothing else
        self.observed.append(self.actor.observe.remote(step, version, groups.ids, groups.scores.tolist(), tokens,
                                                       sequences))

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
