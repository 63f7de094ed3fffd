"""Heads written for the client and the upstream (outwork/http/serialize.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.http import serialize
from outwork.http.messages import Framing, ResponseHead

FRAMINGS = [Framing.NONE, Framing.LENGTH, Framing.CHUNKED, Framing.CLOSE]


def formatted(head: ResponseHead, framing: Framing, keep_alive: bool, extra: bytes) -> bytes:
    """response_head as a bytes format: the reference the cached lines must equal."""
    if framing is Framing.CHUNKED:
        length = b"transfer-encoding: chunked\r\n"
    elif head.content_length >= 0 and (framing is Framing.LENGTH or head.status != 204):
        length = b"content-length: %d\r\n" % head.content_length
    else:
        length = b""
    return (
        b"HTTP/1.1 %d %s\r\n" % (head.status, head.reason)
        + head.block
        + extra
        + length
        + (b"" if keep_alive else b"connection: close\r\n")
        + b"\r\n"
    )


@settings(max_examples=500, deadline=None)
@given(
    status=st.integers(100, 999),
    length=st.one_of(st.integers(-1, 3000), st.integers(0, 1 << 62)),
    framing=st.sampled_from(FRAMINGS),
    keep_alive=st.booleans(),
    extra=st.sampled_from([b"", b"x-request-id: abc\r\n"]),
)
def test_a_response_head_is_its_status_line_lines_and_framing(
    status: int, length: int, framing: Framing, keep_alive: bool, extra: bytes
) -> None:
    head = ResponseHead(
        status=status, reason=b"Fine", block=b"server: x\r\n", framing=framing,
        content_length=length,
    )  # fmt: skip
    expected = formatted(head, framing, keep_alive, extra)
    assert serialize.response_head(head, framing, keep_alive, extra) == expected
    assert serialize.response_head(head, framing, keep_alive, extra) == expected  # cached now


def test_the_lines_kept_per_number_are_bounded() -> None:
    for n in range(3 * serialize.MAX_CACHED_LINES):
        assert serialize.content_length_line(n) == b"content-length: %d\r\n" % n
        assert serialize.status_line_start(n) == b"HTTP/1.1 %d " % n
        assert len(serialize._LENGTH_LINES) <= serialize.MAX_CACHED_LINES  # noqa: SLF001
        assert len(serialize._STATUS_LINES) <= serialize.MAX_CACHED_LINES  # noqa: SLF001
