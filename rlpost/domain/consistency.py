"""CoC–action consistency (docs/design.md §5.2): does the predicted trajectory do what the trace decided?

AR1 does not publish its decision → meta-action matching table; this module is the project's **(ours)**, as one
data table, `MATCHING_TABLE`, keyed by ``(axis, decision kind, direction or None)`` and covering every decision
of the full set (`rlpost.domain.coc`). A row is a `Rule`: the axis's meta-action label sequence (docs/design.md §4,
produced by ``rlpost.domain.meta_actions``) satisfies it when it contains at least one label of ``requires_any`` (an
empty set requires nothing) and no label of ``forbids``. Order within the sequence is not checked: "decel then stop" is
read as "some deceleration or stop, and no acceleration".

Principles behind the rows: every decision forbids reversing (no decision of the taxonomy is a reversing
manoeuvre); a decision that implies a speed change requires one; a left manoeuvre requires a left steer and
forbids a *sharp* right steer, but never a plain right steer, because a lane change or a nudge straightens with a
short opposite steer. A sharp steer needs a turn radius under 20 m (docs/design.md §4: r ≥ 0.05 rad/m), far tighter than
any lane change or nudge, so those forbid sharp steers on both sides (which is also what tells a lane change
from a turn). Defaults (set speed, lane keeping, following) only forbid what contradicts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rlpost.domain.coc import (
    DIRECTIONAL_LATERAL,
    OPTIONAL_DIRECTION_LATERAL,
    Decision,
    Direction,
    Lateral,
    Longitudinal,
)

# Meta-action labels (docs/design.md §4), as rlpost.domain.meta_actions writes them.
LONGITUDINAL_LABELS: frozenset[str] = frozenset(
    {"reverse", "stop", "strong_accel", "gentle_accel", "strong_decel", "gentle_decel", "maintain_speed"}
)
LATERAL_LABELS: frozenset[str] = frozenset(
    {"reverse_right", "reverse_left", "sharp_steer_right", "sharp_steer_left", "steer_right", "steer_left",
     "go_straight"}
)
LONGITUDINAL = "longitudinal"
LATERAL = "lateral"

RuleKey = tuple[str, Longitudinal | Lateral, Direction | None]


@dataclass(frozen=True)
class Rule:
    """One row: a label sequence satisfies it iff it holds ≥ 1 label of ``requires_any`` (none needed when the
    set is empty) and no label of ``forbids``. ``note`` says why, in one line."""

    requires_any: frozenset[str]
    forbids: frozenset[str]
    note: str


def _r(requires_any: str, forbids: str, note: str) -> Rule:
    return Rule(frozenset(requires_any.split()), frozenset(forbids.split()), note)


_L, _A = Longitudinal, Lateral
_LEFT, _RIGHT = Direction.LEFT, Direction.RIGHT
_REV_LAT = "reverse_left reverse_right"

MATCHING_TABLE: dict[RuleKey, Rule] = {
    # --- longitudinal ------------------------------------------------------------------------------------
    (LONGITUDINAL, _L.SET_SPEED_TRACKING, None): _r(
        "", "strong_decel stop reverse",
        "tracking the set speed may trim speed gently either way but never brakes hard or stops"),
    (LONGITUDINAL, _L.LEAD_OBSTACLE_FOLLOWING, None): _r(
        "", "reverse",
        "following mirrors the lead, which may brake, stop or pull away: only reversing contradicts it"),
    (LONGITUDINAL, _L.SPEED_ADAPTATION, None): _r(
        "gentle_decel strong_decel", "strong_accel stop reverse",
        "adapting to a road event (curve, bump, narrowing) means slowing, but not to a stop"),
    (LONGITUDINAL, _L.GAP_SEARCHING, None): _r(
        "gentle_accel strong_accel gentle_decel strong_decel stop", "reverse",
        "gap search adjusts speed to the target lane (up or down) or waits at a standstill, never just cruises"),
    (LONGITUDINAL, _L.ACCELERATION_FOR_PASSING, None): _r(
        "gentle_accel strong_accel", "strong_decel stop reverse",
        "passing needs an acceleration; a hard brake or a stop means the pass did not happen"),
    (LONGITUDINAL, _L.YIELD, None): _r(
        "gentle_decel strong_decel stop", "strong_accel reverse",
        "yield = decelerate or stop (docs/design.md §5.2); a gentle pull-away after the other agent passed is fine"),
    (LONGITUDINAL, _L.STOP_FOR_STATIC_CONSTRAINT, None): _r(
        "gentle_decel strong_decel stop", "gentle_accel strong_accel reverse",
        "stop = decelerate then stop (docs/design.md §5.2); the stop may lie beyond the horizon, so a decel suffices"),
    # --- lateral -----------------------------------------------------------------------------------------
    (LATERAL, _A.LANE_KEEPING, None): _r(
        "", f"sharp_steer_left sharp_steer_right {_REV_LAT}",
        "keep lane = no sharp steer (docs/design.md §5.2); plain steers are the lane's own curvature"),
    (LATERAL, _A.MERGE_SPLIT, None): _r(
        "steer_left steer_right sharp_steer_left sharp_steer_right", _REV_LAT,
        "a merge or split moves laterally to one side or the other; the side is not stated"),
    (LATERAL, _A.PULL_OVER, None): _r(
        "steer_left steer_right sharp_steer_left sharp_steer_right", _REV_LAT,
        "pulling over moves to the road edge, whose side depends on traffic handedness"),
    (LATERAL, _A.LATERAL_ABORT, None): _r(
        "steer_left steer_right sharp_steer_left sharp_steer_right", _REV_LAT,
        "aborting steers back towards the original lane, possibly abruptly; the side is not stated"),
}


def _mirror(label: str, direction: Direction) -> str:
    """Write a left-hand rule's labels for ``direction`` (swap left and right for a right manoeuvre)."""
    if direction is _LEFT:
        return label
    return label.replace("left", "\0").replace("right", "left").replace("\0", "right")


