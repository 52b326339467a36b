"""The built-in rewards on constructed cases: trajectory_quality, coc_consistency, reasoning_critic (rubric)."""

from __future__ import annotations

import numpy as np
import pytest

from reward_fixtures import expert_completion, make_batch, synthetic_scenario, with_controls, with_trace
from rlpost.domain.metrics import collides, mean_squared_jerk
from rlpost.domain.trajectory import unicycle_rollout
from rlpost.rewards.coc_consistency import coc_consistency
from rlpost.rewards.critic import reasoning_critic
from rlpost.rewards.trajectory_quality import trajectory_quality


# --- trajectory_quality --------------------------------------------------------------------------------------------
def test_expert_scores_best_in_its_group():
    comps, scens = make_batch(5, group=6, noise=0.4)
    values = np.array([r.value for r in trajectory_quality(comps, scens)]).reshape(5, 6)
    assert (values[:, 0][:, None] >= values[:, 1:]).all()
    assert (values <= 0).all()


def test_colliding_trajectory_is_penalised_by_lambda_collision():
    s = synthetic_scenario(0, "cruise")
    lead_gap = s.agent_states[0, 19, 0]
    # Accelerating hard for the whole horizon runs into the lead vehicle.
    fast = with_controls(expert_completion(s), np.tile([4.0, 0.0], (64, 1)))
    r_fast, r_expert = trajectory_quality([fast, expert_completion(s)], [s, s])
    assert lead_gap < 40 and r_fast.info["collision"] is True and r_expert.info["collision"] is False
    no_coll = trajectory_quality([fast], [s], lambda_collision=0.0)[0]
    assert r_fast.value == pytest.approx(no_coll.value - 1.0)


def test_golden_value_matches_reference_metrics():
    s = synthetic_scenario(2, "follow")
    controls = np.array(s.expert_controls) + np.stack([np.linspace(0, 0.8, 64), np.full(64, 0.004)], -1)
    r = trajectory_quality([with_controls(expert_completion(s), controls)], [s],
                           lambda_l2=0.1, lambda_collision=1.0, lambda_jerk=0.01)[0]
    states = unicycle_rollout(controls, s.history[-1, 3])
    l2 = np.mean(np.sum((states[:, :2] - s.future[:, :2]) ** 2, -1))
    jerk = mean_squared_jerk(np.concatenate([s.history[-3:], states]))
    boxes = np.concatenate([s.agent_states[:, 20:, :3], np.broadcast_to(s.agent_size[:, None], (4, 64, 2))], -1)
    coll = bool(collides(states, boxes, s.agent_valid[:, 20:]))
    assert r.status == "ok" and r.info["collision"] == coll
    assert r.value == pytest.approx(-(0.1 * l2 + 1.0 * coll + 0.01 * jerk), rel=1e-9)
    # Golden numbers (synthetic scenario 2 of seed 0 is deterministic): guards against silent formula changes.
    assert (r.value, r.info["l2_sq"], r.info["jerk_sq"]) == pytest.approx((-0.520684259287548, 5.174366918385927,
                                                                           0.32475674489552875), rel=1e-9)


def test_batch_result_equals_per_sample_result_and_bad_samples_do_not_break_the_batch():
    comps, scens = make_batch(5, group=3)
    comps[1] = with_controls(comps[1], None)
    comps[4] = with_controls(comps[4], np.full((64, 2), np.nan))
    comps[7] = with_controls(comps[7], np.zeros((63, 2)))
    comps[9] = with_controls(comps[9], np.full((64, 2), 1e200))
    batch = trajectory_quality(comps, scens)
    alone = [trajectory_quality([c], [s])[0] for c, s in zip(comps, scens)]
    assert [r.status for r in batch] == [r.status for r in alone]
    assert [r.value for r in batch] == pytest.approx([r.value for r in alone], rel=1e-12)
    assert {i for i, r in enumerate(batch) if r.status == "unparseable"} == {1, 4, 7, 9}
    assert batch[1].value == -10.0 and "no trajectory" in batch[1].info["reason"]
    assert "diverged" in batch[9].info["reason"]


