"""The ``rubric`` critic backend: docs/design.md §5.1's 0–5 reasoning grade by deterministic rules.

Both traces are parsed with ``rlpost.domain.coc.parse_trace``. The grade combines two judgements:

Behaviour (the decisions). Each axis is compared and gets a relation:
  same      the same decision kind (and direction, where it has one; merge/split without a direction matches
            either direction); two unstated axes are the same.
  similar   a compatible behaviour: the same longitudinal *intent* (slow/hold: stop, yield, gap searching, speed
            adaptation; steady: set-speed tracking, lead following), or laterally related kinds in the same
            direction (in- vs out-of-lane nudge, lane change vs out-of-lane nudge or merge/split, lane keeping vs
            in-lane nudge or abort); an unstated axis against that axis's default (set speed / lane keeping).
  opposite  contradicting behaviour: accelerate-to-pass against slow/hold, or related lateral kinds in opposite
            directions (turn left vs turn right).
  different anything else.
  Behaviour level: exact (both axes same) > rough (no axis worse than similar) > partial (one axis different,
  the other same or similar) > wrong (both different) > contradict (any axis opposite).

Reasoning (the causal factors): F1 of the generated trace's factor categories against the reference's (both
empty: 1; one empty: 0). Levels: consistent (F1 ≥ 0.8), mostly (≥ 0.5), incomplete (≥ 0.25), inconsistent.

Grade table (rows: behaviour; columns: consistent, mostly, incomplete, inconsistent), following docs/design.md §5.1's
words (5 fully consistent; 4 behaviour correct, reasoning mostly consistent; 3 roughly correct or incomplete reasoning;
2 partly wrong or reasoning largely inconsistent; 1 wrong or contradicting; 0 unrelated or opposite):

    exact       5 4 3 2
    rough       3 3 2 2
    partial     2 2 2 1
    wrong       1 1 1 0      (wrong behaviour with no shared reasoning = unrelated)
    contradict  1 1 0 0      (opposite behaviour with no shared reasoning = opposite)

An unparseable generated trace grades 0 with status unparseable; an unparseable or missing reference is status
error (a data defect, not the policy's fault).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rlpost.domain.coc import Decision, Lateral, Longitudinal, TraceParse, parse_trace
from rlpost.rewards.critic_backends import CritiqueGrade, CritiqueRequest, register_critic_backend

SAME, SIMILAR, DIFFERENT, OPPOSITE = "same", "similar", "different", "opposite"
BEHAVIOUR_LEVELS = ("exact", "rough", "partial", "wrong", "contradict")
REASONING_LEVELS = ("consistent", "mostly", "incomplete", "inconsistent")
GRADE_TABLE: dict[str, tuple[int, int, int, int]] = {
    "exact": (5, 4, 3, 2),
    "rough": (3, 3, 2, 2),
    "partial": (2, 2, 2, 1),
    "wrong": (1, 1, 1, 0),
    "contradict": (1, 1, 0, 0),
}

_L = Longitudinal
_SLOW = frozenset({_L.STOP_FOR_STATIC_CONSTRAINT, _L.YIELD, _L.GAP_SEARCHING, _L.SPEED_ADAPTATION})
_STEADY = frozenset({_L.SET_SPEED_TRACKING, _L.LEAD_OBSTACLE_FOLLOWING})
_ACCEL = frozenset({_L.ACCELERATION_FOR_PASSING})

_T = Lateral
# Unordered pairs of lateral kinds that describe compatible manoeuvres (compared with their directions).
_LATERAL_RELATED = frozenset(frozenset(p) for p in [
    (_T.IN_LANE_NUDGE, _T.OUT_OF_LANE_NUDGE), (_T.LANE_CHANGE, _T.OUT_OF_LANE_NUDGE), (_T.LANE_CHANGE, _T.MERGE_SPLIT),
    (_T.LANE_KEEPING, _T.IN_LANE_NUDGE), (_T.LANE_KEEPING, _T.LATERAL_ABORT),
])


def longitudinal_relation(gen: Longitudinal | None, ref: Longitudinal | None) -> str:
    """same | similar | different | opposite of two longitudinal decisions (None = unstated)."""
    if gen == ref:
        return SAME
    if gen is None or ref is None:
        # An unstated axis reads as the default (keep the set speed), so it is close to a steady decision only.
        return SIMILAR if (gen or ref) in _STEADY else DIFFERENT
    for group in (_SLOW, _STEADY):
        if gen in group and ref in group:
            return SIMILAR
    if (gen in _ACCEL and ref in _SLOW) or (gen in _SLOW and ref in _ACCEL):
        return OPPOSITE
    return DIFFERENT


def lateral_relation(gen: Decision | None, ref: Decision | None) -> str:
    """same | similar | different | opposite of the lateral parts of two decisions (None/unset = unstated)."""
    g_kind, r_kind = (gen.lateral if gen else None), (ref.lateral if ref else None)
    g_dir, r_dir = (gen.direction if gen else None), (ref.direction if ref else None)
    directions_clash = g_dir is not None and r_dir is not None and g_dir != r_dir
    if g_kind == r_kind:
        return OPPOSITE if directions_clash else SAME
    if g_kind is None or r_kind is None:
        # An unstated lateral axis reads as lane keeping.
        return SIMILAR if (g_kind or r_kind) == _T.LANE_KEEPING else DIFFERENT
    if frozenset((g_kind, r_kind)) in _LATERAL_RELATED:
        return OPPOSITE if directions_clash else SIMILAR
    return DIFFERENT


def behaviour_level(lon: str, lat: str) -> str:
    """Combine the two axis relations into one of ``BEHAVIOUR_LEVELS``."""
    pair = (lon, lat)
    if OPPOSITE in pair:
        return "contradict"
    if pair == (SAME, SAME):
        return "exact"
    if DIFFERENT not in pair:
        return "rough"
    return "wrong" if pair == (DIFFERENT, DIFFERENT) else "partial"


def factor_f1(gen: Sequence, ref: Sequence) -> float:
    """F1 of two sets of factor categories; 1.0 when both are empty, 0.0 when exactly one is."""
    g, r = set(gen), set(ref)
    if not g and not r:
        return 1.0
    common = len(g & r)
    if common == 0:
        return 0.0
    precision, recall = common / len(g), common / len(r)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1 << 16)
def _parse(text: str) -> TraceParse:
    """``parse_trace`` memoised: GRPO groups repeat traces and the ground truth is parsed for every sample."""
    return parse_trace(text)


@register_critic_backend("rubric", version="1")
class RubricCritic:
    """The deterministic 0–5 grader (see the module docstring). Options: the reasoning-level F1 thresholds."""

    name = "rubric"
    version = "1"

    def __init__(self, *, consistent_f1: float = 0.8, mostly_f1: float = 0.5, incomplete_f1: float = 0.25):
        if not 0.0 <= incomplete_f1 <= mostly_f1 <= consistent_f1 <= 1.0:
            raise ValueError(
                "rubric: thresholds must satisfy 0 <= incomplete_f1 <= mostly_f1 <= consistent_f1 <= 1, got "
                f"{incomplete_f1}, {mostly_f1}, {consistent_f1}"
            )
        self.thresholds = (consistent_f1, mostly_f1, incomplete_f1)

    def reasoning_level(self, f1: float) -> str:
        """One of ``REASONING_LEVELS`` for a factor F1."""
        for level, threshold in zip(REASONING_LEVELS, self.thresholds):
            if f1 >= threshold:
                return level
        return "inconsistent"

    def grade_one(self, request: CritiqueRequest) -> CritiqueGrade:
        """Grade one generated trace against its reference."""
        ref = _parse(request.reference) if isinstance(request.reference, str) else None
        if ref is None or not ref.ok:
            why = ref.reason if ref is not None else "missing"
            return CritiqueGrade(None, "error", f"ground-truth trace of scenario {request.scenario_id!r} does not "
                                                f"parse: {why}")
        gen = _parse(request.trace) if isinstance(request.trace, str) else parse_trace(request.trace)
        if not gen.ok:
            return CritiqueGrade(0, "unparseable", f"generated trace has no usable decision: {gen.reason}",
                                 {"reason": gen.reason})
        lon = longitudinal_relation(gen.decision.longitudinal, ref.decision.longitudinal)
        lat = lateral_relation(gen.decision, ref.decision)
        behaviour = behaviour_level(lon, lat)
        f1 = factor_f1(gen.factors, ref.factors)
        reasoning = self.reasoning_level(f1)
        grade = GRADE_TABLE[behaviour][REASONING_LEVELS.index(reasoning)]
        missing = sorted(c.value for c in set(ref.factors) - set(gen.factors))
        extra = sorted(c.value for c in set(gen.factors) - set(ref.factors))
        rationale = (
            f"behaviour {behaviour} (longitudinal {lon}, lateral {lat}: {gen.decision.describe()} vs "
            f"{ref.decision.describe()}); reasoning {reasoning} (factor F1 {f1:.2f}"
            + (f", missing {', '.join(missing)}" if missing else "")
            + (f", extra {', '.join(extra)}" if extra else "")
            + ")"
        )
        details = {"behaviour": behaviour, "longitudinal": lon, "lateral": lat, "reasoning": reasoning,
                   "factor_f1": round(f1, 4)}
        return CritiqueGrade(grade, "ok", rationale, details)

    def grade(self, requests: Sequence[CritiqueRequest]) -> list[CritiqueGrade]:
        """Grade each request (never raises for a bad trace)."""
        return [self.grade_one(r) for r in requests]
