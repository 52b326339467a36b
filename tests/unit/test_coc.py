"""Chain of Causation (docs/design.md §3): taxonomy, Decision validation, trace composition and parse_trace."""

from __future__ import annotations

import random
import re
import string

import pytest

from rlpost.domain import coc, coc_wording, phrase_scanner
from rlpost.domain.coc import (
    ALL_DECISIONS,
    DECISION_VOCABULARY,
    MAX_TRACE_CHARS,
    CausalFactor,
    Decision,
    FactorCategory,
    TraceParse,
    compose_trace,
    factor_phrase,
    parse_trace,
)
from rlpost.domain.coc_taxonomy import (
    DIRECTIONAL_LATERAL,
    FULL_TO_SIMPLIFIED,
    INTERESTING,
    INTERESTING_FULL,
    SIMPLIFIED_LATERAL,
    SIMPLIFIED_LONGITUDINAL,
    SIMPLIFIED_TO_FULL,
    Direction,
    Lateral,
    Longitudinal,
    SimplifiedDecision,
    decision_priority,
)

L, A, D, S, F = Longitudinal, Lateral, Direction, SimplifiedDecision, FactorCategory


def _random_factors(rng: random.Random, n: int) -> list[CausalFactor]:
    return [CausalFactor(rng.choice(list(F)), "", -round(rng.uniform(0, 2), 1)) for _ in range(n)]


def _decision_of(text: str) -> Decision | None:
    return parse_trace(text).decision


# --------------------------------------------------------------------------- taxonomy


def test_enum_sizes_follow_spec():
    assert len(L) == 7 and len(A) == 8 and len(D) == 2 and len(F) == 7
    assert len(SIMPLIFIED_LONGITUDINAL) == 7 and len(SIMPLIFIED_LATERAL) == 6 and len(S) == 13
    assert {a.value for a in DIRECTIONAL_LATERAL} == {"out_of_lane_nudge", "in_lane_nudge", "lane_change", "turn"}


def test_mappings_cover_every_member_and_keep_the_axis():
    assert set(FULL_TO_SIMPLIFIED) == set(L) | set(A)
    assert set(SIMPLIFIED_TO_FULL) == set(S)
    for full, simple in FULL_TO_SIMPLIFIED.items():
        assert isinstance(simple, S)
        assert (simple in SIMPLIFIED_LONGITUDINAL) == isinstance(full, L)
    for simple, full in SIMPLIFIED_TO_FULL.items():
        assert (simple in SIMPLIFIED_LONGITUDINAL) == isinstance(full, L)
    # Lossless where both sets have the same concept.
    for simple in (S.STOP, S.YIELD, S.PASS_OVERTAKE, S.GAP_SEARCH, S.KEEP_DISTANCE, S.ADAPT_SPEED, S.RESUME_SPEED,
                   S.LANE_CHANGE, S.TURN, S.MERGE, S.KEEP_LANE):
        assert FULL_TO_SIMPLIFIED[SIMPLIFIED_TO_FULL[simple]] is simple


def test_interesting_outranks_the_defaults():
    assert S.KEEP_DISTANCE not in INTERESTING and S.KEEP_LANE not in INTERESTING and S.RESUME_SPEED not in INTERESTING
    assert len(INTERESTING) == 10
    assert INTERESTING_FULL == (set(L) | set(A)) - {L.SET_SPEED_TRACKING, L.LEAD_OBSTACLE_FOLLOWING, A.LANE_KEEPING}
    assert decision_priority(L.YIELD) > decision_priority(L.LEAD_OBSTACLE_FOLLOWING) > decision_priority(
        L.SET_SPEED_TRACKING)
    assert decision_priority(A.LATERAL_ABORT) > decision_priority(A.LANE_KEEPING)
    assert decision_priority(S.NUDGE) > decision_priority(S.KEEP_LANE) == decision_priority(S.RESUME_SPEED)
    with pytest.raises(TypeError):
        decision_priority("yield")


