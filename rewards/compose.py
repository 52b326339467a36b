"""The reward pipeline: every configured component, guarded, weighted and recorded per sample.

    with RewardPipeline(config) as pipeline:
        scored = pipeline.score(completions, scenarios)
        scored[i].total                                # Σ_k weight_k · value_k
        scored[i].components["coc_consistency"]        # ComponentRecord(value, status, latency_ms, version, ...)

Components that run in worker processes are scored concurrently (one waiting thread each); in-process ones run in
the calling thread meanwhile.

Combination (docs/design.md §5, ours): a weighted sum of the component values, where a component with status
timeout/error contributes its configured fallback. Every component of every sample is recorded separately, with its
status, latency and version (docs/design.md §0.2 rule 5), and every non-ok status is counted (``status_counts``) and
logged.
``score`` never raises because of a plugin; it raises ``ValueError`` only for a caller error (misaligned inputs).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rlpost.rewards.cache import RewardCache
from rlpost.rewards.guard import GuardedReward, paused_gc
from rlpost.rewards.registry import resolve_reward
from rlpost.rewards.spec import RewardsConfig, RewardSpec
from rlpost.rewards.types import STATUSES, Completion, RewardResult

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ComponentRecord:
    """One reward component's outcome for one sample (a column group of the rollout log).

    value: the value that entered the total (the fallback for timeout/error); status: ok|timeout|error|unparseable;
    latency_ms: the sample's share of the call's wall time [ms]; version: the reward's declared version;
    weight: its weight in the total; cached: served from the Redis cache; info: the reward's diagnostics.
    """

    value: float
    status: str
    latency_ms: float
    version: str
    weight: float
    cached: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SampleRewards:
    """All components of one sample plus their weighted total."""

    scenario_id: str
    group_index: int
    total: float
    components: dict[str, ComponentRecord]


def flatten_components(components: dict[str, ComponentRecord]) -> dict[str, Any]:
    """The one flattening of typed components into log columns: ``reward.<name>.<field>`` for value, status,
    latency_ms, version and cached, and ``reward.<name>.info`` as JSON (an error's message is in it)."""
    out: dict[str, Any] = {}
    for name, rec in components.items():
        for key in ("value", "status", "latency_ms", "version", "cached"):
            out[f"reward.{name}.{key}"] = getattr(rec, key)
        out[f"reward.{name}.info"] = json.dumps(rec.info, default=str)
    return out


class RewardPipeline:
    """Runs the components of a ``RewardsConfig`` (or a list of ``RewardSpec``) on batches of completions.

    Resolves every component at construction (a config error raises ``ValueError`` naming the component). Worker
    processes start on first use and live until ``close()``; use it as a context manager.
    cache: the Redis cache for components with ``cache: true``; by default one is opened at ``config.cache_url``
    when any component asks for it (without a URL those components run uncached, with a warning).
    """

    def __init__(self, config: RewardsConfig | Sequence[RewardSpec], *, cache: RewardCache | None = None):
        if not isinstance(config, RewardsConfig):
            config = RewardsConfig(components=list(config))
        config.check_resolvable()
        self.config = config
        self.guards: dict[str, GuardedReward] = {}
        self.specs: dict[str, RewardSpec] = {}
        for spec in config.components:
            entry = resolve_reward(spec.ref)
            self.specs[spec.component] = spec
            self.guards[spec.component] = GuardedReward(
                entry, spec.params, deadline_s=spec.deadline_s, in_process=spec.in_process,
                chunk_size=spec.chunk_size, max_timeouts_per_batch=spec.max_timeouts_per_batch,
                fallback=spec.fallback, start_method=config.start_method,
            )
        wants_cache = any(s.cache for s in config.components)
        if cache is None and wants_cache and config.cache_url:
            cache = RewardCache(config.cache_url, config.cache_prefix, config.cache_ttl_s)
        elif cache is None and wants_cache:
            logger.warning("rewards: components ask for cache: true but no cache_url/cache was given; running uncached")
        self.cache = cache
        self.status_counts: dict[str, Counter] = {name: Counter() for name in self.guards}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.guards)), thread_name_prefix="rlpost-reward")

    # --- scoring ------------------------------------------------------------------------------------------------
    def score(self, completions: Sequence[Completion], scenarios: Sequence[Any]) -> list[SampleRewards]:
        """Score aligned completions/scenarios with every component; one ``SampleRewards`` per completion."""
        n = len(completions)
        if len(scenarios) != n:
            raise ValueError(f"score: {n} completions but {len(scenarios)} scenarios; they must be aligned")
        for i, (c, s) in enumerate(zip(completions, scenarios)):
            sid = getattr(s, "scenario_id", None)
            if c.scenario_id != sid:
                raise ValueError(f"score: completions[{i}].scenario_id={c.scenario_id!r} but scenarios[{i}] is {sid!r}")
        # Components in worker processes run concurrently (a thread per component only waits on its pipe; the
        # work happens in the worker), in-process ones in this thread meanwhile.
        remote = [name for name, guard in self.guards.items() if not guard.in_process]
        futures = {name: self._pool.submit(self._score_component, name, completions, scenarios) for name in remote}
        per_component = {}
        for name, guard in self.guards.items():
            if guard.in_process:
                per_component[name] = self._score_component(name, completions, scenarios)
        for name in remote:
            per_component[name] = futures[name].result()
        per_component = {name: per_component[name] for name in self.guards}  # config order
        out = []
        with paused_gc():  # many small acyclic records: see guard.paused_gc
            for i, c in enumerate(completions):
                comps = {name: recs[i] for name, recs in per_component.items()}
                total = sum(rec.weight * rec.value for rec in comps.values())
                out.append(SampleRewards(c.scenario_id, c.group_index, float(total), comps))
        return out

    def _score_component(self, name: str, completions: Sequence[Completion], scenarios: Sequence[Any]):
        guard, spec = self.guards[name], self.specs[name]
        version, n = guard.entry.version, len(completions)
        results: list[RewardResult | None] = [None] * n
        latency = [0.0] * n
        cached = [False] * n
        keys: list[str] = []
        if spec.cache and self.cache is not None:
            start = time.perf_counter()
            # Params are part of the namespace: the same reward with other params (e.g. another critic backend)
            # scores differently.
            namespace = f"{spec.ref}|{json.dumps(guard.params, sort_keys=True, default=repr)}"
            keys = self.cache.keys(namespace, version, completions)
            hits = self.cache.get_many(keys)
            per = (time.perf_counter() - start) * 1e3 / max(n, 1)
            for i, hit in enumerate(hits):
                if hit is not None:
                    results[i], latency[i], cached[i] = hit, per, True
        todo = [i for i in range(n) if results[i] is None]
        if todo:
            sub_c = [completions[i] for i in todo] if len(todo) < n else list(completions)
            sub_s = [scenarios[i] for i in todo] if len(todo) < n else list(scenarios)
            fresh, fresh_latency = guard(sub_c, sub_s)
            for i, r, ms in zip(todo, fresh, fresh_latency):
                results[i], latency[i] = r, ms
            if keys:
                self.cache.set_many([keys[i] for i in todo], fresh)
        with paused_gc():
            records = [
                ComponentRecord(r.value, r.status, ms, version, spec.weight, hit, r.info)
                for r, ms, hit in zip(results, latency, cached)  # type: ignore[union-attr]
            ]
        self._count(name, records)
        return records

    def _count(self, name: str, records: list[ComponentRecord]) -> None:
        counts = Counter(r.status for r in records)
        with self._lock:  # components are scored from several threads
            self.status_counts[name].update(counts)
        for status in ("error", "timeout"):
            if counts[status]:
                first = next(r for r in records if r.status == status)
                logger.warning("reward %r: %d of %d samples %s; first: %s", name, counts[status], len(records),
                               status, first.info.get("error", "(no message)"))

    # --- metrics and lifecycle ---------------------------------------------------------------------------------
    def metrics(self) -> dict[str, int]:
        """Cumulative counts ``rewards/<component>/<status>`` for every status, plus worker restarts."""
        out = {}
        for name, counts in self.status_counts.items():
            for status in STATUSES:
                out[f"rewards/{name}/{status}"] = counts[status]
            out[f"rewards/{name}/worker_restarts"] = self.guards[name].restarts
        if self.cache is not None:
            out |= {"rewards/cache/hits": self.cache.hits, "rewards/cache/misses": self.cache.misses,
                    "rewards/cache/errors": self.cache.errors}
        return out

    def close(self) -> None:
        """Stop every worker process and the dispatch threads."""
        for guard in self.guards.values():
            guard.close()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> RewardPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
