"""CORS under the `headers` step, in process: preflights answered (204 with the headers, or 403
`cors_rejected`), actual requests' answers given the origin's headers (and the upstream's own
removed), and the config rules (`*` alone, never with credentials)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.filters import CONTINUE, Reply
from outwork.filters.headers import HeadersFilter, HeadersSpec, build
from outwork.http.messages import Framing, ResponseHead
from outwork.observe.refusals import Refusal
from tests.filters.context import FakeContext, head, no_resume
from tests.proxy.test_filters import BASE, _problems

APP = b"https://app.example"
CORS: dict[str, Any] = {
    "origins": ["https://app.example", "HTTPS://Other.Example:443", "http://localhost:8080"],
    "methods": ["GET", "POST"],
    "headers": ["Authorization", "Content-Type"],
    "expose": ["X-Request-Id", "X-Total"],
    "credentials": True,
    "max_age": 300,
}


def headers_filter(cors: dict[str, Any] = CORS, **spec: Any) -> HeadersFilter:
    return build(msgspec.convert({**spec, "cors": cors}, HeadersSpec, strict=True))


def preflight(
    f: HeadersFilter, origin: bytes, method: bytes = b"POST", requested: bytes | None = None
) -> Any:
    fields = [(b"Origin", origin), (b"Access-Control-Request-Method", method)]
    if requested is not None:
        fields.append((b"Access-Control-Request-Headers", requested))
    h = head(b"OPTIONS", fields, Framing.NONE, -1)
    return f.on_request_head(FakeContext(), h, no_resume)


def answer(
    f: HeadersFilter, origin: bytes | None, upstream: bytes = b""
) -> dict[bytes, list[bytes]]:
    """The response headers an actual request from `origin` gets (lower-case names)."""
    ctx = FakeContext()
    fields = [(b"Origin", origin)] if origin is not None else []
    assert f.on_request_head(ctx, head(b"GET", fields, Framing.NONE, -1), no_resume) is CONTINUE
    response = ResponseHead(
        200, b"OK", b"Content-Type: text/plain\r\n" + upstream, Framing.LENGTH, 0
    )
    assert f.on_response_head(ctx, response, no_resume) is CONTINUE
    assert not ctx.filter_state
    got: dict[bytes, list[bytes]] = {}
    for name, value in response.headers:
        got.setdefault(name.lower(), []).append(value)
    return got


def test_an_allowed_preflight_is_answered_204_with_the_policy():
    got = preflight(headers_filter(), APP, b"POST", b"authorization, Content-Type")
    assert isinstance(got, Reply) and got.status == 204 and got.refusal is None
    assert got.body == b""
    assert dict(got.headers) == {
        b"access-control-allow-origin": APP,
        b"access-control-allow-methods": b"GET, POST",
        b"access-control-allow-headers": b"Authorization, Content-Type",
        b"access-control-allow-credentials": b"true",
        b"access-control-max-age": b"300",
        b"vary": b"Origin",
    }


def test_origins_are_compared_as_browsers_send_them():
    f = headers_filter()
    for origin in (b"https://other.example", b"http://localhost:8080"):
        got = preflight(f, origin, b"GET")
        assert isinstance(got, Reply) and got.status == 204
        assert dict(got.headers)[b"access-control-allow-origin"] == origin


@pytest.mark.parametrize(
    ("origin", "method", "requested", "reason"),
    [
        (b"https://evil.example", b"GET", None, "origin"),
        (b"https://app.example.evil.example", b"GET", None, "origin"),
        (b"http://app.example", b"GET", None, "origin"),  # another scheme is another origin
        (b"null", b"GET", None, "origin"),
        (APP, b"DELETE", None, "method"),
        (APP, b"post", None, "method"),  # methods are case-sensitive
        (APP, b"POST", b"Authorization, X-Secret", "header"),
    ],
)
def test_a_preflight_not_allowed_is_refused_403(origin, method, requested, reason):
    got = preflight(headers_filter(), origin, method, requested)
    assert isinstance(got, Reply)
    assert (got.status, got.refusal, got.detail["reason"]) == (403, Refusal.CORS_REJECTED, reason)
    assert not any(name.startswith(b"access-control") for name, _ in got.headers)


def test_an_options_request_that_is_no_preflight_goes_on():
    f = headers_filter()
    h = head(b"OPTIONS", [(b"Origin", APP)], Framing.NONE, -1)
    assert f.on_request_head(FakeContext(), h, no_resume) is CONTINUE
    assert (
        headers_filter().on_request_head(FakeContext(), head(b"OPTIONS", []), no_resume) is CONTINUE
    )


def test_an_allowed_origin_gets_its_headers_and_the_upstreams_are_replaced():
    upstream = b"Access-Control-Allow-Origin: *\r\naccess-control-allow-credentials: false\r\n"
    got = answer(headers_filter(), APP, upstream)
    assert got[b"access-control-allow-origin"] == [APP]
    assert got[b"access-control-allow-credentials"] == [b"true"]
    assert got[b"access-control-expose-headers"] == [b"X-Request-Id, X-Total"]
    assert got[b"vary"] == [b"Origin"]


def test_another_origin_gets_no_cors_headers_and_is_not_refused():
    for origin in (b"https://evil.example", None):
        got = answer(headers_filter(), origin, b"Access-Control-Allow-Origin: *\r\n")
        assert not any(name.startswith(b"access-control") for name in got)
        assert got[b"vary"] == [b"Origin"]  # a cache must not give this answer to app.example


def test_any_origin_without_credentials():
    f = headers_filter({"origins": ["*"]})
    got = preflight(f, b"https://anyone.example", b"GET")
    assert isinstance(got, Reply) and dict(got.headers)[b"access-control-allow-origin"] == b"*"
    assert b"vary" not in dict(got.headers)
    answered = answer(f, b"https://anyone.example")
    assert answered[b"access-control-allow-origin"] == [b"*"]
    assert b"access-control-allow-credentials" not in answered


def test_cors_goes_with_the_other_header_edits():
    f = headers_filter(remove=["Server"], add={"X-Frame-Options": "DENY"})
    got = answer(f, APP, b"Server: x\r\n")
    assert b"server" not in got and got[b"x-frame-options"] == [b"DENY"]
    assert got[b"access-control-allow-origin"] == [APP]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('policies: {p: {headers: {cors: {origins: ["*"], credentials: true}}}}\n', "credentials"),
        ('policies: {p: {headers: {cors: {origins: ["*", "https://a.example"]}}}}\n', "alone"),
        ('policies: {p: {headers: {cors: {origins: ["null"]}}}}\n', "origins"),
        ('policies: {p: {headers: {cors: {origins: ["https://a.example/path"]}}}}\n', "origins"),
        ("policies: {p: {headers: {cors: {origins: []}}}}\n", "origins"),
        (
            'policies: {p: {headers: {cors: {origins: ["https://a.example"], max_age: -1}}}}\n',
            "max_age",
        ),
        (
            'policies: {p: {headers: {cors: {origins: ["https://a"], methods: ["G T"]}}}}\n',
            "methods",
        ),
        (
            'policies: {p: {headers: {add: {Access-Control-Allow-Origin: "*"},'
            ' cors: {origins: ["https://a.example"]}}}}\n',
            "set by cors",
        ),
    ],
)
def test_the_config_refuses(tmp_path, extra, expected):
    found = _problems(tmp_path, BASE + extra)
    assert any(expected in problem for problem in found), found


FIELD_BYTES = st.binary(max_size=40) | st.sampled_from(
    [APP, b"https://other.example", b"null", b"*", b"GET", b"POST", b"authorization, content-type"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"OPTIONS", b"GET", b"POST"]),
    st.lists(
        st.tuples(
            st.sampled_from(
                [b"Origin", b"Access-Control-Request-Method", b"access-control-request-headers"]
            ),
            FIELD_BYTES,
        ),
        max_size=4,
    ),
    st.booleans(),
)
def test_whatever_the_request_says_the_answer_is_well_formed(method, fields, any_origin):
    """What the request's CORS headers hold never raises, and never reaches an answer's head
    but as an origin the policy allows (so no CR, LF or NUL can split it)."""
    f = headers_filter({"origins": ["*"]} if any_origin else CORS)
    ctx = FakeContext()
    verdict = f.on_request_head(ctx, head(method, fields, Framing.NONE, -1), no_resume)
    if isinstance(verdict, Reply):
        assert verdict.status in (204, 403)
        for _, value in verdict.headers:
            assert not set(value) & set(b"\r\n\0")
        return
    assert verdict is CONTINUE
    response = ResponseHead(200, b"OK", b"Content-Type: text/plain\r\n", Framing.LENGTH, 0)
    f.on_response_head(ctx, response, no_resume)
    for line in response.block.split(b"\r\n")[:-1]:
        name, colon, value = line.partition(b":")
        assert colon and name and not set(value) & set(b"\r\n\0")
    origin = dict(response.headers).get(b"Access-Control-Allow-Origin")
    assert origin in (None, b"*", APP, b"https://other.example", b"http://localhost:8080")
