"""The decision taxonomy of a Chain-of-Causation trace (docs/design.md §3): the full AR1 set (longitudinal and lateral
kinds, directions), the public auto-labeller's simplified set, the mappings between them, and which decision outranks
which.
"""

from __future__ import annotations

from enum import Enum


class Longitudinal(str, Enum):
    """Longitudinal driving decisions of the full AR1 set (docs/design.md §3); values are stable snake_case strings."""

    SET_SPEED_TRACKING = "set_speed_tracking"
    LEAD_OBSTACLE_FOLLOWING = "lead_obstacle_following"
    SPEED_ADAPTATION = "speed_adaptation"  # for road events: curve, bump, narrowing
    GAP_SEARCHING = "gap_searching"  # for a lane change or merge
    ACCELERATION_FOR_PASSING = "acceleration_for_passing"
    YIELD = "yield"  # to an agent with the right of way
    STOP_FOR_STATIC_CONSTRAINT = "stop_for_static_constraint"  # red light, stop line


class Lateral(str, Enum):
    """Lateral driving decisions of the full AR1 set (docs/design.md §3). See `DIRECTIONAL_LATERAL` for which need a
    side."""

    LANE_KEEPING = "lane_keeping"
    MERGE_SPLIT = "merge_split"
    OUT_OF_LANE_NUDGE = "out_of_lane_nudge"
    IN_LANE_NUDGE = "in_lane_nudge"
    LANE_CHANGE = "lane_change"
    PULL_OVER = "pull_over"
    TURN = "turn"
    LATERAL_ABORT = "lateral_abort"


class Direction(str, Enum):
    """Side of a lateral decision, in the ego frame (left = +y)."""

    LEFT = "left"
    RIGHT = "right"


# Lateral kinds that must carry a direction, and the one kind that may.
DIRECTIONAL_LATERAL: frozenset[Lateral] = frozenset(
    {Lateral.OUT_OF_LANE_NUDGE, Lateral.IN_LANE_NUDGE, Lateral.LANE_CHANGE, Lateral.TURN}
)
OPTIONAL_DIRECTION_LATERAL: frozenset[Lateral] = frozenset({Lateral.MERGE_SPLIT})


class SimplifiedDecision(str, Enum):
    """The public auto-labeller's simplified set: 7 longitudinal + 6 lateral labels, no directions (docs/design.md §3).

    Beware: a ``str`` enum compares equal to its value, so ``SimplifiedDecision.TURN == Lateral.TURN``; look the
    mapping dicts up with the enum they are keyed by.
    """

    STOP = "stop"
    YIELD = "yield"
    PASS_OVERTAKE = "pass_overtake"
    GAP_SEARCH = "gap_search"
    KEEP_DISTANCE = "keep_distance"
    ADAPT_SPEED = "adapt_speed"
    RESUME_SPEED = "resume_speed"
    LANE_CHANGE = "lane_change"
    NUDGE = "nudge"
    TURN = "turn"
    MERGE = "merge"
    SPLIT = "split"
    KEEP_LANE = "keep_lane"


_S = SimplifiedDecision
SIMPLIFIED_LONGITUDINAL: frozenset[SimplifiedDecision] = frozenset(
    {_S.STOP, _S.YIELD, _S.PASS_OVERTAKE, _S.GAP_SEARCH, _S.KEEP_DISTANCE, _S.ADAPT_SPEED, _S.RESUME_SPEED}
)
SIMPLIFIED_LATERAL: frozenset[SimplifiedDecision] = frozenset(set(_S) - SIMPLIFIED_LONGITUDINAL)

