"""Required literals of a regex: strings one of which every match contains.

`required_literals(pattern)` reads the regex's syntax tree (Python's own parser, on the
translation pcre.py makes) and returns a set of byte strings, lowercased, such that any value
the regex matches contains one of them (compared lowercased); or None when it finds no such
set (`^.*$`, `\\W{4}`). It is sound by construction, never tight: a sequence contributes the
best of its elements' requirements, an alternation the union of its branches' (none if one
branch has none), a repetition its body's only when it repeats at least once; anything else
(classes, anchors, lookarounds, backreferences) requires nothing. PatternSet uses it as the
Aho-Corasick prefilter of the brief's third option; tests check it never rejects a match.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from outwork.waf.pcre import translate

Factor = frozenset[bytes]
REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def _better(first: Factor | None, second: Factor | None) -> Factor | None:
    """The more selective of two requirements: longer shortest string, then fewer strings."""
    if first is None:
        return second
    if second is None:
        return first

    def rank(factor: Factor) -> tuple[int, int]:
        return (min(len(literal) for literal in factor), -len(factor))

    return first if rank(first) >= rank(second) else second


def _sequence(items: Any) -> Factor | None:
    best: Factor | None = None
    run = bytearray()
    for op, argument in items:
        if op is sre.LITERAL:
            run.append(argument)
            continue
        if run:
            best = _better(best, frozenset({bytes(run)}))
            run = bytearray()
        best = _better(best, _element(op, argument))
    if run:
        best = _better(best, frozenset({bytes(run)}))
    return best


def _element(op: Any, argument: Any) -> Factor | None:
    if op is sre.SUBPATTERN:
        return _sequence(argument[3])
    if op is sre.ATOMIC_GROUP:
        return _sequence(argument)
    if op in REPEATS:
        low, _, body = argument
        return _sequence(body) if low >= 1 else None
    if op is sre.BRANCH:
        union: set[bytes] = set()
        for branch in argument[1]:
            factor = _sequence(branch)
            if factor is None:
                return None
            union |= factor
        return frozenset(union)
    if op is sre.IN:
        return _class(argument)
    return None  # any byte, anchors, lookarounds, backreferences: nothing required


MAX_CLASS_BYTES = 16


def _class(members: Any) -> Factor | None:
    """A small class of plain bytes (`[\\n\\r]`, `[<>]`) requires one of them."""
    found: set[bytes] = set()
    for op, argument in members:
        if op is sre.LITERAL:
            found.add(bytes((argument,)))
        elif op is sre.RANGE and argument[1] - argument[0] < MAX_CLASS_BYTES:
            found.update(bytes((byte,)) for byte in range(argument[0], argument[1] + 1))
        else:  # NEGATE, categories (\\s, \\w), large ranges
            return None
        if len(found) > MAX_CLASS_BYTES:
            return None
    return frozenset(found) if found else None


def required_literals(pattern: str) -> Factor | None:
    """Lowercased strings one of which every match of `pattern` contains, or None."""
    try:
        tree = sre_parse.parse(translate(pattern).python.encode("latin-1"), re.DOTALL)
    except (re.error, ValueError, RecursionError, UnicodeEncodeError):
        return None
    factor = _sequence(tree.data)
    if factor is None or any(not literal for literal in factor):
        return None
    return frozenset(literal.lower() for literal in factor)
