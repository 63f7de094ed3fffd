"""limits.max_header_field: one header field of a request head sent upstream, capped the same
way on HTTP/1.1 (the reader, 431) and HTTP/2 (`checks.oversized_field` on the decoded head)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.http.checks import oversized_field
from outwork.http.errors import HTTPError
from outwork.http.reader import RequestReader
from tests.http.test_reader import Requests

NAMES = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=30).map(str.encode)
VALUES = st.text("abcdefghijklmnopqrstuvwxyz0123456789 ", max_size=400).map(
    lambda v: v.strip().encode()
)
FIELDS = st.lists(st.tuples(NAMES.map(lambda n: b"x-" + n), VALUES), max_size=8)


def reader_verdict(fields: list[tuple[bytes, bytes]], cap: int) -> int:
    """200 when the HTTP/1.1 reader takes the head, else its refusal's status."""
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    sink = Requests()
    reader = RequestReader(sink, 64 * 1024, 100, 1024, max_field=cap)
    try:
        reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n")
    except HTTPError as exc:
        return exc.status
    assert sink.heads()
    return 200


@settings(max_examples=300, deadline=None)
@given(FIELDS, st.integers(min_value=8, max_value=450))
def test_http1_and_http2_agree_on_which_heads_have_an_oversized_field(
    fields: list[tuple[bytes, bytes]], cap: int
) -> None:
    name = oversized_field(fields, cap)
    assert reader_verdict(fields, cap) == (200 if name is None else 431)
    if name is None:
        assert all(len(n) + 2 + len(v) <= cap for n, v in fields)
    else:
        first = next(f for f in fields if len(f[0]) + 2 + len(f[1]) > cap)
        assert first[0] == name


def test_the_cap_counts_name_colon_space_and_value() -> None:
    assert oversized_field([(b"x-a", b"v" * 5)], 10) is None  # "x-a: vvvvv" is 10 bytes
    assert oversized_field([(b"x-a", b"v" * 6)], 10) == b"x-a"
