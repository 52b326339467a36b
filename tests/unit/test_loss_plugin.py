"""A loss that exists only in this module: registered here, selected by the run config, validated, and computed
through the learner's and the cluster's call paths, with no edit anywhere else."""

from collections.abc import Sequence
from typing import Literal

import pytest
import torch
from pydantic import Field

from rlpost.common.config import ConfigError, load_config
from rlpost.rl.config import RunConfig
from rlpost.rl.learner import make_train_batch, micro_batch_loss
from rlpost.rl.losses import LOSSES, Layout, PolicyLoss, register_loss


@register_loss
class ScaledReinforce(PolicyLoss):
    """−scale · Σ_i A_i · log π(τ_i) / sequences: REINFORCE on whole completions."""

    name: Literal["test_scaled_reinforce"] = Field("test_scaled_reinforce", description="a loss only this test knows")
    scale: float = Field(1.0, gt=0, description="multiplies the loss")
    min_micro_batch: int = Field(1, ge=1, description="smallest micro-batch this loss accepts")

    def normalizer(self, *, completion_lengths: Sequence[int], group_size: int, completion_budget: int) -> float:
        return float(len(completion_lengths))

    def check_layout(self, layout: Layout) -> None:
        if layout.micro < self.min_micro_batch:
            raise ValueError(f"learner.micro_batch: {layout.micro} is below learner.loss.min_micro_batch "
                             f"{self.min_micro_batch}")

    def compute(self, logp, old_logp, advantages, mask, *, group_size, normalizer, ref_logp):
        seq_logp = (logp * mask).sum(dim=1)
        return -self.scale * (advantages * seq_logp).sum() / normalizer, {"seq_logp_mean": float(seq_logp.mean())}


def test_new_loss_is_accepted_with_its_own_fields():
    cfg = load_config(RunConfig, None, ["learner.loss.name=test_scaled_reinforce", "learner.loss.scale=3"])
    assert isinstance(cfg.learner.loss, ScaledReinforce) and cfg.learner.loss.scale == 3.0
    assert not cfg.learner.loss.needs_reference
    assert cfg.model_dump()["learner"]["loss"] == {"name": "test_scaled_reinforce", "scale": 3.0, "min_micro_batch": 1}


@pytest.mark.parametrize("overrides, field", [
    (["learner.loss.scale=0"], "learner.loss.scale"),
    (["learner.loss.eps_low=0.1"], "learner.loss.eps_low"),  # ppo_clip's field is not this loss's
    (["learner.loss.min_micro_batch=32"], "learner.micro_batch"),  # its layout check runs at config load
])
def test_new_loss_is_validated_at_config_load(overrides, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_config(RunConfig, None, ["learner.loss.name=test_scaled_reinforce", *overrides])


def test_new_loss_computes_through_the_learner_and_cluster_call_paths():
    cfg = load_config(RunConfig, None, ["learner.loss.name=test_scaled_reinforce", "learner.loss.scale=2"])
    completions = [[4, 5], [6]]
    batch = make_train_batch([[1, 2], [3]], completions, [[0.0, 0.0], [0.0]], [1.0, -2.0], pad_id=0)
    # Positions: row 0 = prompt 1 2, completion at 2, 3; row 1 = prompt 3, completion at 1.
    logp = -torch.arange(1.0, 9.0).view(2, 4) / 10
    normalizer = cfg.learner.loss.normalizer(completion_lengths=[len(c) for c in completions], group_size=2,
                                             completion_budget=8)
    loss, metrics = micro_batch_loss(cfg.learner.loss, logp, batch, group_size=2, normalizer=normalizer)
    seq0, seq1 = -(0.3 + 0.4), -0.6
    assert normalizer == 2.0
    assert loss.item() == pytest.approx(-2.0 * (1.0 * seq0 + -2.0 * seq1) / 2)
    assert metrics["seq_logp_mean"] == pytest.approx((seq0 + seq1) / 2)


def test_a_loss_module_outside_the_package_loads_by_dotted_path(tmp_path, monkeypatch):
    (tmp_path / "my_loss_plugin.py").write_text(
        "from typing import Literal\n"
        "from pydantic import Field\n"
        "from rlpost.rl.losses.ar1_softmax import AR1Softmax\n"
        "class Sharper(AR1Softmax):\n"
        "    name: Literal['test_sharper'] = Field('test_sharper', description='ar1_softmax, another default')\n"
        "    beta: float = Field(4.0, ge=0, description='softmax temperature')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "test_sharper" not in LOSSES.entries
    cfg = load_config(RunConfig, None, ["learner.loss.name=my_loss_plugin:Sharper"])
    assert cfg.learner.loss.name == "test_sharper" and cfg.learner.loss.beta == 4.0
    with pytest.raises(ConfigError, match=r"learner\.loss\.name.*no_such_module"):
        load_config(RunConfig, None, ["learner.loss.name=no_such_module:Loss"])
    with pytest.raises(ConfigError, match=r"learner\.loss\.name.*must subclass PolicyLoss"):
        load_config(RunConfig, None, ["learner.loss.name=pathlib:Path"])


def test_registration_needs_a_described_name_literal():
    with pytest.raises(TypeError, match="description"):
        @register_loss
        class Undocumented(ScaledReinforce):
            name: Literal["test_undocumented"] = Field("test_undocumented", description="x")
            extra_knob: float = 1.0

    with pytest.raises(TypeError, match="compute"):
        @register_loss
        class Incomplete(PolicyLoss):
            name: Literal["test_incomplete"] = Field("test_incomplete", description="x")

            def normalizer(self, *, completion_lengths, group_size, completion_budget):
                return 1.0

    with pytest.raises(TypeError, match="Literal"):
        @register_loss
        class Unnamed(ScaledReinforce):
            name: str = Field("test_unnamed", description="x")
