"""The HTTP/1.1 readers: whole, byte by byte, pipelined, and one rejects_* per framing rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.http.checks import scan_headers
from outwork.http.errors import HTTPError, UpstreamProtocolError
from outwork.http.messages import Framing, RequestHead, ResponseHead
from outwork.http.path import PathRules
from outwork.http.reader import RequestReader, ResponseReader


class Requests:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def on_request_head(self, head: RequestHead) -> None:
        self.events.append(("head", head))

    def on_request_body(self, data: bytes) -> None:
        self.events.append(("body", data))

    def on_request_end(self) -> None:
        self.events.append(("end", None))

    def heads(self) -> list[RequestHead]:
        return [e for kind, e in self.events if kind == "head"]  # type: ignore[misc]

    def body(self) -> bytes:
        return b"".join(e for kind, e in self.events if kind == "body")  # type: ignore[misc]


def read(data: bytes, byte_by_byte: bool = False, **caps: int) -> Requests:
    sink = Requests()
    reader = RequestReader(
        sink,
        max_head=caps.get("max_head", 64 * 1024),
        max_headers=caps.get("max_headers", 100),
        max_body=caps.get("max_body", 1024 * 1024),
    )
    if byte_by_byte:
        for i in range(len(data)):
            reader.feed(data[i : i + 1])
    else:
        reader.feed(data)
    return sink


POST_CHUNKED = (
    b"POST /upload?x=1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_reads_chunked_request(byte_by_byte: bool) -> None:
    sink = read(POST_CHUNKED, byte_by_byte)
    (head,) = sink.heads()
    assert head.method == b"POST" and head.target == b"/upload?x=1" and head.path == b"/upload"
    assert head.framing is Framing.CHUNKED and head.keep_alive
    assert sink.body() == b"hello world"
    assert sink.events[-1] == ("end", None)


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_reads_pipelined_requests_in_order(byte_by_byte: bool) -> None:
    data = (
        b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
        b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    sink = read(data, byte_by_byte)
    assert [h.target for h in sink.heads()] == [b"/1", b"/2", b"/3"]
    assert [h.keep_alive for h in sink.heads()] == [True, True, False]
    assert sink.body() == b"abc"
    assert [kind for kind, _ in sink.events].count("end") == 3


def test_http10_defaults_to_close() -> None:
    (head,) = read(b"GET / HTTP/1.0\r\n\r\n").heads()
    assert head.version == "1.0" and not head.keep_alive


def test_expect_continue_is_noted() -> None:
    data = b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
    (head,) = read(data).heads()
    assert head.expect_continue and head.content_length == 1


def refused(data: bytes, **caps: int) -> int:
    with pytest.raises(HTTPError) as info:
        read(data, False, **caps)
    return info.value.status


def test_rejects_content_length_with_transfer_encoding() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert refused(data) == 400


def test_rejects_two_content_lengths() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"
    assert refused(data) == 400


@pytest.mark.parametrize("value", [b"-1", b"1x", b"0x10", b"1 2", b"99999999999999999999"])
def test_rejects_invalid_content_length(value: bytes) -> None:
    assert refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + value + b"\r\n\r\n") == 400


@pytest.mark.parametrize(
    "coding",
    [b"gzip", b"chunked, gzip", b"identity", b"chunked, chunked", b"xchunked", b"\xa0chunked"],
)
def test_rejects_transfer_codings_not_ending_in_one_chunked(coding: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + coding + b"\r\n\r\n"
    assert refused(data) == 400


def test_rejects_unknown_coding_before_chunked_with_501() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: cow, chunked\r\n\r\n"
    assert refused(data) == 501


@pytest.mark.parametrize(
    ("values", "forwarded"),
    [
        ([b"gzip, chunked"], b"gzip"),
        ([b"gzip", b"Deflate", b"identity", b"chunked"], b"gzip, deflate"),
        ([b"Chunked"], b""),
    ],
)
def test_reads_codings_before_chunked(values: list[bytes], forwarded: bytes) -> None:
    lines = b"".join(b"Transfer-Encoding: " + v + b"\r\n" for v in values)
    sink = read(b"POST / HTTP/1.1\r\nHost: a\r\n" + lines + b"\r\n2\r\nhi\r\n0\r\n\r\n")
    (head,) = sink.heads()
    assert head.framing is Framing.CHUNKED and head.codings == forwarded
    assert sink.body() == b"hi"


@pytest.mark.parametrize(
    "name", [b"Content_Length", b"Transfer_Encoding", b"Transfer---Encoding", b"content.length"]
)
def test_rejects_framing_lookalike_names(name: bytes) -> None:
    assert refused(b"POST / HTTP/1.1\r\nHost: a\r\n" + name + b": 1\r\n\r\nx") == 400


def test_strips_fragment_and_trailing_ows_in_content_length() -> None:
    sink = read(b"POST /a?b=c#frag HTTP/1.1\r\nHost: a\r\nContent-Length: 2  \r\n\r\nhi")
    (head,) = sink.heads()
    assert head.target == b"/a?b=c" and head.content_length == 2 and sink.body() == b"hi"


def test_rejects_missing_host() -> None:
    assert refused(b"GET / HTTP/1.1\r\n\r\n") == 400


def test_rejects_two_hosts() -> None:
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400


def test_rejects_absolute_form_target() -> None:
    assert refused(b"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n") == 400


def test_rejects_connect() -> None:
    assert refused(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n") in (400, 405)


@pytest.mark.parametrize("byte_by_byte", [False, True])
def test_upgrade_request_is_read_as_plain_http(byte_by_byte: bool) -> None:
    """llhttp stops at an upgrade; the gateway does not upgrade: the request is read as plain
    HTTP without Upgrade/Connection, and the next pipelined request still parses."""
    upgrade = (
        b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"
    )
    sink = read(upgrade * 2 + b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n", byte_by_byte)
    heads = sink.heads()
    assert [h.target for h in heads] == [b"/a", b"/a", b"/b"]
    assert b"upgrade" not in heads[0].block.lower() and b"connection" not in heads[0].block.lower()
    assert b"http2-settings" not in heads[0].block.lower()  # named in Connection: hop-by-hop
    assert [kind for kind, _ in sink.events].count("end") == 3


def test_rejects_upgrade_with_a_body() -> None:
    """llhttp would read the body as the new protocol's bytes: the request's end is unclear."""
    data = (
        b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
        b"Content-Length: 30\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    assert refused(data) == 400


def test_rejects_long_request_target_with_414() -> None:
    sink = Requests()
    reader = RequestReader(sink, max_head=64 * 1024, max_headers=100, max_body=10, max_line=1024)
    reader.feed(b"GET /" + b"a" * 1023 + b" HTTP/1.1\r\nHost: a\r\n\r\n")  # 1024: fine
    assert len(sink.heads()) == 1
    with pytest.raises(HTTPError) as info:  # one byte more, and byte by byte, without an end
        for byte in b"GET /" + b"a" * 1024:
            reader.feed(bytes([byte]))
    assert info.value.status == 414


def test_route_body_limit_is_asked_per_request() -> None:
    sink = Requests()
    limits = {b"/small": 3, b"/big": 100}
    reader = RequestReader(sink, 64 * 1024, 100, 10, body_limit=lambda head: limits[head.path])
    reader.feed(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 50\r\n\r\n" + b"x" * 50)
    assert sink.body() == b"x" * 50
    with pytest.raises(HTTPError) as info:
        reader.feed(b"POST /small HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nxxxx")
    assert info.value.status == 413
    sink = Requests()
    reader = RequestReader(sink, 64 * 1024, 100, 10, body_limit=lambda head: limits[head.path])
    with pytest.raises(HTTPError) as info:
        reader.feed(b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        reader.feed(b"4\r\nxxxx\r\n")
    assert info.value.status == 413


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_higher_minor_version_is_read_as_http11(version: bytes) -> None:
    """RFC 9110 2.5: a recipient processes HTTP/1.x (x > 1) as the highest 1.x it implements."""
    (head,) = read(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n").heads()
    assert head.version == "1.1" and head.keep_alive


@pytest.mark.parametrize("version", [b"0.9", b"2.0", b"3.1", b"9.9"])
def test_rejects_other_versions_with_505(version: bytes) -> None:
    assert refused(b"GET / HTTP/" + version + b"\r\nHost: a\r\n\r\n") == 505


def test_rejects_head_over_cap_with_431() -> None:
    data = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    assert refused(data, max_head=4096) == 431


def test_rejects_head_over_cap_even_byte_by_byte_without_end() -> None:
    sink = Requests()
    reader = RequestReader(sink, max_head=1024, max_headers=100, max_body=10)
    reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-Long: ")
    with pytest.raises(HTTPError) as info:
        for _ in range(2000):
            reader.feed(b"a")
    assert info.value.status == 431


def test_rejects_too_many_headers_with_431() -> None:
    headers = b"".join(b"X-%d: 1\r\n" % i for i in range(20))
    assert refused(b"GET / HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n", max_headers=10) == 431


def test_rejects_declared_body_over_cap_with_413() -> None:
    assert refused(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", max_body=10) == 413


def test_rejects_chunked_body_over_cap_with_413() -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n"
    assert refused(data, max_body=10) == 413


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS on the plain port
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_rejects_malformed_requests_with_4xx_or_5xx(data: bytes) -> None:
    assert 400 <= refused(data) < 600


def test_reader_stays_failed() -> None:
    sink = Requests()
    reader = RequestReader(sink, 1024, 10, 10)
    with pytest.raises(HTTPError):
        reader.feed(b"GET / HTTP/1.1\r\n\r\n")
    reader.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert reader.failed and not sink.heads()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_http_errors(data: bytes) -> None:
    try:
        read(data)
    except HTTPError as exc:
        assert 400 <= exc.status < 600


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=40), max_size=20))
def test_random_chunked_bodies_raise_only_http_errors(pieces: list[bytes]) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(pieces)
    try:
        read(data)
    except HTTPError as exc:
        assert 400 <= exc.status < 600


class Responses:
    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self.body = b""
        self.ended: bool | None = None

    def on_response_head(self, head: ResponseHead) -> None:
        self.head = head

    def on_response_body(self, data: bytes) -> None:
        self.body += data

    def on_response_end(self, reusable: bool) -> None:
        self.ended = reusable


def response(data: bytes, head_request: bool = False, eof: bool = False) -> Responses:
    sink = Responses()
    reader = ResponseReader(sink, head_request)
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
    if eof:
        reader.feed_eof()
    return sink


def test_response_with_length() -> None:
    sink = response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    assert sink.head is not None and sink.head.framing is Framing.LENGTH
    assert (sink.body, sink.ended) == (b"hello", True)


def test_response_chunked() -> None:
    sink = response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert (sink.body, sink.ended) == (b"abc", True)


def test_response_close_delimited_is_not_reusable() -> None:
    sink = response(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", eof=True)
    assert sink.head is not None and sink.head.framing is Framing.CLOSE
    assert (sink.body, sink.ended) == (b"until the end", False)


def test_response_to_head_ends_after_the_head() -> None:
    sink = response(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", head_request=True)
    assert sink.head is not None and sink.head.content_length == 500
    assert (sink.body, sink.ended) == (b"", True)


@pytest.mark.parametrize("status", [204, 304])
def test_response_without_body(status: int) -> None:
    sink = response(b"HTTP/1.1 %d X\r\n\r\n" % status)
    assert (sink.body, sink.ended) == (b"", True)


def test_interim_responses_are_skipped() -> None:
    sink = response(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert sink.head is not None and sink.head.status == 200 and sink.body == b"x"


@given(
    before=st.lists(st.sampled_from([b"\r\n", b"\n", b"\r"]), min_size=1, max_size=4).map(b"".join),
    interim=st.booleans(),
)
def test_empty_lines_before_a_status_line_are_skipped_as_llhttp_skips_them(
    before: bytes, interim: bool
) -> None:
    """An upstream that leaves CRLFs after a response: llhttp reads past them, and so does the
    head (its status line is not a header line, and an empty line is not its end)."""
    first = b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b""
    sink = response(first + before + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello")
    assert sink.head is not None
    assert (sink.head.status, sink.head.reason, sink.head.block) == (200, b"OK", b"X: y\r\n")
    assert (sink.head.framing, sink.head.content_length) == (Framing.LENGTH, 5)
    assert (sink.body, sink.ended) == (b"hello", True)


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"not http at all\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    ],
)
def test_rejects_bad_upstream_responses(data: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        response(data)


def test_rejects_response_cut_short() -> None:
    with pytest.raises(UpstreamProtocolError):
        response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)


def test_response_hop_by_hop_lines_are_cut_and_others_kept_verbatim() -> None:
    sink = response(
        b"HTTP/1.1 200 Fine\r\nServer: x\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: 5\r\n"
        b"X-Hop: secret\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n"
        b"upgrade: h2c\r\nx-hop-not: kept\r\n\r\nok"
    )
    assert sink.head is not None
    assert sink.head.reason == b"Fine"
    assert sink.head.block == (
        b"Server: x\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nx-hop-not: kept\r\n"
    )
    assert sink.head.headers[0] == (b"Server", b"x")
    assert sink.body == b"ok"


def test_response_reader_is_reused_for_the_next_response() -> None:
    sink = Responses()
    reader = ResponseReader(sink, head_request=False)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
    assert reader.done and reader.reset(False)
    reader.feed(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nb\r\n0\r\n\r\n")
    assert reader.done and sink.head is not None and sink.head.status == 201
    assert sink.body == b"ab"


def test_response_reader_is_not_reused_after_head() -> None:
    reader = ResponseReader(Responses(), head_request=True)
    reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert reader.done and not reader.reset(False)


def test_rejects_obs_fold_in_response() -> None:
    with pytest.raises(UpstreamProtocolError):
        response(b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n")


def test_rejects_response_head_over_cap() -> None:
    reader = ResponseReader(Responses(), head_request=False, max_head=1024)
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(UpstreamProtocolError):
        for _ in range(100):
            reader.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")


@pytest.mark.parametrize(
    ("target", "normal"),
    [
        (b"/api/../admin", b"/admin"),
        (b"/api/./x", b"/api/x"),
        (b"/api/..", b"/"),
        (b"/a/%2e%2e/b", b"/b"),
        (b"/a/%2E./b?q=/../%2e", b"/b?q=/../%2e"),  # the query is kept as it came
        (b"//%61dmin", b"/admin"),
        (b"/secre%74#frag", b"/secret"),
    ],
)
def test_dot_segments_and_escapes_are_normalised_before_routing(
    target: bytes, normal: bytes
) -> None:
    (head,) = read(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n").heads()
    assert head.target == normal


@pytest.mark.parametrize(
    "target",
    [b"/a\\..\\b", b"/public/..%2fadmin", b"/public%2F..%2Fadmin", b"/a%5Cb", b"/a%00", b"/%zz"],
)
def test_rejects_paths_without_one_meaning(target: bytes) -> None:
    assert refused(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n") == 400


def test_path_rules_relax_what_the_reader_forwards() -> None:
    rules = PathRules(normalize=False, merge_slashes=False, escaped_slashes="keep")
    sink = Requests()
    RequestReader(sink, 65536, 100, 1 << 20, path_rules=rules).feed(
        b"GET //%61dmin/a%2fb HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    (head,) = sink.heads()
    assert head.target == b"//%61dmin/a%2fb"


def test_client_forwarding_headers_are_not_forwarded() -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n"
        b"X-Real-IP: 6.6.6.6\r\nX-Keep: 1\r\n\r\n"
    )
    (head,) = read(data).heads()
    assert head.block == b"Host: a\r\nX-Keep: 1\r\n"


H = b"POST / HTTP/1.1\r\nHost: a\r\n"
CHUNKED = H + b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GET / HTTP/1.1\nHost: a\n\n", id="bare-LF-line-ends"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", id="bare-LF-in-head"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: y\rz\r\n\r\n", id="bare-CR-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n", id="obs-fold"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX : y\r\n\r\n", id="space-before-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX\t: y\r\n\r\n", id="tab-before-colon"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", id="empty-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX\x01: v\r\n\r\n", id="CTL-in-name"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", id="NUL-in-value"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", id="DEL-in-value"),
        pytest.param(H + b"Content-Length: +1\r\n\r\nx", id="signed-content-length"),
        pytest.param(H + b"Content-Length: 1,1\r\n\r\nx", id="content-length-list"),
        pytest.param(CHUNKED + b"0x2\r\nhi\r\n0\r\n\r\n", id="chunk-size-0x"),
        pytest.param(CHUNKED + b"2 \r\nhi\r\n0\r\n\r\n", id="chunk-size-space"),
        pytest.param(CHUNKED + b"-2\r\nhi\r\n0\r\n\r\n", id="chunk-size-signed"),
        pytest.param(CHUNKED + b"fffffffffffffffff1\r\nhi\r\n0\r\n\r\n", id="chunk-size-overflow"),
        pytest.param(CHUNKED + b"2;a\nhi\r\n0\r\n\r\n", id="chunk-ext-bare-LF"),
        pytest.param(CHUNKED + b"2;a\x01b\r\nhi\r\n0\r\n\r\n", id="chunk-ext-CTL"),
        pytest.param(CHUNKED + b"2\r\nhiXX0\r\n\r\n", id="chunk-data-overrun"),
        pytest.param(
            b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            id="HTTP/1.0-with-TE",
        ),
    ],
)
def test_rejects_issue_4_list(data: bytes) -> None:
    """Issue 4's refusals (400, then close) that llhttp or checks.py enforce."""
    assert refused(data) == 400


