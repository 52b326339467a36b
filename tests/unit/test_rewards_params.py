"""Reward params are bound against the function's (and the critic backend's) keyword parameters before a run."""

from __future__ import annotations

import pytest

from rlpost.common.config import ConfigError, load_config
from rlpost.rewards.registry import param_problems, resolve_reward
from rlpost.rewards.spec import RewardsConfig
from rlpost.rl.config import RunConfig


def problems(*components) -> list[str]:
    return RewardsConfig(components=list(components)).problems()


def test_typo_in_a_builtin_param_is_refused_naming_the_path_the_accepted_keys_and_the_closest():
    found = problems({"name": "coc_consistency"}, {"name": "trajectory_quality", "params": {"lamda_collision": 2.0}})
    assert len(found) == 1
    msg = found[0]
    assert msg.startswith("rewards.components[1].params.lamda_collision: ")
    assert "'lambda_l2'" in msg and "'jerk_history_ticks'" in msg  # the accepted keys are listed
    assert "did you mean 'lambda_collision'?" in msg
    with pytest.raises(ValueError, match=r"components\[1\]\.params\.lamda_collision"):
        RewardsConfig(components=[{"name": "coc_consistency"},
                                  {"name": "trajectory_quality", "params": {"lamda_collision": 2.0}}]
                      ).check_resolvable()


def test_correct_params_and_the_default_config_pass():
    assert problems({"name": "trajectory_quality", "params": {"lambda_collision": 2.0, "jerk_history_ticks": 2}},
                    {"name": "reasoning_critic", "params": {"backend": "rubric", "mostly_f1": 0.4}},
                    {"name": "reasoning_critic", "label": "judge",
                     "params": {"backend": "judge", "endpoint": "http://127.0.0.1:1", "timeout_s": 5}}) == []
    cfg = load_config(RunConfig, None, [])
    assert cfg.rewards.problems() == []
    cfg.preflight(need_data=False)


@pytest.mark.parametrize(
    "params, key, fragment",
    [
        ({"backend": "rubric", "typo_option": 1}, "typo_option", "critic backend 'rubric'"),
        ({"backend": "rubric", "mostly_fl": 0.4}, "mostly_fl", "did you mean 'mostly_f1'?"),
        ({"backend": "judge", "modle": "x"}, "modle", "did you mean 'model'?"),
        ({"backend": "rubrik"}, "backend", "unknown critic backend 'rubrik'"),
        ({"backend": "rubric", "normalise": "yes"}, "normalise", "expects bool"),
    ],
)
def test_reasoning_critic_options_are_bound_against_the_selected_backend(params, key, fragment):
    found = problems({"name": "reasoning_critic", "params": params})
    assert len(found) == 1 and found[0].startswith(f"rewards.components[0].params.{key}: ")
    assert fragment in found[0]


def test_plugins_kwargs_are_accepted_required_and_typed_params_are_checked():
    assert problems({"fn": "reward_plugins:forwards_options", "params": {"scale": 2.0, "anything": [1]}}) == []
    assert problems({"fn": "reward_plugins:positional_or_keyword", "params": {"bonus": 0.5}}) == []
    assert problems({"fn": "reward_plugins:needs_threshold", "params": {"threshold": 3}}) == []
    missing = problems({"fn": "reward_plugins:needs_threshold"})
    assert missing == ["rewards.components[0].params.threshold: reward 'needs_threshold' requires 'threshold'; "
                       "add it to params"]
    # bonus is positional-only: a config cannot pass it by keyword
    assert "params.bonus" in problems({"fn": "reward_plugins:needs_threshold",
                                       "params": {"threshold": 3, "bonus": 1}})[0]
    wrong = problems({"fn": "reward_plugins:trace_length", "params": {"scale": "2"}})
    assert wrong == ["rewards.components[0].params.scale: reward 'test_trace_length' expects float for 'scale', "
                     "got str '2'"]
    assert problems({"fn": "reward_plugins:trace_length", "params": {"scale": 2}}) == []  # an int is a float


def test_completions_and_scenarios_are_not_params():
    found = param_problems(resolve_reward("coc_consistency"), {"completions": []})
    assert [p.key for p in found] == ["completions"]


def test_preflight_refuses_a_param_typo_before_any_actor_starts():
    """The run refuses the config in preflight (train() calls it first): no Ray, no actor."""
    cfg = load_config(RunConfig, None, ["rewards.components=[{name: trajectory_quality, "
                                        "params: {lamda_collision: 2.0}}, {name: reasoning_critic, "
                                        "params: {backend: rubric, typo_option: 1}}]"])
    with pytest.raises(ConfigError) as err:
        cfg.preflight(need_data=False)
    msg = str(err.value)
    assert "rewards.components[0].params.lamda_collision" in msg
    assert "rewards.components[1].params.typo_option" in msg  # every problem is listed, not just the first


def test_train_refuses_a_param_typo_before_redis_or_any_actor(monkeypatch):
    from rlpost.loop import train as loop

    def must_not_start(*args, **kwargs):
        raise AssertionError("a misconfigured run started its cluster")

    monkeypatch.setattr(loop, "Cluster", must_not_start)
    monkeypatch.setattr(loop, "redis_server", must_not_start)
    cfg = load_config(RunConfig, None, ["rewards.components=[{name: trajectory_quality, "
                                        "params: {lamda_collision: 2.0}}]"])
    with pytest.raises(ConfigError, match=r"rewards\.components\[0\]\.params\.lamda_collision"):
        loop.train(cfg, "/nonexistent/checkpoint", [], [])
