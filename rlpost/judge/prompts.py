"""The rubric prompts for judges that read instructions (a foreign model behind an endpoint, or an instruction model
served in-process without ``judge.json``): docs/design.md §5.1's rubric, in the grade or the reasoning answer format."""

from __future__ import annotations

from typing import Any

RUBRIC_BODY = """\
You grade the reasoning of an autonomous-driving policy. Compare the CANDIDATE chain-of-causation trace with the \
REFERENCE (ground-truth) trace of the same driving scene: the driving decision on each axis (longitudinal: \
set-speed tracking, lead-obstacle following, speed adaptation, gap searching, acceleration for passing, yield, \
stop for static constraints; lateral: lane keeping, merge/split, out-of-lane nudge, in-lane nudge, lane change, \
pull-over, turn, lateral-manoeuvre abort; with left/right where it applies) and the causal factors it cites \
(critical objects, traffic lights, yield/stop controls, road events, lanes, routing intent, operating-domain \
constraints). Grade the text only, on an integer scale:
5 = behaviour and causal reasoning fully consistent with the reference;
4 = behaviour correct, reasoning mostly consistent;
3 = behaviour roughly correct, reasoning incomplete or slightly wrong;
2 = behaviour partly wrong, or reasoning largely inconsistent;
1 = behaviour wrong or contradicts the reference;
0 = unrelated or opposite.
"""
RUBRIC_INSTRUCTIONS = RUBRIC_BODY + "Answer with the grade as a single digit (0-5) and nothing else."
REASONING_INSTRUCTIONS = (RUBRIC_BODY + "First explain briefly how the two traces compare, then end your answer "
                          "with a last line of the form 'Grade: N' (N a digit 0-5).")
RUBRIC_USER = "REFERENCE: {reference}\nCANDIDATE: {candidate}\nGrade:"
REASONING_USER = "REFERENCE: {reference}\nCANDIDATE: {candidate}\n"


def clean(text: Any) -> str:
    return " ".join(text.split()) if isinstance(text, str) else ""


def rubric_prompt(reference: str, candidate: str, reasoning: bool = False) -> str:
    """The full-rubric text prompt (completions endpoint, or an instruction model without ``judge.json``)."""
    if reasoning:
        return REASONING_INSTRUCTIONS + "\n\n" + REASONING_USER.format(reference=clean(reference),
                                                                       candidate=clean(candidate))
    return RUBRIC_INSTRUCTIONS + "\n\n" + RUBRIC_USER.format(reference=clean(reference), candidate=clean(candidate))
