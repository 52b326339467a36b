"""Peak resident memory per actor of a running rlpost run, sampled from outside (benchmarks only).

The run state in Redis (``rlpost.storage.store.RunState``) names every actor's pid (``roles``: ``learner:0``,
``rollout:0``, ...); a thread polls those processes with psutil and keeps each one's peak RSS, plus the driver's
(this process). Single-node runs only: the pids are looked up on this machine. RSS counts shared pages (e.g. torch's
libraries) in every process, so the sum over actors overstates the machine's use; each actor's own peak is the
number that tells whether a role fits a node.
"""

from __future__ import annotations

import os
import threading

import psutil


class PeakRSS:
    """``with PeakRSS(redis_url, run) as peaks: ...``; then ``peaks.gib`` is {actor: peak GiB} (``driver`` too)."""

    def __init__(self, redis_url: str, run: str, every_s: float = 0.5):
        self.redis_url, self.run, self.every_s = redis_url, run, every_s
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def gib(self) -> dict[str, float]:
        return {name: round(rss / 2**30, 3) for name, rss in sorted(self.peak.items())}

    def _poll(self) -> None:
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        key = f"rlpost:{self.run}:state"
        while not self._stop.wait(self.every_s):
            pids = {"driver": os.getpid()}
            roles = client.hget(key, "roles")
            if roles:
                import json

                pids.update({name: where["pid"] for name, where in json.loads(roles).items() if where.get("pid")})
            for name, pid in pids.items():
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.NoSuchProcess:  # an actor that ended (or restarted: its new pid comes next poll)
                    continue
                self.peak[name] = max(self.peak.get(name, 0), rss)
