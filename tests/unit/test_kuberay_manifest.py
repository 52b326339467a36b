"""configs/kuberay/rayjob.yaml runs configs/cluster_gpu.yaml: its nodes hold the config's placement plan, its GPU
counts match what the pods get, and every pod mounts the storage the run writes to."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "configs" / "kuberay" / "rayjob.yaml"


def manifest_node_shapes(path: Path = MANIFEST) -> list[dict]:
    """One entry per Ray node the manifest starts: group, num_cpus, num_gpus, custom resources (what each node's
    `ray start` declares)."""
    spec = yaml.safe_load(path.read_text())["spec"]["rayClusterSpec"]
    nodes = []
    groups = [("head", 1, spec["headGroupSpec"]["rayStartParams"])]
    groups += [(g["groupName"], g["replicas"], g["rayStartParams"]) for g in spec["workerGroupSpecs"]]
    for name, replicas, params in groups:
        resources = json.loads(json.loads(params["resources"])) if "resources" in params else {}
        for _ in range(replicas):
            nodes.append({"group": name, "num_cpus": int(params["num-cpus"]),
                          "num_gpus": int(params.get("num-gpus", 0)), "resources": resources})
    return nodes


def _config():
    from rlpost.common.config import load_config
    from rlpost.rl.config import RunConfig

    entrypoint = shlex.split(yaml.safe_load(MANIFEST.read_text())["spec"]["entrypoint"])
    assert entrypoint[:2] == ["rlpost", "train"]
    return load_config(RunConfig, str(ROOT / entrypoint[2]), entrypoint[3:])


def test_the_manifests_nodes_hold_the_configs_plan():
    from rlpost.actors.placement import plan_problems, role_plan

    nodes = [{"id": f"{i:056x}", "ip": f"10.0.0.{i}", "labels": {},
              "resources": {"CPU": n["num_cpus"], **({"GPU": n["num_gpus"]} if n["num_gpus"] else {}),
                            **n["resources"]}} for i, n in enumerate(manifest_node_shapes())]
    assert plan_problems(role_plan(_config()), nodes) == []
    smaller = [dict(n, resources={**n["resources"], "GPU": 1}) if n["resources"].get("GPU") == 8 else n
               for n in nodes]
    assert plan_problems(role_plan(_config()), smaller)  # the check has teeth: one GPU short is refused


def test_pods_get_the_gpus_ray_declares_and_mount_the_runs_storage():
    cfg = _config()
    spec = yaml.safe_load(MANIFEST.read_text())["spec"]["rayClusterSpec"]
    pods = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for pod in pods:
        container = pod["template"]["spec"]["containers"][0]
        gpus = container["resources"]["limits"].get("nvidia.com/gpu", "0")
        assert gpus == pod["rayStartParams"].get("num-gpus", "0"), pod.get("groupName", "head")
        assert float(container["resources"]["limits"]["cpu"]) >= float(pod["rayStartParams"]["num-cpus"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert "/shared" in mounts
    for path in (cfg.out, cfg.init_checkpoint, cfg.data.path):
        assert path.startswith("/shared/"), path
    pinned = re.search(r'"ray\[default\]==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert spec["rayVersion"] == pinned
