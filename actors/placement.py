"""Where a run's actors go: connecting to Ray (or starting a local one) and one placement group per role (the
learner ranks gang-scheduled in one, the rollout engines in another), each with its own strategy, custom
resources and node labels. The plan is checked against the cluster's nodes before anything is reserved, so a
plan the cluster cannot hold fails at once with what is missing, not after a timeout."""

from __future__ import annotations

import json
import os
import socket

import ray
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlpost.actors.common import ActorCallError, set_deployment_env, wait
from rlpost.common.errors import UnreachableServiceError, UserError
from rlpost.common.runtime import LOOPBACK_ENV, deployment_env, pin_loopback

ROLES = ("learner", "rollout")


class PlacementError(UserError):
    """The cluster's nodes cannot hold the run's placement plan; the message lists what is missing."""


def connect_ray(cfg) -> bool:
    """Join ``cfg.ray_address``, or start a local Ray bound to loopback; True when this call started Ray (and so
    must shut it down). Makes the deployment's environment the base of every later ``actor_env`` once connected
    (a failed connection leaves the process as it was)."""
    local = cfg.ray_address is None
    env = deployment_env(local, cfg.runtime.env, cfg.runtime.network_interface)
    if ray.is_initialized():
        set_deployment_env(env)
        return False
    if local:
        pin_loopback()  # before ray.init: the GCS, raylet and workers read these when they import Ray
        # This process imported Ray before the run knew its deployment, so Ray's constant still says "bind and
        # advertise the external address"; it is what RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 sets at import.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    else:
        _check_reachable(cfg.ray_address)
    try:
        ray.init(address=cfg.ray_address, num_cpus=cfg.ray_num_cpus if local else None, include_dashboard=False,
                 log_to_driver=True, runtime_env=_job_runtime_env(env),
                 **({"_node_ip_address": "127.0.0.1"} if local else {}))
    except ConnectionError as exc:
        raise UnreachableServiceError(f"ray_address: no Ray cluster answers at {cfg.ray_address!r} ({exc}); start "
                                      "one (`ray start --head`) or set ray_address: null for a local Ray") from None
    set_deployment_env(env)
    return True


