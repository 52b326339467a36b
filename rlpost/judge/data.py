"""The judge's training data: ground-truth references, perturbed candidate traces and their rubric labels.

For each ground-truth scenario (``coc_trace``, decision, factors), :func:`perturb` writes candidate traces with
varied errors, composed by ``rlpost.domain.coc.compose_trace`` with fresh rng seeds (so the wording is always a
paraphrase); :func:`make_pairs` labels each with the rubric's grade of the final text (an unparseable candidate
grades 0). The rest of the judge (prompt, model, training, agreement) is ``rlpost.judge.sft``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rlpost.domain.coc import (
    DIRECTIONAL_LATERAL,
    OPTIONAL_DIRECTION_LATERAL,
    CausalFactor,
    Decision,
    Direction,
    FactorCategory,
    Lateral,
    Longitudinal,
    compose_trace,
    factor_phrase,
)


@dataclass(frozen=True)
class Reference:
    """A ground-truth trace with its structured decision and factors (from a scenario)."""

    scenario_id: str
    trace: str
    decision: Decision
    factors: tuple[CausalFactor, ...]

    @classmethod
    def from_scenario(cls, s) -> Reference | None:
        """None when the scenario has no usable decision (it cannot serve as a ground truth)."""
        try:
            d = Decision(s.decision_longitudinal, s.decision_lateral, s.decision_direction)
            factors = tuple(CausalFactor(c, t, min(float(o), 0.0)) for c, t, o in s.factors)
        except (ValueError, TypeError):
            return None
        if not isinstance(s.coc_trace, str) or not s.coc_trace.strip():
            return None
        return cls(str(s.scenario_id), s.coc_trace, d, factors)


def _lateral_options() -> list[tuple[Lateral | None, Direction | None]]:
    out: list[tuple[Lateral | None, Direction | None]] = [(None, None)]
    for lat in Lateral:
        if lat in DIRECTIONAL_LATERAL:
            out += [(lat, d) for d in Direction]
        elif lat in OPTIONAL_DIRECTION_LATERAL:
            out += [(lat, None), *((lat, d) for d in Direction)]
        else:
            out.append((lat, None))
    return out


_LATERAL_OPTIONS = _lateral_options()
_CATEGORIES = tuple(FactorCategory)
_IRRELEVANT = (FactorCategory.ODD_CONSTRAINT, FactorCategory.ROAD_EVENT, FactorCategory.ROUTING_INTENT)
_OBS_TIMES = (0.0, -0.2, -0.5, -1.0, -1.5, -1.9)


def _decision(lon, lat, direction) -> Decision | None:
    try:
        return Decision(lon, lat, direction)
    except ValueError:
        return None


def _other_lon(d: Decision, rng: random.Random, allow_none: bool = True) -> Decision:
    options = [x for x in (*Longitudinal, None) if x != d.longitudinal and (allow_none or x is not None)]
    rng.shuffle(options)
    for lon in options:
        out = _decision(lon, d.lateral, d.direction)
        if out is not None:
            return out
    return d


def _other_lat(d: Decision, rng: random.Random, same_kind_ok: bool = False) -> Decision:
    options = [o for o in _LATERAL_OPTIONS if o != (d.lateral, d.direction) and (same_kind_ok or o[0] != d.lateral)]
    rng.shuffle(options)
    for lat, direction in options:
        out = _decision(d.longitudinal, lat, direction)
        if out is not None:
            return out
    return d


def _flip_direction(d: Decision, rng: random.Random) -> Decision:
    if d.direction is None:
        return _other_lat(d, rng)
    flipped = Direction.LEFT if d.direction is Direction.RIGHT else Direction.RIGHT
    return Decision(d.longitudinal, d.lateral, flipped)


def _random_decision(rng: random.Random) -> Decision:
    while True:
        lat, direction = rng.choice(_LATERAL_OPTIONS)
        out = _decision(rng.choice((*Longitudinal, None)), lat, direction)
        if out is not None:
            return out


def _stock(category: FactorCategory, rng: random.Random) -> CausalFactor:
    """A factor of ``category`` with a stock phrase (a paraphrase of whatever the reference said)."""
    return CausalFactor(category, factor_phrase(category, rng), rng.choice(_OBS_TIMES))


def _reword(factors: Sequence[CausalFactor], rng: random.Random) -> list[CausalFactor]:
    """Keep each factor's own text or swap in a stock phrase of its category (same categories, new words)."""
    return [f if rng.random() < 0.5 else _stock(f.category, rng) for f in factors]


