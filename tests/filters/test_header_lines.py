"""Header lines removed by one compiled regex (header_lines.LineRemoval) take out exactly what
reading the block line by line would: a line whose name, any case, with blanks around it, is
named; nothing else, whatever the values hold."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from outwork.filters.header_lines import LineRemoval

REMOVED = frozenset({b"server", b"x-powered-by", b"x-api-key"})


def line_by_line(block: bytes, remove: frozenset[bytes]) -> bytes:
    """The reference: split at CRLF, keep the lines whose stripped, lower-cased name is not in
    `remove`."""
    kept = [
        line
        for line in block.split(b"\r\n")
        if line and line.partition(b":")[0].strip().lower() not in remove
    ]
    return b"".join(line + b"\r\n" for line in kept)


names = st.sampled_from(
    [
        b"Server",
        b"SERVER",
        b"server",
        b"X-Powered-By",
        b"x-api-key",
        b"X-API-Key",
        b"Servers",
        b"X-Server",
        b"Content-Type",
        b"Server-Timing",
        b"x-powered-by-proxy",
    ]
)
blanks = st.sampled_from([b"", b" ", b"\t", b" \t"])
# Field values as the readers let them through: no CR, LF or NUL; colons and names may occur.
values = st.binary(max_size=30).map(
    lambda v: v.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
) | st.sampled_from([b"server: x", b"Server:", b"x-api-key:1"])


@given(st.lists(st.tuples(blanks, names, blanks, values), max_size=10))
def test_removes_exactly_the_named_lines(lines: list[tuple[bytes, bytes, bytes, bytes]]) -> None:
    block = b"".join(a + name + b + b":" + value + b"\r\n" for a, name, b, value in lines)
    assert LineRemoval(REMOVED).block(block) == line_by_line(block, REMOVED)


def test_a_last_line_without_crlf_and_an_empty_set() -> None:
    assert LineRemoval(REMOVED).block(b"A: 1\r\nServer: x") == b"A: 1\r\n"
    assert LineRemoval(frozenset()).block(b"Server: x\r\n") == b"Server: x\r\n"


def line_anchored(block: bytes, remove: frozenset[bytes]) -> bytes:
    """The general pattern alone (what LineRemoval uses for a block not ending in CRLF)."""
    return LineRemoval(remove)._lines.sub(b"", block)


pieces = st.sampled_from([b"\r\n", b"\r", b"\n", b":", b" ", b"\t"]) | names | values


@given(st.lists(pieces, max_size=30))
def test_the_search_from_each_lf_removes_what_the_line_anchored_pattern_does(
    parts: list[bytes],
) -> None:
    """Any bytes, stray CRs and LFs and lines without a colon included: for a block ending in
    CRLF the fast search gives what the `^`-anchored pattern gives."""
    block = b"".join(parts) + b"\r\n"
    assert LineRemoval(REMOVED).block(block) == line_anchored(block, REMOVED)


def value_by_set(remove: frozenset[bytes]) -> re.Pattern[bytes]:
    """The search from each LF as first written: a value is `[^\\r\\n]*` then CR, LF ahead
    (LineRemoval's says the same with one-byte loops, and passes over lines whose first byte
    no name has)."""
    alternatives = b"|".join(re.escape(name) for name in sorted(remove)) or b"(?!)"
    blanks = rb"[ \t\x0b\x0c]*"
    return re.compile(rb"(?i)\n%s(?:%s)%s:[^\r\n]*\r(?=\n)" % (blanks, alternatives, blanks))


NAME_SETS = [
    REMOVED,
    frozenset({b"server", b"Strict-Transport-Security", b"-x", b"1"}),
    frozenset({b"x", b""}),  # an empty name: no first byte to look for
    frozenset(),
]


@given(st.sampled_from(NAME_SETS), st.lists(pieces | st.sampled_from([b"-x", b"1:"]), max_size=30))
def test_the_search_from_each_lf_matches_what_the_first_pattern_matched(
    remove: frozenset[bytes], parts: list[bytes]
) -> None:
    """Any bytes (stray CRs and LFs, blanks, colons): the same lines cut."""
    text = b"\n" + b"".join(parts) + b"\r\n"
    assert LineRemoval(remove)._after_lf.sub(b"", text) == value_by_set(remove).sub(b"", text)
