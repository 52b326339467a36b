"""RewardWorker (the composed reward pipeline, each component guarded by its deadline, as a Ray actor) and the
driver's client for it, which also starts the judge server a ``reasoning_critic`` component may need."""

from __future__ import annotations

import ray

from rlpost.actors.common import ActorDiedError, actor_env, revive, wait


@ray.remote
class RewardWorker:
    def __init__(self, rewards_cfg, cache_url: str | None, run_name: str, threads: int = 1):
        from rlpost.common.runtime import configure_cpu_runtime
        from rlpost.rewards.cache import open_reward_cache, run_cache_prefix
        from rlpost.rewards.compose import RewardPipeline

        configure_cpu_runtime(threads)
        cache = open_reward_cache(rewards_cfg, cache_url, run_cache_prefix(rewards_cfg, run_name))
        self.pipeline = RewardPipeline(rewards_cfg, cache=cache)

    def score(self, completions, scenarios):
        return self.pipeline.score(completions, scenarios)

    def metrics(self) -> dict:
        return self.pipeline.metrics()

    def close(self) -> None:
        self.pipeline.close()


class RewardClient:
    """Scores rollout records on the RewardWorker; reissues a batch once when the worker died (Ray restarts it)."""

    def __init__(self, cfg, redis_url: str):
        rewards_cfg, self.judge = start_judge(cfg)
        self.restarts = 0
        # One deadline for a whole batch: every component may run into its deadline on each of its chunks.
        self.deadline_s = sum((s.deadline_s or 60.0) * s.max_timeouts_per_batch for s in cfg.rewards.components) + 120
        # No reserved CPU: the functions are light, or run in their own guarded processes.
        self.actor = RewardWorker.options(num_cpus=0, runtime_env=actor_env(1), name=f"rlpost:{cfg.name}:reward",
                                          max_restarts=cfg.trainer.max_restarts, max_task_retries=0).remote(
            rewards_cfg, cfg.rewards.cache_url or redis_url, cfg.name)

    def score(self, records: list, scenarios_by_id: dict) -> None:
        """Set ``rewards`` (typed components) and ``reward_total`` of every record."""
        completions = [r.completion() for r in records]
        scenarios = [scenarios_by_id[r.scenario_id] for r in records]
        try:
            scored = wait(self.actor.score.remote(completions, scenarios), "reward scoring", self.deadline_s)
        except ActorDiedError:
            revive(self.actor, "reward worker", 120)
            self.restarts += 1
            scored = wait(self.actor.score.remote(completions, scenarios), "reward scoring (reissued)", self.deadline_s)
        for record, sample in zip(records, scored):
            record.reward_total = sample.total
            record.rewards = sample.components

    def status_counts(self) -> dict:
        return wait(self.actor.metrics.remote(), "reward metrics", 60)

    def actors(self) -> list:
        return [self.actor, *([self.judge] if self.judge else [])]


def start_judge(cfg):
    """A JudgeServer actor (vLLM on the judge model) for a ``reasoning_critic`` component with the judge backend
    served by an actor; returns the rewards config pointed at it, and the server handle (or None)."""
    from rlpost.actors.judge_server import start_judge_server

    components, judge = [], None
    for spec in cfg.rewards.components:
        p = spec.params
        # With an endpoint, `model` is only the served judge's checkpoint (its token ids): the server grades.
        if (spec.name == "reasoning_critic" and p.get("backend") == "judge" and p.get("model")
                and not p.get("endpoint") and p.get("engine", "auto") in ("auto", "actor") and judge is None):
            name = f"rlpost-judge-{cfg.name}"
            judge = start_judge_server(p["model"], name=name, num_cpus=0)
            spec = spec.model_copy(update={"params": {**p, "engine": "actor", "server": name}})
        components.append(spec)
    return cfg.rewards.model_copy(update={"components": components}), judge
