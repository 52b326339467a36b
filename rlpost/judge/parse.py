"""Reading a judge's answer: the strict grade format and the reasoning format.

``grade`` format (:func:`parse_grade`): the whole answer is the grade (the project's judge constrained to the grade
tokens, or an instruction model told to answer with one digit).

``reasoning`` format (:func:`parse_reasoning`): what a reasoning model writes: its reasoning first (a closed
``<think>…</think>`` block and/or prose), the grade at the end. The final grade is, in this order of preference,
the last ``\\boxed{N}``, the last ``Grade: N`` (also ``grade = N``, ``**Grade:** N``, ``Grade: N/5``), else the last
bare integer of the answer (a number that is not part of a decimal or a word). The reasoning is kept as the
rationale. An unclosed ``<think>`` (the answer was cut off by ``max_tokens``) or an answer without a grade is
unparseable; a grade outside 0..5 too.
"""

from __future__ import annotations

import re
from typing import Any

from rlpost.rewards.critic_backends import MAX_GRADE

_THINK_RE = re.compile(r"^\s*<think>.*?</think>", re.S | re.I)
_GRADE_RE = re.compile(r"(?:grade\s*[:=]?\s*)?(\*\*|\*)?([0-9]+)\1?(?:\s*/\s*5)?\s*\.?", re.I)


def parse_grade(text: Any) -> tuple[int | None, str]:
    """``(grade, "")`` when the whole output is one integer 0–5, else ``(None, why)``.

    Accepted forms (surrounding whitespace ignored): ``4``, ``4.``, ``Grade: 4``, ``grade 4/5``, ``**4**``, and any
    of these after a closed leading ``<think>…</think>`` block. Everything else is malformed: empty output, other
    words ("The grade is 4", "four"), two numbers ("3 or 4", "3\\n4"), decimals, negatives, numbers above 5.
    """
    if not isinstance(text, str):
        return None, f"judge output is {type(text).__name__}, not text"
    t = _THINK_RE.sub("", text, count=1).strip()
    if not t:
        return None, ("empty judge output" if "<think>" not in text.lower()
                      else "judge output has no answer after its reasoning")
    if "<think>" in t.lower():
        return None, "judge reasoning (<think>) not closed"
    m = _GRADE_RE.fullmatch(t)
    if m is None:
        return None, f"judge output is not a single grade: {t[:60]!r}"
    value = int(m.group(2))
    if not 0 <= value <= MAX_GRADE or len(m.group(2)) > 1:
        return None, f"judge grade {m.group(2)} outside 0..{MAX_GRADE}"
    return value, ""


_THINK_BLOCK_RE = re.compile(r"<think>(.*?)</think>", re.S | re.I)
_BOXED_RE = re.compile(r"\\boxed\{\s*(-?[0-9]+(?:\.[0-9]+)?)\s*(?:/\s*5\s*)?\}")
_GRADE_MARK_RE = re.compile(r"(?:\*\*|\*)?\bgrade\b\s*(?:\*\*|\*)?\s*[:=]?\s*"
                            r"(?:\*\*|\*)?\s*(-?[0-9]+(?:\.[0-9]+)?)(?![0-9])", re.I)
# A bare integer (optionally "N/5"): not inside a word, a decimal ("F1 0.50") or a fraction's denominator.
_BARE_RE = re.compile(r"(?<![\w.\-/])(-?[0-9]+)(?:\s*(?:/|out of)\s*5)?(?![\w/]|\.[0-9])")


def parse_reasoning(text: Any, *, cut_off: bool = False) -> tuple[int | None, str, str]:
    """``(grade, why, rationale)`` of a reasoning-format answer; grade None (unparseable) with ``why`` when no
    final grade can be read. ``cut_off``: the server stopped at ``max_tokens`` (named in ``why``)."""
    if not isinstance(text, str):
        return None, f"judge output is {type(text).__name__}, not text", ""
    lower = text.lower()
    if lower.count("<think>") > lower.count("</think>"):
        why = "judge reasoning (<think>) not closed" + (" (cut off at max_tokens)" if cut_off else "")
        return None, why, " ".join(text.split())
    thoughts = " ".join(" ".join(m.split()) for m in _THINK_BLOCK_RE.findall(text))
    answer = _THINK_BLOCK_RE.sub(" ", text)
    found = None
    for pattern in (_BOXED_RE, _GRADE_MARK_RE, _BARE_RE):
        matches = list(pattern.finditer(answer))
        if matches:
            found = matches[-1]
            break
    if found is None:
        why = "judge answer has no final grade" + (" (cut off at max_tokens)" if cut_off else "")
        return None, why, " ".join((thoughts + " " + answer).split())
    rationale = " ".join((thoughts + " " + answer[:found.start()]).split())
    raw = found.group(1)
    if not re.fullmatch(r"[0-9]", raw) or int(raw) > MAX_GRADE:
        return None, f"judge grade {raw} outside 0..{MAX_GRADE}", rationale
    return int(raw), "", rationale
