"""RolloutWorker (a Ray actor around one ``RolloutEngine``: vLLM with phase-constrained decoding) and the rollout
fleet: the driver's side of all engines (fan-out, reissue after a death, weight loading, probes)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ray

from rlpost.actors.common import ActorDiedError, actor_env, revive, wait
from rlpost.rl.config import RolloutConfig
from rlpost.rl.rollout import GenerateRequest, StaleEngineError


@ray.remote
class RolloutWorker:
    def __init__(self, checkpoint: str, cfg: RolloutConfig, seed: int, threads: int = 1):
        from rlpost.common.runtime import configure_cpu_runtime
        from rlpost.rl.rollout import RolloutEngine

        configure_cpu_runtime(threads)
        self.engine = RolloutEngine(checkpoint, cfg, seed)

    def generate(self, request: GenerateRequest):
        return self.engine.generate(request)

    def load_weights(self, message) -> dict:
        return self.engine.load_weights(message)

    def receive_weights(self, plan, address: tuple[str, int], rank: int, names: list[str], timeout_s: float,
                        depth: int) -> dict:
        return self.engine.receive_weights(plan, address, rank, names, timeout_s, depth)

    def probe_logprobs(self, token_ids: list[int]) -> list[float]:
        return self.engine.probe_logprobs(token_ids)

    def version(self) -> int:
        return self.engine.version


def split(items: list, parts: int) -> list[list]:
    """Contiguous, near-equal chunks (order preserved)."""
    bounds = np.linspace(0, len(items), parts + 1).round().astype(int)
    return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class Pending:
    """Generate calls in flight: which engine runs which request, so a call lost to an engine's death is reissued."""

    def __init__(self, calls: list[tuple[int, GenerateRequest]], refs: list):
        self.calls, self.refs = calls, refs


class RolloutFleet:
    """The rollout engines of a run. Restartable: Ray restarts a dead engine (its constructor runs again from the
    start checkpoint); the fleet reloads the last weights into it and reissues the lost call."""

    def __init__(self, cfg, checkpoint: str, placement):
        rc = cfg.rollout
        self.cfg = rc
        self.sync_timeout_s = cfg.sync.timeout_s
        self.node_wait_s = cfg.runtime.node_wait_s
        self.bundle = placement.plan["rollout"]["bundles"][0]
        self.workers = [
            RolloutWorker.options(num_cpus=rc.num_cpus, num_gpus=rc.num_gpus,
                                  scheduling_strategy=placement.slot("rollout", i),
                                  runtime_env=actor_env(1), name=f"rlpost:{cfg.name}:rollout:{i}",
                                  max_restarts=cfg.trainer.max_restarts, max_task_retries=0
                                  ).remote(checkpoint, rc, cfg.trainer.seed + i)
            for i in range(rc.num_workers)
        ]
        wait([w.version.remote() for w in self.workers], "rollout engine start (vLLM)", rc.timeout_s)
        self.transport = cfg.sync.transport
        self.last_weights = None  # object ref of the last weights message: what a restarted engine reloads
        # stream transport: how a restarted engine gets the current weights (``actors/sync.py`` streams them from
        # the learner to the engines given); set by the cluster.
        self.resync: Callable[[list[int]], object] | None = None
        self.version = 0  # the policy version every engine holds
        self.acknowledged = {i: 0 for i in range(rc.num_workers)}  # the version each engine last acknowledged
        self.restarts = 0

    def generate(self, scenarios: list, group_size: int, run: str, step: int, seed: int,
                 curation_round: int = 0) -> Pending:
        """Start G = ``group_size`` rollouts per scenario, the scenarios split across the engines."""
        calls = [(i, GenerateRequest(chunk, group_size, run, step, seed, curation_round, self.version))
                 for i, chunk in enumerate(split(scenarios, len(self.workers))) if chunk]
        return Pending(calls, [self.workers[i].generate.remote(request) for i, request in calls])

    def collect(self, pending: Pending) -> list:
        """The records of all engines, in scenario order. A call lost to an engine's death is reissued on the
        restarted engine once it holds the current weights (sampling is seeded, so the samples are the same), as
        often as Ray restarts the engine: under memory pressure the restarted engine can be killed again during
        the reissued call. Ray's restart budget (``trainer.max_restarts``) bounds it: ``_restore`` raises, naming
        the engine, once it is gone for good."""
        records = []
        for (i, request), ref in zip(pending.calls, pending.refs):
            what = f"rollout generation (worker {i})"
            while True:
                try:
                    part = wait(ref, what, self.cfg.timeout_s)
                    break
                except (ActorDiedError, StaleEngineError):
                    # Died mid-call, or restarted before this call reached it and still holds the start weights.
                    self._restore(i)
                    ref, what = self.workers[i].generate.remote(request), f"rollout generation (worker {i}, reissued)"
            records.extend(part)
        return records

    def load_weights(self, ref, version: int) -> list[dict]:
        """Load the weights message ``ref`` (an object ref: one copy read by every engine) into every engine;
        returns each engine's acknowledgement (version, sync_ms, bytes)."""
        self.last_weights = ref
        infos = []
        for i, call in enumerate([w.load_weights.remote(ref) for w in self.workers]):
            what = f"weight sync into rollout worker {i}"
            while True:  # as often as Ray restarts the engine (see ``collect``)
                try:
                    infos.append(wait(call, what, self.sync_timeout_s))
                    break
                except ActorDiedError:
                    self._restore(i)  # reloads self.last_weights, i.e. this message
                    call, what = self.workers[i].load_weights.remote(ref), f"weight sync (restarted worker {i})"
        self.version = version
        return infos

    def revive_dead(self, engines: list[int], timeout_s: float) -> list[int]:
        """Before a stream: ask each engine for its version (it answers once a generate call in flight is done)
        and bring back the dead ones (restarted by Ray with their start weights: the stream about to run gives
        them the current ones). Returns the engines that did not answer within ``timeout_s`` (stuck)."""
        pings = [self.workers[i].version.remote() for i in engines]
        ray.wait(pings, num_returns=len(pings), timeout=timeout_s)
        stuck = []
        for i, ping in zip(engines, pings):
            try:
                ray.get(ping, timeout=0)
            except ray.exceptions.GetTimeoutError:
                stuck.append(i)
            except ray.exceptions.RayActorError:
                self._restore(i, reload=False)
        return stuck

    def probe(self, token_ids: list[int]) -> list[list[float]]:
        """Every engine's log-probs of ``token_ids[1:]``."""
        return wait([w.probe_logprobs.remote(token_ids) for w in self.workers], "engine probe", self.sync_timeout_s)

    def _restore(self, i: int, reload: bool = True) -> None:
        """Wait for Ray to restart engine ``i``, then load the current weights and version before it serves. When
        its node died, Ray re-places its bundle on a node with room; the wait for one (a node may have to join) is
        bounded by ``runtime.node_wait_s`` and says what it waits for."""
        from rlpost.actors.placement import wait_for_room

        wait_for_room(f"rollout worker {i}", self.bundle, self.node_wait_s)
        revive(self.workers[i], f"rollout worker {i}", self.node_wait_s)
        self.restarts += 1
        if not reload:
            return
        if self.transport == "stream":
            if self.version:  # at version 0 the engine restarted with the current weights: the start checkpoint
                self.resync([i])
        elif self.last_weights is not None:
            wait(self.workers[i].load_weights.remote(self.last_weights), f"weight reload (restarted worker {i})",
                 self.sync_timeout_s)
