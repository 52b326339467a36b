"""The actors of one run and the one-verb calls the training loop makes on them.

Ray starts locally when the config has no address; learner ranks and rollout engines are placed through one
placement group (PACK), so on a cluster they land where their bundles fit. Every wait has a deadline and an
error that names the actor and the call (``actors.common.wait``).
"""

from __future__ import annotations

import os

import numpy as np
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlpost.actors.common import ActorDiedError, actor_env, revive, wait
from rlpost.actors.curator import Curator
from rlpost.actors.learner import LearnerWorker
from rlpost.actors.reward import RewardWorker
from rlpost.actors.rollout import RolloutWorker
from rlpost.rl.learner import make_train_batch
from rlpost.policy.generate import completion_budget
from rlpost.policy.model import load_model_config
from rlpost.storage.local_redis import free_port
from rlpost.rewards.types import Completion
from rlpost.rl.rollout import StaleEngineError
from rlpost.rl.config import RunConfig
from rlpost.common.runtime import LOOPBACK_ENV


class Pending:
    """Generation calls in flight: which engine runs which chunk, so a call lost to an engine's death is reissued."""

    def __init__(self, calls: list[tuple[int, tuple]], refs: list):
        self.calls, self.refs = calls, refs


class WeightSyncError(RuntimeError):
    """A rollout engine did not end up on the learner's weights (version or probe mismatch)."""


