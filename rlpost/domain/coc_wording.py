"""Wording tables for Chain-of-Causation traces (docs/design.md §3): what `rlpost.domain.coc.compose_trace` writes and
the synonym patterns `rlpost.domain.coc.parse_trace` recognises.

Keys are the plain string values of the `rlpost.domain.coc` enums (a ``str`` enum member hashes and compares equal to
its value), so this module imports nothing from `rlpost.domain.coc` and there is no import cycle.

Parser patterns are regular-expression fragments matched against `normalise`d text: lowercase, hyphens,
underscores and slashes turned into spaces, whitespace collapsed to single spaces. `PhraseScanner` (end of the
module) matches them fast; every pattern must start with a lowercase letter so it can be indexed.
Order matters: inside one family the alternatives are tried in the order written, so a longer or more specific
phrase must come before a shorter one that starts at the same word ("come to a stop" before "slow down").

Composition phrases must (a) parse back to their own decision, (b) contain no factor keyword except where the
decision names its object (following names the lead vehicle), and (c) stay free of cross-axis triggers; the
unit tests check all of this exhaustively.
"""

from __future__ import annotations

import re

# ----------------------------------------------------------------------------------------------------------
# Composition: decision phrases in the base form, to follow "the ego should …" / "I will …" / "Decision: …".
# "{d}" is replaced by the direction word ("left" / "right").
# ----------------------------------------------------------------------------------------------------------

LONGITUDINAL_PHRASES: dict[str, tuple[str, ...]] = {
    "set_speed_tracking": (
        "maintain speed", "cruise at the set speed", "resume the set speed", "keep the current speed",
        "hold a steady cruising speed",
    ),
    "lead_obstacle_following": (
        "follow the lead vehicle", "keep a safe distance to the car ahead", "stay behind the lead vehicle",
        "keep distance to the vehicle in front", "maintain a safe following distance",
    ),
    "speed_adaptation": ("slow down", "reduce speed", "ease off and slow down", "adapt the speed", "decelerate gently"),
    "gap_searching": ("search for a gap", "look for a safe gap", "wait for an opening", "find a suitable gap"),
    "acceleration_for_passing": (
        "accelerate to pass", "overtake", "speed up to overtake", "accelerate and overtake", "pass the slower vehicle",
    ),
    "yield": ("yield", "give way", "hold back and give way", "yield and let others go first"),
    "stop_for_static_constraint": (
        "come to a stop", "come to a complete stop", "brake to a stop", "halt", "stop and wait",
    ),
}

LATERAL_PHRASES: dict[str, tuple[str, ...]] = {
    "lane_keeping": (
        "keep lane", "stay in the current lane", "keep to the lane", "remain in the lane", "hold the lane",
    ),
    "merge_split": ("merge into the flow", "merge onto the main road", "take the split", "merge"),
    "out_of_lane_nudge": (
        "nudge {d} out of the lane", "edge {d} partly out of the lane", "shift {d} briefly out of the lane",
        "swerve slightly {d} out of the lane",
    ),
    "in_lane_nudge": (
        "nudge {d} within the lane", "shift slightly {d} within the lane", "bias to the {d} inside the lane",
        "nudge slightly to the {d}",
    ),
    "lane_change": (
        "change lanes to the {d}", "move into the {d} lane", "switch to the {d} lane", "make a {d} lane change",
        "change to the {d} lane",
    ),
    "pull_over": ("pull over", "pull over to the shoulder", "pull off to the side of the road", "move to the roadside"),
    "turn": ("turn {d}", "make a {d} turn", "turn {d} at the intersection", "take the {d} turn"),
    "lateral_abort": (
        "abort the lane change", "cancel the manoeuvre and return to the original lane",
        "abort the lateral manoeuvre", "go back to the original lane",
    ),
}

# merge_split with a direction (the direction is optional for this kind).
MERGE_SPLIT_DIRECTED_PHRASES: tuple[str, ...] = (
    "merge {d}", "merge to the {d}", "take the {d} branch of the split", "keep {d} at the fork",
)

