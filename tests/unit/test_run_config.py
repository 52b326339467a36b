from pathlib import Path

import pytest

from rlpost.common.config import ConfigError, load_config
from rlpost.rl.config import RunConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_tiny_yaml_is_the_embedded_default():
    assert load_config(RunConfig, CONFIGS / "tiny.yaml").model_dump() == RunConfig().model_dump()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")))
def test_shipped_configs_validate(path):
    if path.name == "sft_15min.yaml":
        from rlpost.policy.config import PolicyRunConfig

        load_config(PolicyRunConfig, path)
    else:
        load_config(RunConfig, path)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (["learner.num_ranks=3"], "learner.num_ranks"),
        (["learner.micro_batch=5"], "learner.micro_batch"),
        (["ray_num_cpus=1"], "ray_num_cpus"),
        (["rollout.group_size=1"], "rollout.group_size"),
        (["learner.loss.name=reinforce"], "learner.loss.name"),
        (["learner.loss.eps_low=-0.1"], "learner.loss.eps_low"),
        (["learner.loss.dual_clip=0.5"], "learner.loss.dual_clip"),
        (["trainer.staleness=2"], "trainer.staleness"),
        (["rewards.components=[]"], "rewards.components"),
        (["curation.schedule=sometimes"], "curation.schedule"),
        (["learner.lr=0"], "learner.lr"),
        (["trainer.steps=ten"], "trainer.steps"),
        (["redis_url=http://localhost:6379"], "redis_url"),
        (["redis_url=6379"], "redis_url"),
        (["rollout.temperature=0"], "rollout.temperature"),
        (["rollout.top_p=1.5"], "rollout.top_p"),
        (["learner.zero_stage=4"], "learner.zero_stage"),
        (["sync.bucket_mb=0"], "sync.bucket_mb"),
        (["curation.size=0"], "curation.size"),
        (["trainer.scenarios_per_step=0"], "trainer.scenarios_per_step"),
        (["learner.loss.agg=sum"], "learner.loss.agg"),
        (["learner.loss.beta=2"], "learner.loss.beta"),  # ar1_softmax's field, not ppo_clip's
        (["learner.loss.name=ar1_softmax", "learner.loss.eps_low=0.1"], "learner.loss.eps_low"),
        (["learner.loss.std_normalize=false"], "learner.loss.std_normalize"),  # moved to learner.advantage
        (["learner.advantage.name=ppo"], "learner.advantage.name"),
        (["learner.loss.name=ar1_softmax", "learner.num_ranks=2", "learner.num_cpus=0.5",
          "trainer.scenarios_per_step=1"], "learner.num_ranks"),
        (["model.size=huge"], "model.size"),
        (["sft.grad_accum=3"], "sft.grad_accum"),
        (["unknown_section.x=1"], "unknown_section"),
    ],
)
def test_bad_run_configs_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(RunConfig, None, overrides)


def test_ar1_softmax_micro_batches_that_split_groups_are_refused_at_load():
    # 8 scenarios x G=12 = 96 sequences on one rank in micro-batches of 16: every micro-batch would cut a group.
    with pytest.raises(ConfigError, match=r"learner\.micro_batch") as err:
        load_config(RunConfig, CONFIGS / "tiny.yaml",
                    ["learner.loss.name=ar1_softmax", "rollout.group_size=12", "learner.micro_batch=16"])
    assert "rollout.group_size" in str(err.value)
    cfg = load_config(RunConfig, CONFIGS / "tiny.yaml",
                      ["learner.loss.name=ar1_softmax", "rollout.group_size=12", "learner.micro_batch=24"])
    assert cfg.learner.loss.name == "ar1_softmax" and cfg.learner.loss.beta == 1.0


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["init_checkpoint=/nonexistent/ckpt"], "init_checkpoint"),
        (["rewards.components=[{name: no_such_reward}]"], "no_such_reward"),
        (["rewards.components=[{fn: 'nopkg.mod:fn'}]"], "nopkg"),
        (["data.path=/nonexistent/scenarios"], "data.path"),
    ],
)
def test_preflight_refuses_what_cannot_run(overrides, fragment):
    cfg = load_config(RunConfig, None, overrides)
    with pytest.raises(ConfigError, match=fragment):
        cfg.preflight(need_data=True)


def test_corrupted_scenarios_file_is_a_clear_error(tmp_path):
    from rlpost.scenarios.schema import read_scenarios

    bad = tmp_path / "scenarios.parquet"
    bad.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(ValueError, match="not a readable Parquet scenario file"):
        read_scenarios(bad)
