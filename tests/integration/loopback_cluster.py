"""A real multi-node Ray cluster on one machine: nodes started with `ray start` on 127.0.0.1, each with its own
ports, all under one temp dir of their own. The commands are the README's "Run on your cluster" ones
(``COMMANDS``: the README test checks they appear there verbatim), run through bash with the variables set here.

Only the processes this cluster started are ever stopped: they are found by the cluster's unique temp dir in
their command line (and their descendants), never by a process name: other Rays may run on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]

# The README's commands, verbatim (variables: this cluster's temp dir, ports and the node's resources).
COMMANDS = {
    "head": ("ray start --head --node-ip-address=127.0.0.1 --port=$GCS_PORT --temp-dir=$RAY_TMP "
             "--dashboard-host=127.0.0.1 --dashboard-port=$DASHBOARD_PORT --num-cpus=$NUM_CPUS "
             "--resources=\"$RESOURCES\" $NODE_PORTS"),
    "worker": ("ray start --address=127.0.0.1:$GCS_PORT --node-ip-address=127.0.0.1 --temp-dir=$NODE_TMP "
               "--num-cpus=$NUM_CPUS --resources=\"$RESOURCES\" $NODE_PORTS"),
    "gpu_worker": ("ray start --address=127.0.0.1:$GCS_PORT --node-ip-address=127.0.0.1 --temp-dir=$NODE_TMP "
                   "--num-cpus=$NUM_CPUS --num-gpus=$NUM_GPUS --resources=\"$RESOURCES\" $NODE_PORTS"),
    "submit": ("ray job submit --address=http://127.0.0.1:$DASHBOARD_PORT --working-dir=. --submission-id=$JOB_ID "
               "--no-wait -- rlpost train configs/cluster_loopback.yaml $OVERRIDES"),
    "dry_run": "RAY_ADDRESS=127.0.0.1:$GCS_PORT rlpost train --dry-run $CONFIG $OVERRIDES",
    "status": "ray job status --address=http://127.0.0.1:$DASHBOARD_PORT $JOB_ID",
    "logs": "ray job logs --address=http://127.0.0.1:$DASHBOARD_PORT $JOB_ID",
}
# Loopback settings of a local Ray: a node of a multi-node Ray must not have them (with
# RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 `ray start --address` refuses to join), nor should the actors.
NOT_IN_CLUSTER_ENV = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "VLLM_HOST_IP", "MASTER_ADDR", "DS_ACCELERATOR",
                      "RAY_ADDRESS", "RLPOST_RAY_ADDRESS")
# A dead node is noticed in ~3 s instead of Ray's default ~30 s, and metrics reach Prometheus every second.
FAST_FAILURE_DETECTION = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                          "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3",
                          "RAY_metrics_report_interval_ms": "1000"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_range(width: int) -> tuple[int, int]:
    """``width`` consecutive ports none of which is in use (worker processes bind them)."""
    for _ in range(200):
        start = _free_port()
        if start + width >= 65000:
            continue
        try:
            socks = []
            for port in range(start, start + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return start, start + width - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class LoopbackCluster:
    def __init__(self, cpu_env_threads: int = 1):
        self.tmp = Path(tempfile.mkdtemp(prefix="rlpost-mn-", dir="/tmp"))  # short: Unix socket paths are capped
        self.gcs_port, self.dashboard_port = _free_port(), _free_port()
        self.nodes: list[dict] = []
        self.orphans: list[psutil.Process] = []  # workers of a killed raylet: no longer its descendants
        env = {k: v for k, v in os.environ.items() if k not in NOT_IN_CLUSTER_ENV}
        venv_bin = str(Path(os.sys.executable).parent)
        env.update({"PATH": venv_bin + os.pathsep + env.get("PATH", ""), "RAY_AUTH_MODE": "disabled",
                    "OMP_NUM_THREADS": str(cpu_env_threads), "MKL_NUM_THREADS": str(cpu_env_threads),
                    "RAY_USAGE_STATS_ENABLED": "0", **FAST_FAILURE_DETECTION})
        self.env = env

    def variables(self, **extra) -> dict:
        return {"RAY_TMP": str(self.tmp), "GCS_PORT": str(self.gcs_port), "DASHBOARD_PORT": str(self.dashboard_port),
                **{k: str(v) for k, v in extra.items()}}

    def run(self, command: str, timeout_s: float = 120, check: bool = True, **variables) -> subprocess.CompletedProcess:
        """Run one of ``COMMANDS`` through bash in the repo root with its variables set."""
        env = {**self.env, **self.variables(**variables)}
        out = subprocess.run(["bash", "-c", COMMANDS[command]], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=timeout_s)
        if check and out.returncode != 0:
            raise RuntimeError(f"{command} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        return out

    def add_node(self, num_cpus: float, resources: dict, head: bool = False, num_gpus: int | None = None) -> dict:
        """Start a node (the head first) with its own ports; returns its record (ports, resources, node id).
        ``num_gpus`` declares GPUs the machine need not have (a plan check starts no actor on them)."""
        low, high = _free_range(12)
        node = {"node_manager_port": _free_port(), "resources": resources, "num_cpus": num_cpus}
        ports = (f"--node-manager-port={node['node_manager_port']} --object-manager-port={_free_port()} "
                 f"--metrics-export-port={_free_port()} --dashboard-agent-grpc-port={_free_port()} "
                 f"--dashboard-agent-listen-port={_free_port()} --runtime-env-agent-port={_free_port()} "
                 f"--min-worker-port={low} --max-worker-port={high} --object-store-memory=100000000")
        if head:
            ports += f" --ray-client-server-port={_free_port()}"
        node["metrics_port"] = int(ports.split("--metrics-export-port=")[1].split()[0])
        known = {n["id"] for n in self.alive_nodes()} if self.nodes else set()
        command = "head" if head else ("gpu_worker" if num_gpus is not None else "worker")
        # Each node its own temp dir, as on separate hosts: nodes sharing one unpack the job's working dir into one
        # folder, and a node joining mid-run re-created it under running workers (files vanished mid-import).
        node_tmp = self.tmp / f"n{len(self.nodes)}"
        node_tmp.mkdir(exist_ok=True)
        self.run(command, timeout_s=180, NUM_CPUS=num_cpus, NUM_GPUS=num_gpus, RESOURCES=json.dumps(resources),
                 NODE_PORTS=ports, NODE_TMP=node_tmp)
        node["raylet_pid"] = self._raylet_pid(node["node_manager_port"])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [n for n in self.alive_nodes() if n["id"] not in known and n["port"] == node["node_manager_port"]]
            if new:
                node["id"] = new[0]["id"]
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"node {resources} did not register")
        self.nodes.append(node)
        return node

    def alive_nodes(self) -> list[dict]:
        """The GCS's view, read with the venv's Ray in a subprocess (this test process must not join)."""
        code = ("import json, ray; from ray._private.state import GlobalState;"
                "from ray._raylet import GcsClientOptions; s = GlobalState();"
                f"s._initialize_global_state(GcsClientOptions.create('127.0.0.1:{self.gcs_port}', None,"
                " allow_cluster_id_nil=True, fetch_cluster_id_if_nil=False));"
                "print(json.dumps([{'id': n['NodeID'], 'port': n['NodeManagerPort'], 'alive': n['Alive'],"
                " 'resources': n['Resources']} for n in s.node_table()]))")
        out = subprocess.run([os.sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                             timeout=60)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return [n for n in json.loads(out.stdout.strip().splitlines()[-1]) if n["alive"]]

    def _raylet_pid(self, node_manager_port: int) -> int:
        for proc in self.processes():
            try:
                cmd = proc.cmdline()
            except psutil.Error:
                continue
            if cmd and cmd[0].endswith("raylet") and f"--node_manager_port={node_manager_port}" in cmd:
                return proc.pid
        raise RuntimeError(f"no raylet with node manager port {node_manager_port}")

    def kill_node(self, node: dict) -> None:
        """SIGKILL the node's raylet by pid and, in the same instant, every worker it started, as a crashed host
        loses them all. (Killing the raylet alone leaves its workers serving calls for a few seconds until they
        notice: a step could then finish on the "dead" node and the recovery would land in a later step.)"""
        workers = psutil.Process(node["raylet_pid"]).children(recursive=True)
        self.orphans += workers  # no longer the cluster's descendants: teardown checks them by pid
        os.kill(node["raylet_pid"], signal.SIGKILL)
        for proc in workers:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass

    def processes(self) -> list[psutil.Process]:
        """Every process this cluster started: its command line names the cluster's temp dir, or a process
        that does is its ancestor."""
        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.tmp) in part for part in proc.info["cmdline"] or []):
                    mine.append(proc)
            except psutil.Error:
                continue
        found = {p.pid: p for p in mine}
        for proc in mine:
            try:
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.Error:
                continue
        for proc in self.orphans:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.setdefault(proc.pid, proc)
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self) -> None:
        """Stop this cluster's processes (never `ray stop`, which stops every Ray on the machine)."""
        procs = self.processes()
        for proc in procs:
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for proc in alive:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.tmp, ignore_errors=True)
