"""The scene encoder: deterministic, short, in-vocabulary, with relevance-ordered agents."""

from __future__ import annotations

import dataclasses

import numpy as np

from rlpost.policy.scene import encode_scene, qword, scene_vocabulary
from synthetic_policy import make_scenario


def test_qword_bins_and_clipping():
    assert qword("x", -6.2) == "xn3"
    assert qword("x", 1000.0) == "x40"
    assert qword("v", float("nan")) == "v40"
    assert qword("yr", -0.26) == "yrn5"


def test_deterministic_short_and_in_vocabulary():
    vocab = set(scene_vocabulary())
    for i in range(12):
        s = make_scenario(i)
        a, b = encode_scene(s), encode_scene(s)
        assert a == b
        assert set(a) <= vocab
        assert 13 <= len(a) <= 13 + 6 * 6


def test_content_reflects_scene():
    stop = make_scenario(2)  # red light
    words = encode_scene(stop)
    assert "tl_red" in words and any(w.startswith("td") and w != "td_none" for w in words)
    follow = make_scenario(1)  # lead vehicle ahead
    w = encode_scene(follow)
    assert w[13] == "t_vehicle" and w[14].startswith("x") and not w[14].startswith("xn")
    left = encode_scene(make_scenario(3))  # lane bends left
    assert left[8].startswith("lc") and not left[8].startswith("lcn") and left[8] != "lc0"


def test_route_word_from_observable_routing_intent():
    s = make_scenario(0)
    nav = lambda f: encode_scene(dataclasses.replace(s, factors=f))[5]  # noqa: E731
    assert nav([("routing_intent", "navigation asks for the left side", -1.9)]) == "nav_left"
    assert nav([("routing_intent", "the route goes right at the junction ahead", 0.0)]) == "nav_turn_right"
    assert nav([("routing_intent", "the route goes right at the junction ahead", 0.5)]) == "nav_none"  # future
    assert nav([("lane", "the left lane is free", -1.0)]) == "nav_none"


def test_agents_ranked_and_truncated():
    s = make_scenario(1)
    states = np.zeros((8, 84, 4))
    states[:, :, 0] = np.arange(8)[::-1, None] * 6.0 + 6.0  # agent 7 is nearest
    s = dataclasses.replace(s, agent_states=states, agent_valid=np.ones((8, 84), bool), agent_type=["pedestrian"] * 8,
                            agent_size=np.ones((8, 2)))
    words = encode_scene(s, max_agents=6)
    assert len(words) == 13 + 36
    assert words[14] == "x3"  # 6 m in 2 m bins: the nearest first
    assert len(encode_scene(s, max_agents=6, max_words=31)) == 31  # whole agents only: 13 + 3 × 6
    assert len(encode_scene(s, max_agents=0)) == 13


def test_missing_parts_do_not_crash():
    s = make_scenario(0)
    s = dataclasses.replace(s, lanes=[], ego_lane_id="", tl_state=None, tl_distance=float("nan"),
                            agent_states=np.zeros((0, 84, 4)), agent_valid=np.zeros((0, 84), bool), agent_type=[])
    words = encode_scene(s)
    assert words[3:6] == ["tl_none", "td_none", "nav_none"] and len(words) == 13
