"""The loop's per-step scalars as Ray metrics: Ray's metrics agent serves them to Prometheus (each node's
``--metrics-export-port``), so the dashboard and a site's Grafana see a run as it goes, beside Ray's own."""

from __future__ import annotations

import math
import re

from ray.util.metrics import Gauge


def metric_name(key: str) -> str:
    """A scalar's Prometheus name: ``rlpost_`` + the key with every character Prometheus refuses as ``_``
    (Ray adds its ``ray_`` prefix: ``time/step_s`` is scraped as ``ray_rlpost_time_step_s``)."""
    return "rlpost_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


class RunMetrics:
    """One gauge per scalar, tagged with the run name; created on the first value of each key."""

    def __init__(self, run: str):
        self.tags = {"run": run}
        self.gauges: dict[str, Gauge] = {}

    def record(self, step: int, scalars: dict) -> None:
        for key, value in {"step": step, **scalars}.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                continue
            name = metric_name(key)
            if name not in self.gauges:
                self.gauges[name] = Gauge(name, description=f"rlpost per-step scalar {key!r}", tag_keys=("run",))
            self.gauges[name].set(float(value), tags=self.tags)
