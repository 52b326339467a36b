"""Weight sync from the learner group into the rollout fleet, then verified (version acknowledgements and a
log-prob probe, ``rlpost.rl.weights.check_sync``). Two transports (``sync.transport``):

- ``object_store``: rank 0 packs the whole model into one checksummed message, one copy in the object store,
  read by every engine (also what a restarted engine and the curator reload);
- ``stream``: a process group of its own per sync (learner rank 0 + the engines; a fresh rendezvous each time,
  ~40 ms here, so an engine Ray restarted simply joins the next one), weights broadcast bucket by bucket with
  packing, transfer and loading overlapped (``rlpost.rl.stream``).

Metrics (ms): ``sync_ms`` (wall), and its stages ``sync_export_ms`` (gather + pack on the learner),
``sync_integrity_ms`` (checksums, sender + slowest receiver), ``sync_transfer_ms`` (object store: put + the
engines' reads; stream: the slowest receiver's time in the collectives, incl. the rendezvous), ``sync_load_ms``
(the slowest engine's in-place load). Streamed stages overlap, so they do not add up to ``sync_ms``.
"""

from __future__ import annotations

import time

import ray

from rlpost.actors.common import ActorCallError, ActorDiedError
from rlpost.common import metric_names as M
from rlpost.rl.weights import check_sync


class StreamSyncError(ActorCallError):
    """A streaming sync failed; the message names the engine(s) or learner rank that failed or did not answer."""


def sync_weights(learners, fleet, sync_cfg, probe: list[int] | None = None) -> dict:
    """Push the learner's weights to every engine and verify; returns the sync metrics."""
    if sync_cfg.transport == "stream":
        out = stream_sync(learners, fleet, sync_cfg)
    else:
        out = object_store_sync(learners, fleet, sync_cfg)
    want = got = None
    if sync_cfg.verify_probe and probe:
        want, got = learners.probe(probe, sync_cfg.timeout_s), fleet.probe(probe)
    gap = check_sync(out[M.SYNC_VERSION], [fleet.acknowledged[i] for i in range(len(fleet.workers))], want, got,
                     sync_cfg.probe_tolerance)
    if gap is not None:
        out[M.SYNC_PROBE_GAP] = gap
    return out


def object_store_sync(learners, fleet, sync_cfg) -> dict:
    """The whole model as one checksummed message through the object store."""
    t0 = time.perf_counter()
    message = learners.export_weights(sync_cfg.bucket_mb, sync_cfg.timeout_s)
    infos = fleet.load_weights(ray.put(message), message.version)
    wall = time.perf_counter() - t0
    fleet.acknowledged = {i: info["version"] for i, info in enumerate(infos)}
    slowest = max(infos, key=lambda i: i["sync_ms"])
    # Transfer: what is left of the wall time (learner -> driver -> object store -> engines, and Ray's calls).
    return {M.SYNC_VERSION: message.version, M.SYNC_MS: 1000 * wall, M.SYNC_BYTES: infos[0]["bytes"],
            M.SYNC_EXPORT_MS: message.export_ms,
            M.SYNC_INTEGRITY_MS: message.checksum_ms + slowest["integrity_ms"],
            M.SYNC_TRANSFER_MS: 1000 * wall - message.export_ms - message.checksum_ms - slowest["sync_ms"],
            M.SYNC_LOAD_MS: slowest["load_ms"]}


