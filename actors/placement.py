"""Where a run's actors go: connecting to Ray (or starting a local one) and one placement group whose bundles
are the learner ranks and the rollout engines (PACK), so on a cluster they land where their bundles fit."""

from __future__ import annotations

import os
import socket

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlpost.actors.common import ActorCallError, actor_env, wait
from rlpost.common.errors import UnreachableServiceError
from rlpost.common.runtime import LOOPBACK_ENV


def connect_ray(cfg) -> bool:
    """Join ``cfg.ray_address``, or start a local Ray bound to loopback; True when this call started Ray (and so
    must shut it down)."""
    if ray.is_initialized():
        return False
    local = cfg.ray_address is None
    if local:
        os.environ.update({k: v for k, v in LOOPBACK_ENV.items() if k not in os.environ})
    if not local:
        _check_reachable(cfg.ray_address)
    try:
        ray.init(address=cfg.ray_address, num_cpus=cfg.ray_num_cpus if local else None, include_dashboard=False,
                 log_to_driver=True, runtime_env=actor_env(), **({"_node_ip_address": "127.0.0.1"} if local else {}))
    except ConnectionError as exc:
        raise UnreachableServiceError(f"ray_address: no Ray cluster answers at {cfg.ray_address!r} ({exc}); start "
                                      "one (`ray start --head`) or set ray_address: null for a local Ray") from None
    return True


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on a ``host:port`` GCS address that does not accept connections: ``ray.init`` would retry it for
    minutes before giving up. (``auto`` and ``ray://`` addresses are left to Ray.)"""
    host, _, port = address.rpartition(":")
    if address == "auto" or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UnreachableServiceError(f"ray_address: no Ray cluster answers at {address!r} ({exc}); start one "
                                      "(`ray start --head`) or set ray_address: null for a local Ray") from None


class Placement:
    """One bundle per learner rank, then one per rollout engine; ``slot(role, i)`` schedules an actor into its own."""

    def __init__(self, cfg, timeout_s: float = 120.0):
        lc, rc = cfg.learner, cfg.rollout
        self.first = {"learner": 0, "rollout": lc.num_ranks}
        self.bundles = ([_bundle(lc.num_cpus, lc.num_gpus)] * lc.num_ranks
                        + [_bundle(rc.num_cpus, rc.num_gpus)] * rc.num_workers)
        self.group = placement_group(self.bundles, strategy="PACK")
        try:
            wait(self.group.ready(), "placement group (learner ranks + rollout engines)", timeout_s)
        except ActorCallError:
            remove_placement_group(self.group)
            raise ActorCallError(f"placement: the cluster cannot fit the bundles {self.bundles} (learner ranks, then "
                                 f"rollout engines) within {timeout_s:.0f} s; it has {ray.cluster_resources()} in all "
                                 f"and {ray.available_resources()} free. Lower learner.num_cpus/num_gpus, "
                                 "rollout.num_cpus/num_gpus or the counts, or add nodes") from None

    def slot(self, role: str, index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(placement_group=self.group,
                                                placement_group_bundle_index=self.first[role] + index)

    def remove(self) -> None:
        remove_placement_group(self.group)


def _bundle(cpus: float, gpus: float) -> dict:
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