def _job_runtime_env(env: dict) -> dict:
    """The driver's runtime env for actors that set none: the deployment's ``env`` and one thread, without the
    variables a submitted job's own runtime env sets (Ray refuses the two when they share a key; the job's
    ``--runtime-env-json`` wins)."""
    env = {**env, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    injected = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if injected:
        taken = set((json.loads(injected).get("runtime_env") or {}).get("env_vars") or {})
        env = {k: v for k, v in env.items() if k not in taken}
    return {"env_vars": env}


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


def role_plan(cfg) -> dict[str, dict]:
    """Per role: its bundles (one per actor), strategy and node labels, from the role's config."""
    out = {}
    for role, rc, count in (("learner", cfg.learner, cfg.learner.num_ranks),
                            ("rollout", cfg.rollout, cfg.rollout.num_workers)):
        bundle = {"CPU": rc.num_cpus, **({"GPU": rc.num_gpus} if rc.num_gpus else {}), **rc.placement.resources}
        out[role] = {"bundles": [dict(bundle) for _ in range(count)], "strategy": rc.placement.strategy,
                     "labels": dict(rc.placement.labels)}
    return out


def alive_nodes() -> list[dict]:
    """The cluster's live nodes: id, address, total resources, labels."""
    return [{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "resources": dict(n["Resources"]),
             "labels": dict(n.get("Labels") or {})} for n in ray.nodes() if n["Alive"]]


def plan_problems(plan: dict[str, dict], nodes: list[dict]) -> list[str]:
    """What the nodes certainly cannot hold, judged on their total resources (what is in use may free up): a
    bundle no matching node can hold, a role or the whole plan needing more than the nodes have, a strict strategy
    the node count or sizes rule out. Empty when the plan may fit."""
    problems = []
    need_all: dict[str, float] = {}
    for role, p in plan.items():
        if not p["bundles"]:
            continue
        matching = [n for n in nodes if all(n["labels"].get(k) == v for k, v in p["labels"].items())]
        labels_present = sorted({f"{k}={v}" for n in nodes for k, v in n["labels"].items()
                                 if not k.startswith("ray.io/")})
        where = f"nodes with labels {p['labels']}" if p["labels"] else "the nodes"
        if not matching:
            problems.append(f"{role}: no node carries the labels {p['labels']} ({role}.placement.labels); "
                            f"labels present: {labels_present}")
            continue
        bundle = p["bundles"][0]
        for key, amount in bundle.items():
            best = max(n["resources"].get(key, 0.0) for n in matching)
            if best < amount:
                problems.append(f"{role}: each actor needs {key}={amount:g} on one node; the most any of {where} "
                                f"has is {best:g}")
        for key in bundle:
            need = sum(b[key] for b in p["bundles"])
            have = sum(n["resources"].get(key, 0.0) for n in matching)
            need_all[key] = need_all.get(key, 0.0) + need
            if have < need:
                problems.append(f"{role}: {len(p['bundles'])} actors need {key}={need:g} in all; {where} have "
                                f"{have:g} (missing {need - have:g})")
        fits = [n for n in matching if all(n["resources"].get(k, 0.0) >= v for k, v in bundle.items())]
        if p["strategy"] == "STRICT_SPREAD" and len(fits) < len(p["bundles"]):
            problems.append(f"{role}: STRICT_SPREAD needs {len(p['bundles'])} nodes that each hold one actor "
                            f"({bundle}); there are {len(fits)}")
        if p["strategy"] == "STRICT_PACK" and not any(
                all(n["resources"].get(k, 0.0) >= sum(b[k] for b in p["bundles"]) for k in bundle) for n in matching):
            problems.append(f"{role}: STRICT_PACK needs one node with "
                            f"{ {k: sum(b[k] for b in p['bundles']) for k in bundle} }; none has it")
    for key, need in need_all.items():
        have = sum(n["resources"].get(key, 0.0) for n in nodes)
        if have < need:
            problems.append(f"the run needs {key}={need:g} in all (learner + rollout); the cluster has {have:g} "
                            f"(missing {need - have:g})")
    return problems


class Placement:
    """One placement group per role; ``slot(role, i)`` schedules an actor into its bundle. The learner's group is
    gang-scheduled: every rank is placed or none is."""

    def __init__(self, cfg, timeout_s: float | None = None):
        self.plan = role_plan(cfg)
        timeout_s = timeout_s or cfg.runtime.placement_timeout_s
        nodes = alive_nodes()
        problems = plan_problems(self.plan, nodes)
        if problems:
            raise PlacementError("placement: the cluster cannot hold this run:\n  " + "\n  ".join(problems)
                                 + "\n  nodes: " + "; ".join(_node_line(n) for n in nodes)
                                 + "\n  Lower the roles' num_cpus / num_gpus / counts, fix their placement, or add "
                                   "nodes")
        self.groups = {}
        for role, p in self.plan.items():
            if p["bundles"]:
                self.groups[role] = placement_group(
                    p["bundles"], strategy=p["strategy"], name=f"rlpost:{cfg.name}:{role}",
                    **({"bundle_label_selector": [p["labels"]] * len(p["bundles"])} if p["labels"] else {}))
        try:
            wait([g.ready() for g in self.groups.values()], "placement groups", timeout_s)
        except ActorCallError:
            self.remove()
            raise ActorCallError(
                f"placement: the nodes could hold {self.plan} but not with what they have free within "
                f"{timeout_s:.0f} s (runtime.placement_timeout_s); free now: "
                + "; ".join(_node_line(n, free=True) for n in alive_nodes())) from None

    def slot(self, role: str, index: int) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(placement_group=self.groups[role],
                                                placement_group_bundle_index=index)

    def table(self) -> list[dict]:
        """Every reserved bundle: role, index, node id and address, resources."""
        ips = {n["id"]: n["ip"] for n in alive_nodes()}
        rows = []
        for role, group in self.groups.items():
            nodes = placement_group_table(group)["bundles_to_node_id"]
            for i, bundle in enumerate(self.plan[role]["bundles"]):
                node = nodes.get(i)
                rows.append({"role": role, "index": i, "node_id": node, "node_ip": ips.get(node), "resources": bundle})
        return rows

    def remove(self) -> None:
        for group in self.groups.values():
            remove_placement_group(group)


def wait_for_room(what: str, bundle: dict, timeout_s: float, log=print) -> None:
    """Say once what a restarting actor waits for, so a stalled run names what it lacks (the caller's wait is
    bounded by ``timeout_s``)."""
    log(f"{what}: died; waiting up to {timeout_s:.0f} s for Ray to restart it (if its node is gone, on another "
        f"node with room for {bundle}; free now: {'; '.join(_node_line(n, free=True) for n in alive_nodes())})")


def actor_location(actor) -> dict:
    """The node an actor runs on now (id, address, pid, state, restarts), from the GCS's actor table: no call
    into the actor, which may be busy (a generating engine, a curation round)."""
    # The public view (ray.util.state) needs the dashboard, which a local Ray runs without.
    info = ray._private.state.actors(actor_id=actor._actor_id.hex())
    return {"node_id": info["Address"]["NodeID"], "node_ip": info["Address"]["IPAddress"], "pid": info["Pid"],
            "state": info["State"], "restarts": info["NumRestarts"]}


def actor_environment(actors: dict, timeout_s: float = 60.0) -> dict[str, dict]:
    """The loopback variables each of ``actors`` (name -> handle) sees in its process, asked of the actors
    themselves (call it while they are idle)."""
    names = list(actors)
    seen = wait([actors[n].__ray_call__.remote(_loopback_vars) for n in names], "actor environment", timeout_s)
    return dict(zip(names, seen))


def _loopback_vars(_self) -> dict:
    return {k: os.environ[k] for k in LOOPBACK_ENV if k in os.environ}


def _node_line(node: dict, free: bool = False) -> str:
    resources = node["resources"]
    if free:
        # Ray has no public per-node view without the dashboard's state API, which a local Ray runs without.
        resources = ray._private.state.available_resources_per_node().get(node["id"], {})
    # Placement groups show up as derived resources (<name>_group_<index>_<id>): what is left is the node's own.
    shown = {k: round(v, 3) for k, v in sorted(resources.items())
             if not k.startswith(("node:", "memory", "object_store")) and "_group_" not in k}
    labels = {k: v for k, v in node["labels"].items() if not k.startswith("ray.io/")}
    return f"{node['ip']} {node['id'][:8]} {shown}" + (f" labels {labels}" if labels else "")


def dry_run(cfg) -> dict:
    """Reserve the run's placement on its Ray (local or ``ray_address``), read where every bundle went, release
    it. Returns the cluster's nodes and one row per actor; a plan that cannot fit raises ``PlacementError``."""
    owns = connect_ray(cfg)
    try:
        placement = Placement(cfg)
        try:
            return {"address": ray.get_runtime_context().gcs_address, "nodes": alive_nodes(),
                    "actors": placement.table()}
        finally:
            placement.remove()
    finally:
        if owns:
            ray.shutdown()