def stream_sync(learners, fleet, sync_cfg, engines: list[int] | None = None, retry: bool = True) -> dict:
    """Stream the learner's current weights into ``engines`` (default: all). Dead engines are brought back
    first; an engine that dies during the stream is brought back and the stream runs once more. A peer that does
    not answer fails the sync within ``sync.timeout_s`` with an error naming it."""
    engines = list(range(len(fleet.workers))) if engines is None else engines
    t0 = time.perf_counter()
    deadline = t0 + sync_cfg.timeout_s  # one deadline for the whole sync: checks, rendezvous, stream

    def left() -> float:
        return max(deadline - time.perf_counter(), 0.001)

    if stuck := fleet.revive_dead(engines, left()):
        raise StreamSyncError(f"weight stream: {', '.join(f'rollout worker {i}' for i in stuck)} did not answer "
                              f"within {sync_cfg.timeout_s:.0f} s (sync.timeout_s; busy or stuck); the run stops here")
    names = ["learner rank 0", *[f"rollout worker {i}" for i in engines]]
    plan, address, send_refs = learners.start_stream(sync_cfg.bucket_mb, names, left(), sync_cfg.stream_depth)
    timeout_s = left()
    recv_refs = [fleet.workers[i].receive_weights.remote(plan, address, r + 1, names, timeout_s,
                                                         sync_cfg.stream_depth) for r, i in enumerate(engines)]
    owners = {**{ref: f"learner rank {r}" for r, ref in enumerate(send_refs)},
              **{ref: f"rollout worker {i}" for i, ref in zip(engines, recv_refs)}}
    try:
        results = settle(owners, timeout_s, f"weight stream v{plan.version}")
    except ActorCallError as exc:
        dead = _dead(engines, recv_refs, min(DEATH_NOTICE_S, left()))
        if not dead:
            raise
        if not retry:
            raise StreamSyncError(f"weight stream v{plan.version}: {', '.join(f'rollout worker {i}' for i in dead)} "
                                  f"died during the stream ({exc})") from None
        for i in dead:  # back with their start weights; the stream runs once more for every engine given
            fleet._restore(i, reload=False)
        return stream_sync(learners, fleet, sync_cfg, engines, retry=False)
    wall = time.perf_counter() - t0
    sent = results["learner rank 0"]
    received = [results[f"rollout worker {i}"] for i in engines]
    for i, info in zip(engines, received):
        fleet.acknowledged[i] = info["version"]
    if len(engines) == len(fleet.workers):
        fleet.version = plan.version
    return {M.SYNC_VERSION: plan.version, M.SYNC_MS: 1000 * wall, M.SYNC_BYTES: plan.num_bytes,
            M.SYNC_EXPORT_MS: sent["export"],
            M.SYNC_INTEGRITY_MS: sent["integrity"] + max(r["integrity"] for r in received),
            M.SYNC_TRANSFER_MS: max(r["transfer"] + r["setup"] for r in received),
            M.SYNC_LOAD_MS: max(r["load"] for r in received)}


# When the learner's side of a stream fails first (its broadcast to a peer that died), how long to let Ray report
# the engines' deaths [s], so the error names the engine (bounded by what is left of sync.timeout_s).
DEATH_NOTICE_S = 5.0


def _dead(engines: list[int], refs: list, wait_s: float) -> list[int]:
    """The engines among ``engines`` whose receive call (``refs``) ended in the actor's death."""
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=wait_s)
    out = []
    for i, ref in zip(engines, refs):
        if ref in ready:
            try:
                ray.get(ref)
            except ray.exceptions.RayActorError:
                out.append(i)
            except ray.exceptions.RayTaskError:
                continue  # failed, alive: not a death
    return out


def settle(owners: dict, timeout_s: float, what: str) -> dict:
    """Wait for every ref of ``owners`` (ref -> the actor's name) within one deadline; returns name -> result.
    The first failure raises at once naming its actor (``ActorDiedError`` for a death, ``StreamSyncError``
    otherwise); at the deadline, ``StreamSyncError`` names every actor that had not answered."""
    deadline = time.monotonic() + timeout_s
    pending, results = list(owners), {}
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(deadline - time.monotonic(), 0))
        if not ready:
            names = ", ".join(owners[r] for r in pending)
            raise StreamSyncError(f"{what}: no answer from {names} within {timeout_s:.0f} s (sync.timeout_s); the "
                                  "run stops here")
        ref = ready[0]
        try:
            results[owners[ref]] = ray.get(ref)
        except ray.exceptions.RayActorError as exc:
            raise ActorDiedError(f"{what}: {owners[ref]} died during the sync ({exc.__class__.__name__})") from None
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise StreamSyncError(f"{what}: {owners[ref]} failed: {cause.__class__.__name__}: {str(cause)[:500]}"
                                  ) from None
    return results