def test_malformed_scenario_is_an_error_for_its_samples_only():
    comps, scens = make_batch(2, group=2)
    broken = synthetic_scenario(1)
    object.__setattr__(broken, "agent_valid", np.ones((3, 5), dtype=bool))
    scens = [scens[0], scens[1], broken, broken]
    comps = comps[:2] + [with_trace(expert_completion(broken, g), "x") for g in range(2)]
    out = trajectory_quality(comps, scens)
    assert [r.status for r in out] == ["ok", "ok", "error", "error"]
    assert broken.scenario_id in out[2].info["error"]


# --- coc_consistency -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["cruise", "stop", "follow", "turn_left", "lane_change_right"])
def test_expert_trace_and_trajectory_are_consistent(kind):
    s = synthetic_scenario(3, kind)
    r = coc_consistency([expert_completion(s)], [s])[0]
    assert (r.value, r.status) == (1.0, "ok"), r.info


def test_inconsistent_trace_trajectory_pair_scores_zero():
    stop, cruise = synthetic_scenario(1, "stop"), synthetic_scenario(0, "cruise")
    turn = synthetic_scenario(3, "turn_left")
    pairs = [
        (with_trace(expert_completion(cruise), stop.coc_trace), cruise),  # says stop, keeps speed
        (with_trace(expert_completion(stop), "I will accelerate to pass and keep lane."), stop),  # says pass, stops
        (with_trace(expert_completion(turn), "Decision: keep lane and maintain speed."), turn),  # says keep lane, turns
        (with_trace(expert_completion(cruise), "The ego should turn right at the intersection."), cruise),
    ]
    out = coc_consistency([p[0] for p in pairs], [p[1] for p in pairs])
    assert [(r.value, r.status) for r in out] == [(0.0, "ok")] * 4, [r.info for r in out]
    assert out[0].info["longitudinal_ok"] is False and out[2].info["lateral_ok"] is False


def test_unparseable_trace_or_missing_trajectory_scores_zero_unparseable():
    s = synthetic_scenario(0, "cruise")
    comps = [with_trace(expert_completion(s), ""), with_trace(expert_completion(s), "asdf qwerty"),
             with_controls(expert_completion(s), None), with_controls(expert_completion(s), np.full((64, 2), np.inf))]
    out = coc_consistency(comps, [s] * 4)
    assert [(r.value, r.status) for r in out] == [(0.0, "unparseable")] * 4
    assert "trace:" in out[0].info["reason"] and "no trajectory" in out[2].info["reason"]


# --- reasoning_critic (rubric) -------------------------------------------------------------------------------------
def test_rubric_grades_identical_trace_5_and_garbage_0():
    s = synthetic_scenario(3, "turn_left")
    out = reasoning_critic([expert_completion(s), with_trace(expert_completion(s), "")], [s, s])
    assert (out[0].value, out[0].info["grade"], out[0].status) == (1.0, 5, "ok")
    assert (out[1].value, out[1].status) == (0.0, "unparseable")


def test_rubric_golden_grades():
    s = synthetic_scenario(3, "turn_left")  # speed adaptation + turn left; factors routing_intent, road_event
    traces = {
        "The destination is on the other side and a sharp curve is coming up, so I will slow down and turn left.": 5,
        "The route leaves here, so the ego should slow down and turn left.": 4,  # one of two factors: F1 0.67
        "Since the light ahead is red, the ego should slow down and turn left.": 2,  # exact behaviour, wrong factor
        "A sharp curve is coming up and the route turns here, so I will yield and turn left.": 3,  # rough: yield
        "The route leaves here and a sharp curve is coming up, so the ego should slow down and turn right.": 1,
        "The ego should accelerate to pass and turn right because the light is red.": 0,  # opposite, unrelated
    }
    comps = [with_trace(expert_completion(s), t) for t in traces]
    got = [r.info["grade"] for r in reasoning_critic(comps, [s] * len(comps))]
    assert got == list(traces.values()), [r.info["rationale"] for r in reasoning_critic(comps, [s] * len(comps))]


def test_rubric_unparseable_reference_is_an_error_and_unknown_backend_raises():
    s = synthetic_scenario(0)
    object.__setattr__(s, "coc_trace", "nothing to see")
    r = reasoning_critic([expert_completion(synthetic_scenario(0))], [s])[0]
    assert r.status == "error" and "ground-truth trace" in r.info["error"]
    with pytest.raises(KeyError, match="unknown critic backend 'oracle'"):
        reasoning_critic([], [], backend="oracle")
