import math

import numpy as np
import pytest

from rlpost.curation import analysis, scores, selection


def test_kl_score_golden():
    # p_reward = softmax([0, 1]); p_model = softmax([-1, -2]) (length-normalised): mirror images, ratio e.
    s = scores.disagreement_score([[0.0, 1.0]], [[-2.0, -4.0]], [[2, 2]], beta=1.0)
    p = 1 / (1 + math.e)
    assert s[0] == pytest.approx((1 - 2 * p) * 1.0)


def test_agreement_scores_zero_and_disagreement_more():
    agree = scores.kl_score([[0.0, 1.0]], [[-4.0, -2.0]], [[2, 2]])
    disagree = scores.kl_score([[0.0, 1.0]], [[-2.0, -4.0]], [[2, 2]])
    assert agree[0] == pytest.approx(0.0, abs=1e-12)
    assert disagree[0] > 0.4


def test_length_normalisation_matters():
    # Same per-token log-prob, different lengths: normalised p_model is uniform, unnormalised is not.
    args = ([[0.0, 0.0]], [[-10.0, -40.0]], [[10, 40]])
    assert scores.kl_score(*args)[0] == pytest.approx(0.0, abs=1e-12)
    assert scores.kl_unnormalized_score(*args)[0] > 1.0


def test_js_is_symmetric_and_bounded():
    s = scores.js_score([[0.0, 100.0]], [[0.0, -1000.0]], [[1, 1]], beta=1.0)
    assert 0 < s[0] <= math.log(2) + 1e-12
    assert s[0] == pytest.approx(math.log(2), rel=1e-6)  # disjoint point masses


@pytest.mark.parametrize("beta", [0.0, 1e-12, 1e6, 1e12])
def test_scores_are_stable_for_extreme_beta(beta):
    for kind in scores.SCORES:
        s = scores.disagreement_score([[0.0, 1.0, 1.0, 5.0]], [[-3.0, -1.0, -2.0, -9.0]], [[3, 3, 3, 3]], beta, kind)
        assert np.isfinite(s).all() and (s >= 0).all(), kind


def test_equal_rewards_and_minus_inf_logprobs():
    equal = scores.kl_score([[1.0, 1.0, 1.0]], [[-1.0, -2.0, -3.0]], [[1, 1, 1]])
    assert equal[0] > 0  # uniform p_reward vs a peaked p_model still disagree
    inf = scores.kl_score([[0.0, 1.0]], [[-1.0, -np.inf]], [[1, 1]])
    assert np.isfinite(inf).all() and inf[0] > 1.0
    all_inf = scores.kl_score([[0.0, 1.0]], [[-np.inf, -np.inf]], [[1, 1]])
    assert np.isfinite(all_inf).all()


@pytest.mark.parametrize(
    "args, culprit",
    [
        (([0.0, 1.0], [-1.0, -1.0], [1, 1]), "rewards"),
        (([[0.0, 1.0]], [[-1.0]], [[1, 1]]), "seq_logprobs"),
        (([[0.0, np.nan]], [[-1.0, -1.0]], [[1, 1]]), "rewards"),
        (([[0.0, 1.0]], [[-1.0, np.nan]], [[1, 1]]), "seq_logprobs"),
        (([[0.0, 1.0]], [[-1.0, -1.0]], [[0, 1]]), "lengths"),
    ],
)
def test_score_input_errors(args, culprit):
    with pytest.raises(ValueError, match=culprit):
        scores.kl_score(*args)
    with pytest.raises(ValueError, match="beta"):
        scores.kl_score([[0.0, 1.0]], [[-1.0, -1.0]], [[1, 1]], beta=-1)
    with pytest.raises(ValueError, match="kind"):
        scores.disagreement_score([[0.0]], [[0.0]], [[1]], kind="mystery")


IDS = [f"s{i}" for i in range(10)]
SCORES = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.0, 0.2, 0.7, 0.4, 0.6])


def test_top_plus_random_default_half_and_half():
    rng = np.random.default_rng(0)
    picked = selection.select("top_plus_random", IDS, SCORES, 6, rng)
    assert len(picked) == 6 and len(set(picked)) == 6
    assert picked[:3] == ["s1", "s4", "s7"]  # the top three by score
    assert not set(picked[3:]) & {"s1", "s4", "s7"}
    again = selection.select("top_plus_random", IDS, SCORES, 6, np.random.default_rng(0))
    assert again == picked  # deterministic for a given rng
    only_top = selection.select("top_plus_random", IDS, SCORES, 4, rng, random_share=0.0)
    assert only_top == ["s1", "s4", "s7", "s9"]


def test_proportional_prefers_high_scores():
    counts = dict.fromkeys(IDS, 0)
    rng = np.random.default_rng(1)
    for _ in range(400):
        for i in selection.select("proportional", IDS, SCORES, 2, rng):
            counts[i] += 1
    assert counts["s1"] > 3 * counts["s6"]
    assert counts["s5"] < 10  # score 0 only survives through the floor


def test_random_and_all():
    rng = np.random.default_rng(2)
    assert len(selection.select("random", IDS, SCORES, 5, rng)) == 5
    assert selection.select("all", IDS, SCORES, 3, rng) == IDS
    assert len(selection.select("random", IDS, SCORES, 50, rng)) == 10  # capped at the pool


@pytest.mark.parametrize(
    "call, culprit",
    [
        (lambda r: selection.select("nope", IDS, SCORES, 2, r), "strategy"),
        (lambda r: selection.select("random", IDS, SCORES[:3], 2, r), "scores"),
        (lambda r: selection.select("random", IDS, SCORES, 0, r), "size"),
        (lambda r: selection.select("random", ["a", "a"], [1.0, 2.0], 1, r), "ids"),
        (lambda r: selection.select("top_plus_random", IDS, SCORES, 2, r, random_share=-1), "random_share"),
    ],
)
def test_selection_errors(call, culprit):
    with pytest.raises(ValueError, match=culprit):
        call(np.random.default_rng(0))


def test_analysis_golden():
    assert analysis.jaccard(["a", "b", "c"], ["b", "c", "d"]) == pytest.approx(0.5)
    assert analysis.jaccard([], []) == 1.0
    a = {"x": 1.0, "y": 2.0, "z": 3.0, "w": 4.0}
    assert analysis.rank_correlation(a, {k: 10 * v for k, v in a.items()}) == pytest.approx(1.0)
    assert analysis.rank_correlation(a, {k: -v for k, v in a.items()}) == pytest.approx(-1.0)
    # Spearman with ties: ranks (0.5, 0.5, 2, 3) vs (0, 1, 2, 3).
    tied = analysis.rank_correlation({"x": 1, "y": 1, "z": 2, "w": 3}, a)
    assert tied == pytest.approx(np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1])
    assert math.isnan(analysis.rank_correlation({"x": 1}, {"x": 2}))
    summary = analysis.score_summary([1.0, 2.0, 3.0, 4.0])
    assert summary["count"] == 4 and summary["median"] == pytest.approx(2.5)
    share = analysis.zero_variance_share({"a": [1, 1], "b": [0, 1], "c": [2, 2]}, ["a", "b", "c"])
    assert share == pytest.approx(2 / 3)
