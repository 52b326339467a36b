"""The label validator behind ``rlpost data check`` (docs/design.md §3 failure modes).

Per scenario it flags:

- ``causal_locality``: a factor observed after t0 (``observed_at`` > 0) or before the history starts, or one
  whose evidence is not in the history at the time it claims (e.g. an agent it needs is absent at that step) —
  the trace would cite what only the future reveals ("causal confusion").
- ``vague_decision``: no decision on either axis, a directional lateral decision without a direction, or a
  trace that does not parse back to the stored decision (``rlpost.domain.coc.parse_trace``).
- ``no_causal_link``: a factor whose kind cannot explain the decision (relevance table
  :data:`rlpost.scenarios.labels.RELEVANT`), an operating-domain factor (SUMO has no weather or roadworks), a
  factor whose category disagrees with its kind, or one whose evidence is absent at t0 (a red-light factor
  while the light is green, a pedestrian factor with no pedestrian ahead).
- ``inconsistent_action``: the decision contradicts the expert's
  own future meta-actions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from rlpost.domain.coc import Decision, parse_trace
from rlpost.scenarios.labels import FACTOR_KEYS, H_TIMES, RELEVANT
from rlpost.scenarios.schema import HIST, Scenario

ISSUES = ("causal_locality", "vague_decision", "no_causal_link", "inconsistent_action")
_DIRECTIONAL = {"lane_change", "turn", "in_lane_nudge", "out_of_lane_nudge"}
_EPS = 1e-6


@dataclass(frozen=True)
class Issue:
    """One validator finding: which scenario, which check (one of ``ISSUES``), and what exactly is wrong."""

    scenario_id: str
    kind: str
    detail: str


def _consistency():
    from rlpost.domain.consistency import check_consistency

    return check_consistency


def _agents_ahead(sc: Scenario, types, step: int, max_x: float) -> np.ndarray:
    """Indices of agents of ``types`` valid at history ``step`` and ahead of the ego within ``max_x`` metres."""
    if not len(sc.agent_type):
        return np.zeros(0, dtype=int)
    wanted = np.array([t in types for t in sc.agent_type])
    st = sc.agent_states[:, step]
    return np.flatnonzero(wanted & sc.agent_valid[:, step] & (st[:, 0] > -1.0) & (st[:, 0] < max_x))


_VEHICLES = ("vehicle", "truck", "bus", "motorcycle", "bicycle")
# kind -> (agent types needed in the history, range [m]) for factors about another road user.
_OBJECT_EVIDENCE = {
    "lead_braking": (_VEHICLES, 90), "lead_stopped": (_VEHICLES, 90), "lead_slower": (_VEHICLES, 90),
    "lead_close": (_VEHICLES, 90), "lead_away": (_VEHICLES, 90), "cut_in": (_VEHICLES, 60),
    "parked_in_lane": (_VEHICLES, 70), "pedestrian_crossing": (("pedestrian",), 40),
    "cyclist_crossing": (("bicycle",), 40),
}
_LIGHT_EVIDENCE = {"light_red": "red", "light_is_red": "red", "light_yellow": "yellow", "light_green": "green"}


def check_scenario(sc: Scenario, consistency=None) -> list[Issue]:
    """All findings for one scenario (empty list = it passes). consistency: optional check_consistency."""
    issues = []

    def flag(kind, detail):
        issues.append(Issue(sc.scenario_id, kind, detail))

    lon, lat, direction = sc.decision
    decision = None
    if lon is None and lat is None:
        flag("vague_decision", "no decision on either axis")
    elif lat in _DIRECTIONAL and direction is None:
        flag("vague_decision", f"{lat} without a direction")
    else:
        try:
            decision = Decision(lon, lat, direction)
        except ValueError as exc:
            flag("vague_decision", f"not a valid decision: {exc}")
    parsed = parse_trace(sc.coc_trace)
    if decision is not None and parsed.decision != decision:
        got = parsed.decision.describe() if parsed.decision else f"nothing ({parsed.reason})"
        flag("vague_decision", f"trace states {got}, label is {decision.describe()}")

    keys = sc.factor_keys or [""] * len(sc.factors)
    relevant = set(RELEVANT.get(lon or "", ())) | set(RELEVANT.get(lat or "", ()))
    for (category, text, t), key in zip(sc.factors, keys):
        if t > _EPS:
            flag("causal_locality", f"factor {text!r} observed {t:+.1f} s after t0")
            continue
        if t < H_TIMES[0] - _EPS:
            flag("causal_locality", f"factor {text!r} observed at {t:+.1f} s, before the 2 s history")
            continue
        if category == "odd_constraint":
            flag("no_causal_link", f"operating-domain factor {text!r} in a simulated scene without it")
            continue
        if key not in FACTOR_KEYS:
            flag("no_causal_link", f"factor {text!r} has no known kind ({key!r})")
            continue
        if FACTOR_KEYS[key][0] != category:
            flag("no_causal_link", f"factor {text!r}: category {category} but kind {key} is {FACTOR_KEYS[key][0]}")
        if key not in relevant:
            flag("no_causal_link", f"factor {key} ({text!r}) cannot explain {lon}/{lat}")
        if key in _LIGHT_EVIDENCE and sc.tl_state != _LIGHT_EVIDENCE[key]:
            flag("no_causal_link", f"factor {key} but the signal ahead is {sc.tl_state} at t0")
        if key in _OBJECT_EVIDENCE:
            types, reach = _OBJECT_EVIDENCE[key]
            step = int(round((t - H_TIMES[0]) / 0.1))
            if not len(_agents_ahead(sc, types, HIST - 1, reach)):
                flag("no_causal_link", f"factor {key} but no {'/'.join(types)} ahead at t0")
            elif not len(_agents_ahead(sc, types, min(max(step, 0), HIST - 1), reach + 20)):
                flag("causal_locality", f"factor {key} claims {t:+.1f} s but nothing matching is seen then")
    if consistency is not None and decision is not None:
        result = consistency(decision, sc.meta_longitudinal, sc.meta_lateral)
        if not result.consistent:
            flag("inconsistent_action", f"{decision.describe()} vs meta-actions {sc.meta_longitudinal}/"
                                        f"{sc.meta_lateral}: {result.reason}")
    return issues


def validate(scenarios, use_consistency: bool = True) -> tuple[list[Issue], dict[str, int]]:
    """Check every scenario; returns (issues, counts per issue kind plus "scenarios" and "failing")."""
    consistency = _consistency() if use_consistency else None
    issues = []
    failing = set()
    for sc in scenarios:
        found = check_scenario(sc, consistency)
        issues += found
        if found:
            failing.add(sc.scenario_id)
    counts = Counter(i.kind for i in issues)
    summary = {k: counts.get(k, 0) for k in ISSUES}
    summary["scenarios"] = len(scenarios)
    summary["failing"] = len(failing)
    return issues, summary