def test_all_decisions_are_every_valid_combination():
    assert len(ALL_DECISIONS) == len(set(ALL_DECISIONS)) == 8 * 15 - 1
    assert Decision(L.YIELD, A.MERGE_SPLIT) in ALL_DECISIONS
    assert Decision(None, A.TURN, D.LEFT) in ALL_DECISIONS


def test_decision_accepts_string_values():
    assert Decision("yield", "turn", "left") == Decision(L.YIELD, A.TURN, D.LEFT)
    assert Decision(lateral="merge_split").direction is None
    assert Decision(lateral="merge_split", direction="right").direction is D.RIGHT
    assert Decision(L.YIELD, A.TURN, D.LEFT).describe() == "yield + turn left"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "both are None"),
        ({"lateral": A.LANE_CHANGE}, "needs a direction"),
        ({"lateral": A.TURN}, "needs a direction"),
        ({"lateral": A.LANE_KEEPING, "direction": D.LEFT}, "takes no direction"),
        ({"lateral": A.PULL_OVER, "direction": "right"}, "takes no direction"),
        ({"longitudinal": L.YIELD, "direction": D.LEFT}, "no lateral decision"),
        ({"longitudinal": "fly"}, "longitudinal"),
        ({"lateral": "lane_change", "direction": "up"}, "direction"),
        ({"longitudinal": 3}, "longitudinal"),
    ],
)
def test_decision_validation_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Decision(**kwargs)


def test_causal_factor_validation():
    f = CausalFactor("traffic_light", "the light is red", -1)
    assert f.category is F.TRAFFIC_LIGHT and f.observed_at == -1.0
    with pytest.raises(ValueError, match="category"):
        CausalFactor("weather")
    with pytest.raises(ValueError, match="text"):
        CausalFactor(F.LANE, None)
    with pytest.raises(ValueError, match="observed_at"):
        CausalFactor(F.LANE, "", float("nan"))
    with pytest.raises(ValueError, match="observed_at"):
        CausalFactor(F.LANE, "", "soon")


# --------------------------------------------------------------------------- parse_trace: vocabulary


SYNONYMS = [
    ("come to a stop", Decision(L.STOP_FOR_STATIC_CONSTRAINT)),
    ("Halt.", Decision(L.STOP_FOR_STATIC_CONSTRAINT)),
    ("brake to a stop behind the line", Decision(L.STOP_FOR_STATIC_CONSTRAINT)),
    ("the ego must stop at the red light", Decision(L.STOP_FOR_STATIC_CONSTRAINT)),
    ("give way to the cyclist", Decision(L.YIELD)),
    ("yield to the pedestrian", Decision(L.YIELD)),
    ("let the pedestrian cross first", Decision(L.YIELD)),
    ("follow the lead vehicle", Decision(L.LEAD_OBSTACLE_FOLLOWING)),
    ("keep distance", Decision(L.LEAD_OBSTACLE_FOLLOWING)),
    ("maintain a safe following distance", Decision(L.LEAD_OBSTACLE_FOLLOWING)),
    ("slow down for the curve", Decision(L.SPEED_ADAPTATION)),
    ("reduce speed before the bump", Decision(L.SPEED_ADAPTATION)),
    ("overtake the truck", Decision(L.ACCELERATION_FOR_PASSING)),
    ("pass the slow cyclist", Decision(L.ACCELERATION_FOR_PASSING)),
    ("accelerate to pass", Decision(L.ACCELERATION_FOR_PASSING)),
    ("search for a gap in the next lane", Decision(L.GAP_SEARCHING)),
    ("wait for an opening", Decision(L.GAP_SEARCHING)),
    ("maintain speed", Decision(L.SET_SPEED_TRACKING)),
    ("cruise at the set speed", Decision(L.SET_SPEED_TRACKING)),
    ("resume speed", Decision(L.SET_SPEED_TRACKING)),
    ("change lanes to the left", Decision(lateral=A.LANE_CHANGE, direction=D.LEFT)),
    ("move into the left lane", Decision(lateral=A.LANE_CHANGE, direction=D.LEFT)),
    ("make a right lane change", Decision(lateral=A.LANE_CHANGE, direction=D.RIGHT)),
    ("nudge right", Decision(lateral=A.IN_LANE_NUDGE, direction=D.RIGHT)),
    ("shift slightly right within the lane", Decision(lateral=A.IN_LANE_NUDGE, direction=D.RIGHT)),
    ("nudge left out of the lane", Decision(lateral=A.OUT_OF_LANE_NUDGE, direction=D.LEFT)),
    ("turn left at the intersection", Decision(lateral=A.TURN, direction=D.LEFT)),
    ("make a right turn", Decision(lateral=A.TURN, direction=D.RIGHT)),
    ("keep lane", Decision(lateral=A.LANE_KEEPING)),
    ("stay in lane", Decision(lateral=A.LANE_KEEPING)),
    ("merge onto the highway", Decision(lateral=A.MERGE_SPLIT)),
    ("merge left", Decision(lateral=A.MERGE_SPLIT, direction=D.LEFT)),
    ("pull over to the shoulder", Decision(lateral=A.PULL_OVER)),
    ("abort the lane change", Decision(lateral=A.LATERAL_ABORT)),
    ("return to the original lane", Decision(lateral=A.LATERAL_ABORT)),
    ("stop_for_static_constraint and lane_keeping", Decision(L.STOP_FOR_STATIC_CONSTRAINT, A.LANE_KEEPING)),
    ("Decision: stop for the red light and keep lane. Because: the traffic light ahead turned red 1.2 s ago; "
     "the lead vehicle is braking.", Decision(L.STOP_FOR_STATIC_CONSTRAINT, A.LANE_KEEPING)),
]