def _directed(kind: Lateral, requires_any: str, forbids: str, note: str) -> None:
    """Add the left row as written and its mirror image for the right."""
    for d in Direction:
        MATCHING_TABLE[(LATERAL, kind, d)] = _r(
            _mirror(requires_any, d), _mirror(forbids, d), note.replace("{side}", d.value)
        )


_directed(_A.MERGE_SPLIT, "steer_left sharp_steer_left", f"sharp_steer_right {_REV_LAT}",
          "a {side} merge or split needs a {side} steer; a sharp opposite steer is a different manoeuvre")
# Nudges and lane changes: the turn rate is heading change per metre, so the same lateral shift made at walking
# pace (queues, SUMO's sublane moves) crosses the sharp threshold; sharpness alone cannot reject them. Many
# real SUMO labels failed when these rows forbade sharp steers, so they require the side's steer only.
_directed(_A.OUT_OF_LANE_NUDGE, "steer_left sharp_steer_left", _REV_LAT,
          "a nudge (≥ 0.8 m at ≥ 0.095 m/m, docs/design.md §4) shows as a {side} steer, sharp when slow")
_directed(_A.IN_LANE_NUDGE, "steer_left sharp_steer_left", _REV_LAT,
          "an in-lane {side} nudge still shows as a {side} steer, sharp when slow")
_directed(_A.LANE_CHANGE, "steer_left sharp_steer_left", _REV_LAT,
          "lane change {side} = steer {side} (docs/design.md §5.2); at low speed the same shift reads as a sharp steer")
_directed(_A.TURN, "sharp_steer_left steer_left", f"sharp_steer_right {_REV_LAT}",
          "turn {side} = a {side} steer (sharp at an intersection); a sharp opposite steer contradicts it")


def rule_for(axis: str, kind: Longitudinal | Lateral, direction: Direction | None = None) -> Rule:
    """The `MATCHING_TABLE` row for one axis of a decision; KeyError for a key the table does not have."""
    return MATCHING_TABLE[(axis, kind, direction)]


