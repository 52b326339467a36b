"""Fast phrase matching for the CoC parser: exactly the matches of one ``\b(?:alt1|alt2|...)`` finditer per
pattern family, found by trying at each word only the alternatives that can begin with its first letters."""

from __future__ import annotations

import re
from collections.abc import Sequence
from re import _constants as _C  # CPython's regex parse tree, read by first_keys only
from re import _parser  # (likewise)

# ----------------------------------------------------------------------------------------------------------
# Matching the tables fast. Python's re tries every alternative of a big alternation at every word, which
# dominated a parse. `PhraseScanner` gives exactly the matches of one ``\b(?:alt1|alt2|...)`` finditer per family
# (same order of preference, same non-overlap) but at each word only tries the alternatives that can begin
# with the word's first four letters, read off each pattern once at import.
# ----------------------------------------------------------------------------------------------------------

KEY_LEN = 4
_WORD_KEY_RE = re.compile(rf"\b[a-z]{{1,{KEY_LEN}}}")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


class _Unindexable(Exception):
    pass


def first_keys(pattern: str, k: int = KEY_LEN) -> frozenset[str] | None:
    """The possible first ≤k lowercase letters of a match of ``pattern`` (shorter when the first word is
    shorter); None when they cannot be read off (e.g. the pattern may start with ``\\w``). Reads CPython's
    regex parse tree (``re._parser``), a superset analysis: lookarounds are ignored."""
    done: set[str] = set()

    def chars(items) -> set[str]:
        out: set[str] = set()
        for op, av in items:
            if op is _C.LITERAL:
                out.add(chr(av))
            elif op is _C.RANGE and av[1] - av[0] <= 128:
                out.update(map(chr, range(av[0], av[1] + 1)))
            elif op is _C.CATEGORY and av is _C.CATEGORY_WORD:
                out.update(_LETTERS)
                out.add("0")  # stands for any non-ascii-letter word character: the key ends there
            else:  # NEGATE, other categories: unbounded
                raise _Unindexable
        return out

    def step(states: set[str], cs: set[str]) -> set[str]:
        if "" in states and len(cs) > 64:  # a pattern starting with \w: no useful key
            raise _Unindexable
        new: set[str] = set()
        for s in states:
            for c in cs:
                if "a" <= c <= "z":
                    (done if len(s) + 1 == k else new).add(s + c)
                elif s:
                    done.add(s)  # the first word ended early ("go ")
                else:
                    raise _Unindexable
        return new

    def walk(items, states: set[str]) -> set[str]:
        for op, av in items:
            if not states:
                break
            if op in (_C.AT, _C.ASSERT, _C.ASSERT_NOT):
                continue
            if op is _C.LITERAL:
                states = step(states, {chr(av)})
            elif op is _C.IN:
                states = step(states, chars(av))
            elif op is _C.SUBPATTERN:
                states = walk(av[-1], states)
            elif op is _C.BRANCH:
                states = set().union(*(walk(alt, set(states)) for alt in av[1]))
            elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):
                lo, hi, item = av
                reached = set(states) if lo == 0 else set()
                cur = states
                for i in range(1, min(hi, lo + k + 1) + 1):  # k more rounds close every state
                    cur = walk(item, cur)
                    if i >= lo:
                        reached |= cur
                    if not cur:
                        break
                states = reached
            else:
                raise _Unindexable
        return states

    try:
        tail = walk(_parser.parse(pattern).data, {""})
    except (_Unindexable, re.error):
        return None
    if "" in tail:
        return None
    return frozenset(done | tail)


class PhraseScanner:
    """Scan normalised text for several families of ordered ``(label, pattern)`` alternatives at once.

    ``scan(t)`` returns, per family (in the order given), the list of ``(start, end, label)`` that
    ``re.finditer(r"\\b(?:(alt1)|(alt2)|...)", t)`` would give. Raises ValueError at construction for a
    pattern whose first letters cannot be read off.
    """

    def __init__(self, families: Sequence[Sequence[tuple[object, str]]]):
        self._n = len(families)
        per_key: dict[str, list[tuple[int, re.Pattern, dict[str, object]]]] = {}
        for fi, entries in enumerate(families):
            keys = [first_keys(pattern) for _, pattern in entries]
            for (_, pattern), ks in zip(entries, keys):
                if ks is None:
                    raise ValueError(f"PhraseScanner: cannot index {pattern!r} by its first letters")
            for key in sorted(set().union(*keys)):
                idx = [i for i, ks in enumerate(keys) if key in ks]
                body = "|".join(f"(?P<g{i}>{entries[i][1]})" for i in idx)
                labels = {f"g{i}": entries[i][0] for i in idx}
                per_key.setdefault(key, []).append((fi, re.compile(f"(?:{body})"), labels))
        self._by_key = {key: tuple(v) for key, v in per_key.items()}

    def scan(self, t: str) -> list[list[tuple[int, int, object]]]:
        """Matches per family in ``t``, which must be normalised (single spaces, see rlpost.domain.coc)."""
        out: list[list[tuple[int, int, object]]] = [[] for _ in range(self._n)]
        ends = [0] * self._n
        by_key = self._by_key
        pos = 0
        # Splitting on spaces is several times faster than a finditer over word starts; a token whose first letters hold
        # punctuation, digits or non-ascii letters ("(stop", "so,", "i'll", "movéd") takes the slow path over its
        # own word starts.
        for token in t.split(" "):
            key = token[:KEY_LEN]
            if key.isalpha() and key.isascii():
                entry = by_key.get(key)
                if entry is not None:
                    for fi, rx, labels in entry:  # inlined: this loop is the parser's hot path
                        if pos >= ends[fi]:
                            m = rx.match(t, pos)
                            if m is not None:
                                out[fi].append((pos, m.end(), labels[m.lastgroup]))
                                ends[fi] = m.end()
            else:
                for km in _WORD_KEY_RE.finditer(token):
                    entry = by_key.get(km.group())
                    if entry is not None:
                        self._try(t, pos + km.start(), entry, out, ends)
            pos += len(token) + 1
        return out

    @staticmethod
    def _try(t: str, pos: int, entry, out, ends) -> None:
        for fi, rx, labels in entry:
            if pos >= ends[fi]:
                m = rx.match(t, pos)
                if m is not None:
                    out[fi].append((pos, m.end(), labels[m.lastgroup]))
                    ends[fi] = m.end()