@pytest.mark.parametrize("text, expected", SYNONYMS, ids=[t[:40] for t, _ in SYNONYMS])
def test_synonyms(text, expected):
    result = parse_trace(text)
    assert result.ok and result.reason == ""
    assert result.decision == expected


@pytest.mark.parametrize(
    "text",
    [
        "DECISION: COME TO A STOP AND KEEP LANE.",
        "decision:come   to a\tstop\n\nand  keep-lane!!!",
        "  Decision —  come to a stop ... and keep lane ;  ",
        "“Decision”: come to a stop, and keep lane",
        "Come-to-a-stop & keep_lane?",
    ],
)
def test_casing_punctuation_and_whitespace(text):
    assert _decision_of(text) == Decision(L.STOP_FOR_STATIC_CONSTRAINT, A.LANE_KEEPING)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("do not change lanes", None),
        ("don't change lanes; keep lane", Decision(lateral=A.LANE_KEEPING)),
        ("there is no need to stop, maintain speed", Decision(L.SET_SPEED_TRACKING)),
        ("continue without stopping", None),
        ("I will not overtake; follow the lead vehicle", Decision(L.LEAD_OBSTACLE_FOLLOWING)),
        ("a lane change is not needed, so keep lane", Decision(lateral=A.LANE_KEEPING)),
        ("avoid braking to a stop and slow down for the bump", Decision(L.SPEED_ADAPTATION)),
        ("instead of stopping, yield", Decision(L.YIELD)),
        ("never turn left here; turn right", Decision(lateral=A.TURN, direction=D.RIGHT)),
    ],
)
def test_negation_does_not_count(text, expected):
    assert _decision_of(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        # a conclusion position beats a mention elsewhere, even an interesting one
        ("Slowing down looks tempting, but I will keep the current speed.", Decision(L.SET_SPEED_TRACKING)),
        ("Yielding was considered. Decision: overtake.", Decision(L.ACCELERATION_FOR_PASSING)),
        # otherwise interesting beats default
        ("keep lane and change lanes to the left", Decision(lateral=A.LANE_CHANGE, direction=D.LEFT)),
        ("maintain speed, then yield", Decision(L.YIELD)),
        # among the defaults, following beats set-speed tracking
        ("follow the lead vehicle and maintain speed", Decision(L.LEAD_OBSTACLE_FOLLOWING)),
        # speed adaptation is the manner of a stop / yield, not a second decision
        ("slow down and come to a stop", Decision(L.STOP_FOR_STATIC_CONSTRAINT)),
        # another road user's action is not the ego's decision
        ("The lead vehicle comes to a stop; keep lane.", Decision(lateral=A.LANE_KEEPING)),
        ("The truck is turning left, so the ego should yield.", Decision(L.YIELD)),
        ("with traffic ahead keep distance", Decision(L.LEAD_OBSTACLE_FOLLOWING)),
        # a vague lane change borrows its side from a complete mention
        ("Decision: change lanes. The left lane is clear, move into the left lane.",
         Decision(lateral=A.LANE_CHANGE, direction=D.LEFT)),
        # "stop sign" and "stop line" are factors, not decisions
        ("There is a stop sign and a stop line ahead; keep lane.", Decision(lateral=A.LANE_KEEPING)),
    ],
)
def test_resolution_rules(text, expected):
    assert _decision_of(text) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Decision: stop. Decision: yield.", "conflicting longitudinal decisions: stop_for_static_constraint vs yield"),
        ("overtake and yield", "conflicting longitudinal decisions: acceleration_for_passing vs yield"),
        ("turn left. turn right.", "conflicting lateral decisions: turn left vs turn right"),
        ("I will turn left and change lanes to the right", "conflicting lateral decisions: turn vs lane_change"),
        ("change lanes", "lateral decision lane_change has no direction"),
        ("the weather is nice", "no driving decision found"),
        ("be careful", "no driving decision found"),
    ],
)
def test_failures_say_why(text, reason):
    result = parse_trace(text)
    assert not result.ok and result.decision is None
    assert result.reason.startswith(reason)