def _visible(ref: Reference) -> list[CausalFactor]:
    from rlpost.domain.coc import MAX_FACTORS_IN_TRACE

    return list(ref.factors[:MAX_FACTORS_IN_TRACE])


def _drop_factors(ref: Reference, rng: random.Random) -> list[CausalFactor]:
    fs = _reword(_visible(ref), rng)
    if not fs:
        return [_stock(rng.choice(_CATEGORIES), rng)]
    keep = rng.randint(0, len(fs) - 1)
    return rng.sample(fs, keep)


def _add_factors(ref: Reference, rng: random.Random,
                 pool: Sequence[FactorCategory] = _CATEGORIES) -> list[CausalFactor]:
    from rlpost.domain.coc import MAX_FACTORS_IN_TRACE

    fs = _reword(_visible(ref), rng)
    have = {f.category for f in fs}
    new = [c for c in pool if c not in have]
    rng.shuffle(new)
    room = max(1, MAX_FACTORS_IN_TRACE - len(fs))
    added = [_stock(c, rng) for c in new[: rng.randint(1, room)]]
    out = fs[: MAX_FACTORS_IN_TRACE - len(added)] + added
    rng.shuffle(out)
    return out


def _replace_factors(ref: Reference, rng: random.Random) -> list[CausalFactor]:
    have = {f.category for f in ref.factors}
    others = [c for c in _CATEGORIES if c not in have] or list(_CATEGORIES)
    n = rng.randint(1, 3)
    return [_stock(rng.choice(others), rng) for _ in range(n)]


def _partial_factors(ref: Reference, rng: random.Random) -> list[CausalFactor]:
    """Some reference factors kept, some replaced by other categories."""
    fs = _reword(_visible(ref), rng)
    if len(fs) <= 1:
        return _add_factors(ref, rng)
    k = rng.randint(1, len(fs) - 1)
    kept = rng.sample(fs, k)
    have = {f.category for f in ref.factors}
    others = [c for c in _CATEGORIES if c not in have] or list(_CATEGORIES)
    return kept + [_stock(rng.choice(others), rng) for _ in range(len(fs) - k)]


