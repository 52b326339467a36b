"""Weight sync from the learner group into the rollout fleet: export, one copy in the object store, load into
every engine, then verify (version acknowledgements and a log-prob probe, ``rlpost.rl.weights.check_sync``)."""

from __future__ import annotations

import ray

from rlpost.rl.weights import check_sync


def sync_weights(learners, fleet, sync_cfg, probe: list[int] | None = None) -> dict:
    """Push the learner's weights (bucketed, checksummed) to every engine and verify; returns the sync metrics."""
    message = learners.export_weights(sync_cfg.bucket_mb, sync_cfg.timeout_s)
    infos = fleet.load_weights(ray.put(message), message.version)
    out = {"sync_ms": max(i["sync_ms"] for i in infos), "sync_bytes": infos[0]["bytes"], "version": message.version}
    want = got = None
    if sync_cfg.verify_probe and probe:
        want, got = learners.probe(probe, sync_cfg.timeout_s), fleet.probe(probe)
    gap = check_sync(message.version, [i["version"] for i in infos], want, got, sync_cfg.probe_tolerance)
    if gap is not None:
        out["sync_probe_gap"] = gap
    return out