def test_codings_before_chunked_are_forwarded_on_one_line() -> None:
    from outwork.http import serialize

    data = H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
    (head,) = read(data + b"\r\n0\r\n\r\n").heads()
    upstream = serialize.request_head(head, b"\r\n")
    assert upstream.lower().count(b"transfer-encoding") == 1
    assert b"transfer-encoding: gzip, chunked\r\n" in upstream


@pytest.mark.parametrize(
    "host", [b"a b", b"evil.com@x", b"x/y", b"exa_mple.com", b"", b"a:99999", b"[::1", b"a..b"]
)
def test_rejects_invalid_host(host: bytes) -> None:
    assert refused(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n") == 400


@pytest.mark.parametrize("host", [b"[::1]:8443", b"example.com.", b"10.0.0.1:80"])
def test_accepts_valid_host(host: bytes) -> None:
    (head,) = read(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n").heads()
    assert head.block == b"Host: " + host + b"\r\n"


@pytest.mark.parametrize(
    "named", [b"Host", b"close, host", b"Content-Length", b"transfer-encoding"]
)
def test_rejects_connection_naming_a_needed_header(named: bytes) -> None:
    data = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: " + named + b"\r\nContent-Length: 0\r\n\r\n"
    assert refused(data) == 400


def test_underscore_forwarding_headers_are_dropped() -> None:
    data = (
        b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nX_Real_IP: 6.6.6.6\r\n"
        b"X_Forwarded_Host: evil\r\nx-forwarded_proto: gopher\r\nX_Request_Id: 1\r\n"
        b"X_Keep: 1\r\n\r\n"
    )
    (head,) = read(data).heads()
    assert head.block == b"Host: a\r\nX_Keep: 1\r\n"
    assert head.scan is not None and head.scan.xff is None and head.scan.xfh is None


_GATEWAY_NAMES = [b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"]
_GATEWAY_NAMES += [b"x-request-id", b"keep-alive", b"proxy-connection"]


@given(st.sampled_from(_GATEWAY_NAMES), st.lists(st.booleans(), min_size=40, max_size=40))
def test_no_spelling_of_a_gateway_header_passes_as_sent(name: bytes, flips: list[bool]) -> None:
    # Any mix of `_` for `-` and of case: dropped or kept aside, never forwarded as it came.
    spelled = bytes(
        (0x5F if c == 0x2D and flips[i] else c) ^ (0x20 if flips[-i - 1] and 0x61 <= c else 0)
        for i, c in enumerate(name)
    )
    scan = scan_headers([(b"Host", b"a"), (spelled, b"6.6.6.6")])
    assert scan.block == b"Host: a\r\n"
    if b"_" in spelled:  # only the exact (hyphenated) names are kept aside
        assert scan.xff is scan.xfh is scan.xfp is scan.request_id is None
