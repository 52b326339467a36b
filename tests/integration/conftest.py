"""Fixtures of the integration tier: a real tiny policy checkpoint and a single-rank torch.distributed env."""

import os

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import new_policy, save_policy

    policy = new_policy(ModelConfig(size="tiny", expert={"enabled": False}))
    return save_policy(tmp_path_factory.mktemp("ckpt"), policy.backbone, policy.tokenizer, policy.config)


@pytest.fixture(scope="session")
def tiny_checkpoint_with_expert(tmp_path_factory):
    from rlpost.policy.config import ModelConfig
    from rlpost.policy.model import new_policy, save_policy

    policy = new_policy(ModelConfig(size="tiny", expert={"hidden_size": 32, "num_layers": 1, "num_heads": 2}))
    return save_policy(tmp_path_factory.mktemp("ckpt_expert"), policy.backbone, policy.tokenizer, policy.config,
                       expert=policy.expert)


@pytest.fixture(scope="session")
def single_rank_env():
    from rlpost.storage.local_redis import free_port

    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port())}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