# How the two axes are joined into one decision clause: {L} longitudinal, {A} lateral.
DECISION_JOINERS: tuple[str, ...] = ("{L} and {A}", "{A} and {L}", "{L} and then {A}", "{A}, then {L}")

# Every template puts the decision after a conclusion marker ("Decision:", "so", "therefore", "thus",
# "I will", "the ego should", "the best action is"), which is what the parser prefers over mentions elsewhere.
TEMPLATES_WITH_FACTORS: tuple[str, ...] = (
    "Decision: {D}. Because: {F}.", "{F}, so the ego should {D}.", "{F}. Therefore the ego will {D}.",
    "Since {F}, the ego should {D}.", "The ego should {D} because {F}.", "I will {D}, since {F}.",
    "Given that {F}, I will {D}.", "{F}; thus the ego must {D}.", "Plan: {D}. Reason: {F}.",
)
TEMPLATES_WITHOUT_FACTORS: tuple[str, ...] = (
    "Decision: {D}.", "The ego should {D}.", "I will {D}.", "Plan: {D}.", "The best action is to {D}.",
)

# Joining 1, 2 or 3 factor phrases.
FACTOR_JOINERS: dict[int, tuple[str, ...]] = {
    1: ("{0}",), 2: ("{0} and {1}", "{0}, and {1}", "{0}, while {1}"), 3: ("{0}, {1} and {2}", "{0}, {1}, and {2}"),
}

# Time qualifiers appended to a factor phrase ({t} = |observed_at| in seconds, one decimal).
TIME_PAST: tuple[str, ...] = ("", " ({t} s ago)", " (seen {t} s ago)")
TIME_NOW: tuple[str, ...] = ("", " (just now)")
TIME_FUTURE: tuple[str, ...] = (" (in {t} s)",)  # future = causal-locality defect: keep it visible in the text

# Scene descriptions per factor category, used when a CausalFactor has no text of its own. Each names the
# category by one of its parser keywords and describes the scene, never an ego action.
FACTOR_PHRASES: dict[str, tuple[str, ...]] = {
    "critical_object": (
        "the lead vehicle is braking", "a pedestrian is waiting at the curb", "a slow truck is ahead",
        "a parked car blocks part of the road", "a cyclist is riding near the edge of the road",
    ),
    "traffic_light": (
        "the traffic light ahead turned red", "the light ahead is red", "the traffic signal just turned yellow",
        "a green light is showing ahead",
    ),
    "yield_stop_control": (
        "there is a stop sign at the junction", "a yield sign controls the entry", "the stop line is close ahead",
        "the ego does not have the right of way",
    ),
    "road_event": (
        "a sharp curve is coming up", "there is a speed bump ahead", "the road narrows ahead",
        "a tight bend lies ahead",
    ),
    "lane": (
        "the current lane ends ahead", "the lane markings are dashed here", "the adjacent lane is clear",
        "the lane lines shift to one side",
    ),
    "routing_intent": (
        "the planned route leaves at the next exit", "the destination is on the other side",
        "navigation points to the next junction", "the route continues on the main road",
    ),
    "odd_constraint": (
        "the road is wet from rain", "fog limits visibility", "roadworks are set up ahead",
        "construction cones line the shoulder", "heavy snow covers the road",
    ),
}

# ----------------------------------------------------------------------------------------------------------
# Parsing: synonym patterns per decision kind. A pattern may contain the words "left"/"right"; the direction of
# a match is the last direction word inside the matched text.
# ----------------------------------------------------------------------------------------------------------

_AGENT = (
    r"(?:vehicles?|cars?|trucks?|lorr(?:y|ies)|bus(?:es)?|vans?|cyclists?|bicycles?|bikes?|motorcycles?|scooters?"
    r"|tractors?|obstacles?|lead|it|them)"
)
_DIR = r"(?:left|right)"
_TO_THE = r"(?: to the| toward the| towards the)?"
_OWN_LANE = r"(?:the|our|its|my)(?: own| current)? lane"

