"""A real run (Ray, vLLM, DeepSpeed, Redis) whose plugin reward raises on every training sample stops at the first
step with ``RewardBudgetError`` carrying the plugin's message, before any update: never a run that trains on
fallback rewards and exits 0."""

import json

import pytest

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def ray_with_plugins():
    """A local Ray; its workers find the test modules (``reward_plugins``, ``synthetic_policy``) through the
    PYTHONPATH that tests/conftest.py sets."""
    import ray

    from rlpost.actors.common import actor_env

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=actor_env())
    yield
    ray.shutdown()


def failing_plugin_config(out, redis_url, **extra):
    """A 1-step run whose plugin reward raises on every training-split sample (held-out samples score 1)."""
    from rlpost.rl.config import RunConfig

    return RunConfig(
        name=f"budget-{abs(hash(str(out))) % 10**6}", out=str(out), redis_url=redis_url,
        rewards={"components": [
            {"name": "trajectory_quality", "in_process": True, "deadline_s": None},
            {"fn": "reward_plugins:raises_on_train", "in_process": True, "deadline_s": None},
        ]},
        rollout={"group_size": 2, "num_cpus": 0.5},
        learner={"num_ranks": 1, "zero_stage": 2, "num_cpus": 0.5, "micro_batch": 4},
        trainer={"steps": 1, "scenarios_per_step": 2, "checkpoint_every": 1, "eval_scenarios": 2,
                 "eval_samples": 1},
        **extra,
    )


def test_a_component_failing_on_every_sample_stops_the_run(tmp_path, tiny_checkpoint, redis_url, ray_with_plugins):
    from reward_plugins import TRAIN_ONLY_MESSAGE
    from rlpost.loop.train import train
    from rlpost.rewards.budget import RewardBudgetError
    from synthetic_policy import make_scenarios

    out = tmp_path / "run"
    cfg = failing_plugin_config(out, redis_url)
    with pytest.raises(RewardBudgetError) as err:
        train(cfg, tiny_checkpoint, make_scenarios(4, "train"), make_scenarios(2, "val", seed=1), log=print)
    msg = str(err.value)
    assert "'raises_on_train': 4 of 4 samples of step 0" in msg and "max_error_share=1.0" in msg
    assert TRAIN_ONLY_MESSAGE in msg.split("First error: ", 1)[1]
    # the held-out scoring before training passed (its scenarios score 1), and nothing was trained or saved
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [-1]
    assert not (out / "checkpoints" / "latest").exists()


def test_a_component_failing_in_a_curation_round_stops_the_run(tmp_path, tiny_checkpoint, redis_url,
                                                                ray_with_plugins):
    """The curator scores its candidates (training scenarios) with the same components and the same budget: a round
    whose plugin fails on every candidate stops the run before training, naming the round."""
    from rlpost.curation.schedule import CurationConfig
    from rlpost.loop.train import train
    from rlpost.rewards.budget import RewardBudgetError
    from synthetic_policy import make_scenarios

    out = tmp_path / "run"
    cfg = failing_plugin_config(out, redis_url, curation=CurationConfig(schedule="offline", pool_size=4, size=2,
                                                                        group_size=2))
    with pytest.raises(RewardBudgetError, match=r"samples of curation round 0 \(curation\)"):
        train(cfg, tiny_checkpoint, make_scenarios(4, "train"), make_scenarios(2, "val", seed=1), log=print)
    assert not (out / "checkpoints" / "latest").exists()