def split(items: list, parts: int) -> list[list]:
    """Contiguous, near-equal chunks (order preserved)."""
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class Cluster:
    """Rollout workers, learner ranks and a reward worker for ``cfg``, started from ``checkpoint``."""

    def __init__(self, cfg: RunConfig, checkpoint: str, redis_url: str):
        self.cfg = cfg
        if not ray.is_initialized():
            os.environ.update({k: v for k, v in LOOPBACK_ENV.items() if k not in os.environ})
            local = cfg.ray_address is None
            ray.init(address=cfg.ray_address, num_cpus=cfg.ray_num_cpus if local else None,
                     include_dashboard=False, log_to_driver=True, runtime_env=actor_env(),
                     **({"_node_ip_address": "127.0.0.1"} if local else {}))  # a local Ray binds loopback only
            self._owns_ray = True
        else:
            self._owns_ray = False
        lc, rc = cfg.learner, cfg.rollout
        def bundle(cpus, gpus):
            return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}

        bundles = [bundle(lc.num_cpus, lc.num_gpus)] * lc.num_ranks + [bundle(rc.num_cpus, rc.num_gpus)] * rc.num_workers
        self.pg = placement_group(bundles, strategy="PACK")
        wait(self.pg.ready(), "placement group (learner ranks + rollout engines)", 120)

        def in_bundle(i):
            return PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=i)

        port = free_port()
        self.learners = [
            LearnerWorker.options(num_cpus=lc.num_cpus, num_gpus=lc.num_gpus, scheduling_strategy=in_bundle(r),
                                  runtime_env=actor_env(lc.threads)).remote(r, lc.num_ranks, port, lc.threads)
            for r in range(lc.num_ranks)
        ]
        self.per_rank = cfg.trainer.scenarios_per_step * rc.group_size // lc.num_ranks
        wait([w.setup.remote(checkpoint, lc, self.per_rank, rc.group_size) for w in self.learners],
             "learner setup (DeepSpeed init over gloo)", lc.timeout_s)
        # Rollout engines, the reward worker and the curator are restartable: Ray restarts a dead one (its
        # constructor runs again) and the cluster restores its state and reissues the lost call. Learner ranks are
        # not: their optimizer state lives only in them, so their death ends the run at the last checkpoint.
        restart = {"max_restarts": cfg.trainer.max_restarts, "max_task_retries": 0}
        self.rollouts = [
            RolloutWorker.options(num_cpus=rc.num_cpus, num_gpus=rc.num_gpus, scheduling_strategy=in_bundle(lc.num_ranks + i),
                                  runtime_env=actor_env(1), name=f"rlpost:{cfg.name}:rollout:{i}", **restart
                                  ).remote(checkpoint, rc, cfg.trainer.seed + i)
            for i in range(rc.num_workers)
        ]
        wait([w.version.remote() for w in self.rollouts], "rollout engine start (vLLM)", rc.timeout_s)
        rewards_cfg, self.judge = self._start_judge(cfg)
        # The reward worker takes no reserved CPU: its functions are light, or run in their own guarded processes.
        self.reward = RewardWorker.options(num_cpus=0, runtime_env=actor_env(1), name=f"rlpost:{cfg.name}:reward",
                                           **restart).remote(
            rewards_cfg, cfg.rewards.cache_url or redis_url, f"rlpost:{cfg.name}:reward_cache")
        self.last_weights = None
        self.restarts = {"rollout": 0, "reward": 0}
        self.version = 0  # the policy version every engine holds after the last sync
        self.curator = None
        self.redis_url = redis_url
        self.checkpoint = checkpoint
        self.completion_budget = completion_budget(load_model_config(checkpoint))

    @staticmethod
    def _start_judge(cfg: RunConfig):
        """A JudgeServer actor (vLLM on the judge model) for a ``reasoning_critic`` component with the judge backend
        served by an actor; returns the rewards config pointed at it, and the server handle (or None)."""
        from rlpost.actors.judge_server import start_judge_server

        components, judge = [], None
        for spec in cfg.rewards.components:
            p = spec.params
            if (spec.name == "reasoning_critic" and p.get("backend") == "judge" and p.get("model")
                    and p.get("engine", "auto") in ("auto", "actor") and judge is None):
                name = f"rlpost-judge-{cfg.name}"
                judge = start_judge_server(p["model"], name=name, num_cpus=0)
                spec = spec.model_copy(update={"params": {**p, "engine": "actor", "server": name}})
            components.append(spec)
        return cfg.rewards.model_copy(update={"components": components}), judge

    # --- curation -----------------------------------------------------------------------------------------------
    def start_curator(self, pool: list) -> None:
        """The Curator actor (its own vLLM engine for scored schedules), sharing the run's Redis."""
        cc = self.cfg.curation
        self.curator = Curator.options(num_cpus=cc.num_cpus, runtime_env=actor_env(1), name=f"rlpost:{self.cfg.name}:curator",
                                       max_restarts=self.cfg.trainer.max_restarts, max_task_retries=0).remote(
            self.checkpoint, self.cfg.name, self.cfg.out, self.redis_url, self.cfg.rollout, self.cfg.rewards, cc,
            ray.put(pool), self.cfg.trainer.seed)

    def curate(self, step: int):
        """Start the round of ``step`` (its id) with the latest synced weights; returns the ref of its summary."""
        return self.curator.run_round.remote(step, step, self.last_weights)

    def round_done(self, ref, block_s: float) -> dict | None:
        """The round's summary if it finished within ``block_s`` seconds, else None (training goes on). A round
        lost to the curator's death reports ``{"failed": ...}``; the restarted curator serves the last selection."""
        ready, _ = ray.wait([ref], timeout=block_s)
        if not ready:
            return None
        try:
            return wait(ref, "curation round", 60)
        except ActorDiedError as exc:
            revive(self.curator, "curator", self.cfg.rollout.timeout_s)
            return {"failed": str(exc)}

    def forget_rounds_from(self, step: int) -> None:
        wait(self.curator.truncate_from.remote(step), "curator truncate", 60)

    def selection(self) -> tuple[int, list[str]]:
        return wait(self.curator.current.remote(), "curator selection", 60)

    # --- generate -----------------------------------------------------------------------------------------------
    def generate(self, scenarios: list, step: int, curation_round: int = 0, group_size: int | None = None) -> Pending:
        """Start generation of ``group_size`` (default G) rollouts per scenario across the engines."""
        g = group_size or self.cfg.rollout.group_size
        calls = [(i, (chunk, g, self.cfg.name, step, self.cfg.trainer.seed, curation_round, self.version))
                 for i, chunk in enumerate(split(scenarios, len(self.rollouts))) if chunk]
        return Pending(calls, [self.rollouts[i].generate.remote(*args) for i, args in calls])

    def collect(self, pending: Pending) -> list:
        """The records of all engines, in scenario order. A call lost to an engine's death is reissued on the
        restarted engine once it holds the current weights (sampling is seeded, so the samples are the same)."""
        records = []
        for (i, args), ref in zip(pending.calls, pending.refs):
            try:
                part = wait(ref, f"rollout generation (worker {i})", self.cfg.rollout.timeout_s)
            except (ActorDiedError, StaleEngineError):
                # Died mid-call, or restarted before this call reached it and still holds the start weights.
                self._restore_rollout(i)
                part = wait(self.rollouts[i].generate.remote(*args), f"rollout generation (worker {i}, reissued)",
                            self.cfg.rollout.timeout_s)
            records.extend(part)
        return records

    def _restore_rollout(self, i: int) -> None:
        """Wait for Ray to restart engine ``i``, then load the current weights and version before it serves."""
        revive(self.rollouts[i], f"rollout worker {i}", self.cfg.rollout.timeout_s)
        if self.last_weights is not None:
            wait(self.rollouts[i].load_weights.remote(self.last_weights), f"weight reload (restarted worker {i})",
                 self.cfg.sync.timeout_s)
        self.restarts["rollout"] += 1

    # --- score --------------------------------------------------------------------------------------------------
    def score(self, records: list, scenarios_by_id: dict) -> None:
        """Fill ``rewards`` and ``reward_total`` of every record with the composed reward pipeline."""
        completions = [Completion(r.scenario_id, r.group_index, r.trace, r.controls,
                                  "ok" if r.controls is not None else "no_trajectory", tuple(r.completion_ids))
                       for r in records]
        scenarios = [scenarios_by_id[r.scenario_id] for r in records]
        deadline = sum((s.deadline_s or 60.0) * s.max_timeouts_per_batch for s in self.cfg.rewards.components) + 120
        try:
            scored = wait(self.reward.score.remote(completions, scenarios), "reward scoring", deadline)
        except ActorDiedError:
            revive(self.reward, "reward worker", 120)
            self.restarts["reward"] += 1
            scored = wait(self.reward.score.remote(completions, scenarios), "reward scoring (reissued)", deadline)
        for record, sample in zip(records, scored):
            record.reward_total = sample.total
            record.rewards = {name: {"value": c.value, "status": c.status, "latency_ms": c.latency_ms,
                                     "version": c.version, "info": c.info} for name, c in sample.components.items()}

    def reward_metrics(self) -> dict:
        return wait(self.reward.metrics.remote(), "reward metrics", 60)

    # --- update -------------------------------------------------------------------------------------------------
    def update(self, records: list, pad_id: int, expert_inputs: tuple[list, list] | None = None) -> dict:
        """One learner step on ``records`` (advantages set): each rank gets a contiguous slice of whole groups.
        expert_inputs: (prefix lengths, normalised target controls), one per record, when the expert trains."""
        normalizer = self._normalizer(records)
        refs = []
        bounds = np.cumsum([0] + [len(p) for p in split(records, len(self.learners))])
        for worker, a, b in zip(self.learners, bounds[:-1], bounds[1:]):
            part = records[a:b]
            extra = {} if expert_inputs is None else {"prefix_lengths": expert_inputs[0][a:b],
                                                      "expert_targets": expert_inputs[1][a:b]}
            batch = make_train_batch([r.prompt_ids for r in part], [r.completion_ids for r in part],
                                     [r.sampler_logprobs for r in part], [r.advantage for r in part], pad_id, **extra)
            refs.append(worker.update.remote(batch, float(normalizer)))
        try:
            per_rank = wait(refs, "learner update", self.cfg.learner.timeout_s)
        except ActorDiedError as exc:
            raise ActorDiedError(f"{exc}. A learner rank holds optimizer state that cannot be rebuilt, so the run "
                                 f"ends here; rerun the same command to resume from its last checkpoint") from None
        out = {k: float(np.mean([m[k] for m in per_rank])) for k in per_rank[0]}
        out["loss"] = float(np.sum([m["loss"] for m in per_rank]))  # rank losses are shares of one global loss
        return out

    def _normalizer(self, records: list) -> float:
        """The global count the loss divides by (``PolicyLoss.normalizer``), over the whole step's batch."""
        return self.cfg.learner.loss.normalizer(completion_lengths=[len(r.completion_ids) for r in records],
                                                group_size=self.cfg.rollout.group_size,
                                                completion_budget=self.completion_budget)

    # --- sync ---------------------------------------------------------------------------------------------------
    def sync(self, probe: list[int] | None = None) -> dict:
        """Push the learner's weights to every engine (bucketed, checksummed); verify version and log-prob probe."""
        sc = self.cfg.sync
        messages = wait([w.export_weights.remote(sc.bucket_mb) for w in self.learners], "weight export", sc.timeout_s)
        message = messages[0]
        ref = self.last_weights = ray.put(message)  # one copy in the object store, read by every engine
        infos = []
        for i, call in enumerate([w.load_weights.remote(ref) for w in self.rollouts]):
            try:
                infos.append(wait(call, f"weight sync into rollout worker {i}", sc.timeout_s))
            except ActorDiedError:
                self._restore_rollout(i)  # reloads self.last_weights, i.e. this message
                infos.append(wait(self.rollouts[i].load_weights.remote(ref), f"weight sync (restarted worker {i})",
                                  sc.timeout_s))
        for i, info in enumerate(infos):
            if info["version"] != message.version:
                raise WeightSyncError(f"rollout worker {i}: acknowledged v{info['version']}, sent v{message.version}")
        self.version = message.version
        out = {"sync_ms": max(i["sync_ms"] for i in infos), "sync_bytes": infos[0]["bytes"], "version": message.version}
        if sc.verify_probe and probe:
            want = np.array(wait(self.learners[0].probe_logprobs.remote(probe), "learner probe", sc.timeout_s))
            for i, got in enumerate(wait([w.probe_logprobs.remote(probe) for w in self.rollouts], "engine probe",
                                         sc.timeout_s)):
                gap = float(np.abs(np.array(got) - want).mean())
                if gap > sc.probe_tolerance:
                    raise WeightSyncError(f"rollout worker {i}: log-prob probe gap {gap:.2e} > "
                                          f"sync.probe_tolerance {sc.probe_tolerance:.0e} after loading v{message.version}")
                out["sync_probe_gap"] = max(out.get("sync_probe_gap", 0.0), gap)
        return out

    # --- checkpoints --------------------------------------------------------------------------------------------
    def save(self, directory: str, client_state: dict) -> None:
        wait([w.save.remote(directory, client_state) for w in self.learners], "learner checkpoint",
             self.cfg.learner.timeout_s)

    def load(self, directory: str) -> dict:
        return wait([w.load.remote(directory) for w in self.learners], "learner restore", self.cfg.learner.timeout_s)[0]

    def save_pretrained(self, directory: str) -> None:
        wait([w.save_pretrained.remote(directory) for w in self.learners], "export HF checkpoint",
             self.cfg.learner.timeout_s)

    def shutdown(self) -> None:
        for actor in [*self.rollouts, *self.learners, self.reward, *[a for a in (self.curator, self.judge) if a]]:
            ray.kill(actor)
        remove_placement_group(self.pg)
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
