"""rlpost on a real multi-node Ray cluster, on one machine: nodes started with `ray start`, the run submitted with
`ray job submit --working-dir`, roles pinned to nodes by custom resources, then the rollout engine's node and the
learner's node killed (their raylets, by pid). Everything the test started is stopped even when it fails."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from loopback_cluster import REPO, LoopbackCluster

pytestmark = pytest.mark.integration

STEPS, SCENARIOS, GROUP = 3, 4, 4  # configs/cluster_loopback.yaml
LOOPBACK_ONLY = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "VLLM_HOST_IP", "DS_ACCELERATOR")


def write_dataset(path: Path) -> Path:
    """The synthetic scenarios as a Parquet dataset the job reads (train and val splits)."""
    from rlpost.scenarios.schema import Scenario, write_scenarios
    from synthetic_policy import make_scenarios

    out = []
    for syn in make_scenarios(12, "train") + make_scenarios(4, "val", seed=1):
        fields = {k: getattr(syn, k) for k in syn.__dataclass_fields__ if k != "factors"}
        out.append(Scenario(**fields, source="synthetic", seed=0, t0=0.0, ego_length=4.5, ego_width=1.8,
                            factors=[], meta_longitudinal=(), meta_lateral=()))
    return write_scenarios(path, out)


def _steps_logged(out: Path) -> set[int]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()}


def _state(redis_url: str, name: str) -> dict | None:
    from rlpost.storage.store import read_run_state

    try:
        return read_run_state(redis_url, name)
    except LookupError:
        return None


def _scrape(node: dict, run: str) -> str | None:
    """The node's Prometheus endpoint once it serves the run's reward gauge."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{node['metrics_port']}/metrics", timeout=10).read().decode()
    return body if any(line.startswith("ray_rlpost_reward{") and f'run="{run}"' in line
                       for line in body.splitlines()) else None


def _until(predicate, what: str, timeout_s: float, poll_s: float = 0.2):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not within {timeout_s:.0f} s")


