"""Chain of Causation (docs/design.md §3): the decision taxonomy, causal factors, trace composition and ``parse_trace``.

A CoC trace states one closed-set **driving decision** per axis (or none) and free-text **causal factors**.

Taxonomy. The full AR1 set: `Longitudinal` (7 kinds) and `Lateral` (8 kinds; lane change, turn and both nudges
carry a `Direction`, merge/split may, the rest never do). The public auto-labeller's simplified 7+6 set is
`SimplifiedDecision`, with lossy maps both ways (`FULL_TO_SIMPLIFIED`, `SIMPLIFIED_TO_FULL`) and the priority rule
"interesting decisions outrank keep distance / keep lane / resume speed" (`INTERESTING`, `decision_priority`).

Trace grammar (what `compose_trace` writes; the wording tables live in `rlpost.domain.coc_wording`)::

    trace     := template filled with DECISION and, when there are factors, FACTORS
    template  := "Decision: D. Because: F." | "F, so the ego should D." | "Since F, the ego should D."
               | "The ego should D because F." | "I will D, since F." | "Plan: D. Reason: F." | ... | "I will D."
    D         := LONG | LAT | LONG " and " LAT | LAT " and " LONG | LONG " and then " LAT | LAT ", then " LONG
    LONG, LAT := one of several base-form phrases per decision kind ("come to a stop", "halt", "brake to a stop")
    F         := FACTOR | FACTOR " and " FACTOR | FACTOR ", " FACTOR " and " FACTOR     (at most 3 factors)
    FACTOR    := scene description [" (1.2 s ago)" | " (seen 1.2 s ago)" | " (just now)" | " (in 0.5 s)"]

Every template puts D after a **conclusion marker** ("Decision:", "Plan:", "so", "therefore", "thus", "I will",
"the ego should", "the best action is"); a conclusion position lasts to the end of its sentence, a ";", a reason
marker ("because", "since", "given", "due to") or another "Word:" heading.

Parsing (`parse_trace`) also reads free text without headings. Text is lowercased, hyphens/underscores/slashes
become spaces, whitespace collapses. One word-level pass (`phrase_scanner.PhraseScanner`, regexes precompiled at
import) finds the synonym patterns of both axes, the factor keywords and the structure words. A mention is
dropped when negated ("do not change lanes", "no need to stop", "without stopping", "a lane change is not
needed") or when another road user is the subject of its clause ("the lead vehicle comes to a stop"). Per axis:
mentions in a conclusion position win over the others; then interesting decisions win over the defaults (lead
following outranks set-speed tracking; lane keeping is the lateral default); speed adaptation is subsumed by
stop, yield or gap searching ("slow down and come to a stop" is a stop); two different remaining decisions, or
one lateral kind with both directions, fail with a "conflicting ..." reason. A directional lateral kind with no
direction anywhere ("change lanes") is dropped as vague; a trace left with nothing else fails saying so.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from rlpost.domain import coc_wording as W
from rlpost.domain.coc_taxonomy import (
    DIRECTIONAL_LATERAL,
    OPTIONAL_DIRECTION_LATERAL,
    Direction,
    Lateral,
    Longitudinal,
    decision_priority,
)
from rlpost.domain.phrase_scanner import PhraseScanner


class FactorCategory(str, Enum):
    """Causal-factor categories of a CoC trace (docs/design.md §3)."""

    CRITICAL_OBJECT = "critical_object"  # type, relative pose, motion of another road user or obstacle
    TRAFFIC_LIGHT = "traffic_light"
    YIELD_STOP_CONTROL = "yield_stop_control"  # stop / yield signs, stop lines, right of way
    ROAD_EVENT = "road_event"  # curve, bump, narrowing
    LANE = "lane"  # lane ends, markings, adjacent lane free
    ROUTING_INTENT = "routing_intent"  # route, exit, destination
    ODD_CONSTRAINT = "odd_constraint"  # operating-domain constraints: weather, roadworks


def _coerce(enum_cls, value, name: str):
    """``value`` as a member of ``enum_cls`` (member or its string value), None kept; ValueError otherwise."""
    if value is None or isinstance(value, enum_cls):
        return value
    try:
        return enum_cls(value)
    except (ValueError, TypeError):
        valid = ", ".join(m.value for m in enum_cls)
        raise ValueError(f"{name}: {value!r} is not a {enum_cls.__name__} (one of: {valid})") from None


@dataclass(frozen=True)
class Decision:
    """One driving decision per axis; ``None`` = the trace states nothing for that axis.

    Guarantees (checked in ``__post_init__``, which also accepts the string values of the enums): at least one
    axis is set; ``direction`` is set exactly for the lateral kinds in `DIRECTIONAL_LATERAL`, optional for
    merge/split and absent otherwise. Raises ValueError naming the field.
    """

    longitudinal: Longitudinal | None = None
    lateral: Lateral | None = None
    direction: Direction | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "longitudinal", _coerce(Longitudinal, self.longitudinal, "longitudinal"))
        object.__setattr__(self, "lateral", _coerce(Lateral, self.lateral, "lateral"))
        object.__setattr__(self, "direction", _coerce(Direction, self.direction, "direction"))
        if self.longitudinal is None and self.lateral is None:
            raise ValueError("Decision: needs a longitudinal or a lateral decision (both are None)")
        if self.lateral in DIRECTIONAL_LATERAL and self.direction is None:
            raise ValueError(f"direction: lateral decision {self.lateral.value} needs a direction (left/right)")
        if self.direction is not None and self.lateral not in DIRECTIONAL_LATERAL | OPTIONAL_DIRECTION_LATERAL:
            what = self.lateral.value if self.lateral is not None else "no lateral decision"
            raise ValueError(f"direction: {self.direction.value!r} given but {what} takes no direction")

    def describe(self) -> str:
        """Short human-readable form, e.g. ``"yield + turn left"``."""
        parts = []
        if self.longitudinal is not None:
            parts.append(self.longitudinal.value)
        if self.lateral is not None:
            parts.append(self.lateral.value + (f" {self.direction.value}" if self.direction else ""))
        return " + ".join(parts)


def _all_decisions() -> tuple[Decision, ...]:
    lateral: list[tuple[Lateral | None, Direction | None]] = [(None, None)]
    for lat in Lateral:
        if lat in DIRECTIONAL_LATERAL:
            lateral += [(lat, d) for d in Direction]
        elif lat in OPTIONAL_DIRECTION_LATERAL:
            lateral += [(lat, None)] + [(lat, d) for d in Direction]
        else:
            lateral.append((lat, None))
    lons = (None, *Longitudinal)
    return tuple(Decision(lon, lat, d) for lon in lons for lat, d in lateral if lon is not None or lat is not None)


ALL_DECISIONS: tuple[Decision, ...] = _all_decisions()  # every valid Decision (8 × 15 − 1 = 119)


@dataclass(frozen=True)
class CausalFactor:
    """One cause named by a trace.

    category: the `FactorCategory` (or its string value). text: the scene description; empty means
    `compose_trace` picks a stock phrase of the category. observed_at: when the factor became observable, in
    seconds relative to the keyframe t0; ≤ 0 lies in the observed history, > 0 is future leakage (a labelling
    defect a causal-locality validator flags). Raises ValueError for a bad category, non-str text or a
    non-finite time.
    """

    category: FactorCategory
    text: str = ""
    observed_at: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "category", _coerce(FactorCategory, self.category, "category"))
        if not isinstance(self.text, str):
            raise ValueError(f"text: expected str, got {type(self.text).__name__}")
        try:
            t = float(self.observed_at)
        except (TypeError, ValueError):
            raise ValueError(f"observed_at: expected seconds as a number, got {self.observed_at!r}") from None
        if not math.isfinite(t):
            raise ValueError(f"observed_at: must be finite, got {self.observed_at!r}")
        object.__setattr__(self, "observed_at", t)


@dataclass(frozen=True)
class TraceParse:
    """Result of `parse_trace`. ok ⇔ decision is not None; factors in order of first mention; reason is ""
    when ok and otherwise says why the trace has no usable decision."""

    ok: bool
    decision: Decision | None
    factors: tuple[FactorCategory, ...]
    reason: str


# ---------------------------------------------------------------------------------------------------------
# Parsing. Every regex is compiled once at import; a parse is one pass per family over the normalised text.
# ---------------------------------------------------------------------------------------------------------

MAX_TRACE_CHARS = 10_000  # a real trace is ~200 characters (~40 tokens); longer input is degenerate


def _bounded(entries: Sequence[tuple[str, str]], enum_cls) -> tuple[tuple[Enum, str], ...]:
    """Table rows as (kind, pattern ending at a word boundary)."""
    return tuple((enum_cls(kind), rf"(?:{pattern})\b") for kind, pattern in entries)


# One word-level pass over the text serves all four pattern families (see phrase_scanner.PhraseScanner).
_LON, _LAT, _FACTOR, _STRUCT = range(4)
_SCANNER = PhraseScanner(
    (
        _bounded(W.LONGITUDINAL_PATTERNS, Longitudinal),
        _bounded(W.LATERAL_PATTERNS, Lateral),
        _bounded(W.FACTOR_PATTERNS.items(), FactorCategory),
        W.STRUCTURE_PATTERNS,
    )
)
# Punctuation: sentence ends and ";" close a conclusion position ("1.2" is no sentence end); ":" closes it too
# (a "Reason:" heading) unless it ends a conclusion heading ("Decision:"); the rest only separate clauses.
_PUNCT_RE = re.compile(r"[.!?;](?!\d)|[:,()\[\]\"]")
_NEG_BEFORE_RE = re.compile(rf"(?:(?:\b(?:{W.NEGATORS})\b|n't)(?: [\w']+){{0,3}}|\bno) ?$")
_NEG_AFTER_RE = re.compile(
    r" (?:(?:is|are|was|would be|will be|seems|looks) (?:not|no longer) |(?:isn't|aren't|wasn't|won't be) )"
    r"(?:\w+ )?(?:necessary|needed|required|possible|safe|an option|advisable|allowed|warranted|appropriate"
    r"|feasible)|(?:is|are|would be|will be|seems) (?:unnecessary|unsafe|impossible|ruled out|out of the question)"
)
_SUBJECT_RE = re.compile(
    rf"\b(?:(?P<ego>{W.EGO_SUBJECTS})|(?P<obj>{W.OBJECT_PREFIX}(?:{W.OTHER_SUBJECTS}))|(?P<other>{W.OTHER_SUBJECTS}))\b"
)
_DIRECTION_RE = re.compile(r"\b(left|right)\b")
_PREFIX_WINDOW = 80  # characters of the clause before a mention that the negation / subject checks read
_DIRECTED = DIRECTIONAL_LATERAL | OPTIONAL_DIRECTION_LATERAL
_PRIORITY = {kind: decision_priority(kind) for kind in (*Longitudinal, *Lateral)}
_SUBSUMED_SPEED_ADAPTATION = frozenset(
    {Longitudinal.STOP_FOR_STATIC_CONSTRAINT, Longitudinal.YIELD, Longitudinal.GAP_SEARCHING}
)


def _structure(t: str, words: list[tuple[int, int, str]]) -> tuple[list[int], list[int], list[int]]:
    """Conclusion regions (starts, ends) and sorted clause-boundary positions of normalised text ``t``, from the
    structure-word matches ``words`` and the punctuation."""
    events = list(words)
    events += [(m.start(), m.end(), "close" if m.group() in ".!?;:" else "clause") for m in _PUNCT_RE.finditer(t)]
    events.sort()
    starts: list[int] = []
    ends: list[int] = []
    bounds = [0]
    open_at = -1
    heading_end = -1
    for start, end, label in events:
        if start < heading_end:  # the ":" of "Decision:" belongs to the marker
            continue
        bounds.append(end)
        if label == "open":
            heading_end = end
            if open_at < 0:
                open_at = end
        elif label == "close" and open_at >= 0:
            starts.append(open_at)
            ends.append(start)
            open_at = -1
    if open_at >= 0:
        starts.append(open_at)
        ends.append(len(t))
    bounds.sort()
    return starts, ends, bounds


def _mentions(t: str, found: list[tuple[int, int, Enum]], structure) -> list[tuple[Enum, Direction | None, bool]]:
    """(kind, direction, in_conclusion) for every ego, non-negated decision mention among ``found``."""
    out = []
    starts, ends, bounds = structure
    for pos, end, kind in found:
        clause_start = max(bounds[bisect.bisect_right(bounds, pos) - 1], pos - _PREFIX_WINDOW)
        prefix = t[clause_start:pos]
        if prefix and _NEG_BEFORE_RE.search(prefix):
            continue
        if _NEG_AFTER_RE.match(t, end):
            continue
        subject = None
        for s in _SUBJECT_RE.finditer(prefix):
            if s.lastgroup != "obj":
                subject = s.lastgroup
        if subject == "other":  # another road user acts in this clause: not the ego's decision
            continue
        dirs = _DIRECTION_RE.findall(t, pos, end) if kind in _DIRECTED else ()
        direction = Direction(dirs[-1]) if dirs else None
        i = bisect.bisect_right(starts, pos) - 1
        out.append((kind, direction, i >= 0 and pos < ends[i]))
    return out


def _label(kind: Enum, direction: Direction | None) -> str:
    return kind.value + (f" {direction.value}" if direction is not None else "")


def _resolve(axis: str, mentions) -> tuple[Enum | None, Direction | None, str, str]:
    """Pick one decision for an axis: (kind, direction, fatal_reason, soft_note). See the module docstring."""
    if not mentions:
        return None, None, "", ""
    if len(mentions) == 1:  # the common case, short-circuited for speed
        kind, d, _ = mentions[0]
        if kind in DIRECTIONAL_LATERAL and d is None:
            return None, None, "", f"{axis} decision {kind.value} has no direction (left/right)"
        return kind, d, "", ""
    directed: dict[Enum, list[Direction]] = {}
    for kind, d, _ in mentions:
        if d is not None:
            directed.setdefault(kind, []).append(d)
    usable = [mt for mt in mentions if mt[0] not in DIRECTIONAL_LATERAL or mt[0] in directed]
    if not usable:
        return None, None, "", f"{axis} decision {mentions[0][0].value} has no direction (left/right)"
    pool = [mt for mt in usable if mt[2]] or usable
    kinds = list(dict.fromkeys(mt[0] for mt in pool))
    top = max(_PRIORITY[k] for k in kinds)
    kinds = [k for k in kinds if _PRIORITY[k] == top]
    if Longitudinal.SPEED_ADAPTATION in kinds and _SUBSUMED_SPEED_ADAPTATION.intersection(kinds):
        kinds.remove(Longitudinal.SPEED_ADAPTATION)  # "slow down and stop": the slowing is part of the stop
    if len(kinds) > 1:
        return None, None, f"conflicting {axis} decisions: " + " vs ".join(k.value for k in kinds), ""
    kind = kinds[0]
    if kind not in DIRECTIONAL_LATERAL and kind not in OPTIONAL_DIRECTION_LATERAL:
        return kind, None, "", ""
    dirs = list(dict.fromkeys(mt[1] for mt in pool if mt[0] is kind and mt[1] is not None))
    dirs = dirs or list(dict.fromkeys(directed.get(kind, ())))  # "Decision: change lanes" + "... to the left"
    if len(dirs) > 1:
        return None, None, f"conflicting {axis} decisions: " + " vs ".join(_label(kind, d) for d in dirs), ""
    return kind, (dirs[0] if dirs else None), "", ""


def _fail(reason: str, factors: tuple[FactorCategory, ...] = ()) -> TraceParse:
    return TraceParse(False, None, factors, reason)


def parse_trace(text: str) -> TraceParse:
    """Parse a CoC trace into its `Decision` and the factor categories it names.

    Accepts any object and never raises: non-str input, empty or whitespace-only text, text over
    `MAX_TRACE_CHARS`, text with no decision, or conflicting decisions give ``ok=False`` with a reason.
    Factor categories are reported (in order of first mention) even when no decision is found.
    Rules: see the module docstring.
    """
    if not isinstance(text, str):
        return _fail(f"expected a str trace, got {type(text).__name__}")
    if len(text) > MAX_TRACE_CHARS:
        return _fail(f"trace too long ({len(text)} characters > {MAX_TRACE_CHARS})")
    t = W.normalise(text)
    if not t:
        return _fail("empty text")
    found = _SCANNER.scan(t)
    factors = tuple(dict.fromkeys(cat for _, _, cat in found[_FACTOR]))
    structure = _structure(t, found[_STRUCT])
    lon, _, lon_err, lon_note = _resolve("longitudinal", _mentions(t, found[_LON], structure))
    lat, direction, lat_err, lat_note = _resolve("lateral", _mentions(t, found[_LAT], structure))
    if lon_err or lat_err:
        return _fail("; ".join(e for e in (lon_err, lat_err) if e), factors)
    if lon is None and lat is None:
        return _fail(lon_note or lat_note or "no driving decision found", factors)
    return TraceParse(True, Decision(lon, lat, direction), factors, "")


# ---------------------------------------------------------------------------------------------------------
# Composition.
# ---------------------------------------------------------------------------------------------------------

MAX_FACTORS_IN_TRACE = 3  # traces stay short (~40 tokens in AR1): only the first three factors are written
_COMPOSE_ATTEMPTS = 8


def factor_phrase(category: FactorCategory | str, rng: random.Random) -> str:
    """A stock scene description for ``category`` (several per category), safe to use as `CausalFactor.text`:
    it names the category by a parser keyword and never reads as an ego decision."""
    return rng.choice(W.FACTOR_PHRASES[_coerce(FactorCategory, category, "category").value])


def _factor_text(f: CausalFactor, rng: random.Random) -> str:
    text = f.text.strip().rstrip(" .;") or factor_phrase(f.category, rng)
    if text[:1].isupper() and text[1:2].islower():  # mid-sentence: "Since the light ..." not "Since The light"
        text = text[0].lower() + text[1:]
    t = f.observed_at
    options = W.TIME_PAST if t < 0 else W.TIME_FUTURE if t > 0 else W.TIME_NOW
    return text + rng.choice(options).format(t=f"{abs(t):.1f}")


def _compose_once(decision: Decision, factors: Sequence[CausalFactor], rng: random.Random) -> str:
    lon = rng.choice(W.LONGITUDINAL_PHRASES[decision.longitudinal.value]) if decision.longitudinal else None
    lat = None
    if decision.lateral is not None:
        if decision.lateral is Lateral.MERGE_SPLIT and decision.direction is not None:
            lat = rng.choice(W.MERGE_SPLIT_DIRECTED_PHRASES)
        else:
            lat = rng.choice(W.LATERAL_PHRASES[decision.lateral.value])
        if decision.direction is not None:
            lat = lat.format(d=decision.direction.value)
    clause = rng.choice(W.DECISION_JOINERS).format(L=lon, A=lat) if lon and lat else (lon or lat)
    if factors:
        phrases = [_factor_text(f, rng) for f in factors]
        joined = rng.choice(W.FACTOR_JOINERS[len(phrases)]).format(*phrases)
        trace = rng.choice(W.TEMPLATES_WITH_FACTORS).format(D=clause, F=joined)
    else:
        trace = rng.choice(W.TEMPLATES_WITHOUT_FACTORS).format(D=clause)
    return trace[0].upper() + trace[1:]


def compose_trace(decision: Decision, factors: Sequence[CausalFactor], rng: random.Random) -> str:
    """Write a short CoC trace (~10–50 words) stating ``decision`` and citing ``factors``.

    Wording varies with ``rng`` (templates, several phrasings per decision kind, axis order, factor joiners,
    stock factor phrases when a factor has no text, time qualifiers). Only the first `MAX_FACTORS_IN_TRACE`
    factors are written. Guarantee: ``parse_trace(result).decision == decision``: the result is parsed before
    it is returned and recomposed if a caller's factor text interferes; if that keeps failing, ValueError names
    the factor texts (they must describe the scene, not an ego action). TypeError for wrong argument types.
    """
    if not isinstance(decision, Decision):
        raise TypeError(f"decision: expected Decision, got {type(decision).__name__}")
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng: expected random.Random, got {type(rng).__name__}")
    factors = tuple(factors)
    for f in factors:
        if not isinstance(f, CausalFactor):
            raise TypeError(f"factors: expected CausalFactor items, got {type(f).__name__}")
    used = factors[:MAX_FACTORS_IN_TRACE]
    for _ in range(_COMPOSE_ATTEMPTS):
        trace = _compose_once(decision, used, rng)
        if parse_trace(trace).decision == decision:
            return trace
    texts = [f.text for f in used if f.text]
    raise ValueError(
        f"compose_trace: could not write {decision.describe()!r} so that it parses back; the factor texts "
        f"{texts!r} read as an ego decision (last attempt: {trace!r})"
    )


# Every lowercase word compose_trace can emit from its own tables (numbers and punctuation excluded; a caller's
# CausalFactor.text is written verbatim and is not covered).
DECISION_VOCABULARY: tuple[str, ...] = W.vocabulary()
