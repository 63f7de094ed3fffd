"""The incremental JSON checker: its verdict on a document is the same however the document is
cut into chunks; documents within the limits pass, one over any limit is refused naming that
limit; and on anything at all it says "valid" exactly when a strict reference parser does
(Python's json on strictly decoded UTF-8, without NaN or Infinity), or refuses, never raises
anything else."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

import pytest
import regex
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from outwork.filters.json_limits import (
    RUNS_ENGINE,
    JsonChecker,
    JsonLimits,
    JsonViolation,
    _Runs,
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
BIG = JsonLimits(
    max_depth=10_000, max_keys=10**6, max_string=10**6, max_array=10**6, max_number=4000
)


@dataclass
class Stats:
    depth: int = 0
    keys: int = 0
    array: int = 0
    string: int = 0
    number: int = 0


def stats(value: Any, depth: int = 0, into: Stats | None = None) -> Stats:
    """What the limits measure in `value`, computed the plain way."""
    s = into if into is not None else Stats()
    if isinstance(value, dict):
        s.depth = max(s.depth, depth + 1)
        s.keys = max(s.keys, len(value))
        for key, item in value.items():
            s.string = max(s.string, len(key.encode()))
            stats(item, depth + 1, s)
    elif isinstance(value, list):
        s.depth = max(s.depth, depth + 1)
        s.array = max(s.array, len(value))
        for item in value:
            stats(item, depth + 1, s)
    elif isinstance(value, str):
        s.string = max(s.string, len(value.encode()))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        s.number = max(s.number, len(json.dumps(value)))
    return s


def verdict(limits: JsonLimits, pieces: list[bytes]) -> str:
    """ "ok", or the limit a refusal names."""
    checker = JsonChecker(limits)
    try:
        for piece in pieces:
            checker.feed(piece)
        checker.finish()
    except JsonViolation as exc:
        return exc.limit
    return "ok"


def cut(doc: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(doc), *(p % (len(doc) + 1) for p in points)})
    return [doc[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def dump(value: Any, style: int) -> bytes:
    if style == 0:
        return json.dumps(value).encode()
    if style == 1:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return json.dumps(value, ensure_ascii=False, indent=style - 1).encode()


def exact(s: Stats, roomy: bool = False) -> JsonLimits:
    """Limits the document just meets. `roomy`: strings and numbers far from theirs, so the
    checker's fast runs (matched within a window of `max_string` bytes) take long stretches."""
    return JsonLimits(
        max_depth=max(1, s.depth),
        max_keys=max(1, s.keys),
        max_string=10**6 if roomy else max(1, s.string),
        max_array=max(1, s.array),
        max_number=4000 if roomy else max(1, s.number),
    )


@settings(max_examples=300, deadline=None)
@given(VALUES, st.integers(0, 4), st.lists(st.integers(0, 10**6), max_size=8), st.booleans())
def test_a_document_within_its_limits_passes_however_it_is_cut(value, style, points, roomy):
    doc = dump(value, style)
    limits = exact(stats(value), roomy)
    assert verdict(limits, [doc]) == "ok"
    assert verdict(limits, cut(doc, points)) == "ok"


LIMITS = ("max_depth", "max_keys", "max_string", "max_array", "max_number")


@settings(max_examples=150, deadline=None)
@given(
    VALUES,
    st.integers(0, 4),
    st.lists(st.integers(0, 10**6), max_size=8),
    st.sampled_from(LIMITS),
    st.booleans(),
)
def test_each_limit_exceeded_by_one_is_refused_naming_it(value, style, points, limit, roomy):
    measured = stats(value)
    doc = dump(value, style)
    limits = exact(measured, roomy and limit not in ("max_string", "max_number"))
    actual = getattr(measured, limit.removeprefix("max_"))
    assume(actual >= 2)  # a limit is at least 1
    lowered = JsonLimits(**{**_fields(limits), limit: actual - 1})
    assert verdict(lowered, [doc]) == limit
    assert verdict(lowered, cut(doc, points)) == limit
    assert verdict(lowered, [doc[i : i + 1] for i in range(len(doc))]) == limit


def _fields(limits: JsonLimits) -> dict[str, Any]:
    return {name: getattr(limits, name) for name in (*LIMITS, "max_size")}


def reference_valid(doc: bytes) -> bool:
    """RFC 8259, strictly: UTF-8 (no BOM), one value, no NaN or Infinity."""

    def refuse(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(doc.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError):
        return False
    return True


MUTATIONS = st.lists(
    st.tuples(
        st.integers(0, 10**6),
        st.sampled_from(["insert", "delete", "replace"]),
        st.binary(min_size=1, max_size=2),
    ),
    min_size=1,
    max_size=3,
)


def mutate(doc: bytes, mutations: list[tuple[int, str, bytes]]) -> bytes:
    data = bytearray(doc)
    for where, how, what in mutations:
        at = where % (len(data) + 1)
        if how == "insert":
            data[at:at] = what
        elif how == "delete":
            del data[at : at + len(what)]
        else:
            data[at : at + len(what)] = what
    return bytes(data)


@settings(max_examples=1000, deadline=None)
@given(VALUES, st.integers(0, 4), MUTATIONS, st.lists(st.integers(0, 10**6), max_size=6))
@example({"a": [1, "x"]}, 1, [(4, "replace", b"\x80")], [])
@example("ab", 1, [(0, "insert", b"\xef\xbb\xbf")], [])
@example(1.5, 1, [(3, "delete", b"x")], [2])
def test_any_input_is_refused_exactly_when_a_strict_parser_refuses_it(
    value, style, mutations, points
):
    doc = mutate(dump(value, style), mutations)
    whole = verdict(BIG, [doc])
    assert whole in ("ok", "syntax")
    assert (whole == "ok") == reference_valid(doc), doc
    assert (verdict(BIG, cut(doc, points)) == "ok") == (whole == "ok")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.lists(st.integers(0, 64), max_size=4))
