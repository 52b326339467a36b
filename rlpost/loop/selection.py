"""Which scenarios a step draws from: the whole pool, or the Curator's live selection (Redis) with the id of the
round that selected it. Online rounds run in the Curator's own process while training goes on."""

from __future__ import annotations

from rlpost.common import metric_names as M
from rlpost.curation.rounds import CurationRound, RoundFailed, score_groups
from rlpost.loop.steps import scenario_batch


class Selection:
    def __init__(self, cluster, cfg, pool: list, start: int):
        self.cluster, self.cfg = cluster, cfg.curation
        self.round, self.ids = 0, sorted(s.scenario_id for s in pool)
        self.pending = None
        self.cost = {M.CURATION_WALL_S: 0.0, M.CURATION_TOKENS: 0, M.CURATION_FLOPS: 0.0, M.CURATION_ROUNDS: 0,
                     M.CURATION_RECURATION_TOKENS: 0}
        if self.cfg.schedule == "none":
            return
        self.curator = cluster.start_curator(pool)
        if start == 0:
            self._account(self._first_round(cfg.rollout.timeout_s))
        else:
            self.curator.forget_rounds_from(start)
        self.round, self.ids = self.curator.selection()

    def observe(self, records: list) -> None:
        """Feed a scored training step's groups to the amortised score table (no-op for other schedules)."""
        if self.cfg.amortised:
            tokens = sum(len(r.prompt_ids) + len(r.completion_ids) for r in records)
            self.curator.observe(records[0].step, min(r.policy_version for r in records),
                                 score_groups(records, self.cfg), tokens, len(records))

    def maybe_start_round(self, step: int) -> None:
        if self.cfg.due(step) and step > 0 and self.pending is None:
            self.pending = self.cluster.curate(step)

    def poll(self) -> dict:
        """Adopt a finished round's selection (waiting at most ``curation.max_block_s``); its scalars or {}."""
        if self.pending is None:
            return {}
        done = self.curator.round_done(self.pending, self.cfg.max_block_s)
        if done is None:
            return {}
        self.pending = None
        self.round, self.ids = self.curator.selection()  # after a failed round: the last published selection
        if isinstance(done, RoundFailed):
            return {M.CURATION_FAILED_ROUNDS: 1}
        return self._account(done)

    def _first_round(self, block_s: float) -> CurationRound:
        """Round 0, which training waits for. A curator that dies in it (OOM-killed, its node lost) is restarted by
        Ray (``round_done`` waits for that) and the round runs again: it is a function of the start policy, the
        pool and the seed, so the rerun is the same round. Ray's restart budget (``trainer.max_restarts``) bounds
        the retries; a round that raises ends the run with its error."""
        while True:
            done = self.curator.round_done(self.cluster.curate(0), block_s=block_s)
            if isinstance(done, CurationRound):
                return done
            if done is None:
                raise RuntimeError(f"curation: the first round did not finish within {block_s:.0f} s "
                                   "(rollout.timeout_s)")

    def _account(self, done: CurationRound) -> dict:
        self.cost[M.CURATION_WALL_S] += done.wall_s
        self.cost[M.CURATION_TOKENS] += done.tokens
        self.cost[M.CURATION_FLOPS] += done.flops
        self.cost[M.CURATION_ROUNDS] += 1
        if done.round > 0:
            self.cost[M.CURATION_RECURATION_TOKENS] += done.tokens
        return {M.CURATION_ROUND: done.round, M.CURATION_SCORE_MEAN: done.score_mean, **self.cost,
                **{M.curation_stat(k): v for k, v in done.stats.items()}}

    def batch(self, step: int, size: int, seed: int, by_id: dict) -> tuple[int, list]:
        return self.round, [by_id[i] for i in scenario_batch(self.ids, step, size, seed)]