# Longitudinal family, in priority order (see the module docstring).
LONGITUDINAL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("stop_for_static_constraint",
     r"(?:come|comes|coming|came|brake|brakes|braking|slow|slows|slowing|slow down|slows down|slowing down"
     r"|decelerat\w*|bring\w* (?:the )?(?:ego|car|vehicle)) to a (?:complete |full |gentle |smooth |controlled "
     r"|safe )?(?:stop|halt|standstill)"),
    ("stop_for_static_constraint",
     r"(?:remain|remains|stay|stays|wait|waits|hold|holds) (?:stationary|stopped|at (?:a )?standstill)"),
    ("stop_for_static_constraint",
     r"wait(?:s|ing)? (?:at|behind) the (?:stop line|line|red light|light|signal|stop sign|sign)"),
    ("gap_searching",
     r"(?:search|searches|searching|look|looks|looking|wait|waits|waiting|watch|watches|watching|scan|scanning)"
     r" for (?:a |an |the )?(?:safe |suitable |large enough |big enough |clear |acceptable )?(?:gap|opening)"),
    ("gap_searching",
     r"find(?:s|ing)? (?:a |an )?(?:safe |suitable |large enough |big enough |acceptable )?(?:gap|opening)"),
    ("gap_searching",
     r"(?:adjust|adjusts|adjusting|match|matches|matching|modulat\w*) (?:the |its |our )?speed to (?:fit|find|match"
     r"|slot|reach|use|make) (?:into )?(?:a |an |the )?(?:\w+ )?gap"),
    ("gap_searching", r"gap search(?:ing)?"),
    ("yield", r"yield(?:s|ed|ing)?(?! sign| line)"),
    ("yield", r"(?:give|gives|giving|gave) way(?! sign| line)"),
    ("yield", r"(?:cede|cedes|give|gives|giving|grant|grants) (?:the )?right of way"),
    ("yield",
     r"let(?:s|ting)? (?:\w+ ){0,3}?(?:go first|pass first|go ahead|cross|pass|proceed|merge in|go through)\b"),
    ("yield",
     r"wait(?:s|ing)? for (?:the |a |an |that |this |any )?(?:\w+ )?(?:pedestrians?|cyclists?|vehicles?|cars?"
     r"|trucks?|bus|traffic|agents?|person|people|child|children|oncoming)"),
    ("acceleration_for_passing", r"overtak(?:e|es|ing|en)|overtook|acceleration for (?:passing|overtaking)"),
    ("acceleration_for_passing",
     r"(?:accelerat(?:e|es|ing)|speed(?:s|ing)? up)(?: briefly)? (?:to|and) (?:pass|overtake|get past|get around)"),
    ("acceleration_for_passing", r"accelerat(?:e|es|ing) (?:past|around)"),
    ("acceleration_for_passing",
     r"(?:get|gets|getting|drive|drives|driving) past (?:the |a |an )?(?:\w+ )?" + _AGENT),
    ("acceleration_for_passing", r"pass(?:es|ing)? (?:(?:the|a|an|that|this)(?: \w+)? " + _AGENT + r"|it|them)\b"),
    ("acceleration_for_passing", r"pass(?= ?(?:[.,;!?]|$))"),
    ("speed_adaptation", r"slow(?:s|ing|ed)? down|slow(?:s|ing)? (?:for|before|ahead of|gently|slightly)"),
    ("speed_adaptation",
     r"(?:reduc(?:e|es|ing|ed)|adapt|adapts|adapting|adjust|adjusts|adjusting|moderate|moderates|moderating"
     r"|lower|lowers|lowering|cut|cuts|cutting|drop|drops|dropping) (?:the |its |our |my )?speed"),
    ("speed_adaptation", r"decelerat\w*|eas(?:e|es|ing) off|lift(?:s|ing)? off|speed adaptation"),
    ("speed_adaptation",
     r"(?:drive|drives|driving|go|goes|going|proceed|proceeds|proceeding|(?:take|takes|taking) the (?:curve|bend|bump))"
     r"(?: more)? (?:slowly|slower|cautiously|carefully)"),
    ("speed_adaptation", r"brak(?:e|es|ing) (?:gently|lightly|slightly|moderately|early|softly)"),
    ("lead_obstacle_following",
     r"follow(?:s|ing|ed)? (?:the |a |that |this )?(?:\w+ )?(?:lead|leading|vehicle|car|truck|bus|van|traffic"
     r"|cyclist|queue)\b"),
    ("lead_obstacle_following",
     r"(?:keep|keeps|keeping|maintain|maintains|maintaining|hold|holds|holding|leave|leaves|leaving)(?: a| the| its"
     r"| our)?(?: safe| safer| large| larger| sufficient| comfortable| constant| steady| proper)*(?: following)?"
     r" (?:distance|gap|headway|spacing|time gap)"),
    ("lead_obstacle_following",
     r"(?:stay|stays|staying|remain|remains|remaining|keep|keeps|keeping|queue|queues|queueing|queuing)"
     r"(?: safely)? behind"),
    ("lead_obstacle_following",
     r"car following|lead obstacle following|match(?:es|ing)? the speed of the (?:lead|leading|vehicle|car|truck"
     r"|traffic)"),
    ("set_speed_tracking",
     r"(?:maintain|maintains|maintaining|keep|keeps|keeping|hold|holds|holding|track|tracks|tracking|resume"
     r"|resumes|resuming|regain|regains|regaining|return to|returns to|returning to|get back to|continue at"
     r"|continues at|drive at|drives at|go at|travel at|stay at)(?: the| a| its| our| my)?(?: (?:current|set"
     r"|steady|constant|cruising|cruise|target|normal|previous|desired|same|legal|posted|safe)){0,2}"
     r" (?:speed limit|speed|velocity|pace)"),
    ("set_speed_tracking",
     r"set speed tracking|cruis(?:e|es|ing)|speed(?:s|ing)? up|accelerat(?:e|es|ing)|proceed(?:s|ing|ed)?"
     r"|carry on|keep (?:going|moving|driving)"),
    ("stop_for_static_constraint",
     r"(?<!bus )(?<!non )(?:stop|stops|stopping|stopped)(?! (?:sign|signs|line|lines|bar|bars|light|lights|and go"
     r"|vehicles?|cars?|trucks?|bus|traffic)\b)"),
    ("stop_for_static_constraint", r"halt(?:s|ed|ing)?"),
)