# Full -> simplified. Lossy where noted: the simplified set cannot say which nudge, has no pull-over or abort.
FULL_TO_SIMPLIFIED: dict[Longitudinal | Lateral, SimplifiedDecision] = {
    Longitudinal.SET_SPEED_TRACKING: _S.RESUME_SPEED,  # lossy: "hold the set speed" and "return to it" merge
    Longitudinal.LEAD_OBSTACLE_FOLLOWING: _S.KEEP_DISTANCE,
    Longitudinal.SPEED_ADAPTATION: _S.ADAPT_SPEED,
    Longitudinal.GAP_SEARCHING: _S.GAP_SEARCH,
    Longitudinal.ACCELERATION_FOR_PASSING: _S.PASS_OVERTAKE,
    Longitudinal.YIELD: _S.YIELD,
    Longitudinal.STOP_FOR_STATIC_CONSTRAINT: _S.STOP,
    Lateral.LANE_KEEPING: _S.KEEP_LANE,
    Lateral.MERGE_SPLIT: _S.MERGE,  # lossy: the full set does not say merge or split; merge is the common case
    Lateral.OUT_OF_LANE_NUDGE: _S.NUDGE,  # lossy: in-lane vs out-of-lane is lost
    Lateral.IN_LANE_NUDGE: _S.NUDGE,
    Lateral.LANE_CHANGE: _S.LANE_CHANGE,
    Lateral.PULL_OVER: _S.LANE_CHANGE,  # lossy: leaving the travel lane for the shoulder is the nearest label
    Lateral.TURN: _S.TURN,
    # lossy: no abort label; the aborted manoeuvre is in practice a lane change, and mapping it to keep_lane
    # would demote an interesting event to a default.
    Lateral.LATERAL_ABORT: _S.LANE_CHANGE,
}

# Simplified -> full (directions are never known). Lossy where noted.
SIMPLIFIED_TO_FULL: dict[SimplifiedDecision, Longitudinal | Lateral] = {
    _S.STOP: Longitudinal.STOP_FOR_STATIC_CONSTRAINT,  # lossy: a stop behind a stopped lead is following
    _S.YIELD: Longitudinal.YIELD,
    _S.PASS_OVERTAKE: Longitudinal.ACCELERATION_FOR_PASSING,
    _S.GAP_SEARCH: Longitudinal.GAP_SEARCHING,
    _S.KEEP_DISTANCE: Longitudinal.LEAD_OBSTACLE_FOLLOWING,
    _S.ADAPT_SPEED: Longitudinal.SPEED_ADAPTATION,
    _S.RESUME_SPEED: Longitudinal.SET_SPEED_TRACKING,
    _S.LANE_CHANGE: Lateral.LANE_CHANGE,  # direction unknown
    _S.NUDGE: Lateral.IN_LANE_NUDGE,  # lossy: could have left the lane; direction unknown
    _S.TURN: Lateral.TURN,  # direction unknown
    _S.MERGE: Lateral.MERGE_SPLIT,
    _S.SPLIT: Lateral.MERGE_SPLIT,  # lossy: merge and split share one full kind
    _S.KEEP_LANE: Lateral.LANE_KEEPING,
}

# "Interesting" decisions outrank Keep Distance / Keep Lane / Resume Speed (docs/design.md §3).
INTERESTING: frozenset[SimplifiedDecision] = frozenset(set(_S) - {_S.KEEP_DISTANCE, _S.KEEP_LANE, _S.RESUME_SPEED})
INTERESTING_FULL: frozenset[Longitudinal | Lateral] = frozenset(
    k for k, s in FULL_TO_SIMPLIFIED.items() if s in INTERESTING
)


def decision_priority(kind: Longitudinal | Lateral | SimplifiedDecision) -> int:
    """Rank of a decision kind when several are stated on one axis: higher wins.

    2 = interesting; 1 = lead following / keep distance (a concrete constraint); 0 = set-speed tracking /
    resume speed / lane keeping / keep lane (the defaults). Raises TypeError for anything else.
    """
    if isinstance(kind, SimplifiedDecision):
        simple = kind
    elif isinstance(kind, (Longitudinal, Lateral)):
        simple = FULL_TO_SIMPLIFIED[kind]
    else:
        raise TypeError(f"decision_priority: expected a decision kind, got {type(kind).__name__}")
    if simple in INTERESTING:
        return 2
    return 1 if simple is _S.KEEP_DISTANCE else 0
