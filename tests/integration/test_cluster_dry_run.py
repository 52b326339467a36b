"""`rlpost train --dry-run` against a real multi-node Ray: configs/cluster_gpu.yaml on local nodes of the KubeRay
manifest's shapes with fake GPUs (`ray start --num-gpus`) places every actor where its role is pinned; on a
cluster without them it fails at once, listing what is missing."""

from __future__ import annotations

import re
import time

import pytest
from loopback_cluster import LoopbackCluster
from test_kuberay_manifest import manifest_node_shapes

pytestmark = pytest.mark.integration

ROW = re.compile(r"^(learner|rollout):(\d+)\s+([0-9a-f]{8})\s+(\S+)\s+(.*)$")


def test_cluster_gpu_plan_on_fake_gpus_and_fail_fast_without_them():
    shapes = manifest_node_shapes()
    cluster = LoopbackCluster()
    try:
        head = cluster.add_node(shapes[0]["num_cpus"], shapes[0]["resources"], head=True)
        t0 = time.monotonic()
        short = cluster.run("dry_run", check=False, CONFIG="configs/cluster_gpu.yaml", OVERRIDES="")
        fail_s = time.monotonic() - t0
        assert short.returncode == 2, short.stdout + short.stderr
        assert "placement: the cluster cannot hold this run" in short.stderr
        assert "the run needs GPU=12 in all (learner + rollout); the cluster has 0 (missing 12)" in short.stderr
        assert "learner: 8 actors need learner_node=8 in all; the nodes have 0 (missing 8)" in short.stderr
        assert fail_s < 60  # no placement timeout (120 s) waited out

        nodes = {}
        for shape in shapes[1:]:
            node = cluster.add_node(shape["num_cpus"], shape["resources"], num_gpus=int(shape["num_gpus"]))
            nodes[node["id"][:8]] = shape["group"]
        out = cluster.run("dry_run", CONFIG="configs/cluster_gpu.yaml", OVERRIDES="")
        rows = [m.groups() for line in out.stdout.splitlines() if (m := ROW.match(line))]
        learners = [r for r in rows if r[0] == "learner"]
        rollouts = [r for r in rows if r[0] == "rollout"]
        assert len(learners) == 8 and len(rollouts) == 4, out.stdout
        assert {r[2] for r in learners} == {k for k, g in nodes.items() if g == "learner"}  # STRICT_PACK, pinned
        assert all(r[4] == "CPU=8 GPU=1 learner_node=1" for r in learners)
        per_node = {k: sum(r[2] == k for r in rollouts) for k, g in nodes.items() if g == "rollout"}
        assert sorted(per_node.values()) == [2, 2]  # SPREAD over both rollout nodes
        assert head["id"][:8] not in {r[2] for r in rows}
        assert "placement fits; reserved and released" in out.stdout
        print(f"fail-fast dry run: {fail_s:.1f} s\n{out.stdout}")
    finally:
        cluster.stop()
    assert not cluster.processes()
