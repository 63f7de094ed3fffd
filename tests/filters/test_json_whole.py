"""A whole JSON body through `check_whole` (msgspec and counts, the streaming checker when they
cannot decide) gets exactly the streaming checker's verdict, refusal and message, on valid,
invalid and near-limit documents; and ordinary documents, small and large, are decided
without the streaming checker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from outwork.filters import json_whole
from outwork.filters.json_limits import JsonChecker, JsonLimits, JsonViolation
from outwork.filters.json_whole import check_whole, fast_accepts
from tests.filters.test_json_limits import (
    BIG,
    LIMITS,
    MUTATIONS,
    VALUES,
    _fields,
    dump,
    exact,
    mutate,
    stats,
)


def streaming(limits: JsonLimits, doc: bytes) -> tuple[str, str]:
    """The streaming checker's verdict on `doc` fed whole (its verdict is the same however the
    document is cut: test_json_limits.py; its message may name another problem first)."""
    checker = JsonChecker(limits)
    try:
        checker.feed(doc)
        checker.finish()
    except JsonViolation as exc:
        return exc.limit, exc.message
    return "ok", ""


def whole(limits: JsonLimits, doc: bytes) -> tuple[str, str]:
    try:
        check_whole(limits, doc)
    except JsonViolation as exc:
        return exc.limit, exc.message
    return "ok", ""


# Strings full of what the counts and the skeleton look at: separators, brackets, quotes,
# backslashes, number characters, non-ASCII.
TRICKY_TEXT = st.text(
    st.sampled_from('[]{},:"\\/0123456789eE.-+ \té\u4e00\U0001f600x'), max_size=12
)
TRICKY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY_TEXT,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(TRICKY_TEXT, children, max_size=6)
    ),
    max_leaves=40,
)
OFFSETS = st.fixed_dictionaries({name: st.integers(-2, 2) for name in LIMITS})


def around(limits: JsonLimits, offsets: dict[str, int]) -> JsonLimits:
    """`limits` moved by a little each way (at least 1)."""
    fields = _fields(limits)
    return JsonLimits(**{**fields, **{k: max(1, fields[k] + v) for k, v in offsets.items()}})


@settings(max_examples=250, deadline=None)
@given(VALUES | TRICKY_VALUES, st.integers(0, 4), OFFSETS)
@example({"a": 1}, 1, dict.fromkeys(LIMITS, 0))
@example(["[[[", "{{{"], 1, dict.fromkeys(LIMITS, 0))
@example({"k": "1" * 30}, 1, dict.fromkeys(LIMITS, 0))
def test_near_its_limits_a_document_gets_the_streaming_verdict(value, style, offsets):
    try:
        doc = dump(value, style)
    except UnicodeEncodeError:  # a lone surrogate written raw: not UTF-8 (tested below)
        doc = dump(value, 0)
    limits = around(exact(stats(value)), offsets)
    assert whole(limits, doc) == streaming(limits, doc)


@settings(max_examples=500, deadline=None)
@given(VALUES | TRICKY_VALUES, st.integers(0, 4), MUTATIONS, st.booleans())
@example({"a": [1, "x"]}, 1, [(4, "replace", b"\x80")], False)
@example("ab", 1, [(0, "insert", b"\xef\xbb\xbf")], False)
@example(1.5, 1, [(3, "delete", b"x")], True)
def test_any_input_gets_the_streaming_verdict(value, style, mutations, small):
    try:
        doc = mutate(dump(value, style), mutations)
    except UnicodeEncodeError:
        doc = mutate(dump(value, 0), mutations)
    limits = around(exact(stats(value)), {}) if small else BIG
    assert whole(limits, doc) == streaming(limits, doc)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([JsonLimits(), BIG, JsonLimits(1, 1, 1, 1, 1)]))
def test_arbitrary_bytes_get_the_streaming_verdict(data, limits):
    assert whole(limits, data) == streaming(limits, data)


DEFAULT = JsonLimits()


@pytest.mark.parametrize(
    "doc",
    [
        b"",
        b" \n\t\r",
        b"\xef\xbb\xbf{}",  # byte order mark
        b'\xef\xbb\xbf"x"',
        b"\x0c{}",  # form feed is not JSON whitespace
        b" {} \r\n",
        b"{} {}",  # trailing data
        b"{}x",
        b"[1] ]",
        b"NaN",
        b"[Infinity]",
        b"-Infinity",
        b"[01]",
        b"[1.]",
        b"[.5]",
        b"[+1]",
        b"-0",
        b"[1E+2, -0.0e-0]",
        b'"\\ud800"',  # a lone surrogate escape: the checker passes it, msgspec does not
        b'"\\udc00\\ud800"',
        b'"\\ud83d\\ude00"',
        b'"\xed\xa0\x80"',  # an encoded surrogate is not UTF-8
        b'"\xc3"',
        b'"\xc0\x80"',
        b'"a\x7fb"',
        b'"a\x1fb"',
        b'"\\u0000"',
        b'"\\x"',
        b'"\\u12g4"',
        b"1e400",  # beyond a float: msgspec refuses, the checker passes
        b"-" + b"9" * 99,
        b"9" * 100,
        b"9" * 101,
        b"[" + b"1" * 100 + b".5]",
        b'["' + b"1" * 200 + b'", 1]',  # a long digit run in a string only
        b'{"a":1,"a":2}',  # duplicate keys are not checked
        b"{" + b",".join(b'"a":%d' % i for i in range(1001)) + b"}",  # duplicates count
        b"{" + b",".join(b'"a":%d' % i for i in range(1000)) + b"}",
        b"[" * 20 + b"]" * 20,
        b"[" * 21 + b"]" * 21,
        b"[" * 999 + b"]" * 999,
        b"[" * 5000 + b"]" * 5000,  # past msgspec's recursion limit
        b"[" * 30 + b"]" * 29,
        b"[" + b"0," * 9999 + b"0]",
        b"[" + b"0," * 10000 + b"0]",
        b'["' + b"x" * 65536 + b'"]',
        b'["' + b"x" * 65537 + b'"]',
        b'["' + b"\\u00e9" * 32768 + b'"]',
        b'["' + b"\\u00e9" * 32769 + b'"]',  # 65538 bytes once decoded
        b'["' + b"\\\\" * 40000 + b'"]',
        b'["' + b'\\"' * 40000 + b'", "]"]',
        b'[["\\\\"], "\\\\\\"[", {"]": "\\"{"}]' * 1,
        b'{"k:,": "[,]{", "q\\"": ["\\\\", "\\\\\\"", ",:"]}',
    ],
)
def test_edge_documents_get_the_streaming_verdict(doc: bytes) -> None:
    for limits in (DEFAULT, BIG, JsonLimits(max_depth=2, max_keys=2, max_array=2)):
        assert whole(limits, doc) == streaming(limits, doc), limits


def _orders(count: int) -> bytes:
    items = [
        {"sku": f"SKU-{i:04d}", "qty": i % 5 + 1, "price": 9.99 + i, "tags": ["a", "b"]}
        for i in range(count)
    ]
    return json.dumps({"order": 4711, "items": items, "note": "x [y] {z}: 1,2"}).encode()


@pytest.mark.parametrize(
    "doc",
    [
        _orders(12),  # the bench's kind of body: 1 KiB
        _orders(400),  # ~40 KiB: 800 containers, 2,000 colons
        json.dumps([[[["deep"]]]] * 3000).encode(),
        json.dumps({"caf\u00e9": "\u00e9t\u00e9 \U0001f600", "n": [1.5e300, -0.0]}).encode(),
        json.dumps("x" * 100_000).encode(),
    ],
)
def test_ordinary_documents_are_decided_without_the_streaming_checker(
    doc: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fast_accepts(DEFAULT if len(doc) < 65536 else BIG, doc)

    def refuse(*args: Any) -> None:
        raise AssertionError("the streaming checker ran")

    monkeypatch.setattr(json_whole, "JsonChecker", refuse)
    check_whole(DEFAULT if len(doc) < 65536 else BIG, doc)


def test_each_limit_just_passed_is_refused_as_the_checker_refuses_it() -> None:
    """Counts over a limit send the document to the exact measures, which find it within;
    one over, the checker names the limit."""
    doc = _orders(400)
    measured = stats(json.loads(doc))
    at_limits = exact(measured)
    assert fast_accepts(at_limits, doc)
    for limit in LIMITS:
        lowered = JsonLimits(**{**_fields(at_limits), limit: getattr(at_limits, limit) - 1})
        assert not fast_accepts(lowered, doc)
        assert whole(lowered, doc)[0] == limit


def test_a_deep_document_with_many_entries_goes_to_the_streaming_checker() -> None:
    """Past MAX_PASSES levels the skeleton is not reduced pass by pass (each pass reads it
    whole): the streaming checker decides, and passes it."""
    depth = json_whole.MAX_PASSES + 1
    limits = JsonLimits(max_depth=depth + 5)  # its count of brackets is over: measured
    doc = b"[" * depth + b"]" * depth + b",[]" * 10 + b",0" * 5000
    doc = b"[" + doc + b"]"
    assert not fast_accepts(limits, doc)
    assert whole(limits, doc) == streaming(limits, doc) == ("ok", "")


def test_number_limits_of_many_configs_keep_their_verdicts_within_a_bounded_memory() -> None:
    """Reloads with ever new `max_number` values: each is still held to its own limit, and the
    runs kept for them never pass MAX_NUMBER_RUNS."""
    for max_number in range(1, 60):
        limits = JsonLimits(max_number=max_number)
        assert whole(limits, b"[%s]" % (b"7" * max_number)) == ("ok", "")
        assert whole(limits, b"[%s]" % (b"7" * (max_number + 1)))[0] == "max_number"
        assert len(json_whole._NUMBER_RUNS) <= json_whole.MAX_NUMBER_RUNS
