"""Chaos on CPU: kill each restartable actor (the rollout engine again as it comes back; the curator in round 0,
which training waits for, and in a later round) and restart Redis during a short real run; the run completes and
the Parquet log holds every rollout exactly once. A dead learner ends the run with a resumable checkpoint."""

import json
import threading
import time

import pyarrow.parquet as pq
import pytest
from test_grpo_ray import ray_session, run_config, scenarios  # noqa: F401  (fixture + helpers)

pytestmark = pytest.mark.integration


def _logged_steps(out) -> set:
    path = out / "metrics.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()}


def _kill_when(out, step: int, action, faults: list, deadline_s: float = 300) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if step in _logged_steps(out):
            faults.append(action())
            return
        time.sleep(0.05)
    faults.append(f"never reached step {step}")


def test_run_survives_actor_deaths_and_a_redis_restart(tmp_path, tiny_checkpoint, ray_session):  # noqa: F811
    import ray

    from rlpost.curation.schedule import CurationConfig
    from rlpost.loop.train import train
    from rlpost.storage.local_redis import LocalRedisServer, free_port

    port = free_port()
    server = LocalRedisServer(port=port).start()
    out = tmp_path / "chaos"
    cfg = run_config(out, server.url, steps=5, staleness=0)
    cfg.curation = CurationConfig(schedule="online", every=2, pool_size=12, size=8, group_size=2, max_block_s=120)
    pool, held = scenarios()

    def kill(role):
        def action():
            ray.kill(ray.get_actor(f"rlpost:{cfg.name}:{role}"), no_restart=False)
            return f"killed {role} after step {max(_logged_steps(out))}"
        return action

    def restart_redis():
        server.stop()
        time.sleep(0.5)
        server.start()  # same port, empty: nothing persisted
        return "restarted Redis (state lost)"

    faults: list = []
    plan = [(0, kill("rollout:0")), (1, kill("reward")), (2, kill("curator")), (2, restart_redis)]
    from rlpost.actors import cluster as cluster_mod
    from rlpost.actors import rollout as rollout_mod

    original_restore = rollout_mod.RolloutFleet._restore

    def restore_into_a_second_death(self, i, reload=True):  # killed again as it comes back (memory pressure)
        original_restore(self, i, reload)
        if not any(f.startswith("killed rollout:0 again") for f in faults):
            ray.kill(self.workers[i], no_restart=False)
            faults.append("killed rollout:0 again right after its restart")

    original_curate, curated = cluster_mod.Cluster.curate, []

    def curate_into_a_death(self, step):  # the curator dies with round 0 in flight: round 0 runs again
        ref = original_curate(self, step)
        curated.append(step)
        if curated == [0]:
            ray.kill(self.curator.actor, no_restart=False)
            faults.append("killed curator in round 0")
        return ref

    def chaos():
        for step, action in plan:
            _kill_when(out, step, action, faults)

    thread = threading.Thread(target=chaos, daemon=True)
    thread.start()
    cluster_mod.Cluster.curate = curate_into_a_death
    rollout_mod.RolloutFleet._restore = restore_into_a_second_death
    try:
        summary = train(cfg, tiny_checkpoint, pool, held, log=print)
    finally:
        cluster_mod.Cluster.curate = original_curate
        rollout_mod.RolloutFleet._restore = original_restore
        thread.join(timeout=30)
        server.stop()
    print("faults injected:", faults)
    assert len(faults) == 6 and not any(f.startswith("never") for f in faults)
    assert curated[:2] == [0, 0]  # round 0 was lost with the curator and ran again
    assert "after" in summary
    rows = pq.read_table(out / "rollouts").to_pylist()
    ids = [r["record_id"] for r in rows]
    assert len(ids) == 5 * 4 * 4 and len(set(ids)) == len(ids)  # nothing lost, nothing twice
    metrics = {json.loads(line)["step"]: json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert metrics[4]["restarts/rollout"] >= 2  # the dead engine was restored (weights + version) and reissued, twice
    for step in range(5):
        assert metrics[step]["version"] == step + 1 and metrics[step]["staleness/max"] == 0
    assert all(r["policy_version"] == r["step"] for r in rows)  # no sample from a restarted engine's start weights


def test_learner_death_ends_the_run_with_a_resumable_checkpoint(tmp_path, tiny_checkpoint, redis_url, ray_session):  # noqa: F811
    import ray

    from rlpost.actors.common import ActorDiedError
    from rlpost.loop.train import train

    out = tmp_path / "learner"
    cfg = run_config(out, redis_url, steps=3, staleness=0)
    pool, held = scenarios()
    from rlpost.actors import cluster as cluster_mod

    original_update = cluster_mod.Cluster.update

    def dying_update(self, records, *args, **kwargs):  # rank 1 dies just as the step-2 update is sent
        if records[0].step == 2:
            ray.kill(self.learners.ranks[1])
        return original_update(self, records, *args, **kwargs)

    cluster_mod.Cluster.update = dying_update
    try:
        with pytest.raises(ActorDiedError, match="rerun the same command to resume"):
            train(cfg, tiny_checkpoint, pool, held, log=print)
    finally:
        cluster_mod.Cluster.update = original_update
    assert (out / "checkpoints" / "latest").exists()
    summary = train(cfg, tiny_checkpoint, pool, held, log=print)  # resumes at step 2 and finishes
    assert "after" in summary
    ids = [r["record_id"] for r in pq.read_table(out / "rollouts").to_pylist()]
    assert len(ids) == 3 * 4 * 4 and len(set(ids)) == len(ids)
