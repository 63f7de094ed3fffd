"""A filter's answer through `local_reply`: its own headers and body go out on HTTP/1.1 and
HTTP/2 alike, framed by the gateway (one content-length that matches, none for 204 and 304),
and never replace the gateway's own framing or request id; the connection is kept."""

from __future__ import annotations

from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from outwork.http.messages import Framing, RequestHead
from outwork.observe.metrics import Metrics
from outwork.proxy.downstream import Downstream
from outwork.proxy.exchange import Exchange
from outwork.proxy.local_reply import local_reply
from outwork.proxy.router import Router

ROUTER = Router(())
NAMES = st.sampled_from(
    [b"content-type", b"content-length", b"connection", b"x-request-id", b"retry-after", b"x-a"]
)
VALUES = st.binary(min_size=1, max_size=12).map(
    lambda raw: bytes(b for b in raw if 0x21 <= b <= 0x7E) or b"v"
)


def exchange(method: bytes = b"GET") -> Exchange:
    head = RequestHead(method, b"/x", "1.1", [(b"host", b"a")], b"", Framing.NONE, -1, True, False)
    ex = Exchange(cast(Downstream, object()), head, None)
    ex.request_id = b"rid-1"
    return ex


def parse(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = [(n.lower(), v.strip()) for n, _, v in (line.partition(b":") for line in lines)]
    return int(status_line.split(b" ")[1]), headers, body


@given(
    st.sampled_from([204, 304, 400, 401, 403, 413, 429, 500, 503]),
    st.lists(st.tuples(NAMES, VALUES), max_size=6),
    st.one_of(st.none(), st.binary(max_size=40)),
)
def test_a_filters_answer_is_framed_by_the_gateway(
    status: int, extra: list[tuple[bytes, bytes]], body: bytes | None
) -> None:
    ex = exchange()
    reply = local_reply(ex, status, Metrics(), ROUTER, None, tuple(extra), body, True)
    assert ex.keep_alive  # a filter's answer leaves the request stream intact
    got_status, headers, sent = parse(reply.http1(keep_alive=True))
    names = [name for name, _ in headers]
    assert got_status == status
    assert names.count(b"x-request-id") == 1 and (b"x-request-id", b"rid-1") in headers
    assert b"connection" not in names
    if status in (204, 304):
        assert b"content-length" not in names and sent == b""
    else:
        assert names.count(b"content-length") == 1 and names.count(b"content-type") == 1
        assert (b"content-length", b"%d" % len(sent)) in headers
        if body is not None:
            assert sent == body
    kept = [(n, v) for n, v in extra if n in (b"retry-after", b"x-a")]
    assert [h for h in headers if h[0] in (b"retry-after", b"x-a")] == kept
    h2 = reply.h2_headers()
    assert h2[0] == (b":status", b"%d" % status)
    assert sorted(h2[1:]) == sorted(headers)


def test_a_filters_content_type_replaces_the_plain_text_one() -> None:
    extra = ((b"content-type", b"application/json"),)
    reply = local_reply(exchange(), 403, Metrics(), ROUTER, None, extra, b"{}", True)
    assert reply.headers[:2] == [(b"content-type", b"application/json"), (b"content-length", b"2")]
    assert reply.http1(keep_alive=False).startswith(
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
        b"connection: close\r\n"
    )


def test_a_head_request_gets_the_headers_only() -> None:
    reply = local_reply(exchange(b"HEAD"), 401, Metrics(), ROUTER, None, (), b"nope", True)
    assert reply.http1(keep_alive=True).endswith(b"\r\n\r\n")
    assert (b"content-length", b"4") in reply.headers


def test_a_header_that_would_split_the_head_is_dropped() -> None:
    extra = ((b"x-origin", b"a\r\nset-cookie: x=1"), (b"x-b\n", b"1"), (b"x-ok", b"yes"))
    reply = local_reply(exchange(), 403, Metrics(), ROUTER, None, extra, None, True)
    assert reply.headers[-1] == (b"x-ok", b"yes")
    assert b"set-cookie" not in reply.http1(keep_alive=True)