@pytest.mark.parametrize("value", [None, 3, 2.5, b"stop", ["stop"], object()])
def test_non_str_input_is_not_ok(value):
    result = parse_trace(value)
    assert not result.ok and "expected a str" in result.reason


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text(text):
    assert parse_trace(text) == TraceParse(False, None, (), "empty text")


def test_long_text():
    assert parse_trace("Decision: stop. " * 600).decision == Decision(L.STOP_FOR_STATIC_CONSTRAINT)
    result = parse_trace("x" * 10_000_000)
    assert not result.ok and "too long" in result.reason and str(MAX_TRACE_CHARS) in result.reason


def test_random_unicode_and_word_soup_never_raise():
    rng = random.Random(0)
    soup = [*DECISION_VOCABULARY, ".", ",", ";", ":", "(", ")", "decision:", "not", "no", "don't", "-", "_", "/",
            "\n", "1.2", "İ", "ß", "ﬁ", "\u0301", "\ud800", "😀"]
    for i in range(1500):
        if i % 2:
            text = "".join(chr(rng.randrange(0x110000)) for _ in range(rng.randint(0, 60)))
        else:
            text = " ".join(rng.choice(soup) for _ in range(rng.randint(0, 40)))
        result = parse_trace(text)
        assert result.ok == (result.decision is not None) == (result.reason == "")


# --------------------------------------------------------------------------- parse_trace: factors


@pytest.mark.parametrize(
    "text, category",
    [
        ("the lead vehicle is braking", F.CRITICAL_OBJECT),
        ("a pedestrian steps out", F.CRITICAL_OBJECT),
        ("the light turned red", F.TRAFFIC_LIGHT),
        ("the light ahead changed to red", F.TRAFFIC_LIGHT),
        ("a green light", F.TRAFFIC_LIGHT),
        ("there is a stop sign", F.YIELD_STOP_CONTROL),
        ("the stop line is near", F.YIELD_STOP_CONTROL),
        ("a sharp curve", F.ROAD_EVENT),
        ("the road narrows", F.ROAD_EVENT),
        ("the lane ends", F.LANE),
        ("faded lane markings", F.LANE),
        ("the route takes the next exit", F.ROUTING_INTENT),
        ("heavy rain and fog", F.ODD_CONSTRAINT),
        ("roadworks ahead", F.ODD_CONSTRAINT),
    ],
)
def test_factor_keywords(text, category):
    assert category in parse_trace(text).factors


