"""The error budget: a step where a component errs on (a configured share of) its samples stops the run."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reward_plugins import light_batch
from rlpost.rewards.budget import RewardBudgetError, check_error_budget
from rlpost.rewards.compose import ComponentRecord, RewardPipeline, SampleRewards
from rlpost.rewards.spec import RewardsConfig, RewardSpec


def rec(status: str, error: str | None = None) -> ComponentRecord:
    """A component record as the rollout records carry it (``record.rewards[name]``)."""
    return ComponentRecord(0.0, status, 1.0, "1", 1.0, info={} if error is None else {"error": error})


SPECS = [RewardSpec(name="trajectory_quality"), RewardSpec(fn="pkg.mod:lane_bonus", max_error_share=0.5)]


def step(statuses_a: list[str], statuses_b: list[str]) -> list[dict]:
    return [{"trajectory_quality": rec(a, f"tq failed on sample {i}" if a == "error" else None),
             "lane_bonus": rec(b, f"lane failed on sample {i}" if b == "error" else None)}
            for i, (a, b) in enumerate(zip(statuses_a, statuses_b))]


def test_a_component_erring_on_every_sample_stops_with_its_first_message():
    samples = step(["ok"] * 2 + ["error"] * 6, ["ok"] * 8)
    samples[0]["trajectory_quality"] = rec("error", "ValueError: params bad\n  at line 3")
    samples[1]["trajectory_quality"] = rec("error", "second message")
    with pytest.raises(RewardBudgetError) as err:
        check_error_budget(samples, SPECS, "step 7")
    msg = str(err.value)
    assert "'trajectory_quality'" in msg and "8 of 8 samples of step 7" in msg and "100%" in msg
    assert "rewards.components[0].max_error_share=1.0" in msg
    assert msg.endswith("First error: ValueError: params bad\n  at line 3")  # verbatim, the first one


def test_one_error_in_eight_is_within_the_default_budget():
    check_error_budget(step(["error"] + ["ok"] * 7, ["ok"] * 8), SPECS, "step 0")


def test_the_share_is_per_component_and_reaching_it_stops():
    check_error_budget(step(["ok"] * 8, ["error"] * 3 + ["ok"] * 5), SPECS, "step 0")  # 3/8 < 0.5
    with pytest.raises(RewardBudgetError, match=r"'lane_bonus': 4 of 8 .*\(50%\).*components\[1\]\.max_error_share"
                                                r"=0\.5.*First error: lane failed on sample 0"):
        check_error_budget(step(["ok"] * 8, ["error"] * 4 + ["ok"] * 4), SPECS, "step 0")


def test_timeouts_and_unparseable_samples_do_not_count():
    check_error_budget(step(["timeout"] * 4 + ["unparseable"] * 4, ["timeout"] * 8), SPECS, "step 0")


def test_an_error_without_a_message_still_stops_and_says_so():
    samples = [{"trajectory_quality": rec("error"), "lane_bonus": rec("ok")}]
    with pytest.raises(RewardBudgetError, match="recorded no message"):
        check_error_budget(samples, SPECS, "step 0")


def test_the_pipelines_sample_rewards_work_as_they_are():
    """``RewardPipeline.score``'s output (``SampleRewards`` of ``ComponentRecord``) goes in unchanged."""
    cfg = RewardsConfig(components=[{"fn": "reward_plugins:raises", "in_process": True, "deadline_s": None},
                                    {"fn": "reward_plugins:trace_length", "in_process": True, "deadline_s": None}])
    comps, scens = light_batch(4)
    with RewardPipeline(cfg) as pipeline:
        scored = pipeline.score(comps, scens)
    assert isinstance(scored[0], SampleRewards) and isinstance(scored[0].components["raises"], ComponentRecord)
    with pytest.raises(RewardBudgetError, match=r"'raises': 4 of 4 .*First error: .*boom in plugin"):
        check_error_budget(scored, cfg.components, "step 0")
    check_error_budget([], cfg.components, "step 0")  # nothing scored: nothing to judge


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_max_error_share_is_validated(share):
    with pytest.raises(ValidationError, match="max_error_share"):
        RewardSpec(name="coc_consistency", max_error_share=share)