# Lateral family, in priority order: abort, pull-over and lane change before the nudges and turns that share
# their verbs ("move", "pull", "make a left ...").
LATERAL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("lateral_abort",
     r"(?:abort|aborts|aborting|cancel|cancels|cancelling|canceling|abandon|abandons|abandoning|call off)"
     r" (?:the |this |our |my )?(?:\w+ ){0,2}?(?:lane change|merge|nudge|turn|overtake|manoeuvre|maneuver|move)"),
    ("lateral_abort",
     r"(?:return|returns|returning|go back|goes back|going back|steer back|steers back|move back|moves back|get back"
     r"|swerve back|head back)(?: in)? ?to (?:the |our |its |my )?(?:original|previous|own|initial|old|starting)"
     r" lane"),
    ("lateral_abort", r"back(?:s|ing)? out of the (?:lane change|merge|manoeuvre|maneuver)|lateral abort"),
    ("pull_over",
     r"pull(?:s|ing|ed)? (?:over|off)(?: (?:to|onto|on) the (?:side of the road|shoulder|curb|kerb|roadside|verge"
     r"|left|right))?"),
    ("pull_over",
     r"(?:pull\w*|move|moves|moving|steer\w*|go|goes|going)(?: over)? (?:to|onto|into) the (?:shoulder|curb|kerb"
     r"|roadside|verge|side of the road)"),
    ("pull_over", r"park(?:s|ing)? (?:on|at) the (?:shoulder|curb|kerb|roadside|verge|side of the road)"),
    ("lane_change",
     r"chang(?:e|es|ing) lanes?(?: to the| to| toward the| towards the| into the)? " + _DIR + r"(?: lane)?"),
    ("lane_change",
     r"chang(?:e|es|ing) (?:to|into) the " + _DIR + r"(?: hand)?(?: adjacent| neighbouring| neighboring| next)? lane"),
    ("lane_change", _DIR + r" lane change|lane change(?: to the| to| toward the| towards the| into the)? " + _DIR),
    ("lane_change",
     r"(?:move|moves|moving|shift|shifts|shifting|switch|switches|switching|go|goes|going|cut|cuts|cutting|get"
     r"|gets|getting)(?: over)?(?: one lane)? (?:into|to|onto) the " + _DIR
     + r"(?: hand)?(?: adjacent| neighbouring| neighboring| next)? lane"),
    ("lane_change",
     r"(?:move|moves|moving|shift|shifts|shifting|switch|switches|switching|get|gets|getting) over(?: one lane)?"
     + _TO_THE + " " + _DIR),
    ("lane_change", r"switch(?:es|ing)? lanes?" + _TO_THE + " " + _DIR),
    ("lane_change", r"chang(?:e|es|ing) lanes?|lane change|switch(?:es|ing)? lanes"),  # no direction: incomplete
    ("out_of_lane_nudge",
     r"(?:nudg|shift|mov|edg|swerv|veer|steer)\w*(?: slightly| briefly| partly| partially| a bit)?" + _TO_THE + " "
     + _DIR + r"(?: slightly| briefly| partly| partially| a bit)? (?:out of|across|over|beyond) (?:the|our|its|my)"
     r"(?: own| current)? lane"),
    ("out_of_lane_nudge",
     _DIR + r" out of lane nudge|out of lane nudge" + _TO_THE + " " + _DIR + r"|out of lane nudge"),
    ("in_lane_nudge",
     r"nudg(?:e|es|ing|ed)(?: slightly| a bit| gently)?" + _TO_THE + " " + _DIR
     + r"(?: (?:within|inside|in) " + _OWN_LANE + ")?"),
    ("in_lane_nudge",
     r"(?:move|shift|edge|bias|offset|drift|steer)(?:s|es|ing|ed)?(?: slightly| a bit| gently)?" + _TO_THE + " "
     + _DIR + r" (?:within|inside|in) " + _OWN_LANE),
    ("in_lane_nudge",
     r"(?:move|shift|edge|bias|steer)(?:s|es|ing|ed)? (?:slightly|a bit|gently)" + _TO_THE + " " + _DIR),
    ("in_lane_nudge", r"(?:hug|hugs|hugging|favou?r|favou?rs|keep to) the " + _DIR + r" (?:side|edge) of " + _OWN_LANE),
    ("in_lane_nudge",
     _DIR + r" in lane nudge|in lane nudge" + _TO_THE + " " + _DIR + r"|in lane nudge|nudg(?:e|es|ing|ed)"),
    ("turn", r"turn(?:s|ing|ed)?" + _TO_THE + " " + _DIR),
    ("turn", r"(?:take|takes|taking|make|makes|making|hang|hangs) a " + _DIR + r"(?! lane)(?! hand lane)"),
    ("turn",
     _DIR + r"(?: hand)? turn(?!(?: only)? (?:lane|lanes|signal|signals|arrow|arrows|light|lights|indicator|bay"
     r"|pocket))"),
    ("merge_split",
     r"(?<!lanes )(?<!lane )(?<!roads )(?<!road )merg(?:e|es|ing)(?: " + _DIR + r"| (?:to|into|onto|toward|towards)"
     r" the " + _DIR + r"(?: lane)?)?(?! (?:traffic|vehicles?|cars?|trucks?|lanes?|point|area|zone|ramp|sign)\b)"),
    ("merge_split", r"(?:take|takes|taking|follow|follows|following) the(?: " + _DIR + r")? (?:split|fork|branch)"),
    ("merge_split",
     r"(?:keep|keeps|keeping|bear|bears|bearing|stay|stays|staying)(?: to the)? " + _DIR
     + r" (?:at|through) the (?:split|fork|junction|bifurcation)"),
    ("merge_split", r"split(?:s|ting)? off|diverg(?:e|es|ing)"),
    ("lane_keeping",
     r"keep(?:s|ing)?(?: to)?(?: the| its| our| my| in the| in)?(?: current| same| own| present| ego| left| right"
     r"| middle| centre| center)? lane(?! change| changes| markings?| lines?| ends?| ending| boundary| closure)"),
    ("lane_keeping",
     r"(?:stay|stays|staying|remain|remains|remaining|continue|continues|continuing)(?: driving)? in (?:the |its "
     r"|our |my )?(?:current |same |own |present |ego |left |right |middle |centre |center )?lane"),
    ("lane_keeping",
     r"lane keeping|hold(?:s|ing)? (?:the |its |our |my )?(?:current )?lane|follow(?:s|ing)? the lane\b"
     r"|(?:go|goes|going|drive|drives|driving|continue|continues|continuing|keep|keeps|keeping|proceed"
     r"|proceeds|proceeding) straight|stay(?:s|ing)? (?:centred|centered)"),
)

