"""The decision → meta-action matching table behind the CoC–action consistency reward (docs/design.md §5.2)."""

from __future__ import annotations

import pytest

from rlpost.domain.coc import ALL_DECISIONS, Decision, Direction, Lateral, Longitudinal, parse_trace
from rlpost.domain.consistency import (
    LATERAL,
    LATERAL_LABELS,
    LONGITUDINAL,
    LONGITUDINAL_LABELS,
    MATCHING_TABLE,
    ConsistencyResult,
    Rule,
    check_consistency,
    rule_for,
)

L, A, D = Longitudinal, Lateral, Direction
NEUTRAL = {LONGITUDINAL: "maintain_speed", LATERAL: "go_straight"}
ROWS = sorted(MATCHING_TABLE.items(), key=lambda kv: (kv[0][0], kv[0][1].value, kv[0][2] or ""))
ROW_IDS = [f"{axis}-{kind.value}-{d.value if d else 'none'}" for (axis, kind, d), _ in ROWS]


def _decision_for(key) -> Decision:
    axis, kind, direction = key
    return Decision(longitudinal=kind) if axis == LONGITUDINAL else Decision(lateral=kind, direction=direction)


def _check(key, labels: list[str]) -> ConsistencyResult:
    """check_consistency with ``labels`` on the row's axis and a neutral sequence on the other one."""
    axis = key[0]
    lon = labels if axis == LONGITUDINAL else [NEUTRAL[LONGITUDINAL]]
    lat = labels if axis == LATERAL else [NEUTRAL[LATERAL]]
    return check_consistency(_decision_for(key), lon, lat)


def _satisfying(key, rule: Rule) -> list[str]:
    labels = [sorted(rule.requires_any)[0]] if rule.requires_any else []
    if NEUTRAL[key[0]] not in rule.forbids:
        labels.append(NEUTRAL[key[0]])
    return labels


# --------------------------------------------------------------------------- the table, row by row


def test_table_covers_every_decision_of_the_full_set():
    for decision in ALL_DECISIONS:
        if decision.longitudinal is not None:
            assert (LONGITUDINAL, decision.longitudinal, None) in MATCHING_TABLE
        if decision.lateral is not None:
            assert (LATERAL, decision.lateral, decision.direction) in MATCHING_TABLE
    assert len(MATCHING_TABLE) == 7 + 4 * 2 + 3 + 3  # 7 lon; 4 directional × 2; merge/split × 3; 3 undirected


@pytest.mark.parametrize("key, rule", ROWS, ids=ROW_IDS)
def test_row_is_well_formed(key, rule):
    valid = LONGITUDINAL_LABELS if key[0] == LONGITUDINAL else LATERAL_LABELS
    assert rule.requires_any <= valid and rule.forbids <= valid
    assert not rule.requires_any & rule.forbids
    assert rule.forbids or rule.requires_any, "a row nothing can violate checks nothing"
    assert rule.note.strip() and "\n" not in rule.note
    assert rule_for(*key) is rule


@pytest.mark.parametrize("key, rule", ROWS, ids=ROW_IDS)
def test_row_satisfied(key, rule):
    result = _check(key, _satisfying(key, rule))
    assert result == ConsistencyResult(True, True, True, "")


@pytest.mark.parametrize("key, rule", ROWS, ids=ROW_IDS)
def test_row_violated_by_each_forbidden_label(key, rule):
    for bad in sorted(rule.forbids):
        result = _check(key, [*_satisfying(key, rule), bad])
        assert not result.consistent and bad in result.reason
        axis_ok = result.longitudinal_ok if key[0] == LONGITUDINAL else result.lateral_ok
        other_ok = result.lateral_ok if key[0] == LONGITUDINAL else result.longitudinal_ok
        assert not axis_ok and other_ok


@pytest.mark.parametrize("key, rule", [r for r in ROWS if r[1].requires_any], ids=[
    i for i, r in zip(ROW_IDS, ROWS) if r[1].requires_any])
def test_row_violated_without_a_required_label(key, rule):
    valid = LONGITUDINAL_LABELS if key[0] == LONGITUDINAL else LATERAL_LABELS
    labels = sorted(valid - rule.requires_any - rule.forbids)
    result = _check(key, labels)
    assert not result.consistent and "requires one of" in result.reason


# --------------------------------------------------------------------------- hand-written docs/design.md §5.2 cases
# Written independently of the table, so that a wrong row cannot pass by construction.

