"""`rlpost status RUN` reads a run's live state from a real Redis."""

from __future__ import annotations

import time

from rlpost.cli import main


def test_status_prints_the_live_state_and_names_unknown_runs(redis_url, capsys):
    from rlpost.storage.store import RunState

    run = f"status-{time.time_ns()}"
    state = RunState(redis_url, run)
    roles = {"learner:0": {"node_id": "ab" * 28, "node_ip": "10.0.0.7", "pid": 41, "state": "ALIVE", "restarts": 0},
             "rollout:0": {"node_id": "cd" * 28, "node_ip": "10.0.0.8", "pid": 42, "state": "ALIVE", "restarts": 1}}
    state.update(step=4, version=5, status="running", step_s=2.25, curation_round=2,
                 restarts={"rollout": 1, "reward": 0}, roles=roles)
    assert main(["status", run, "--redis-url", redis_url]) == 0
    out = capsys.readouterr().out
    assert f"run {run}: running at step 4, policy version 5, curation round 2, last step 2.2 s" in out
    assert "restarts: rollout=1 reward=0" in out
    assert "  rollout:0  node cdcdcdcd 10.0.0.8        pid 42       alive restarts 1" in out

    assert main(["status", f"{run}-missing", "--redis-url", redis_url]) == 2
    err = capsys.readouterr().err
    assert f"no run '{run}-missing' in the Redis at {redis_url}" in err and run in err
