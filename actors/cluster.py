"""The actors of one run, by role, and the one-verb calls the training loop makes on them.

``Placement`` (``actors/placement.py``) reserves the bundles; ``LearnerGroup`` (``actors/learner.py``) updates,
exports and checkpoints; ``RolloutFleet`` (``actors/rollout.py``) generates and reissues; ``sync_weights``
(``actors/sync.py``) moves and verifies weights; ``RewardClient`` (``actors/reward.py``) scores;
``CuratorClient`` (``actors/curator.py``) curates. Every wait has a deadline and an error that names the actor and
the call (``actors/common.py``).
"""

from __future__ import annotations

import ray

from rlpost.actors.curator import CuratorClient
from rlpost.actors.learner import LearnerGroup
from rlpost.actors.placement import Placement, actor_environment, actor_location, connect_ray
from rlpost.actors.reward import RewardClient
from rlpost.actors.rollout import Pending, RolloutFleet
from rlpost.actors.shared_storage import check_shared_storage
from rlpost.actors.sync import StreamSyncError, stream_sync, sync_weights
from rlpost.actors.telemetry import RunMetrics
from rlpost.rl.config import RunConfig


class Cluster:
    """Learner ranks, rollout engines and the reward worker for ``cfg``, started from ``checkpoint``; the curator
    on ``start_curator``."""

    def __init__(self, cfg: RunConfig, checkpoint: str, redis_url: str):
        self.cfg, self.checkpoint, self.redis_url = cfg, checkpoint, redis_url
        self._owns_ray = connect_ray(cfg)
        self.placement = Placement(cfg)
        self.learners = LearnerGroup(cfg, checkpoint, self.placement)
        self.fleet = RolloutFleet(cfg, checkpoint, self.placement)
        if cfg.sync.transport == "stream":  # a restarted engine gets the current weights streamed to it alone
            self.fleet.resync = self._resync
        self.rewards = RewardClient(cfg, redis_url)
        check_shared_storage(cfg.out, {f"learner:{r}": a for r, a in enumerate(self.learners.ranks)})
        self.curator: CuratorClient | None = None
        self.metrics = RunMetrics(cfg.name)

    @property
    def restarts(self) -> dict[str, int]:
        return {"rollout": self.fleet.restarts, "reward": self.rewards.restarts}

    def actors(self) -> dict:
        """Every actor of the run by ``role:index``."""
        return {**{f"learner:{r}": a for r, a in enumerate(self.learners.ranks)},
                **{f"rollout:{i}": a for i, a in enumerate(self.fleet.workers)},
                "reward:0": self.rewards.actor, **({"curator:0": self.curator.actor} if self.curator else {})}

    def where(self) -> dict[str, dict]:
        """Where each actor runs now (node id and address, pid, restarts): a restarted engine shows its new node."""
        return {name: actor_location(actor) for name, actor in self.actors().items()}

    def live(self, step: int, scalars: dict) -> dict:
        """Export the step's scalars as Ray metrics (Prometheus); returns what the run state records of the
        step: restarts by role and where each actor runs."""
        self.metrics.record(step, scalars)
        return {"restarts": self.restarts, "roles": self.where()}

    def environments(self) -> dict[str, dict]:
        """The loopback variables each actor sees (none on a cluster); call it while the actors are idle."""
        return actor_environment(self.actors())

    def generate(self, scenarios: list, step: int, curation_round: int = 0, group_size: int | None = None) -> Pending:
        """Start generating ``group_size`` (default G) rollouts per scenario; ``collect`` waits for them."""
        return self.fleet.generate(scenarios, group_size or self.cfg.rollout.group_size, self.cfg.name, step,
                                   self.cfg.trainer.seed, curation_round)

    def collect(self, pending: Pending) -> list:
        return self.fleet.collect(pending)

    def score(self, records: list, scenarios_by_id: dict) -> None:
        self.rewards.score(records, scenarios_by_id)

    def update(self, records: list, pad_id: int, expert_inputs: tuple[list, list] | None = None) -> dict:
        return self.learners.update(records, pad_id, expert_inputs)

    def sync(self, probe: list[int] | None = None) -> dict:
        return sync_weights(self.learners, self.fleet, self.cfg.sync, probe)

    def _resync(self, engines: list[int]) -> None:
        """Stream the learner's weights into restarted ``engines``: they must be the fleet's version (the loop
        only collects between a sync and the next update, so they are)."""
        version = self.learners.version(self.cfg.sync.timeout_s)
        if version != self.fleet.version:
            raise StreamSyncError(f"rollout workers {engines}: restarted while the learner is at v{version} and the "
                                  f"fleet at v{self.fleet.version}; the stream can only give them the learner's")
        stream_sync(self.learners, self.fleet, self.cfg.sync, engines)

    def start_curator(self, pool: list) -> CuratorClient:
        self.curator = CuratorClient(self.cfg, self.checkpoint, self.redis_url, pool)
        check_shared_storage(self.cfg.out, {"curator:0": self.curator.actor})
        return self.curator

    def curate(self, step: int):
        """Start the curation round of ``step`` with the last synced weights; returns its ref. On the stream
        transport the curator's engine (not a stream member) gets them as one object-store message, exported
        for the round (every ``curation.every`` steps; the loop starts rounds right after a sync)."""
        weights = self.fleet.last_weights
        if self.cfg.sync.transport == "stream" and self.fleet.version and self.cfg.curation.scored:
            weights = ray.put(self.learners.export_weights(self.cfg.sync.bucket_mb, self.cfg.sync.timeout_s))
        return self.curator.start_round(step, weights)

    def save(self, directory: str, client_state: dict) -> None:
        self.learners.save(directory, client_state)

    def load(self, directory: str) -> dict:
        return self.learners.load(directory)

    def save_pretrained(self, directory: str) -> None:
        self.learners.save_pretrained(directory)

    def shutdown(self) -> None:
        for actor in [*self.fleet.workers, *self.learners.ranks, *self.rewards.actors(),
                      *([self.curator.actor] if self.curator else [])]:
            ray.kill(actor)
        self.placement.remove()
        if self._owns_ray:
            ray.shutdown()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
