"""Amortised curation scores (rlpost.curation.amortised): the table, the re-score order, the budget, freshness."""

import numpy as np
import pytest

from rlpost.curation.amortised import ScoreTable, freshness, rescore_budget
from rlpost.curation.schedule import CurationConfig


def table() -> ScoreTable:
    t = ScoreTable()
    t.update(["a", "b", "c", "d"], [0.1, 0.4, 0.2, 0.3], step=0, version=0, source="round")
    t.update(["c"], [0.9], step=5, version=5, source="training")
    return t


def test_newer_scores_replace_older_never_the_reverse():
    t = table()
    assert t.entries["c"].score == 0.9 and t.entries["c"].source == "training"
    t.update(["c"], [0.0], step=3, version=3, source="rescore")  # an older observation arriving late
    assert t.entries["c"].score == 0.9
    np.testing.assert_array_equal(t.ages(["a", "c"], step=10), [10, 5])


def test_rescore_order_takes_never_scored_then_oldest():
    t = table()
    assert t.rescore_order(["d", "c", "z", "b", "a"], 10, "oldest", 2, None) == ["z", "a", "b", "d", "c"]


def test_rescore_order_boundary_takes_scores_nearest_the_cut():
    t = table()  # scores a .1, b .4, c .9, d .3; the 2nd best is b (.4): then d (.1 away), c, a/... by distance
    assert t.rescore_order(["a", "b", "c", "d"], 10, "boundary", 2, None) == ["b", "d", "a", "c"]
    with pytest.raises(ValueError, match="unknown re-score order 'newest'"):
        t.rescore_order(["a"], 10, "newest", 2, None)


def test_half_life_shrinks_old_scores_toward_the_mean():
    t = table()
    ids = ["a", "b", "c", "d"]
    np.testing.assert_allclose(t.effective(ids, 10, None), [0.1, 0.4, 0.9, 0.3])
    mean = np.mean([0.1, 0.4, 0.9, 0.3])
    # a, b, d are 10 steps old (half-life 10: half their distance to the mean), c is 5 steps old (2^-0.5)
    np.testing.assert_allclose(t.effective(ids, 10, 10.0),
                               [mean + (0.1 - mean) / 2, mean + (0.4 - mean) / 2, mean + (0.9 - mean) * 2**-0.5,
                                mean + (0.3 - mean) / 2])


def test_drop_from_forgets_what_a_resumed_run_redoes_and_json_round_trips():
    t = table()
    t.drop_from(5)
    assert sorted(t.entries) == ["a", "b", "d"]
    back = ScoreTable.from_json(t.to_json())
    assert back.entries == t.entries
    assert ScoreTable.from_json(None).entries == {}


def test_budget_counts_whole_groups():
    assert rescore_budget(1000, 240) == 4
    assert rescore_budget(100, 240) == 0
    with pytest.raises(ValueError, match="tokens_per_candidate"):
        rescore_budget(100, 0)


def test_freshness_reports_ages_and_training_share():
    stats = freshness(table(), ["a", "c"], step=10)
    assert stats == {"age_mean": 7.5, "age_p50": 7.5, "age_p90": pytest.approx(9.5), "age_max": 10.0,
                     "from_training": 0.5}
    assert freshness(table(), [], step=10) == {}


def test_config_names_the_arm_and_requires_equal_group_sizes():
    from rlpost.rl.config import RunConfig

    assert CurationConfig(schedule="online", refresh="amortised").arm == "online-amortised"
    assert CurationConfig(schedule="online").arm == "online-full"
    assert CurationConfig(schedule="offline", refresh="amortised").amortised is False
    with pytest.raises(ValueError, match="curation.group_size: amortised scores mix training groups"):
        RunConfig(rollout={"group_size": 8}, curation={"schedule": "online", "refresh": "amortised", "group_size": 4})
    with pytest.raises(ValueError, match="rescore_share"):
        CurationConfig(rescore_share=1.5)


def test_t_quantiles_match_the_tables():
    from rlpost.curation.stats import t_quantile

    for p, dof, expected in [(0.975, 4, 2.7764), (0.975, 1, 12.7062), (0.8, 4, 0.9410), (0.975, 30, 2.0423),
                             (0.025, 4, -2.7764)]:
        assert t_quantile(p, dof) == pytest.approx(expected, abs=2e-4)


def test_paired_difference_interval_and_detectable_effect():
    from rlpost.curation.stats import mean_ci, paired_difference

    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [0.5, 1.0, 2.9, 3.0, 4.6]
    d = np.subtract(a, b)  # 0.5 1.0 0.1 1.0 0.4: mean 0.6, sd 0.3937
    out = paired_difference(a, b)
    half = 2.7764 * d.std(ddof=1) / np.sqrt(5)
    assert out["n"] == 5 and out["mean"] == pytest.approx(0.6)
    assert out["lo"] == pytest.approx(0.6 - half, abs=1e-3) and out["hi"] == pytest.approx(0.6 + half, abs=1e-3)
    assert out["mde"] == pytest.approx((2.7764 + 0.9410) * d.std(ddof=1) / np.sqrt(5), abs=1e-3)
    assert np.isnan(mean_ci([1.0])[1]) and np.isnan(mean_ci([])[0])


def test_adopt_round0_reuses_scores_and_cost_and_refuses_another_pool(tmp_path):
    import pyarrow.parquet as pq

    from rlpost.common.errors import MissingPathError
    from rlpost.curation.rounds import CurationRound, RoundScores, adopt_round0
    from rlpost.storage.store import round_table

    ids = ["a", "b", "c", "d"]
    source = RoundScores(ids, [0.4, 0.1, 0.3, 0.2], [False, True, False, False], [0.5] * 4, ["a", "c"], {})
    (tmp_path / "curation").mkdir()
    pq.write_table(round_table(CurationRound(0, 0, 0, source, 12.5, 800, 1.0)),
                   tmp_path / "curation" / "round=000000.parquet")
    cfg = CurationConfig(schedule="online", size=2, strategy="top_plus_random", random_share=0.0)
    scores, wall_s, tokens = adopt_round0(str(tmp_path), ["d", "c", "b", "a"], cfg, np.random.default_rng(0))
    assert (wall_s, tokens) == (12.5, 800)
    assert scores.candidates == ids and scores.scores == [0.4, 0.1, 0.3, 0.2] and scores.zero_variance[1]
    assert scores.selected == ["a", "c"]  # this run's strategy on the adopted scores (top 2)
    with pytest.raises(ValueError, match="not this run's pool of 3"):
        adopt_round0(str(tmp_path), ["a", "b", "c"], cfg, np.random.default_rng(0))
    with pytest.raises(MissingPathError, match="no round 0 at"):
        adopt_round0(str(tmp_path / "nope"), ids, cfg, np.random.default_rng(0))


def test_preflight_refuses_a_round0_to_reuse_that_is_not_there(tmp_path):
    from rlpost.common.config import ConfigError
    from rlpost.rl.config import RunConfig

    cfg = RunConfig(curation={"schedule": "offline", "reuse_round0": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="curation.reuse_round0: .* holds no round 0"):
        cfg.preflight(need_data=False)