def test_arbitrary_bytes_only_ever_give_a_verdict(data, points):
    got = verdict(BIG, cut(data, points))
    assert (got == "ok") == reference_valid(data)


@pytest.mark.parametrize(
    ("doc", "limit"),
    [
        (b"", "syntax"),
        (b" \n", "syntax"),
        (b"\xef\xbb\xbf{}", "syntax"),  # no byte order mark (RFC 8259 8.1)
        (b"NaN", "syntax"),
        (b"[1,]", "syntax"),
        (b'{"a":1,}', "syntax"),
        (b'{"a" 1}', "syntax"),
        (b"01", "syntax"),
        (b"1.", "syntax"),
        (b'"\\x"', "syntax"),
        (b'"\\u12g4"', "syntax"),
        (b'"a\tb"', "syntax"),  # a raw control character in a string
        (b'"\xc3"', "syntax"),  # cut UTF-8
        (b'"\xed\xa0\x80"', "syntax"),  # an encoded surrogate is not UTF-8
        (b"{} {}", "syntax"),
        (b"[" * 21 + b"]" * 21, "max_depth"),
        (b'"' + b"x" * 65537 + b'"', "max_string"),
        (b'"' + b"\\u00e9" * 32769 + b'"', "max_string"),  # 65538 bytes once decoded
        (b"1" * 101, "max_number"),
        (b"[" + b"0," * 10000 + b"0]", "max_array"),
        (b"{" + b",".join(b'"k%d":0' % i for i in range(1001)) + b"}", "max_keys"),
    ],
)
def test_rejects(doc, limit):
    assert verdict(JsonLimits(), [doc]) == limit
    assert (
        verdict(JsonLimits(), [doc[i : i + 1] for i in range(min(len(doc), 4096))] + [doc[4096:]])
        == limit
    )


def test_max_size_counts_every_byte_fed():
    limits = JsonLimits(max_size=10)
    assert verdict(limits, [b'"12345678"']) == "ok"
    assert verdict(limits, [b'"1234', b'56789"']) == "max_size"


def test_a_checker_that_refused_stays_refused():
    checker = JsonChecker(JsonLimits())
    with pytest.raises(JsonViolation):
        checker.feed(b"[}")
    with pytest.raises(JsonViolation):
        checker.feed(b"1")
    with pytest.raises(JsonViolation):
        checker.finish()


def test_it_holds_no_more_than_a_token_of_a_large_body():
    """A 2 MiB string fed in 1 KiB chunks: nothing is kept but counters (no carry grows)."""
    checker = JsonChecker(JsonLimits(max_string=4 << 20))
    checker.feed(b'["')
    for _ in range(2048):
        checker.feed(b"ab\\n" * 341 + b"x")
        assert len(checker._carry) <= 6
    checker.feed(b'"]')
    checker.finish()


TRICKY = rb'[{"k:,": "[,]{", "q\"": ["\\", "\\\"", ",:"]}, "a,b", [1, {"x": "}"}], 2]'


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (JsonLimits(max_array=4), "ok"),
        (JsonLimits(max_array=3), "max_array"),
        (JsonLimits(max_keys=2), "ok"),
        (JsonLimits(max_keys=1), "max_keys"),
        (JsonLimits(max_depth=3), "ok"),
        (JsonLimits(max_depth=2), "max_depth"),
    ],
)
def test_separators_inside_strings_and_containers_are_not_counted(limits, expected):
    """The fast runs count entries from the separators outside strings and nested containers:
    strings full of separators, quotes and backslashes must not change the counts."""
    assert json.loads(TRICKY)[0]['q"'] == ["\\", '\\"', ",:"]
    assert verdict(limits, [TRICKY]) == expected
    assert verdict(limits, [TRICKY[i : i + 1] for i in range(len(TRICKY))]) == expected


@pytest.mark.parametrize(
    "document",
    [
        b'{"a": [1, 2, {"b": "x\\"y"}], "c": null, "d": -1.5e3}',
        b'[[1, 2], [3, [4, [5]]], "s", true, false]',
        b'{"a": 1, "b": 2, "c": 3, "d": 4}',
        b"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]",
        b'{"k": "' + b"v" * 70 + b'", "n": 123456789012}',
        b'[1, 2, "unterminated',
        b'{"a": 1,, "b": 2}',
    ],
)
def test_both_regex_engines_find_the_same_runs(document: bytes) -> None:
    """The engine the runs use here (`re` on Python >= 3.11.5, `regex` before: Debian 12's
    3.11.2 gets possessive repeats wrong) finds the same run as `regex` at every position."""
    assert RUNS_ENGINE is (re if sys.version_info >= (3, 11, 5) else regex)
    limits = JsonLimits(max_depth=4, max_keys=3, max_array=10, max_string=64, max_number=10)
    in_use, by_regex = _Runs(limits), _Runs(limits, regex)
    for level in range(len(in_use.members)):
        for pos in range(len(document)):
            for name in ("members", "elements"):
                a = getattr(in_use, name)[level].match(document, pos)
                b = getattr(by_regex, name)[level].match(document, pos)
                assert (a and (a.span(), a.groups())) == (b and (b.span(), b.groups())), (
                    name,
                    level,
                    pos,
                )