@dataclass(frozen=True)
class ConsistencyResult:
    """Outcome of `check_consistency`: consistent = longitudinal_ok and lateral_ok; reason is "" when
    consistent and otherwise names the failing axis, rule and labels."""

    consistent: bool
    longitudinal_ok: bool
    lateral_ok: bool
    reason: str


def _check_labels(axis: str, labels: Sequence[str], valid: frozenset[str]) -> tuple[str, ...]:
    if isinstance(labels, str):  # a bare string would be read letter by letter
        raise TypeError(f"{axis}: expected a sequence of meta-action labels, got the string {labels!r}")
    labels = tuple(labels)
    for label in labels:
        if label not in valid:
            raise ValueError(f"{axis}: unknown meta-action label {label!r} (valid: {', '.join(sorted(valid))})")
    return labels


def _axis(axis: str, kind, direction, labels: tuple[str, ...]) -> str:
    """"" when the axis is unconstrained or its rule holds, else why not."""
    if kind is None:
        return ""
    rule = MATCHING_TABLE[(axis, kind, direction)]
    name = kind.value + (f" {direction.value}" if direction is not None else "")
    bad = sorted(rule.forbids.intersection(labels))
    if bad:
        return f"{axis}: {name} forbids {', '.join(bad)} (got {list(labels)})"
    if rule.requires_any and rule.requires_any.isdisjoint(labels):
        return f"{axis}: {name} requires one of {', '.join(sorted(rule.requires_any))} (got {list(labels)})"
    return ""


def check_consistency(
    decision: Decision | None, longitudinal: Sequence[str], lateral: Sequence[str]
) -> ConsistencyResult:
    """Check a parsed trace decision against the meta-action labels of the predicted trajectory.

    decision: from `rlpost.domain.coc.parse_trace`; None (an unparseable trace) is inconsistent. longitudinal / lateral:
    the label sequences of the two axes (docs/design.md §4 names; may be empty). An axis the decision leaves None is
    unconstrained. Raises ValueError for an unknown label (a programming error upstream, not a bad rollout),
    TypeError for a bare string or a non-Decision.
    """
    lon = _check_labels(LONGITUDINAL, longitudinal, LONGITUDINAL_LABELS)
    lat = _check_labels(LATERAL, lateral, LATERAL_LABELS)
    if decision is None:
        return ConsistencyResult(False, False, False, "no decision: the trace did not parse")
    if not isinstance(decision, Decision):
        raise TypeError(f"decision: expected Decision or None, got {type(decision).__name__}")
    lon_why = _axis(LONGITUDINAL, decision.longitudinal, None, lon)
    lat_why = _axis(LATERAL, decision.lateral, decision.direction, lat)
    return ConsistencyResult(not (lon_why or lat_why), not lon_why, not lat_why,
                             "; ".join(w for w in (lon_why, lat_why) if w))


def _validate_table() -> None:
    """Import-time guard: every decision kind (with each allowed direction) has a row, and rows use real labels."""
    expected: set[RuleKey] = {(LONGITUDINAL, k, None) for k in Longitudinal}
    for k in Lateral:
        dirs = list(Direction) if k in DIRECTIONAL_LATERAL else []
        dirs += [None] if k not in DIRECTIONAL_LATERAL else []
        dirs += list(Direction) if k in OPTIONAL_DIRECTION_LATERAL else []
        expected |= {(LATERAL, k, d) for d in dirs}
    if set(MATCHING_TABLE) != expected:
        raise RuntimeError(f"MATCHING_TABLE keys differ: missing {expected - set(MATCHING_TABLE)}, "
                           f"extra {set(MATCHING_TABLE) - expected}")
    for (axis, _, _), rule in MATCHING_TABLE.items():
        valid = LONGITUDINAL_LABELS if axis == LONGITUDINAL else LATERAL_LABELS
        unknown = (rule.requires_any | rule.forbids) - valid
        if unknown or rule.requires_any & rule.forbids:
            raise RuntimeError(f"MATCHING_TABLE row {axis}: bad labels {sorted(unknown)} or required ∩ forbidden")


_validate_table()
