"""The fast path of a transformation pipeline gives what the pipeline gives, for every value
it claims (the engine skips the pipeline on those)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from outwork.waf.fastpath import (
    ALL_TRIGGERS,
    SEQUENCES,
    TRIGGERS,
    fast_path,
    input_key,
    segmented,
    signature,
)
from outwork.waf.transforms import pipeline

NAMES = sorted(TRIGGERS)
# Bytes around the triggers, so that near misses come up often.
VALUES = st.binary(max_size=40) | st.text(
    alphabet="aZ09 ._-/\\%+&#*;,'\"^(<>!\t\x00é", max_size=40
).map(lambda s: s.encode("utf-8"))


@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4), VALUES)
def test_fast_path_agrees_with_the_pipeline(names: list[str], value: bytes) -> None:
    fast = fast_path(names)
    assert fast is not None
    if not fast.acts(value):
        expected = pipeline(names)(value)
        assert (value.lower() if fast.lowers else value) == expected


def searched_triggers(names: list[str]) -> re.Pattern[bytes]:
    """What `FastPath.acts` tests, as one regex search (read from the tables afresh)."""
    single = b"\x00" + b"".join(TRIGGERS[name][0] for name in names) + bytes(range(0x80, 0x100))
    alternatives = [b"[" + b"".join(re.escape(bytes([byte])) for byte in single) + b"]"]
    for name in names:
        if name in SEQUENCES:
            within, ending, _ = SEQUENCES[name]
            alternatives += [re.escape(sequence) for sequence in within]
            alternatives.append(re.escape(ending) + rb"\Z")
    if any(TRIGGERS[name][2] for name in names):
        alternatives.append(b"  ")
    return re.compile(b"|".join(alternatives))


@given(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4), VALUES)
def test_acts_agrees_with_a_search_for_the_triggers(names: list[str], value: bytes) -> None:
    fast = fast_path(names)
    assert fast is not None
    assert fast.acts(value) == (searched_triggers(names).search(value) is not None)


def test_pipelines_without_a_fast_path() -> None:
    assert fast_path(["lowercase", "base64decode"]) is None
    assert fast_path(["length"]) is None
    plain = fast_path(["urldecodeuni", "lowercase"])
    assert plain is not None and not plain.acts(b"page 2 of Orders")
    assert plain.acts(b"a%20b")


# Transformations without a fast path, between runs that have one (CRS's base64 pipelines).
OTHERS = ["base64decode", "length", "hexencode", "sha1", "trim", "base64decodeext"]


@given(
    st.lists(st.sampled_from(NAMES + OTHERS), min_size=1, max_size=7),
    VALUES,
)
def test_segmented_pipeline_agrees_with_the_pipeline(names: list[str], value: bytes) -> None:
    whole = pipeline(names)
    assert segmented(names, whole)(value) == whole(value)


@given(st.lists(VALUES, max_size=6), st.lists(st.sampled_from(NAMES), min_size=1, max_size=4))
def test_a_signature_outside_the_triggers_means_no_value_acts(
    values: list[bytes], names: list[str]
) -> None:
    fast = fast_path(names)
    assert fast is not None
    if fast.leaves(*signature(values)):
        assert not any(fast.acts(value) for value in values)


@given(st.lists(VALUES, max_size=6))
def test_a_signature_is_the_trigger_bytes_and_double_spaces_of_the_values(
    values: list[bytes],
) -> None:
    found = frozenset(byte for value in values for byte in value) & ALL_TRIGGERS
    assert signature(values) == (found, any(b"  " in value for value in values))


BASE64_TEXT = st.text(alphabet="aZ09+/", max_size=12).map(str.encode)
# After the leading base64 characters: anything, from a byte outside the alphabet on.
REST = st.tuples(st.sampled_from([b".", b"-", b":", b" ", b"%", b"="]), VALUES).map(b"".join)


@given(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=3),
    st.lists(st.sampled_from(NAMES + OTHERS), max_size=3),
    BASE64_TEXT,
    REST,
    REST,
)
def test_values_with_the_same_input_key_come_out_the_same(
    head: list[str], tail: list[str], leading: bytes, first: bytes, second: bytes
) -> None:
    names = [*head, "base64decode", *tail]
    key = input_key(names)
    if key is None:
        run = fast_path(head)
        assert run is not None and run.lowers  # only a run that lowercases has no key
        return
    whole = pipeline(names)
    one, other = leading + first, leading + second
    if key(one) == key(other):
        assert whole(one) == whole(other)


# Pieces of a value, and what may stand between them (whitespace, or nothing).
PIECES = st.lists(st.sampled_from([b"ab", b"Q9", b"+", b"/", b"%2", b"\\x", b".", b"./", b"-"]))
GAPS = st.lists(st.sampled_from([b"", b" ", b"\t", b"  ", b"\n"]), min_size=8, max_size=8)


@given(
    st.lists(st.sampled_from(NAMES), max_size=3),
    st.lists(st.sampled_from(NAMES + OTHERS), max_size=3),
    PIECES,
    GAPS,
    GAPS,
)
def test_values_that_differ_by_whitespace_and_share_the_input_key_come_out_the_same(
    head: list[str], tail: list[str], pieces: list[bytes], gaps: list[bytes], others: list[bytes]
) -> None:
    names = [*head, "removewhitespace", "base64decode", *tail]
    key = input_key(names)
    if key is None:
        return
    whole = pipeline(names)
    one = b"".join(piece + gap for piece, gap in zip(pieces, gaps, strict=False))
    other = b"".join(piece + gap for piece, gap in zip(pieces, others, strict=False))
    if key(one) == key(other):
        assert whole(one) == whole(other)


def test_the_input_key_of_crs_base64_pipelines() -> None:
    key = input_key(["urldecodeuni", "jsdecode", "removewhitespace", "base64decode", "jsdecode"])
    assert key is not None
    # Whitespace is all the run removes from these: the same base64 prefix once it is gone.
    assert key(b"deliver to the front desk, order 7") == key(b"deliver to the front desk, 8")
    assert key(b"json.items.1.note") == key(b"json.items.2.note") == b"json"
    assert key(b"a%20b") == b"a%20b"  # the run changes it: its own key
    assert input_key(["lowercase", "base64decode"]) is None
    assert input_key(["base64decode", "urldecodeuni"]) is None  # nothing before the decode
