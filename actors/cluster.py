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

from rlpost.actors.common import actor_env, wait
from rlpost.actors.learner import LearnerWorker
from rlpost.actors.reward import RewardWorker
from rlpost.actors.rollout import RolloutWorker
from rlpost.learner import make_train_batch
from rlpost.local_redis import free_port
from rlpost.rewards.types import Completion
from rlpost.run_config import RunConfig
from rlpost.runtime import LOOPBACK_ENV


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
            ray.init(address=cfg.ray_address, num_cpus=cfg.ray_num_cpus if cfg.ray_address is None else None,
                     include_dashboard=False, log_to_driver=True, runtime_env=actor_env())
            self._owns_ray = True
        else:
            self._owns_ray = False
        lc, rc = cfg.learner, cfg.rollout
        bundles = [{"CPU": lc.num_cpus}] * lc.num_ranks + [{"CPU": rc.num_cpus}] * rc.num_workers
        self.pg = placement_group(bundles, strategy="PACK")
        wait(self.pg.ready(), "placement group (learner ranks + rollout engines)", 120)

        def in_bundle(i):
            return PlacementGroupSchedulingStrategy(placement_group=self.pg, placement_group_bundle_index=i)

        port = free_port()
        self.learners = [
            LearnerWorker.options(num_cpus=lc.num_cpus, scheduling_strategy=in_bundle(r),
                                  runtime_env=actor_env(lc.threads)).remote(r, lc.num_ranks, port, lc.threads)
            for r in range(lc.num_ranks)
        ]
        self.per_rank = cfg.trainer.scenarios_per_step * rc.group_size // lc.num_ranks
        wait([w.setup.remote(checkpoint, lc, self.per_rank, rc.group_size) for w in self.learners],
             "learner setup (DeepSpeed init over gloo)", lc.timeout_s)
        self.rollouts = [
            RolloutWorker.options(num_cpus=rc.num_cpus, scheduling_strategy=in_bundle(lc.num_ranks + i),
                                  runtime_env=actor_env(1)).remote(checkpoint, rc, cfg.trainer.seed + i)
            for i in range(rc.num_workers)
        ]
        wait([w.version.remote() for w in self.rollouts], "rollout engine start (vLLM)", rc.timeout_s)
        # The reward worker takes no reserved CPU: its functions are light, or run in their own guarded processes.
        self.reward = RewardWorker.options(num_cpus=0, runtime_env=actor_env(1)).remote(
            cfg.rewards, cfg.rewards.cache_url or redis_url, f"rlpost:{cfg.name}:reward_cache")

    # --- generate -----------------------------------------------------------------------------------------------
    def generate(self, scenarios: list, step: int, curation_round: int = 0, group_size: int | None = None) -> list:
        """Start generation of ``group_size`` (default G) rollouts per scenario across the engines; returns refs."""
        g = group_size or self.cfg.rollout.group_size
        return [w.generate.remote(chunk, g, self.cfg.name, step, self.cfg.trainer.seed, curation_round)
                for w, chunk in zip(self.rollouts, split(scenarios, len(self.rollouts))) if chunk]

    def collect(self, refs: list) -> list:
        """Wait for ``generate`` refs; the records of all engines, in scenario order."""
        return [r for part in wait(refs, "rollout generation", self.cfg.rollout.timeout_s) for r in part]

    # --- score --------------------------------------------------------------------------------------------------
    def score(self, records: list, scenarios_by_id: dict) -> None:
        """Fill ``rewards`` and ``reward_total`` of every record with the composed reward pipeline."""
        completions = [Completion(r.scenario_id, r.group_index, r.trace, r.controls,
                                  "ok" if r.controls is not None else "no_trajectory", tuple(r.completion_ids))
                       for r in records]
        scenarios = [scenarios_by_id[r.scenario_id] for r in records]
        deadline = sum((s.deadline_s or 60.0) * s.max_timeouts_per_batch for s in self.cfg.rewards.components) + 120
        scored = wait(self.reward.score.remote(completions, scenarios), "reward scoring", deadline)
        for record, sample in zip(records, scored):
            record.reward_total = sample.total
            record.rewards = {name: {"value": c.value, "status": c.status, "latency_ms": c.latency_ms,
                                     "version": c.version, "info": c.info} for name, c in sample.components.items()}

    def reward_metrics(self) -> dict:
        return wait(self.reward.metrics.remote(), "reward metrics", 60)

    # --- update -------------------------------------------------------------------------------------------------
    def update(self, records: list, pad_id: int) -> dict:
        """One learner step on ``records`` (advantages set): each rank gets a contiguous slice of whole groups."""
        normalizer = self._normalizer(records)
        refs = []
        for worker, part in zip(self.learners, split(records, len(self.learners))):
            batch = make_train_batch([r.prompt_ids for r in part], [r.completion_ids for r in part],
                                     [r.sampler_logprobs for r in part], [r.advantage for r in part], pad_id)
            refs.append(worker.update.remote(batch, float(normalizer)))
        per_rank = wait(refs, "learner update", self.cfg.learner.timeout_s)
        out = {k: float(np.mean([m[k] for m in per_rank])) for k in per_rank[0]}
        out["loss"] = float(np.sum([m["loss"] for m in per_rank]))  # rank losses are shares of one global loss
        return out

    def _normalizer(self, records: list) -> float:
        """The global count the loss divides by (see ``rlpost.grpo.aggregate``), over the whole step's batch."""
        loss = self.cfg.learner.loss
        if loss.name == "ar1_softmax":
            return len(records) // self.cfg.rollout.group_size  # groups
        if loss.agg == "token_mean":
            return sum(len(r.completion_ids) for r in records)
        if loss.agg == "seq_mean_token_mean":
            return len(records)
        return self.cfg.model.max_trace_tokens + 2 * 64 + 3  # Dr.GRPO's constant: the longest completion

    # --- sync ---------------------------------------------------------------------------------------------------
    def sync(self, probe: list[int] | None = None) -> dict:
        """Push the learner's weights to every engine (bucketed, checksummed); verify version and log-prob probe."""
        sc = self.cfg.sync
        messages = wait([w.export_weights.remote(sc.bucket_mb) for w in self.learners], "weight export", sc.timeout_s)
        message = messages[0]
        ref = ray.put(message)  # one copy in the object store, read by every engine
        infos = wait([w.load_weights.remote(ref) for w in self.rollouts], "weight sync into rollout engines",
                     sc.timeout_s)
        for i, info in enumerate(infos):
            if info["version"] != message.version:
                raise WeightSyncError(f"rollout worker {i}: acknowledged v{info['version']}, sent v{message.version}")
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
        for actor in [*self.rollouts, *self.learners, self.reward]:
            ray.kill(actor)
        remove_placement_group(self.pg)
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
