"""The reward API: result normalisation, registry and discovery, typed config, composition, cache keys, CLI."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
from pydantic import ValidationError

from reward_fixtures import make_batch
from rlpost.cli import main
from rlpost.rewards import RewardResult, available_rewards, register_reward, resolve_reward
from rlpost.rewards.cache import completion_key
from rlpost.rewards.cli import add_rewards_subcommands
from rlpost.rewards.compose import RewardPipeline
from rlpost.rewards.registry import UNVERSIONED
from rlpost.rewards.spec import RewardsConfig, RewardSpec
from rlpost.rewards.types import Completion, normalise_results


# --- normalisation ---------------------------------------------------------------------------------------------------
def test_floats_are_wrapped_ok_and_bad_items_become_errors_naming_the_reward():
    out = normalise_results("r", [1, 2.5, np.float32(3), float("inf"), "x", RewardResult(1.0, "timeout")], 6, -1.0)
    assert [(o.value, o.status) for o in out[:3]] == [(1.0, "ok"), (2.5, "ok"), (3.0, "ok")]
    assert out[3].status == out[4].status == "error" and "reward 'r': sample 3" in out[3].info["error"]
    assert (out[5].value, out[5].status) == (-1.0, "timeout")  # the fallback replaces a timeout's value
    wrong = normalise_results("r", [1.0], 2, 0.0)
    assert [o.status for o in wrong] == ["error", "error"] and "1 results for 2 samples" in wrong[0].info["error"]
    assert normalise_results("r", np.array([1.0, 2.0]), 2, 0.0)[1].value == 2.0


# --- registry --------------------------------------------------------------------------------------------------------
def test_builtins_resolve_by_name_with_versions():
    names = available_rewards()
    for name in ("trajectory_quality", "coc_consistency", "reasoning_critic"):
        assert names[name] == "builtin"
        entry = resolve_reward(name)
        assert entry.version == "1" and entry.ref.startswith("rlpost.rewards.") and not entry.is_async


def test_dotted_paths_resolve_with_declared_or_missing_version():
    entry = resolve_reward("reward_plugins:trace_length")
    assert (entry.name, entry.version, entry.ref) == ("test_trace_length", "3", "reward_plugins:trace_length")
    assert resolve_reward("reward_plugins:unversioned_constant").version == UNVERSIONED
    assert resolve_reward("reward_plugins:async_sleeper").is_async
    with pytest.raises(ImportError, match="no_such_module"):
        resolve_reward("no_such_module:fn")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        resolve_reward("reward_plugins:nope")
    with pytest.raises(KeyError, match="unknown reward 'nope'.*dotted path"):
        resolve_reward("nope")


def test_register_refuses_to_shadow_a_name():
    with pytest.raises(ValueError, match="already registered"):
        register_reward("trajectory_quality")(lambda c, s: [])


def test_entry_point_discovery(monkeypatch):
    ep = importlib.metadata.EntryPoint("lane_bonus_ep", "reward_plugins:trace_length", "rlpost.rewards")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == "rlpost.rewards" else real(**kw))
    entry = resolve_reward("lane_bonus_ep")
    assert (entry.name, entry.source, entry.version) == ("lane_bonus_ep", "entry_point", "3")
    assert available_rewards()["lane_bonus_ep"] == "entry_point"


# --- config ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of 'name'"),
        ({"name": "a", "fn": "b:c"}, "exactly one of 'name'"),
        ({"fn": "no_colon"}, "package.module:function"),
        ({"name": "a", "in_process": True}, "cannot enforce deadline_s"),
        ({"name": "a", "weight": float("nan")}, "weight must be a finite number"),
        ({"name": "a", "bogus": 1}, "Extra inputs are not permitted"),
    ],
)
def test_spec_validation_names_the_field_and_the_fix(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        RewardSpec(**kwargs)


def test_config_checks_unique_components_and_resolvability():
    with pytest.raises(ValidationError, match="repeats components\\[0\\]"):
        RewardsConfig(components=[{"name": "coc_consistency"}, {"name": "coc_consistency"}])
    cfg = RewardsConfig(components=[{"name": "coc_consistency"}, {"name": "coc_consistency", "label": "c2"}])
    cfg.check_resolvable()
    with pytest.raises(ValueError, match=r"components\[0\] \(nope\): .*unknown reward"):
        RewardsConfig(components=[{"name": "nope"}]).check_resolvable()
    with pytest.raises(ValueError, match="cache: true needs a declared version"):
        RewardsConfig(components=[{"fn": "reward_plugins:unversioned_constant", "cache": True}]).check_resolvable()


def test_yaml_style_config_builds_a_pipeline_with_weighted_total():
    cfg = RewardsConfig.model_validate({"components": [
        {"name": "trajectory_quality", "weight": 1.0, "in_process": True, "deadline_s": None},
        {"name": "coc_consistency", "weight": 0.5, "in_process": True, "deadline_s": None},
        {"name": "reasoning_critic", "weight": 0.25, "in_process": True, "deadline_s": None,
         "params": {"backend": "rubric"}},
    ]})
    comps, scens = make_batch(3, group=2)
    with RewardPipeline(cfg) as pipeline:
        out = pipeline.score(comps, scens)
    for o in out:
        assert set(o.components) == {"trajectory_quality", "coc_consistency", "reasoning_critic"}
        assert o.total == pytest.approx(sum(r.weight * r.value for r in o.components.values()))
        assert all(r.status == "ok" and r.version == "1" for r in o.components.values())
    assert out[0].components["coc_consistency"].value == 1.0 and out[0].components["reasoning_critic"].value == 1.0
    with pytest.raises(ValueError, match="aligned"):
        RewardPipeline(cfg).score(comps, scens[:-1])


# --- cache keys ------------------------------------------------------------------------------------------------------
def test_cache_key_depends_on_every_part():
    u = np.zeros((64, 2))
    base = Completion("s1", 0, "trace", u)
    key = completion_key("r", "1", base)
    assert key == completion_key("r", "1", Completion("s1", 5, "trace", u.copy()))  # group index is irrelevant
    variants = [completion_key("r2", "1", base), completion_key("r", "2", base),
                completion_key("r", "1", Completion("s2", 0, "trace", u)),
                completion_key("r", "1", Completion("s1", 0, "trace!", u)),
                completion_key("r", "1", Completion("s1", 0, "trace", u + 1e-12)),
                completion_key("r", "1", Completion("s1", 0, "trace", None))]
    assert len({key, *variants}) == 7


# --- CLI -------------------------------------------------------------------------------------------------------------
def test_cli_check_passes_a_good_plugin_and_fails_a_bad_one(capsys):
    assert main(["rewards", "check", "reward_plugins:trace_length", "--param", "scale=0.5", "--garbage", "40",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] and report["version"] == "3" and report["samples_per_s"] > 0
    assert main(["rewards", "check", "reward_plugins:raises", "--garbage", "10"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert main(["rewards", "list"]) == 0 and "trajectory_quality" in capsys.readouterr().out


def test_add_rewards_subcommands_wires_into_a_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="rlpost")
    add_rewards_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rewards", "check", "pkg.mod:fn", "--param", "a=1"])
    assert args.reward == "pkg.mod:fn" and args.param == ["a=1"] and callable(args.func)
