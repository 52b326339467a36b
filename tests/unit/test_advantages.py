"""Golden values of the registered advantage estimators (hand-computed groups) and their input checks."""

import math

import pytest
import torch

from rlpost.common.config import ConfigError, load_config
from rlpost.rl.advantages import ADVANTAGES, zero_variance_groups
from rlpost.rl.advantages.dr_grpo import DrGRPO
from rlpost.rl.advantages.grpo import GRPO, grpo_advantages
from rlpost.rl.advantages.rloo import RLOO
from rlpost.rl.config import RunConfig

RAMP = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # mean 2.5, deviations ±0.5, ±1.5, Σ dev² = 5


def test_grpo_unbiased_std_by_default_and_population_as_an_option():
    unbiased = math.sqrt(5 / 3)  # ddof 1: 5 / (4 - 1)
    population = math.sqrt(5 / 4)  # ddof 0
    dev = torch.tensor([[-1.5, -0.5, 0.5, 1.5]])
    torch.testing.assert_close(grpo_advantages(RAMP, eps=0.0), dev / unbiased)
    torch.testing.assert_close(grpo_advantages(RAMP, unbiased_std=False, eps=0.0), dev / population)
    torch.testing.assert_close(GRPO()(RAMP), dev / (unbiased + 1e-6))
    torch.testing.assert_close(GRPO(unbiased_std=False)(RAMP), dev / (population + 1e-6))
    # {0, 1, 0, 1}: std 0.5 (ddof 0) or sqrt(1/3) (ddof 1).
    alternating = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    torch.testing.assert_close(grpo_advantages(alternating, eps=0.0),
                               torch.tensor([[-1.0, 1.0, -1.0, 1.0]]) * 0.5 * math.sqrt(3))
    torch.testing.assert_close(grpo_advantages(alternating, unbiased_std=False, eps=0.0),
                               torch.tensor([[-1.0, 1.0, -1.0, 1.0]]))


def test_dr_grpo_is_mean_only():
    torch.testing.assert_close(DrGRPO()(RAMP), torch.tensor([[-1.5, -0.5, 0.5, 1.5]]))


def test_rloo_leave_one_out_golden():
    # A_i = r_i − mean of the other three: 1 − 9/3, 2 − 8/3, 3 − 7/3, 4 − 6/3.
    torch.testing.assert_close(RLOO()(RAMP), torch.tensor([[-2.0, -2 / 3, 2 / 3, 2.0]]))


def test_group_of_two():
    pair = torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(grpo_advantages(pair, eps=0.0), torch.tensor([[-1.0, 1.0]]) / math.sqrt(2))
    torch.testing.assert_close(grpo_advantages(pair, unbiased_std=False, eps=0.0), torch.tensor([[-1.0, 1.0]]))
    torch.testing.assert_close(DrGRPO()(pair), torch.tensor([[-0.5, 0.5]]))
    torch.testing.assert_close(RLOO()(pair), torch.tensor([[-1.0, 1.0]]))


@pytest.mark.parametrize("name", sorted(ADVANTAGES.entries))
def test_zero_variance_groups_get_exactly_zero(name):
    rewards = torch.tensor([[0.5, 0.5, 0.5], [0.0, 1.0, 0.0]])
    adv = ADVANTAGES.build(name)(rewards)
    assert adv.shape == rewards.shape
    assert adv[0].abs().max() == 0 and adv[1].abs().max() > 0
    assert zero_variance_groups(rewards).tolist() == [True, False]


@pytest.mark.parametrize("name", sorted(ADVANTAGES.entries))
@pytest.mark.parametrize("bad", [torch.zeros(4), torch.tensor([[0.0, float("nan")]]),
                                 torch.tensor([[float("inf"), 0.0]])])
def test_estimators_reject_bad_rewards(name, bad):
    with pytest.raises(ValueError, match="rewards"):
        ADVANTAGES.build(name)(bad)


@pytest.mark.parametrize("estimator", [GRPO(), RLOO()])
def test_a_group_of_one_has_no_baseline_for_rloo_or_a_sample_std(estimator):
    with pytest.raises(ValueError, match="G >= 2"):
        estimator(torch.tensor([[1.0], [2.0]]))


def test_advantage_is_chosen_in_the_run_config():
    assert isinstance(RunConfig().learner.advantage, GRPO)
    cfg = load_config(RunConfig, None, ["learner.advantage.name=rloo"])
    assert isinstance(cfg.learner.advantage, RLOO)
    cfg = load_config(RunConfig, None, ["learner.advantage.unbiased_std=false"])
    assert cfg.learner.advantage == GRPO(unbiased_std=False)
    for overrides, field in [(["learner.advantage.name=gae"], "learner.advantage.name"),
                             (["learner.advantage.eps=0"], "learner.advantage.eps"),
                             (["learner.advantage.name=rloo", "learner.advantage.eps=1e-3"], "learner.advantage.eps")]:
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(RunConfig, None, overrides)