def test_factors_in_order_of_first_mention_and_ego_vehicle_is_not_an_object():
    result = parse_trace("Because of rain and the red light, the ego vehicle should stop. Rain again.")
    assert result.factors == (F.ODD_CONSTRAINT, F.TRAFFIC_LIGHT)


@pytest.mark.parametrize(
    "text",
    [
        "the acceleration lane ends ahead", "the car ahead started braking", "brake lights came on at the car in front",
        "the lead vehicle is pulling away", "a car is cutting in from the left", "the car in front is not moving",
        "the lead vehicle is moving slowly", "the signal ahead just turned amber", "a stopped truck blocks the lane",
        "cross traffic has the right of way here", "the route goes right at the junction ahead",
        "a passing vehicle overtook us", "the lanes merge ahead", "merging traffic from the right",
    ],
)
def test_scene_descriptions_are_not_ego_decisions(text):
    assert parse_trace(text).reason == "no driving decision found"


@pytest.mark.parametrize("category", list(F))
def test_stock_factor_phrases_name_their_category_and_no_decision(category):
    for phrase in coc_wording.FACTOR_PHRASES[category.value]:
        result = parse_trace(phrase)
        assert result.reason == "no driving decision found", phrase
        assert category in result.factors, phrase


# --------------------------------------------------------------------------- compose_trace


def test_round_trip_every_decision_many_seeds(monkeypatch):
    # One attempt only: the wording tables themselves must round-trip, not compose_trace's retry.
    monkeypatch.setattr(coc, "_COMPOSE_ATTEMPTS", 1)
    for decision in ALL_DECISIONS:
        for seed in range(40):
            rng = random.Random(seed)
            factors = _random_factors(rng, rng.randint(0, 3))
            trace = compose_trace(decision, factors, rng)
            result = parse_trace(trace)
            assert result.decision == decision, (decision, trace, result.reason)
            assert {f.category for f in factors} <= set(result.factors), trace


def test_every_phrase_in_every_template_round_trips():
    templates = coc_wording.TEMPLATES_WITH_FACTORS + coc_wording.TEMPLATES_WITHOUT_FACTORS
    cases = [(p, Decision(k)) for k, ps in coc_wording.LONGITUDINAL_PHRASES.items() for p in ps]
    for kind, phrases in coc_wording.LATERAL_PHRASES.items():
        dirs = list(D) if A(kind) in DIRECTIONAL_LATERAL else [None]
        cases += [(p.format(d=d.value if d else ""), Decision(lateral=kind, direction=d))
                  for p in phrases for d in dirs]
    cases += [(p.format(d=d.value), Decision(lateral=A.MERGE_SPLIT, direction=d))
              for p in coc_wording.MERGE_SPLIT_DIRECTED_PHRASES for d in D]
    for phrase, decision in cases:
        for template in templates:
            trace = template.format(D=phrase, F="the lead vehicle is braking and the road is wet")
            assert _decision_of(trace) == decision, trace


def test_wording_varies():
    for kind, phrases in {**coc_wording.LONGITUDINAL_PHRASES, **coc_wording.LATERAL_PHRASES}.items():
        assert len(set(phrases)) >= 3, kind
    for decision in ALL_DECISIONS:
        rng = random.Random(7)
        traces = {compose_trace(decision, [], rng) for _ in range(50)}
        assert len(traces) >= 3, decision
        with_factors = {compose_trace(decision, [CausalFactor(F.LANE)], rng) for _ in range(20)}
        assert len(with_factors) >= 10, decision


def test_length_and_vocabulary():
    assert list(DECISION_VOCABULARY) == sorted(set(DECISION_VOCABULARY))
    rng = random.Random(3)
    for decision in ALL_DECISIONS:
        for _ in range(5):
            trace = compose_trace(decision, _random_factors(rng, rng.randint(1, 3)), rng)
            assert 8 <= len(trace.split()) <= 60, trace
            words = re.findall(r"[a-z]+", trace.lower())
            assert set(words) <= set(DECISION_VOCABULARY), set(words) - set(DECISION_VOCABULARY)


