"""The plugin contract test, as a plugin author would use it."""

from __future__ import annotations

import pytest

from rlpost.rewards.contract import check_reward


@pytest.mark.parametrize("name", ["trajectory_quality", "coc_consistency", "reasoning_critic"])
def test_builtins_meet_the_contract(name):
    report = check_reward(name, n_garbage=120)
    assert report.passed, report.summary()
    assert report.samples_per_s and report.samples_per_s > 100


@pytest.mark.parametrize(
    ("ref", "failed"),
    [
        ("reward_plugins:unversioned_constant", {"version"}),
        ("reward_plugins:nondeterministic", {"version", "determinism", "batch_independence"}),
        ("reward_plugins:batch_dependent", {"version", "batch_independence"}),
        ("reward_plugins:raises", {"version", "shapes", "garbage", "speed"}),
        ("reward_plugins:wrong_length", {"version", "shapes", "garbage", "speed"}),
    ],
)
def test_contract_flags_each_broken_plugin(ref, failed):
    report = check_reward(ref, n_garbage=20, batch_size=8)
    assert {c.name for c in report.checks if not c.passed} == failed, report.summary()


def test_contract_catches_a_hanging_plugin_at_its_deadline():
    report = check_reward("reward_plugins:sleeps_forever", n_garbage=10, batch_size=4, deadline_s=0.3,
                          scenarios=None)
    # It sleeps only for the SLEEP marker, which the contract's inputs do not contain: only "version" fails.
    assert {c.name for c in report.checks if not c.passed} == {"version"}, report.summary()


def test_a_local_function_runs_in_process_and_fails_only_the_worker_check():
    def local(completions, scenarios, /):
        return [0.0] * len(completions)

    local.reward_version = "1"
    report = check_reward(local, n_garbage=10, batch_size=4)
    assert {c.name for c in report.checks if not c.passed} == {"worker"}, report.summary()
