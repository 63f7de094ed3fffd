"""The HTTP/2 request-head builder (`outwork.http.h2head`): property tests (hypothesis) and one
`rejects_*` case per RFC 9113 8.2/8.3 rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.http.errors import HTTPError
from outwork.http.h2head import build_request_head
from outwork.http.messages import Framing
from outwork.http.serialize import forwarded_headers, request_head

LIMITS = {"scheme": b"https", "max_headers": 100, "max_body": 10_000, "max_list_size": 65536}
BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a.test"), (b":path", b"/")]


def build(headers, end_stream=True, **limits):
    return build_request_head(headers, end_stream, **{**LIMITS, **limits})


def status_of(headers, end_stream=True, **limits) -> int:
    with pytest.raises(HTTPError) as caught:
        build(headers, end_stream, **limits)
    return caught.value.status


def test_a_plain_get_becomes_an_http11_head():
    head = build(BASE + [(b"accept", b"*/*")])
    assert (head.method, head.target, head.version) == (b"GET", b"/", "2")
    assert head.framing is Framing.NONE
    assert head.block == b"host: a.test\r\naccept: */*\r\n"


def test_cookie_crumbs_are_joined():
    head = build(BASE + [(b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")])
    assert head.block.endswith(b"cookie: a=1; b=2\r\n")
    assert head.block.count(b"cookie") == 1


def test_body_framing():
    assert build(BASE, end_stream=False).framing is Framing.CHUNKED
    with_length = build(BASE + [(b"content-length", b"12")], end_stream=False)
    assert (with_length.framing, with_length.content_length) == (Framing.LENGTH, 12)
    assert build(BASE + [(b"content-length", b"0")], end_stream=False).framing is Framing.NONE


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ([(b"X-Upper", b"1")], 400),
        ([(b"connection", b"close")], 400),
        ([(b"keep-alive", b"1")], 400),
        ([(b"proxy-connection", b"1")], 400),
        ([(b"transfer-encoding", b"chunked")], 400),
        ([(b"upgrade", b"h2c")], 400),
        ([(b"te", b"gzip")], 400),
        ([(b"x", b"a\rb")], 400),
        ([(b"x", b"a\nb")], 400),
        ([(b"x", b"a\x00b")], 400),
        ([(b"x", b" padded")], 400),
        ([(b"x", b"padded\t")], 400),
        ([(b"bad name", b"1")], 400),
        ([(b"", b"1")], 400),
        ([(b"host", b"b.test")], 400),  # differs from :authority
        ([(b"content_length", b"1")], 400),  # a look-alike framing name
        ([(b"content-length", b"1"), (b"content-length", b"2")], 400),
        ([(b"content-length", b"-1")], 400),
        ([(b"content-length", b"20000")], 413),
        ([(b"expect", b"magic")], 417),
        ([(b":path", b"/again")], 400),  # a pseudo-header after a regular one (and repeated)
    ],
)
def test_rejects(extra, status):
    assert status_of(BASE + extra, end_stream=False) == status


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (BASE[1:], 400),  # no :method
        ([h for h in BASE if h[0] != b":path"], 400),
        ([h for h in BASE if h[0] != b":scheme"], 400),
        ([h for h in BASE if h[0] != b":authority"], 400),  # and no Host either
        (BASE + [(b":method", b"GET")], 400),  # repeated
        ([(b":protocol", b"websocket")] + BASE, 400),  # unknown pseudo-header
        ([(b":method", b"CONNECT"), (b":authority", b"a.test:443")], 405),
        ([(b":method", b"BREW")] + BASE[1:], 501),
        ([BASE[0], (b":scheme", b"http")] + BASE[2:], 400),  # not this connection's scheme
        (BASE[:3] + [(b":path", b"relative")], 400),
        (BASE[:3] + [(b":path", b"/a b")], 400),  # a space would split the request line
        (BASE[:3] + [(b":path", b"/secret#x")], 400),  # no fragment in :path
        (BASE[:3] + [(b":path", b"/public/..%2fadmin")], 400),  # an escaped slash
        (BASE[:3] + [(b":path", b"/a%00")], 400),
        (BASE[:3] + [(b":path", b"/%C0%AF")], 400),  # overlong UTF-8 for `/`
        (BASE[:3] + [(b":path", b"")], 400),
        ([BASE[0], BASE[1], (b":authority", b"user@a.test"), BASE[3]], 400),
    ],
)
def test_rejects_pseudo_headers(headers, status):
    assert status_of(headers) == status


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        (b"/api/../admin", b"/admin"),
        (b"//%61dmin", b"/admin"),
        (b"/secre%74?x=%2f", b"/secret?x=%2f"),
        (b"/a/./b/%7e%2d", b"/a/b/~-"),
    ],
)
def test_path_is_normalised(path, normal):
    assert build(BASE[:3] + [(b":path", path)]).target == normal


@pytest.mark.parametrize(
    "authority",
    [b"a b", b"evil.com@x", b"x/y", b"exa_mple.com", b"a..b", b"a:99999", b"[::1", b"[zz::1]:1"],
)
def test_rejects_invalid_authority_and_host(authority):
    assert status_of(BASE[:2] + [(b":authority", authority), BASE[3]]) == 400
    assert status_of(BASE[:2] + [BASE[3], (b"host", authority)]) == 400


@pytest.mark.parametrize(
    "authority", [b"a.test.", b"[::1]:8443", b"127.0.0.1:80", b"xn--bcher-kva"]
)
def test_accepts_valid_authority(authority):
    head = build(BASE[:2] + [(b":authority", authority), BASE[3]])
    assert head.block == b"host: " + authority + b"\r\n"


def test_underscore_forwarding_names_are_dropped():
    extra = [(b"x_forwarded_for", b"6.6.6.6"), (b"x_real_ip", b"6.6.6.6"), (b"x-keep", b"1")]
    head = build(BASE + extra)
    assert head.block == b"host: a.test\r\nx-keep: 1\r\n"
    assert head.scan is not None and head.scan.xff is None


def test_long_path_is_414_before_it_is_normalised():
    path = b"/." * 5000  # 10 KB: refused before any work on it
    assert status_of(BASE[:3] + [(b":path", path)], max_line=8192) == 414
    assert build(BASE[:3] + [(b":path", path)], max_line=16384).target == b"/"


def test_rejects_too_many_and_too_large():
    assert status_of(BASE + [(b"x%d" % i, b"v") for i in range(100)]) == 431
    assert status_of(BASE + [(b"x", b"v" * 70000)]) == 431


# Properties

_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12).map(str.encode)
_value = st.binary(max_size=40)
_headers = st.lists(st.tuples(st.one_of(_token, st.binary(max_size=12)), _value), max_size=12)


@given(_headers, st.booleans())
def test_any_header_list_is_refused_with_a_status_or_gives_a_safe_head(extra, end_stream):
    try:
        head = build(BASE + extra, end_stream)
    except HTTPError as exc:
        assert exc.status in (400, 405, 413, 417, 431, 501)
        return
    # What goes upstream is one request line and header lines, each a single line: nothing
    # from the client can start a second request or a header of its own.
    wire = request_head(head, forwarded_headers(b"127.0.0.1", b"https"))
    lines = wire.split(b"\r\n")
    assert lines[0] == head.method + b" " + head.target + b" HTTP/1.1"
    assert wire.endswith(b"\r\n\r\n") and wire.count(b"\r\n\r\n") == 1
    for line in lines[1:-2]:
        assert b"\n" not in line and b"\r" not in line and b"\x00" not in line
        name, sep, _ = line.partition(b": ")
        assert sep and name == name.lower()
    assert sum(1 for line in lines if line.startswith(b"host: ")) == 1
    names = [line.partition(b":")[0] for line in head.block.split(b"\r\n")]
    for forbidden in (b"connection", b"transfer-encoding", b"upgrade", b"te", b"content-length"):
        assert forbidden not in names  # framing is the gateway's own, from what it checked
    framing_lines = [x for x in lines if x.startswith((b"content-length", b"transfer-encoding"))]
    assert len(framing_lines) == (0 if head.framing is Framing.NONE else 1)


@given(st.lists(st.binary(min_size=1, max_size=10).filter(lambda v: b";" not in v), max_size=6))
def test_cookie_crumbs_keep_their_order(values):
    values = [v for v in values if v.strip(b" \t") == v and all(0x20 < c < 0x7F for c in v)]
    head = build(BASE + [(b"cookie", v) for v in values])
    if values:
        assert head.block.endswith(b"cookie: " + b"; ".join(values) + b"\r\n")
    else:
        assert b"cookie" not in head.block


@given(st.permutations(BASE))
def test_pseudo_header_order_does_not_matter(order):
    assert build(list(order)).block == b"host: a.test\r\n"