S_CURVE_LEFT = ["go_straight", "steer_left", "steer_right", "go_straight"]
CASES = [
    # stop ⇒ decel then stop; no acceleration
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT), ["maintain_speed", "strong_decel", "stop"], ["go_straight"], True),
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT), ["gentle_decel"], ["go_straight"], True),
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT), ["maintain_speed"], ["go_straight"], False),
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT), ["gentle_decel", "stop", "gentle_accel"], ["go_straight"], False),
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT), ["reverse"], ["go_straight"], False),
    # yield ⇒ decel or stop
    (Decision(L.YIELD), ["gentle_decel"], ["go_straight"], True),
    (Decision(L.YIELD), ["stop"], ["go_straight"], True),
    (Decision(L.YIELD), ["maintain_speed"], ["go_straight"], False),
    (Decision(L.YIELD), ["gentle_decel", "strong_accel"], ["go_straight"], False),
    # set speed ⇒ no strong decel, no stop
    (Decision(L.SET_SPEED_TRACKING), ["maintain_speed"], ["go_straight"], True),
    (Decision(L.SET_SPEED_TRACKING), ["gentle_accel", "maintain_speed"], ["go_straight"], True),
    (Decision(L.SET_SPEED_TRACKING), ["strong_decel"], ["go_straight"], False),
    (Decision(L.SET_SPEED_TRACKING), ["gentle_decel", "stop"], ["go_straight"], False),
    # passing ⇒ an acceleration
    (Decision(L.ACCELERATION_FOR_PASSING), ["strong_accel", "maintain_speed"], ["go_straight"], True),
    (Decision(L.ACCELERATION_FOR_PASSING), ["maintain_speed"], ["go_straight"], False),
    # speed adaptation ⇒ slowing, not stopping
    (Decision(L.SPEED_ADAPTATION), ["maintain_speed", "gentle_decel"], ["steer_left"], True),
    (Decision(L.SPEED_ADAPTATION), ["gentle_decel", "stop"], ["go_straight"], False),
    # following may stop behind the lead
    (Decision(L.LEAD_OBSTACLE_FOLLOWING), ["strong_decel", "stop"], ["go_straight"], True),
    # gap search modulates speed or waits; cruising through is not searching
    (Decision(L.GAP_SEARCHING), ["gentle_decel", "gentle_accel"], ["steer_left"], True),
    (Decision(L.GAP_SEARCHING), ["stop"], ["go_straight"], True),
    (Decision(L.GAP_SEARCHING), ["maintain_speed"], ["go_straight"], False),
    # lane change left ⇒ steer left; the S-curve's straightening steer right is fine, a sharp right is not
    (Decision(lateral=A.LANE_CHANGE, direction=D.LEFT), ["maintain_speed"], S_CURVE_LEFT, True),
    (Decision(lateral=A.LANE_CHANGE, direction=D.LEFT), ["maintain_speed"], ["steer_right"], False),
    # ... and at walking pace the same shift reads as sharp steers both ways (turn rate is per metre)
    (Decision(lateral=A.LANE_CHANGE, direction=D.LEFT), ["maintain_speed"], ["steer_left", "sharp_steer_right"], True),
    (Decision(lateral=A.LANE_CHANGE, direction=D.LEFT), ["maintain_speed"], ["sharp_steer_left"], True),
    (Decision(lateral=A.LANE_CHANGE, direction=D.LEFT), ["maintain_speed"], ["sharp_steer_right"], False),
    # order is not checked (docs/design.md §4 labels carry no times here): a left S-curve also holds a plain right steer
    (Decision(lateral=A.LANE_CHANGE, direction=D.RIGHT), ["maintain_speed"], S_CURVE_LEFT, True),
    (Decision(lateral=A.LANE_CHANGE, direction=D.RIGHT), ["maintain_speed"], ["go_straight", "steer_left"], False),
    # keep lane ⇒ no sharp steer; a curved road's plain steer is fine
    (Decision(lateral=A.LANE_KEEPING), ["maintain_speed"], ["go_straight"], True),
    (Decision(lateral=A.LANE_KEEPING), ["maintain_speed"], ["go_straight", "steer_right"], True),
    (Decision(lateral=A.LANE_KEEPING), ["maintain_speed"], ["go_straight", "sharp_steer_left"], False),
    # turn left ⇒ a left steer, no sharp right
    (Decision(lateral=A.TURN, direction=D.LEFT), ["gentle_decel"], ["go_straight", "sharp_steer_left"], True),
    (Decision(lateral=A.TURN, direction=D.LEFT), ["gentle_decel"], ["steer_left"], True),
    (Decision(lateral=A.TURN, direction=D.LEFT), ["gentle_decel"], ["go_straight"], False),
    (Decision(lateral=A.TURN, direction=D.LEFT), ["gentle_decel"], ["sharp_steer_right"], False),
    (Decision(lateral=A.TURN, direction=D.RIGHT), ["gentle_decel"], ["sharp_steer_right", "go_straight"], True),
    # nudges are gentle
    (Decision(lateral=A.IN_LANE_NUDGE, direction=D.RIGHT), ["maintain_speed"], ["steer_right", "steer_left"], True),
    (Decision(lateral=A.IN_LANE_NUDGE, direction=D.RIGHT), ["maintain_speed"], ["sharp_steer_right"], True),
    (Decision(lateral=A.IN_LANE_NUDGE, direction=D.RIGHT), ["maintain_speed"], ["sharp_steer_left"], False),
    (Decision(lateral=A.OUT_OF_LANE_NUDGE, direction=D.LEFT), ["maintain_speed"], ["go_straight"], False),
    # both axes must agree
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT, A.LANE_KEEPING), ["strong_decel", "stop"], ["go_straight"], True),
    (Decision(L.STOP_FOR_STATIC_CONSTRAINT, A.LANE_KEEPING), ["strong_decel", "stop"], ["sharp_steer_left"], False),
    (Decision(L.YIELD, A.TURN, D.RIGHT), ["maintain_speed"], ["sharp_steer_right"], False),
    # an axis the decision leaves out is unconstrained
    (Decision(L.YIELD), ["stop"], ["sharp_steer_left", "reverse_left"], True),
    (Decision(lateral=A.TURN, direction=D.LEFT), ["reverse", "strong_accel"], ["sharp_steer_left"], True),
]