# Factor categories by keyword (one alternation per category).
FACTOR_PATTERNS: dict[str, str] = {
    "critical_object": (
        r"(?<!ego )(?<!our )(?<!my )(?:lead(?:ing)? (?:vehicle|car|truck)|vehicles?|cars?|trucks?|lorr(?:y|ies)"
        r"|bus(?:es)?|vans?|pedestrians?|cyclists?|bicycles?|bikes?|motorcycles?|motorcyclists?|scooters?"
        r"|child(?:ren)?|animals?|deer|dogs?|obstacles?|debris|parked|tractors?|trams?|jaywalkers?)"
    ),
    "traffic_light": (
        r"traffic (?:lights?|signals?)|(?:red|green|yellow|amber|flashing) (?:lights?|signals?|arrows?)"
        r"|(?:lights?|signals?)(?: \w+)? (?:turned|turns|is|are|was|changed|changes|just turned|has turned)(?: to)?"
        r" (?:red|green|yellow|amber)"
    ),
    "yield_stop_control": (
        r"stop (?:signs?|lines?|bars?)|yield (?:signs?|lines?)|give way (?:signs?|lines?)|right of way|crosswalks?"
        r"|(?:pedestrian|zebra|level|railway|railroad) crossings?|(?:all|four) way stop|priority (?:road|sign|rule)"
    ),
    "road_event": (
        r"curves?|bends?|(?:speed )?bumps?|speed humps?|potholes?|narrow(?:s|ing|ed)?|crest|hill|steep|corners?"
        r"|roundabouts?|uneven|gravel"
    ),
    "lane": (
        r"lanes? (?:ends?|ending|drops?|markings?|lines?|boundary|boundaries|closes|merges?|reduction)"
        r"|(?:solid|dashed|double|broken) (?:white |yellow )?lines?|(?:turn|exit|merge|merging|bus|bike) (?:only )?lane"
        r"|(?:adjacent|target|neighbouring|neighboring|next|left|right|current|ego|other) lane (?:is|are) (?:free"
        r"|clear|empty|open|blocked|occupied|busy)|gap in the (?:\w+ )?lane"
    ),
    "routing_intent": (
        r"routes?|routing|exits?|destination|navigation|navigator|planned (?:path|turn)|itinerary|off ramp|on ramp"
        r"|slip road|heading (?:to|towards?)|next turn|mission"
    ),
    "odd_constraint": (
        r"rain(?:y|ing|fall)?|wet|fog(?:gy)?|mist(?:y)?|snow(?:y|ing)?|ice|icy|sleet|hail|glare|low sun"
        r"|(?:low|poor|reduced) visibility|darkness|dark|night|road ?works?|construction|work ?zone|cones?"
        r"|lane closure|closed lane|weather|detour|flood(?:ed|ing)?"
    ),
}