def test_compose_uses_factor_text_time_and_at_most_three_factors():
    rng = random.Random(0)
    texts = ["a dog sits on the road", "the light is green", "it is foggy", "a bus is parked", "a deer is near"]
    factors = [CausalFactor(F.CRITICAL_OBJECT, texts[0], -1.25), CausalFactor(F.TRAFFIC_LIGHT, texts[1], 0.5),
               *(CausalFactor(F.CRITICAL_OBJECT, t) for t in texts[2:])]
    decision = Decision(L.YIELD)
    for _ in range(20):
        trace = compose_trace(decision, factors, rng).lower()  # the first letter may be capitalised
        assert texts[0] in trace and texts[1] in trace and texts[2] in trace
        assert texts[3] not in trace and texts[4] not in trace
        assert "(in 0.5 s)" in trace  # future leakage stays visible


def test_compose_rejects_factor_text_that_reads_as_a_decision():
    with pytest.raises(ValueError, match="parses back"):
        compose_trace(Decision(lateral=A.LANE_KEEPING), [CausalFactor(F.LANE, "we will stop now")],
                      random.Random(0))


def test_compose_argument_types():
    with pytest.raises(TypeError):
        compose_trace("yield", [], random.Random(0))
    with pytest.raises(TypeError):
        compose_trace(Decision(L.YIELD), [], 3)
    with pytest.raises(TypeError):
        compose_trace(Decision(L.YIELD), ["rain"], random.Random(0))
    assert factor_phrase("lane", random.Random(0)) in coc_wording.FACTOR_PHRASES["lane"]


# --------------------------------------------------------------------------- the fast scanner


def test_scanner_matches_plain_regex_alternation():
    families = [
        coc._bounded(coc_wording.LONGITUDINAL_PATTERNS, L), coc._bounded(coc_wording.LATERAL_PATTERNS, A),
        coc._bounded(coc_wording.FACTOR_PATTERNS.items(), F), coc_wording.STRUCTURE_PATTERNS,
    ]
    scanner = phrase_scanner.PhraseScanner(families)
    references = []
    for family in families:
        body = "|".join(f"(?P<g{i}>{pattern})" for i, (_, pattern) in enumerate(family))
        references.append((re.compile(rf"\b(?:{body})"), {f"g{i}": label for i, (label, _) in enumerate(family)}))
    rng = random.Random(1)
    texts = [coc_wording.normalise(compose_trace(d, _random_factors(rng, 2), rng)) for d in ALL_DECISIONS]
    words = sorted(set(" ".join(texts).split())) + ["(stop", "so,", "i'll", "don't", "2way", "x2stop", "éstop",
                                                     "stopé", "movéd", "nudgé", "ïn"]
    texts += [" ".join(rng.choice(words) for _ in range(rng.randint(1, 30))) for _ in range(800)]
    texts += ["movéd left out of the lane", "(stop) and i'll turn left", "so, nudgé right; x2stop"]
    for text in texts:
        got = scanner.scan(text)
        for fi, (regex, labels) in enumerate(references):
            assert got[fi] == [(m.start(), m.end(), labels[m.lastgroup]) for m in regex.finditer(text)], text


def test_first_keys():
    assert phrase_scanner.first_keys(r"(?:come|go)(?:s|es)? to") == {"come", "go", "gos", "goes"}
    assert phrase_scanner.first_keys(r"(?<!bus )mov\w*") >= {"mov", "move", "movi"}
    assert phrase_scanner.first_keys(r"\w+ stop") is None
    assert phrase_scanner.first_keys(r"4 way") is None
    with pytest.raises(ValueError, match="cannot index"):
        phrase_scanner.PhraseScanner([[("x", r"\w+")]])


def test_punctuation_only_and_letters_only_text():
    assert parse_trace(string.punctuation).reason == "no driving decision found"
    assert parse_trace("stop" * 100).reason == "no driving decision found"