def test_job_on_three_nodes_survives_a_rollout_node_and_resumes_after_the_learner_node(
        tmp_path, tiny_checkpoint, redis_url):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from rlpost.storage.store import read_run_state

    t_start = time.monotonic()
    cluster = LoopbackCluster()
    events: dict = {}
    try:
        head = cluster.add_node(1, {"head_node": 1}, head=True)
        learner_node = cluster.add_node(2, {"learner_node": 2})
        rollout_node = cluster.add_node(1, {"rollout_node": 1})
        events["cluster_up_s"] = time.monotonic() - t_start
        name = f"mn-{int(time.time())}"
        out = tmp_path / "run"
        overrides = (f"name={name} out={out} data.path={write_dataset(tmp_path / 'data')} "
                     f"init_checkpoint={tiny_checkpoint} redis_url={redis_url}")
        client = JobSubmissionClient(f"http://127.0.0.1:{cluster.dashboard_port}")

        # Job 1: the rollout engine's node dies after step 0 (a fresh node joins); the learner's after step 1.
        t_submit = time.monotonic()
        cluster.run("submit", JOB_ID=f"{name}-1", OVERRIDES=overrides)

        def chaos():
            try:
                started = _until(lambda: (st := _state(redis_url, name)) and "roles" in st and st, "placement", 300)
                events["placed_s"] = time.monotonic() - t_submit
                events["roles_before"], events["actor_env"] = started["roles"], started["actor_env"]
                # The rollout node dies while step 1 runs (a step takes ~4 s here, a `ray start` several), so step 1
                # is the one that recovers: the engine waits until the spare node, started at the kill, joins; a
                # replacement learner node joins after it. (Nodes joining earlier, while the driver still imports
                # lazily, raced with the job's working-dir package on the shared test machine.)
                _until(lambda: 0 in _steps_logged(out), "step 0", 300, 0.1)
                events["first_step_s"] = time.monotonic() - t_submit
                cluster.kill_node(rollout_node)

                def join():
                    events["spare"] = cluster.add_node(1, {"rollout_node": 1})
                    events["new_learner_node"] = cluster.add_node(2, {"learner_node": 2})

                joining = threading.Thread(target=join, daemon=True)
                joining.start()
                t_kill = time.monotonic()
                events["prometheus"] = _until(lambda: _scrape(head, name), "run metrics in Prometheus", 60, 0.5)
                _until(lambda: 1 in _steps_logged(out), "step 1 after the rollout node died", 300)
                events["rollout_recovery_s"] = time.monotonic() - t_kill
                joining.join(timeout=120)
                # The state is written just after the step's metrics: wait for step 1's.
                events["roles_after"] = _until(lambda: (st := _state(redis_url, name)).get("step") == 1 and
                                               st["roles"], "run state of step 1", 60)
                _until(lambda: (out / "checkpoints" / "latest").exists() and
                       (out / "checkpoints" / "latest").read_text().strip() == "global_step2",
                       "step-1 checkpoint", 120)
                cluster.kill_node(learner_node)
                events["learner_killed"] = True
            except Exception as exc:  # reported by the main thread's asserts
                events["chaos_error"] = repr(exc)

        thread = threading.Thread(target=chaos, daemon=True)
        thread.start()
        status1 = _until(lambda: (s := client.get_job_status(f"{name}-1")).is_terminal() and s, "job 1", 420, 1)
        thread.join(timeout=60)
        logs1 = client.get_job_logs(f"{name}-1")
        (tmp_path / "job-1.log").write_text(logs1)  # kept by pytest for a failure's post-mortem
        assert "learner_killed" in events, (events.get("chaos_error"), logs1[-4000:])
        assert status1 == JobStatus.FAILED, logs1[-4000:]
        assert "rollout worker 0: died; waiting up to 180 s" in logs1
        assert "rerun the same command to resume" in logs1

        # Job 2: the same submission, a node with room for the learner having joined: resumes from the checkpoint.
        new_learner_node = events["new_learner_node"]
        t_resubmit = time.monotonic()
        cluster.run("submit", JOB_ID=f"{name}-2", OVERRIDES=overrides)
        status2 = _until(lambda: (s := client.get_job_status(f"{name}-2")).is_terminal() and s, "job 2", 300, 1)
        events["resume_job_s"] = time.monotonic() - t_resubmit
        logs2 = client.get_job_logs(f"{name}-2")
        (tmp_path / "job-2.log").write_text(logs2)
        assert status2 == JobStatus.SUCCEEDED, logs2[-4000:]
        assert f"resuming at step 2 from {out / 'checkpoints'}" in logs2

        # Where each actor ran (node ids recorded in the run state).
        before, after = events["roles_before"], events["roles_after"]
        print("nodes:", {n: events[n]["id"][:8] for n in ("spare", "new_learner_node")},
              {"head": head["id"][:8], "learner": learner_node["id"][:8], "rollout": rollout_node["id"][:8]})
        print("roles:", *({k: v["node_id"][:8] for k, v in roles.items()} for roles in (before, after)))
        assert before["learner:0"]["node_id"] == before["learner:1"]["node_id"] == learner_node["id"]
        assert before["rollout:0"]["node_id"] == rollout_node["id"]
        assert after["rollout:0"]["node_id"] == events["spare"]["id"]  # came back on the node that joined
        assert after["rollout:0"]["restarts"] >= 1
        final = read_run_state(redis_url, name)
        assert final["status"] == "finished" and final["step"] == STEPS
        assert final["roles"]["learner:0"]["node_id"] == final["roles"]["learner:1"]["node_id"] == \
            new_learner_node["id"]
        assert final["roles"]["rollout:0"]["node_id"] == events["spare"]["id"]

        # No loopback pinning in a cluster run's actors; the learner ranks met at rank 0's node address.
        for env in (events["actor_env"], final["actor_env"]):
            for actor, seen in env.items():
                assert not set(seen) & set(LOOPBACK_ONLY), (actor, seen)
        for rank in ("learner:0", "learner:1"):
            assert final["actor_env"][rank]["MASTER_ADDR"] == final["roles"]["learner:0"]["node_ip"]

        # Every rollout logged once; step 1 was generated by the engine restored on the new node.
        rows = pq.read_table(out / "rollouts").to_pylist()
        ids = [r["record_id"] for r in rows]
        assert len(ids) == STEPS * SCENARIOS * GROUP and len(set(ids)) == len(ids)
        assert sorted({r["step"] for r in rows}) == list(range(STEPS))
        assert all(r["policy_version"] == r["step"] for r in rows)
        metrics = {json.loads(line)["step"]: json.loads(line) for line in (out / "metrics.jsonl").read_text()
                   .splitlines()}
        assert metrics[1]["restarts/rollout"] >= 1

        # The loop's scalars reached Prometheus through Ray's metrics agent on the driver's node.
        assert "# TYPE ray_rlpost_reward gauge" in events["prometheus"]

        status = subprocess.run([sys.executable, "-m", "rlpost.cli", "status", name, "--redis-url", redis_url],
                                cwd=REPO, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        assert f"run {name}: finished at step {STEPS}" in status.stdout
        assert f"  learner:0  node {new_learner_node['id'][:8]}" in status.stdout
    finally:
        events["total_s"] = time.monotonic() - t_start
        print("measured:", {k: round(v, 1) for k, v in events.items() if k.endswith("_s")})
        cluster.stop()
    assert not cluster.processes()  # nothing the test started is left
