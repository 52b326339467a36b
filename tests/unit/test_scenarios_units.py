"""Fast checks of the scenario pipeline's pure parts: SUMO geometry conversion, frames, schema, validator."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from rlpost.domain.coc import CausalFactor, Decision, compose_trace
from rlpost.scenarios.build import _stratified, build_dataset, net_seed
from rlpost.scenarios.check import check_scenario, validate
from rlpost.scenarios.labels import _since
from rlpost.scenarios.nets import resolve_net
from rlpost.scenarios.schema import Scenario, read_scenarios, split_of, write_scenarios
from rlpost.scenarios.sumo_sim import finish_track
from rlpost.scenarios.windows import to_ego_frame


def test_front_bumper_and_navigation_angle_become_centre_and_yaw():
    # Driving north (SUMO angle 0) at 10 m/s: yaw = pi/2 and the centre is L/2 behind (south of) the front.
    rows = [(100.0, 200.0 + 1.0 * k, 0.0, 10.0, 3, 5.0 + k, 0.0) for k in range(30)]
    tr = finish_track("car", "vehicle", "passenger", 5.0, 1.8, 0, rows)
    np.testing.assert_allclose(tr.yaw, np.pi / 2, atol=1e-9)
    np.testing.assert_allclose(tr.xy[:, 0], 100.0, atol=1e-9)
    np.testing.assert_allclose(tr.xy[:, 1], 200.0 + np.arange(30) - 2.5, atol=1e-9)
    # East is SUMO angle 90 -> yaw 0; centre L/2 west of the front.
    east = finish_track("c", "vehicle", "passenger", 4.0, 1.8, 0, [(10.0, 0.0, 90.0, 5.0, 0, 0.0, 0.0)] * 5)
    np.testing.assert_allclose(east.yaw, 0.0, atol=1e-9)
    np.testing.assert_allclose(east.xy[0], (8.0, 0.0), atol=1e-9)


def test_heading_jumps_at_lane_corners_are_smoothed():
    angles = [0.0] * 20 + [20.0] * 20  # a 20 degree step, as at a lane-shape corner
    rows = [(0.0, float(k), a, 10.0, 0, 0.0, 0.0) for k, a in enumerate(angles)]
    tr = finish_track("c", "vehicle", "passenger", 5.0, 1.8, 0, rows)
    assert np.abs(np.diff(tr.yaw)).max() < np.radians(20) / 4


def test_ego_frame_puts_ego_at_origin_heading_x():
    xy, yaw = to_ego_frame(np.array([[1.0, 2.0], [1.0, 5.0]]), np.array([np.pi / 2, np.pi]), np.array([1.0, 2.0]),
                           np.pi / 2)
    np.testing.assert_allclose(xy, [[0.0, 0.0], [3.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(yaw, [0.0, np.pi / 2], atol=1e-12)


def test_since_reports_start_of_last_true_run():
    assert _since([False] * 20) is None
    assert _since([True] * 20) == pytest.approx(-1.9)
    assert _since([True] * 5 + [False] * 5 + [True] * 10) == pytest.approx(-0.9)
    assert _since([True] * 19 + [False]) is None


def _scenario(sid="net-1-car-100", n_agents=2, **over) -> Scenario:
    rng = random.Random(0)
    decision = Decision("lead_obstacle_following", "lane_keeping")
    factors = [("critical_object", "the lead vehicle is braking", -0.8)]
    states = np.zeros((n_agents, 84, 4))
    states[:, :, 0] = 15.0  # a vehicle 15 m ahead for the whole window
    base = dict(
        scenario_id=sid, source="net", seed=1, t0=10.0, split=split_of(sid),
        history=np.zeros((20, 4)), future=np.zeros((64, 4)), expert_controls=np.zeros((64, 2)),
        ego_length=5.0, ego_width=1.8, agent_states=states, agent_size=np.full((n_agents, 2), 4.0),
        agent_type=["vehicle"] * n_agents, agent_valid=np.ones((n_agents, 84), bool),
        lanes=[("e_0", np.array([[0.0, 0.0], [50.0, 0.0]]))], ego_lane_id="e_0", tl_state="none",
        tl_distance=math.nan, decision_longitudinal="lead_obstacle_following", decision_lateral="lane_keeping",
        decision_direction=None, factors=factors, meta_longitudinal=("strong_decel",),
        meta_lateral=("go_straight",),
        coc_trace=compose_trace(decision, [CausalFactor(*f) for f in factors], rng),
        agent_ids=[f"a{i}" for i in range(n_agents)], factor_keys=["lead_braking"],
    )
    base.update(over)
    return Scenario(**base)


def test_schema_round_trip(tmp_path):
    scs = [_scenario(), _scenario("net-1-car-200", n_agents=0, agent_states=np.zeros((0, 84, 4)),
                                  agent_size=np.zeros((0, 2)), agent_type=[], agent_valid=np.zeros((0, 84), bool),
                                  agent_ids=[], factors=[], factor_keys=[])]
    path = write_scenarios(tmp_path / "ds", scs)
    back = read_scenarios(tmp_path / "ds")
    assert [s.scenario_id for s in back] == [s.scenario_id for s in scs]
    np.testing.assert_array_equal(back[0].agent_states, scs[0].agent_states)
    assert back[0].agent_valid.dtype == bool and back[1].agent_states.shape == (0, 84, 4)
    assert math.isnan(back[0].tl_distance) and back[0].factors == scs[0].factors
    assert back[0].lanes[0][0] == "e_0" and back[0].lanes[0][1].shape == (2, 2)
    assert len(read_scenarios(path, split=back[0].split)) >= 1


def test_split_is_deterministic_and_mostly_train():
    ids = [f"net-{i}" for i in range(2000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]
    assert 0.05 < splits.count("val") / len(ids) < 0.15


def test_write_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_scenarios(tmp_path / "x", [])
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="cannot"):
        write_scenarios(blocker / "sub", [_scenario()])
    with pytest.raises(FileNotFoundError, match="no scenario file"):
        read_scenarios(tmp_path / "missing")


def test_validator_passes_good_labels_and_catches_corruption():
    good = _scenario()
    assert check_scenario(good) == []
    leak = _scenario("net-1-car-300", factors=[("critical_object", "the lead vehicle is braking", 0.7)])
    assert {i.kind for i in check_scenario(leak)} == {"causal_locality"}
    weather = _scenario(factors=[("odd_constraint", "the road is wet from rain", -1.0)], factor_keys=["rain"])
    assert "no_causal_link" in {i.kind for i in check_scenario(weather)}
    irrelevant = _scenario(factors=[("traffic_light", "the traffic light ahead turned red", -0.5)],
                           factor_keys=["light_red"])
    assert "no_causal_link" in {i.kind for i in check_scenario(irrelevant)}  # not relevant, and no red light
    vague = _scenario("net-1-car-400", coc_trace="Be careful and drive safely.")
    assert {i.kind for i in check_scenario(vague)} == {"vague_decision"}
    no_dir = _scenario(decision_lateral="lane_change")
    assert "vague_decision" in {i.kind for i in check_scenario(no_dir)}
    absent = _scenario(agent_valid=np.zeros((2, 84), bool))
    assert "no_causal_link" in {i.kind for i in check_scenario(absent)}
    _, summary = validate([good, leak, vague], use_consistency=False)
    assert summary["failing"] == 2 and summary["scenarios"] == 3


def test_stratified_order_puts_rare_strata_first():
    items = ["a"] * 10 + ["b"] * 2 + ["c"]
    order = _stratified(items, key=lambda x: x, rng=random.Random(0))
    assert order[:3] == ["c", "b", "a"] and sorted(order) == sorted(items)


def test_bad_inputs_fail_before_simulating(tmp_path):
    with pytest.raises(ValueError, match="unknown network 'nowhere'.*fokr_bs_demo"):
        resolve_net("nowhere")
    with pytest.raises(ValueError, match="n: "):
        build_dataset(tmp_path, 0, ["fkk_in"], progress=False)
    with pytest.raises(ValueError, match="unknown network"):
        build_dataset(tmp_path, 5, ["nowhere"], progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="out: cannot write"):
        build_dataset(blocker / "sub", 5, ["fkk_in"], progress=False)
    assert net_seed(0, "a") == net_seed(0, "a") != net_seed(1, "a")