def _garbage(ref: Reference, rng: random.Random, pool: Sequence[Reference]) -> str:
    from rlpost.domain.coc import DECISION_VOCABULARY

    style = rng.randrange(7)
    words = ref.trace.split()
    if style == 0:  # word soup from the CoC vocabulary
        return " ".join(rng.choice(DECISION_VOCABULARY) for _ in range(rng.randint(3, 30)))
    if style == 1:  # the reference's words shuffled
        rng.shuffle(words)
        return " ".join(words)
    if style == 2:  # truncated mid-sentence
        return " ".join(words[: rng.randint(0, max(1, len(words) // 2))])
    if style == 3:  # noise characters
        alphabet = "abcdefghijklmnopqrstuvwxyz .,;:!?0123456789<>|"
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120)))
    if style == 4:  # factors only, no decision
        fs = [f.text or factor_phrase(f.category, rng) for f in ref.factors] or ["the road is clear"]
        return ", ".join(fs).capitalize() + "."
    if style == 5:  # vague non-decision ("be careful")
        return rng.choice(["Be careful.", "Drive safely and watch the road.", "Stay alert and be cautious.",
                           "The scene is complex.", "I am not sure what to do here.", "ok", ""])
    other = rng.choice(pool).trace.split()  # two traces spliced
    return " ".join(words[: len(words) // 2] + other[len(other) // 2:])


# name -> weight; the weights balance the grade distribution (see `grade_histogram` in the training log).
PERTURBATION_WEIGHTS: dict[str, float] = {
    "copy": 0.3, "paraphrase": 1.6, "reword_factors": 0.6,
    "wrong_longitudinal": 1.0, "wrong_lateral": 1.0, "flip_direction": 0.8, "wrong_both": 0.6, "drop_axis": 0.5,
    "drop_factors": 1.0, "add_factors": 0.8, "irrelevant_factor": 0.6, "replace_factors": 0.6,
    "partial_factors": 0.8, "no_factors": 0.4,
    "decision_and_factors": 1.2, "other_scenario": 0.6, "garbage": 0.8,
}
PERTURBATIONS = tuple(PERTURBATION_WEIGHTS)


def perturb(ref: Reference, rng: random.Random, pool: Sequence[Reference] = (),
            kind: str | None = None) -> tuple[str, str]:
    """One candidate trace for ``ref``: ``(text, perturbation kind)``; ``kind`` None draws one by weight.

    Decision/factor perturbations are written by ``compose_trace`` with ``rng`` (a paraphrase every time).
    ``pool``: other references (for ``other_scenario`` and spliced garbage); defaults to ``[ref]``.
    """
    pool = pool or [ref]
    if kind is None:
        kind = rng.choices(PERTURBATIONS, weights=[PERTURBATION_WEIGHTS[k] for k in PERTURBATIONS])[0]
    if kind not in PERTURBATION_WEIGHTS:
        raise ValueError(f"perturb: unknown kind {kind!r}; known: {', '.join(PERTURBATIONS)}")
    d, fs = ref.decision, _visible(ref)
    if kind == "copy":
        return ref.trace, kind
    if kind == "garbage":
        return _garbage(ref, rng, pool), kind
    if kind == "other_scenario":
        return rng.choice(pool).trace, kind
    factors: list[CausalFactor] = list(fs)
    if kind == "reword_factors":
        factors = _reword(fs, rng)
    elif kind == "wrong_longitudinal":
        d = _other_lon(d, rng)
    elif kind == "wrong_lateral":
        d = _other_lat(d, rng)
    elif kind == "flip_direction":
        d = _flip_direction(d, rng)
    elif kind == "wrong_both":
        d = _other_lat(_other_lon(d, rng, allow_none=False), rng)
    elif kind == "drop_axis":
        dropped = (_decision(None, d.lateral, d.direction) if rng.random() < 0.5
                   else _decision(d.longitudinal, None, None))
        d = dropped or d
    elif kind == "drop_factors":
        factors = _drop_factors(ref, rng)
    elif kind == "add_factors":
        factors = _add_factors(ref, rng)
    elif kind == "irrelevant_factor":
        factors = _add_factors(ref, rng, _IRRELEVANT)
    elif kind == "replace_factors":
        factors = _replace_factors(ref, rng)
    elif kind == "partial_factors":
        factors = _partial_factors(ref, rng)
    elif kind == "no_factors":
        factors = []
    elif kind == "decision_and_factors":
        d = rng.choice([_other_lon, _other_lat, _flip_direction, lambda x, r: _random_decision(r)])(d, rng)
        factors = rng.choice([_drop_factors, _add_factors, _replace_factors, _partial_factors])(ref, rng)
    try:
        return compose_trace(d, factors, rng), kind
    except ValueError:  # a factor text that reads as an ego decision: fall back to stock phrases
        return compose_trace(d, [_stock(f.category, rng) for f in factors], rng), kind


@dataclass(frozen=True)
class JudgePair:
    """A (reference, candidate) pair with the rubric's verdict (the judge's target)."""

    scenario_id: str
    reference: str
    candidate: str
    kind: str
    grade: int
    status: str  # the rubric's status: ok | unparseable
    rationale: str = ""  # the rubric's rationale: the reasoning-format answer's target (before the grade)


def make_pairs(references: Sequence[Reference], per_reference: int, seed: int,
               pool: Sequence[Reference] | None = None) -> list[JudgePair]:
    """``per_reference`` perturbed candidates per reference, labelled by the rubric (pairs whose reference does not
    parse are dropped: they are data defects). Deterministic for a seed."""
    from rlpost.rewards.critic_backends import CritiqueRequest
    from rlpost.rewards.rubric import RubricCritic

    rubric = RubricCritic()
    pool = list(pool or references)
    out: list[JudgePair] = []
    for i, ref in enumerate(references):
        rng = random.Random(f"{seed}:{i}:{ref.scenario_id}")
        for _ in range(per_reference):
            text, kind = perturb(ref, rng, pool)
            g = rubric.grade_one(CritiqueRequest(ref.scenario_id, text, ref.trace))
            if g.status == "error":
                break
            out.append(JudgePair(ref.scenario_id, ref.trace, text, kind, int(g.grade), g.status, g.rationale))
    return out


_RATIONALE_RE = re.compile(r"^behaviour (\w+) \(longitudinal (\w+), lateral (\w+):.*\); reasoning (\w+) \(")


def short_rationale(rationale: str) -> str:
    """The rubric's rationale without the decisions' names and the factor lists: the behaviour and reasoning levels
    and their relations (what decides the grade), ~15 tokens instead of ~90: the reasoning-format target that a
    small judge learns within minutes (the full text repeats both traces' decisions)."""
    m = _RATIONALE_RE.match(rationale)
    if m is not None:
        return f"behaviour {m[1]} (longitudinal {m[2]}, lateral {m[3]}); reasoning {m[4]}"
    return rationale.split(":", 1)[0]  # "generated trace has no usable decision: <parser message>"


def references_from(scenarios) -> list[Reference]:
    return [r for r in (Reference.from_scenario(s) for s in scenarios) if r is not None]
