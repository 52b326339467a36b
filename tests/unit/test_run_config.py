from pathlib import Path

import pytest

from rlpost.config import ConfigError, load_config
from rlpost.run_config import RunConfig

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
    ],
)
def test_bad_run_configs_are_refused_naming_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(RunConfig, None, overrides)
