"""Deployment is configuration (ARCHITECTURE rule 7): loopback pinning only for a local Ray rlpost starts, and a
placement plan the cluster's nodes cannot hold is refused at once, naming what is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlpost.common.runtime import LOOPBACK_ENV, PROCESS_ENV, deployment_env


def test_cluster_env_pins_nothing_local_env_pins_loopback():
    cluster = deployment_env(local=False)
    assert not set(cluster) & set(LOOPBACK_ENV)
    assert cluster == PROCESS_ENV
    assert deployment_env(local=True) == {**PROCESS_ENV, **LOOPBACK_ENV}


def test_site_env_and_network_interface_win():
    env = deployment_env(False, {"HF_HUB_OFFLINE": "0", "NCCL_DEBUG": "INFO"}, "eth1")
    assert env["HF_HUB_OFFLINE"] == "0" and env["NCCL_DEBUG"] == "INFO"
    assert env["GLOO_SOCKET_IFNAME"] == env["NCCL_SOCKET_IFNAME"] == "eth1"


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in LOOPBACK_ENV}


def test_importing_the_actors_and_the_cpu_settings_pin_nothing():
    """What used to pin loopback in every process (package import, per-process CPU settings) leaves addresses
    and the accelerator alone, so an actor on a cluster node keeps the node's."""
    code = ("import json, os; import rlpost.actors.cluster; from rlpost.common.runtime import configure_cpu_runtime;"
            "configure_cpu_runtime(1); from rlpost.actors.common import actor_env;"
            f"print(json.dumps([sorted(k for k in {sorted(LOOPBACK_ENV)!r} if k in os.environ)]))")
    out = subprocess.run([sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[]]


def test_cluster_run_actor_env_has_no_loopback():
    """``connect_ray`` sets the deployment's environment before any actor starts; the actors' ``runtime_env``
    then carries it (checked without a cluster: the env is computed before joining one)."""
    from rlpost.actors.common import actor_env, set_deployment_env

    try:
        set_deployment_env(deployment_env(local=False, env={"NCCL_DEBUG": "WARN"}))
        env = actor_env(2)["env_vars"]
        assert not set(env) & set(LOOPBACK_ENV)
        assert env["OMP_NUM_THREADS"] == "2" and env["NCCL_DEBUG"] == "WARN"
    finally:
        set_deployment_env(deployment_env(local=True))
    assert set(LOOPBACK_ENV) <= set(actor_env()["env_vars"])


def _node(ip, resources, labels=None):
    return {"id": ip.replace(".", "") + "0" * 40, "ip": ip, "resources": resources, "labels": labels or {}}


def _plan(cfg_overrides):
    from rlpost.actors.placement import role_plan
    from rlpost.common.config import load_config
    from rlpost.rl.config import RunConfig

    return role_plan(load_config(RunConfig, None, cfg_overrides))


def test_plan_that_fits_has_no_problems():
    from rlpost.actors.placement import plan_problems

    plan = _plan(["learner.num_ranks=2", "learner.placement.resources.learner_node=1",
                  "rollout.placement.resources.rollout_node=1", "trainer.scenarios_per_step=4",
                  "rollout.group_size=4", "learner.micro_batch=4", "ray_num_cpus=null"])
    nodes = [_node("10.0.0.1", {"CPU": 2, "learner_node": 2}), _node("10.0.0.2", {"CPU": 1, "rollout_node": 1})]
    assert plan_problems(plan, nodes) == []


def test_plan_without_gpus_lists_what_is_missing():
    from rlpost.actors.placement import plan_problems, role_plan
    from rlpost.common.config import load_config
    from rlpost.rl.config import RunConfig

    cfg = load_config(RunConfig, "configs/cluster_gpu.yaml", [])
    problems = plan_problems(role_plan(cfg), [_node("10.0.0.1", {"CPU": 64}), _node("10.0.0.2", {"CPU": 64})])
    text = "\n".join(problems)
    assert "learner: each actor needs GPU=1 on one node; the most any of the nodes has is 0" in text
    assert "the run needs GPU=12 in all (learner + rollout); the cluster has 0 (missing 12)" in text


def test_plan_with_labels_strict_strategies_and_custom_resources():
    from rlpost.actors.placement import plan_problems

    plan = _plan(["learner.num_ranks=2", "learner.placement.strategy=STRICT_PACK",
                  "learner.placement.labels.pool=train", "rollout.num_workers=2",
                  "rollout.placement.strategy=STRICT_SPREAD", "rollout.placement.resources.rollout_node=1",
                  "trainer.scenarios_per_step=4", "rollout.group_size=4", "learner.micro_batch=4",
                  "ray_num_cpus=null"])
    nodes = [_node("10.0.0.1", {"CPU": 1}, {"pool": "train"}), _node("10.0.0.2", {"CPU": 1}, {"pool": "train"}),
             _node("10.0.0.3", {"CPU": 4, "rollout_node": 2})]
    problems = plan_problems(plan, nodes)
    assert any(p.startswith("learner: STRICT_PACK needs one node with {'CPU': 2.0}") for p in problems), problems
    assert any(p.startswith("rollout: STRICT_SPREAD needs 2 nodes") for p in problems), problems
    assert not any("need rollout_node" in p for p in problems)  # 2 of it on one node cover the amounts
    nodes[0]["labels"] = {}
    nodes[1]["labels"] = {"pool": "eval"}
    assert any("no node carries the labels {'pool': 'train'}" in p for p in plan_problems(plan, nodes))


def test_placement_config_refuses_cpu_as_a_custom_resource():
    from rlpost.common.config import ConfigError, load_config
    from rlpost.rl.config import RunConfig

    with pytest.raises(ConfigError, match="num_cpus"):
        load_config(RunConfig, None, ["rollout.placement.resources.CPU=1"])


def test_a_failed_cluster_connection_leaves_the_local_environment():
    from rlpost.actors.common import actor_env
    from rlpost.actors.placement import connect_ray
    from rlpost.common.errors import UnreachableServiceError
    from rlpost.rl.config import RunConfig
    from rlpost.storage.local_redis import free_port

    with pytest.raises(UnreachableServiceError):
        connect_ray(RunConfig(ray_address=f"127.0.0.1:{free_port()}", ray_num_cpus=None))
    assert set(LOOPBACK_ENV) <= set(actor_env()["env_vars"])
