"""Upgrade requests in the readers: WebSocket passed through, anything else (h2c) read on as
plain HTTP/1.1 without its Upgrade; the 101 that opens a tunnel."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.http.errors import HTTPError, UpstreamProtocolError
from outwork.http.messages import Framing
from outwork.http.reader import RequestReader, ResponseReader
from tests.http.test_reader import Requests, Responses

WEBSOCKET = (
    b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
FRAME = b"\x81\x85\x01\x02\x03\x04ignored"
H2C_THEN_MORE = (
    b"GET /1 HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    b"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n"
    b"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
)


def reader_for(sink: Requests) -> RequestReader:
    return RequestReader(sink, max_head=64 * 1024, max_headers=100, max_body=1024)


def feed_in_pieces(reader: RequestReader, data: bytes, cuts: list[int]) -> None:
    at = 0
    for cut in sorted(cuts) + [len(data)]:
        reader.feed(data[at:cut])
        at = max(at, cut)


def test_websocket_request_is_passed_through_and_stops_the_reader() -> None:
    sink = Requests()
    reader = reader_for(sink)
    reader.feed(WEBSOCKET + FRAME)
    (head,) = sink.heads()
    assert head.upgrade and head.framing is Framing.NONE
    # The gateway's own upgrade lines, the Sec-WebSocket-* fields as sent, no client Connection.
    assert head.block == (
        b"Host: a\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
        b"\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
    )
    assert sink.events[-1] == ("end", None)
    assert reader.upgraded and reader.upgrade_data == FRAME
    reader.feed(b"GET /not-http-any-more HTTP/1.1\r\n\r\n")
    assert len(sink.heads()) == 1


@given(st.lists(st.integers(0, len(WEBSOCKET)), max_size=6))
def test_websocket_request_split_anywhere(cuts: list[int]) -> None:
    sink = Requests()
    reader = reader_for(sink)
    feed_in_pieces(reader, WEBSOCKET, cuts)
    (head,) = sink.heads()
    assert head.upgrade and reader.upgraded and reader.upgrade_data == b""


@pytest.mark.parametrize(
    "data",
    [
        # Not a WebSocket handshake the gateway passes: read as plain requests, Upgrade dropped.
        b"OPTIONS / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Upgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",  # no Connection: upgrade
    ],
)
def test_other_upgrades_are_plain_requests_without_upgrade(data: bytes) -> None:
    sink = Requests()
    reader = reader_for(sink)
    reader.feed(data + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    first, second = sink.heads()
    assert not first.upgrade and not reader.upgraded
    assert b"upgrade" not in first.block.lower() and b"websocket" not in first.block.lower()
    assert second.target == b"/next"


@given(st.lists(st.integers(0, len(H2C_THEN_MORE)), max_size=8))
def test_h2c_requests_read_on_as_http11_split_anywhere(cuts: list[int]) -> None:
    sink = Requests()
    reader = reader_for(sink)
    feed_in_pieces(reader, H2C_THEN_MORE, cuts)
    heads = sink.heads()
    assert [h.target for h in heads] == [b"/1", b"/2", b"/3"]
    assert not any(h.upgrade for h in heads)
    assert all(b"h2c" not in h.block and b"HTTP2-Settings" not in h.block for h in heads)
    assert sink.body() == b"hello"
    assert [kind for kind, _ in sink.events].count("end") == 3


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 2\r\n\r\nhi", b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]
)
@pytest.mark.parametrize("token", [b"websocket", b"h2c"])
def test_rejects_upgrade_with_a_body(framing: bytes, token: bytes) -> None:
    """llhttp would take the body for the new protocol's bytes: where the request ends would
    be unclear, so it is refused (and a WebSocket handshake has no body anyway)."""
    data = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: " + token
    with pytest.raises(HTTPError) as info:
        reader_for(Requests()).feed(data + b"\r\n" + framing)
    assert info.value.status == 400


SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)


def test_101_to_websocket_opens_the_tunnel_with_the_bytes_after_it() -> None:
    sink = Responses()
    reader = ResponseReader(sink, False)
    reader.expect_upgrade = True
    reader.feed(SWITCHING + b"\x81\x02hi")
    assert sink.head is not None and sink.head.status == 101
    assert sink.head.block == (
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
        b"connection: upgrade\r\nupgrade: websocket\r\n"
    )
    assert reader.upgraded and reader.upgrade_data == b"\x81\x02hi"
    assert sink.ended is None  # not a response that ends: a tunnel


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (SWITCHING, False),  # a 101 nobody asked for
        (SWITCHING.replace(b"websocket", b"h2c"), True),  # switching to something else
        (SWITCHING.replace(b"Connection: Upgrade\r\n", b""), True),
    ],
)
def test_rejects_other_101s(data: bytes, expected: bool) -> None:
    reader = ResponseReader(Responses(), False)
    reader.expect_upgrade = expected
    with pytest.raises(UpstreamProtocolError):
        reader.feed(data)


def test_refused_upgrade_is_an_ordinary_response_never_reused() -> None:
    sink = Responses()
    reader = ResponseReader(sink, False)
    reader.expect_upgrade = True
    reader.feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno")
    assert sink.head is not None and sink.head.status == 403 and sink.body == b"no"
    assert sink.ended is False and not reader.upgraded