# Structure words (one scanner family, labels "open" / "close" / "clause"). A conclusion marker opens a
# "conclusion position"; it closes at the end of the sentence, at ";", at a reason marker ("because", "since",
# "given") or at any "Word:" heading (the ":" itself is handled with the punctuation in rlpost.domain.coc).
# Markers start at their first distinctive word ("ego should", not "the ego should") so that the frequent word
# "the" triggers nothing.
CONCLUSION_MARKERS = (
    r"(?:decision|plan|action|conclusion|answer|behaviou?r)s? ?:|decision is(?: to)?"
    r"|(?:ego|ego vehicle|ego car|i|we)(?: will| should| must| shall| needs? to| has to| have to"
    r"| decides? to| is going to| am going to| are going to| plans? to| can| would|'ll| 'll)"
    r"|so(?! far| that)|therefore|thus|hence|consequently|as a result|accordingly"
    r"|(?:(?:best|right|safe|correct|appropriate|only) )?(?:action|decision|plan|choice|response|move)"
    r" (?:is|will be)(?: to)?"
)
REASON_MARKERS = r"because|since|given|due to|owing to"
# Clause boundaries (beyond punctuation) for the negation and "who is acting" checks.
CLAUSE_WORDS = r"and|but|then|while|although|though|whereas|or|before|after|until|when|once|if|unless|whereby"
STRUCTURE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("open", rf"(?:{CONCLUSION_MARKERS})(?:(?<=:)|\b)"),
    ("close", rf"(?:{REASON_MARKERS})\b"),
    ("clause", rf"(?:{CLAUSE_WORDS})\b"),
)
NEGATORS = (
    r"not|never|without|avoid|avoids|avoiding|cannot|no need to|no reason to|no longer|instead of|rather than"
    r"|refrain from|neither|nor"
)
# Words that make another road user the subject of a clause (then its "stop" is not the ego's decision).
OTHER_SUBJECTS = (
    r"vehicles?|cars?|trucks?|lorr(?:y|ies)|bus(?:es)?|vans?|cyclists?|bicycles?|bikes?|motorcycles?|motorcyclists?"
    r"|scooters?|pedestrians?|persons?|people|child(?:ren)?|drivers?|agents?|lead|traffic(?! lights?| signals?"
    r"| control)|they|he|she|trams?|tractors?|others"
)
EGO_SUBJECTS = r"ego(?: vehicle| car)?|i|we|(?:our|my) (?:vehicle|car)"
# A road user after a preposition is an object ("with traffic ahead keep distance"), not the acting subject.
OBJECT_PREFIX = (
    r"(?:with|behind|for|to|of|from|near|past|around|beside|by|at|on|in|into|onto|toward|towards|like|than|about)"
    r" (?:(?:the|a|an|that|this|some|any|its|our|my) )?(?:\w+ )?"
)