@pytest.mark.parametrize("decision, lon, lat, expected", CASES)
def test_spec_cases(decision, lon, lat, expected):
    result = check_consistency(decision, lon, lat)
    assert result.consistent is expected
    assert result.consistent == (result.longitudinal_ok and result.lateral_ok)
    assert (result.reason == "") is expected


def test_reason_names_axis_and_decision():
    result = check_consistency(Decision(L.YIELD, A.LANE_CHANGE, D.LEFT), ["strong_accel"], ["steer_right"])
    assert not result.longitudinal_ok and not result.lateral_ok
    assert "longitudinal: yield forbids strong_accel" in result.reason
    assert "lateral: lane_change left requires one of sharp_steer_left, steer_left" in result.reason


def test_unparseable_trace_is_inconsistent():
    result = check_consistency(None, ["maintain_speed"], ["go_straight"])
    assert result == ConsistencyResult(False, False, False, result.reason) and "did not parse" in result.reason
    assert check_consistency(parse_trace("be careful").decision, ["stop"], ["go_straight"]).consistent is False


def test_end_to_end_with_parsed_traces():
    trace = "The light ahead turned red, so the ego should come to a stop and stay in the current lane."
    decision = parse_trace(trace).decision
    assert check_consistency(decision, ["maintain_speed", "strong_decel", "stop"], ["go_straight"]).consistent
    assert not check_consistency(decision, ["maintain_speed"], ["go_straight"]).consistent


def test_empty_label_sequences():
    assert check_consistency(Decision(lateral=A.LANE_KEEPING), [], []).consistent
    assert not check_consistency(Decision(L.YIELD), [], []).consistent


@pytest.mark.parametrize(
    "lon, lat, match",
    [
        (["brake"], ["go_straight"], "'brake'"),
        (["steer_left"], ["go_straight"], "longitudinal: unknown meta-action label 'steer_left'"),
        (["stop"], ["stop"], "lateral: unknown meta-action label 'stop'"),
        (["stop"], [None], "None"),
    ],
)
def test_unknown_labels_raise(lon, lat, match):
    with pytest.raises(ValueError, match=match):
        check_consistency(Decision(L.YIELD), lon, lat)
    with pytest.raises(ValueError):  # even without a decision: the labels are a programming error upstream
        check_consistency(None, lon, lat)


def test_wrong_argument_types():
    with pytest.raises(TypeError, match="string"):
        check_consistency(Decision(L.YIELD), "stop", ["go_straight"])
    with pytest.raises(TypeError, match="Decision"):
        check_consistency("yield", ["stop"], ["go_straight"])
