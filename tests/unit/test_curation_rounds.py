from dataclasses import dataclass, field

import numpy as np
import pytest

from rlpost.curation.rounds import candidate_pool, group_arrays, random_selection, score_and_select
from rlpost.curation.schedule import CurationConfig


@dataclass
class Rec:
    scenario_id: str
    reward_total: float
    sampler_logprobs: list = field(default_factory=lambda: [-1.0, -1.0])
    completion_ids: list = field(default_factory=lambda: [1, 2])


@pytest.mark.parametrize(
    "schedule, due_steps",
    [("none", []), ("offline", [0]), ("online", [0, 4, 8]), ("random", [0, 4, 8])],
)
def test_schedules(schedule, due_steps):
    cfg = CurationConfig(schedule=schedule, every=4)
    assert [s for s in range(10) if cfg.due(s)] == due_steps
    assert cfg.scored == (schedule in ("offline", "online"))


def test_candidate_pool_is_seeded_and_sized():
    ids = [f"s{i}" for i in range(50)]
    cfg = CurationConfig(pool_size=10)
    a, b = candidate_pool(ids, 3, cfg, seed=1), candidate_pool(ids, 3, cfg, seed=1)
    assert a == b and len(a) == 10 and set(a) <= set(ids)
    assert candidate_pool(ids, 4, cfg, seed=1) == a  # the same pool every round: rounds rank the same scenarios
    assert candidate_pool(ids, 3, cfg, seed=2) != a
    assert candidate_pool(ids, 0, CurationConfig(pool_size=None), seed=1) == ids


def test_score_and_select_prefers_disagreement():
    # "agree": the policy prefers the high-reward sample; "disagree": it prefers the low-reward one.
    records = [
        Rec("agree", 1.0, [-0.1, -0.1]), Rec("agree", 0.0, [-3.0, -3.0]),
        Rec("disagree", 1.0, [-3.0, -3.0]), Rec("disagree", 0.0, [-0.1, -0.1]),
        Rec("flat", 0.5), Rec("flat", 0.5),
    ]
    ids, rewards, logps, lengths = group_arrays(records)
    assert ids == ["agree", "disagree", "flat"] and rewards.shape == (3, 2)
    np.testing.assert_allclose(logps[0], [-0.2, -6.0])
    parts = score_and_select(records, CurationConfig(size=1, strategy="top_plus_random", random_share=0.0),
                             np.random.default_rng(0))
    scores = dict(zip(parts.candidates, parts.scores))
    assert scores["disagree"] > scores["agree"]
    assert parts.selected == ["disagree"]
    assert parts.zero_variance == [False, False, True]


def test_random_selection_has_no_scores():
    parts = random_selection([f"s{i}" for i in range(20)], CurationConfig(size=5), np.random.default_rng(0))
    assert len(parts.selected) == 5 and set(parts.scores) == {0.0}
