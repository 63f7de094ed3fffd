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


# An "exact set" is every string an element can match (a literal, a small class, an
# alternation of such): adjacent exact sets multiply into longer required strings
# ("(?:a|b)c" requires "ac" or "bc"), within these bounds.
MAX_EXACT_STRINGS = 64
MAX_EXACT_LENGTH = 12


def _product(first: Factor, second: Factor) -> Factor | None:
    if len(first) * len(second) > MAX_EXACT_STRINGS:
        return None
    joined = frozenset(a + b for a in first for b in second)
    if max(len(literal) for literal in joined) > MAX_EXACT_LENGTH:
        return None
    return joined


def _sequence(items: Any) -> Factor | None:
    return _sequence_info(items)[1]


def _sequence_info(items: Any) -> tuple[Factor | None, Factor | None]:
    """(exact set of the whole sequence or None, best required factor or None)."""
    best: Factor | None = None
    run: Factor | None = frozenset({b""})  # exact strings of the current run of elements
    whole_exact = True
    for op, argument in items:
        exact, required = _element_info(op, argument)
        if exact is not None and run is not None:
            joined = _product(run, exact)
            if joined is not None:
                run = joined
                continue
        # The run ends here: what it spelled is required; start again from this element.
        whole_exact = False
        if run is not None and all(run):
            best = _better(best, run)
        best = _better(best, required)
        run = exact if exact is not None else frozenset({b""})
    if run is not None and all(run):
        best = _better(best, run)
    return (run if whole_exact else None), best


def _element_info(op: Any, argument: Any) -> tuple[Factor | None, Factor | None]:
    if op is sre.LITERAL:
        literal = frozenset({bytes((argument,))})
        return literal, literal
    if op is sre.SUBPATTERN:
        return _sequence_info(argument[3])
    if op is sre.IN:
        members = _class(argument)
        return members, members
    if op is sre.BRANCH:
        exacts: set[bytes] = set()
        union: set[bytes] = set()
        all_exact = True
        for branch in argument[1]:
            exact, required = _sequence_info(branch)
            factor = exact if exact is not None and all(exact) else required
            if factor is None:
                return None, None
            union |= factor
            if exact is None:
                all_exact = False
            else:
                exacts |= exact
        exact_set = frozenset(exacts) if all_exact and len(exacts) <= MAX_EXACT_STRINGS else None
        return exact_set, frozenset(union)
    return None, _element(op, argument)


def _element(op: Any, argument: Any) -> Factor | None:
    if op is sre.ATOMIC_GROUP:
        return _as_factor(*_sequence_info(argument))
    if op in REPEATS:
        low, _, body = argument
        return _as_factor(*_sequence_info(body)) if low >= 1 else None
    return None  # any byte, anchors, lookarounds, backreferences: nothing required


def _as_factor(exact: Factor | None, required: Factor | None) -> Factor | None:
    return _better(exact if exact is not None and all(exact) else None, required)


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
