"""Build a small dataset from a real shipped SUMO network and check schema, geometry, labels and determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("sumo", reason="needs the eclipse-sumo wheel (pip install 'rlpost[data]')")

from rlpost.domain.coc import Decision, parse_trace  # noqa: E402
from rlpost.domain.trajectory import unicycle_rollout  # noqa: E402
from rlpost.scenarios.build import build_dataset  # noqa: E402
from rlpost.scenarios.check import check_scenario, validate  # noqa: E402
from rlpost.scenarios.schema import arrow_schema, read_scenarios  # noqa: E402

pytestmark = pytest.mark.integration
NET, N, DURATION = "fokr_bs_demo", 30, 150.0


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenarios")
    report = build_dataset(out, N, [NET], seed=3, workers=1, progress=False, duration=DURATION)
    return out, report, read_scenarios(out)


def test_schema_and_shapes(built):
    import pyarrow.parquet as pq

    out, report, scs = built
    assert report["n_written"] == len(scs) == N
    assert pq.read_schema(out / "scenarios.parquet").remove_metadata().equals(arrow_schema())
    for sc in scs:
        n = len(sc.agent_type)
        assert sc.history.shape == (20, 4) and sc.future.shape == (64, 4) and sc.expert_controls.shape == (64, 2)
        assert sc.agent_states.shape == (n, 84, 4) and sc.agent_valid.shape == (n, 84) and sc.agent_size.shape == (n, 2)
        assert sc.source == NET and sc.split in ("train", "val") and sc.tl_state in ("red", "yellow", "green", "none")
        assert set(sc.agent_type) <= {"vehicle", "pedestrian", "bicycle", "truck", "bus", "motorcycle"}
        np.testing.assert_allclose(sc.history[-1, :3], 0.0, atol=1e-9)  # ego frame at t0
        assert sc.lanes and all(p.shape[1] == 2 for _, p in sc.lanes)
        assert np.isnan(sc.tl_distance) == (sc.tl_state == "none")


def test_expert_controls_reintegrate_to_expert_states(built):
    _, _, scs = built
    fut = np.stack([sc.future for sc in scs])
    controls = np.stack([sc.expert_controls for sc in scs])
    v0 = np.array([sc.history[-1, 3] for sc in scs])
    err = np.linalg.norm(unicycle_rollout(controls, v0)[..., :2] - fut[..., :2], axis=-1)
    assert err.max() < 0.5 and np.median(err) < 0.1


def test_every_trace_parses_to_its_decision_and_passes_the_validator(built):
    _, _, scs = built
    for sc in scs:
        assert parse_trace(sc.coc_trace).decision == Decision(*sc.decision), sc.coc_trace
        assert all(-1.9 - 1e-9 <= t <= 0.0 for _, _, t in sc.factors)
    issues, summary = validate(scs)
    assert summary["failing"] == 0, issues[:5]


def test_validator_catches_corrupted_labels(built):
    _, _, scs = built
    with_factor = [sc for sc in scs if sc.factors]
    assert with_factor, "the build produced no factors at all"
    sc = with_factor[0]
    cat, text, _ = sc.factors[0]
    leaked = dataclasses.replace(sc, factors=[(cat, text, 1.5)] + sc.factors[1:])
    assert "causal_locality" in {i.kind for i in check_scenario(leaked)}
    weather = dataclasses.replace(sc, factors=sc.factors + [("odd_constraint", "the road is wet", -1.0)],
                                  factor_keys=sc.factor_keys + ["rain"])
    assert "no_causal_link" in {i.kind for i in check_scenario(weather)}
    vague = dataclasses.replace(sc, coc_trace="Be careful here.")
    assert "vague_decision" in {i.kind for i in check_scenario(vague)}
    other = "yield" if sc.decision_longitudinal != "yield" else "set_speed_tracking"
    swapped = dataclasses.replace(sc, decision_longitudinal=other)
    assert {"vague_decision", "no_causal_link"} & {i.kind for i in check_scenario(swapped)}


def test_filters_are_reported(built):
    _, report, _ = built
    filters = report["per_net"][0]["filters"]
    for name in ("standstill", "degenerate", "turnaround", "comfort", "collision"):
        assert name in filters
    assert filters["comfort"] > 0 and filters["standstill"] > 0


def test_build_is_deterministic(built, tmp_path):
    _, _, first = built
    build_dataset(tmp_path, N, [NET], seed=3, workers=1, progress=False, duration=DURATION)
    again = read_scenarios(tmp_path)
    assert [s.scenario_id for s in again] == [s.scenario_id for s in first]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.future, b.future)
        np.testing.assert_array_equal(a.agent_states, b.agent_states)
        assert a.coc_trace == b.coc_trace and a.factors == b.factors
