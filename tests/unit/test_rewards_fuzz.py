"""Fuzz: garbage and truncated completions never crash a built-in, and every sample gets a valid status.

The test process flushes denormals (tests/conftest.py), so hypothesis floats are drawn with allow_subnormal=False.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from reward_fixtures import synthetic_scenarios
from rlpost.rewards.compose import RewardPipeline
from rlpost.rewards.spec import RewardSpec
from rlpost.rewards.synthetic import garbage_completion
from rlpost.rewards.types import STATUSES, Completion

BUILTINS = ("trajectory_quality", "coc_consistency", "reasoning_critic")
N_FUZZ = 10_000


def _pipeline() -> RewardPipeline:
    # In-process: the fuzz is about the rewards' own robustness (a raise would show up as status "error").
    return RewardPipeline([RewardSpec(name=n, in_process=True, deadline_s=None) for n in BUILTINS])


def test_ten_thousand_garbage_completions_zero_crashes_a_status_on_each():
    scen = synthetic_scenarios(10, seed=3)
    rng = np.random.default_rng(12345)
    scens = [scen[i % len(scen)] for i in range(N_FUZZ)]
    comps = [garbage_completion(s, rng, i) for i, s in enumerate(scens)]
    with _pipeline() as pipeline:
        out = pipeline.score(comps, scens)
        counts = pipeline.metrics()
    assert len(out) == N_FUZZ
    for name in BUILTINS:
        statuses = [o.components[name].status for o in out]
        assert set(statuses) <= set(STATUSES)
        assert counts[f"rewards/{name}/error"] == 0 and counts[f"rewards/{name}/timeout"] == 0, name
        assert sum(counts[f"rewards/{name}/{s}"] for s in STATUSES) == N_FUZZ
        # The garbage mix contains both: samples a reward can score and samples it must refuse.
        assert "ok" in statuses and "unparseable" in statuses, name
    assert all(np.isfinite(o.total) for o in out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    trace=st.one_of(st.text(max_size=300), st.sampled_from(["", " ", "Decision: stop.", "turn left and turn right"])),
    controls=st.one_of(
        st.none(),
        arrays(np.float64, st.tuples(st.integers(0, 66), st.integers(1, 3)),
               elements=st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False)),
        arrays(np.float64, (64, 2), elements=st.floats(-1e6, 1e6, allow_subnormal=False)),
    ),
)
def test_arbitrary_text_and_arrays_get_a_status(trace, controls):
    scen = synthetic_scenarios(2)
    comps = [Completion(scen[0].scenario_id, 0, trace, controls), Completion(scen[1].scenario_id, 1, trace, None)]
    with _pipeline() as pipeline:
        out = pipeline.score(comps, scen)
    for o in out:
        for name in BUILTINS:
            rec = o.components[name]
            assert rec.status in ("ok", "unparseable"), (name, rec.info)
            assert np.isfinite(rec.value)