_TRANSLATE = str.maketrans(
    {"’": "'", "‘": "'", "`": "'", "´": "'", "“": '"', "”": '"', "-": " ", "‐": " ", "‑": " ", "_": " ",
     "/": " ", "–": ",", "—": ",", "\u00a0": " "}
)


def normalise(text: str) -> str:
    """Lowercase, unify quotes/dashes, hyphens/underscores/slashes to spaces, single spaces, stripped: the form
    every pattern here is written for."""
    return " ".join(text.lower().translate(_TRANSLATE).split())


def vocabulary() -> tuple[str, ...]:
    """Sorted lowercase words of every composition table (placeholders, numbers and punctuation excluded)."""
    tables = [
        TEMPLATES_WITH_FACTORS, TEMPLATES_WITHOUT_FACTORS, DECISION_JOINERS, MERGE_SPLIT_DIRECTED_PHRASES, TIME_PAST,
        TIME_NOW, TIME_FUTURE, *LONGITUDINAL_PHRASES.values(), *LATERAL_PHRASES.values(), *FACTOR_PHRASES.values(),
        *FACTOR_JOINERS.values(), ("left", "right"),
    ]
    words = {w for table in tables for s in table for w in re.findall(r"[a-z]+", re.sub(r"\{[^}]*\}", " ", s.lower()))}
    return tuple(sorted(words))
