"""A Redis-backed cache of reward results for expensive rewards (the LLM judge).

Key: ``{prefix}:{sha256(name, version, scenario_id, trace text, controls)}``. The version is in the key, so bumping a
reward's version invalidates its entries; the controls enter as their exact float64 bytes and shape, so two
completions share an entry only if their trace and trajectory are identical. Only deterministic outcomes (status
``ok`` and ``unparseable``) are stored: a timeout or error is retried next time.

The cache is an optimisation: if Redis fails, lookups count as misses and writes are skipped, and the failure is
logged and counted in ``errors`` (never silent), but the rewards are still computed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Sequence

import numpy as np
import redis

from rlpost.rewards.spec import RewardsConfig
from rlpost.rewards.types import Completion, RewardResult

logger = logging.getLogger(__name__)
CACHEABLE_STATUSES = ("ok", "unparseable")


def completion_key(name: str, version: str, completion: Completion) -> str:
    """Hex sha256 of (reward name, version, scenario id, trace text, controls bytes + shape, or 'none')."""
    h = hashlib.sha256()
    for part in (name, version, completion.scenario_id, completion.trace if isinstance(completion.trace, str) else
                 repr(completion.trace)):
        data = str(part).encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))  # length-prefixed: ("ab", "c") and ("a", "bc") differ
        h.update(data)
    controls = completion.controls
    if controls is None:
        h.update(b"\x00none")
    else:
        try:
            arr = np.ascontiguousarray(controls, dtype=np.float64)
            h.update(b"\x01" + repr(arr.shape).encode() + arr.tobytes())
        except (TypeError, ValueError):  # not numeric: its repr still identifies it
            h.update(b"\x02" + repr(controls).encode("utf-8", "replace"))
    return h.hexdigest()


class RewardCache:
    """Pipelined get/set of ``RewardResult`` by completion key in Redis.

    redis_url: ``redis://host:port/db``; prefix: key namespace; ttl_s: expiry of each entry [s] (None: never).
    """

    def __init__(self, redis_url: str, prefix: str = "rlpost:reward", ttl_s: int | None = 7 * 24 * 3600):
        self.client = redis.Redis.from_url(redis_url, socket_timeout=5.0, socket_connect_timeout=5.0)
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._lock = threading.Lock()  # the pipeline calls the cache from one thread per component

    def _add(self, hits: int = 0, misses: int = 0, errors: int = 0) -> None:
        with self._lock:
            self.hits += hits
            self.misses += misses
            self.errors += errors

    def keys(self, name: str, version: str, completions: Sequence[Completion]) -> list[str]:
        """Redis keys of the completions for reward ``name`` at ``version``."""
        return [f"{self.prefix}:{completion_key(name, version, c)}" for c in completions]

    def get_many(self, keys: Sequence[str]) -> list[RewardResult | None]:
        """Cached results in key order, None where absent (or on a Redis failure, logged and counted)."""
        if not keys:
            return []
        try:
            raw = self.client.mget(list(keys))
        except redis.RedisError as exc:
            self._add(misses=len(keys), errors=1)
            logger.warning("reward cache: lookup of %d keys failed, computing them instead: %s", len(keys), exc)
            return [None] * len(keys)
        out: list[RewardResult | None] = []
        for item in raw:
            if item is None:
                out.append(None)
                continue
            try:
                d = json.loads(item)
                out.append(RewardResult(float(d["v"]), d["s"], dict(d["i"])))
            except (ValueError, KeyError, TypeError) as exc:  # a foreign or corrupt entry: recompute it
                self._add(errors=1)
                logger.warning("reward cache: unreadable entry (%s), recomputing", exc)
                out.append(None)
        hits = sum(r is not None for r in out)
        self._add(hits=hits, misses=len(out) - hits)
        return out

    def set_many(self, keys: Sequence[str], results: Sequence[RewardResult]) -> int:
        """Store results with a cacheable status (one pipelined round trip); returns how many were stored."""
        pipe = self.client.pipeline(transaction=False)
        stored = 0
        for key, result in zip(keys, results, strict=True):
            if result.status not in CACHEABLE_STATUSES:
                continue
            try:
                payload = json.dumps({"v": result.value, "s": result.status, "i": result.info})
            except (TypeError, ValueError) as exc:  # info not JSON-serialisable: skip, do not crash the run
                self._add(errors=1)
                logger.warning("reward cache: result not stored, info is not JSON-serialisable: %s", exc)
                continue
            pipe.set(key, payload, ex=self.ttl_s)
            stored += 1
        if stored:
            try:
                pipe.execute()
            except redis.RedisError as exc:
                self._add(errors=1)
                logger.warning("reward cache: storing %d results failed: %s", stored, exc)
                return 0
        return stored

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def run_cache_prefix(config: RewardsConfig, run_name: str) -> str:
    """``rewards.cache_prefix`` + ``:`` + the run's name: the key prefix of a training run's reward cache.

    The run name stays in it because a key names the scenario by id only, not by its ground truth: runs on other
    data sets that reuse scenario ids must not read each other's results from a shared Redis.
    """
    return f"{config.cache_prefix}:{run_name}"


def open_reward_cache(config: RewardsConfig, redis_url: str | None, prefix: str) -> RewardCache | None:
    """The cache at ``redis_url`` under ``prefix`` with ``rewards.cache_ttl_s`` expiry; None without a URL."""
    return RewardCache(redis_url, prefix=prefix, ttl_s=config.cache_ttl_s) if redis_url else None
