"""An HTTP/2 request's header list (as HPACK decoded it) checked and turned into the
`RequestHead` the HTTP/1.1 upstream side forwards.

RFC 9113 8.2 and 8.3 say what makes a request malformed; on top of that the request goes on
as an HTTP/1.1 request line and header lines, so nothing may pass that HTTP/1.1 would read
differently: the `:path` and `:authority` are limited to the characters a request line and a
Host line carry, values to what a header line carries. The same scan as HTTP/1.1 (`checks.py`)
then drops what the gateway sets itself and refuses look-alike framing names.

Every refusal is an `HTTPError` with its status: 400 for a malformed request (the stream is
then reset with PROTOCOL_ERROR, RFC 9113 8.1.1), 405/501 for methods, 413, 417, 431.
"""

from __future__ import annotations

import re

from outwork.http.checks import (
    ALLOWED_METHODS,
    MAX_CONTENT_LENGTH_DIGITS,
    scan_headers,
    valid_host,
)
from outwork.http.errors import HTTPError
from outwork.http.messages import Framing, Headers, RequestHead
from outwork.http.path import STRICT, PathRules, normalise_target

# RFC 9113 8.2.2: these describe one HTTP/1.1 hop and make an HTTP/2 request malformed.
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
PSEUDO_HEADERS = frozenset({b":method", b":scheme", b":authority", b":path"})

# A field name: a lower-case token (RFC 9110 5.1; RFC 9113 8.2.1 forbids upper case).
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
# A field value: no NUL, CR, LF (RFC 9113 8.2.1), nor any other control character except
# HTAB (HTTP/1.1's field-vchar, which the upstream reads); no leading or trailing whitespace.
_VALUE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?\Z")
# :path: origin-form, visible ASCII only (it becomes the request line; a space would split it),
# and no `#`: RFC 9113 8.3.1 has no fragment in :path, and a backend that cut one off would
# serve `/secret#x` as /secret while the router saw another path.
_PATH = re.compile(rb"/[\x21\x22\x24-\x7e]*\Z")
_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def _malformed(reason: str) -> HTTPError:
    return HTTPError(400, reason)


def build_request_head(
    headers: Headers,
    end_stream: bool,
    *,
    scheme: bytes,
    max_headers: int,
    max_body: int,
    max_list_size: int,
    path_rules: PathRules = STRICT,
    max_line: int = 8 * 1024,
) -> RequestHead:
    """Check a request's decoded header list and build its HTTP/1.1 head.

    `end_stream`: the HEADERS frame ended the stream (no body follows). The body framing sent
    upstream is Content-Length when the client gave one, chunked otherwise.
    """
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    cookies: list[bytes] = []
    size = 0
    hosts: list[bytes] = []
    lengths: list[bytes] = []
    for name, value in headers:
        # RFC 9113 6.5.2: each field counts its name, its value and 32 bytes of overhead.
        size += len(name) + len(value) + 32
        if size > max_list_size:
            raise HTTPError(431, "header list too large")
        if name[:1] == b":":
            if regular or cookies or hosts or lengths:
                raise _malformed("pseudo-header after a regular header")
            if name not in PSEUDO_HEADERS:
                raise _malformed("unknown pseudo-header")
            if name in pseudo:
                raise _malformed("repeated pseudo-header")
            pseudo[name] = value
            continue
        if not _NAME.match(name):
            raise _malformed("invalid or upper-case header name")
        if not _VALUE.match(value):
            raise _malformed("invalid character or surrounding whitespace in a header value")
        if name in CONNECTION_SPECIFIC:
            raise _malformed("connection-specific header")
        if name == b"te":
            if value != b"trailers":
                raise _malformed("te other than trailers")
            continue  # hop-by-hop for the HTTP/1.1 upstream
        if name == b"cookie":
            cookies.append(value)  # crumbs, joined below (RFC 9113 8.2.3)
            continue
        if name == b"host":
            hosts.append(value)
        elif name == b"content-length":
            lengths.append(value)
        regular.append((name, value))
        if len(regular) + len(pseudo) > max_headers:
            raise HTTPError(431, "too many header fields")

    method = pseudo.get(b":method")
    path = pseudo.get(b":path")
    scheme_value = pseudo.get(b":scheme")
    authority = pseudo.get(b":authority")
    if method is None or not _METHOD.match(method):
        raise _malformed("missing or invalid :method")
    if method == b"CONNECT":
        raise HTTPError(405, "CONNECT is not supported")
    if path is None or scheme_value is None:
        raise _malformed("missing :path or :scheme")
    if scheme_value != scheme:
        raise _malformed(":scheme does not match the connection")
    if not (_PATH.match(path) or (path == b"*" and method == b"OPTIONS")):
        raise _malformed("invalid :path")
    if len(path) > max_line:
        # Before normalising, as HTTP/1.1 does: the work is linear in the path's length.
        raise HTTPError(414, ":path too long")
    if path != b"*":
        path = normalise_target(path, path_rules)  # what routes and the upstream see
    if method not in ALLOWED_METHODS:
        raise HTTPError(501, "method not supported")

    # One Host line upstream: from :authority, or the Host header when there is none
    # (RFC 9113 8.3.1); both present and different is malformed.
    if len(hosts) > 1:
        raise _malformed("more than one Host header")
    if authority is not None:
        # host[:port] (RFC 9113 8.3.1: no userinfo), as a Host line must be (checks.valid_host)
        if not valid_host(authority):
            raise _malformed("invalid :authority")
        if hosts:
            if hosts[0].lower() != authority.lower():
                raise _malformed("Host differs from :authority")
        else:
            regular.insert(0, (b"host", authority))
    elif not hosts:
        raise _malformed("neither :authority nor Host")
    elif not valid_host(hosts[0]):
        raise _malformed("invalid Host")
    if cookies:
        regular.append((b"cookie", b"; ".join(cookies)))

    scan = scan_headers(regular)  # drops what the gateway sets; refuses look-alike names
    expect_continue = False
    if scan.expect is not None:
        if scan.expect.lower() != b"100-continue":
            raise HTTPError(417, "unsupported Expect")
        expect_continue = not end_stream

    content_length = -1
    if lengths:
        values = set(lengths)
        if len(values) != 1:
            raise _malformed("differing Content-Length values")
        value = lengths[0]
        if not value.isdigit() or len(value) > MAX_CONTENT_LENGTH_DIGITS:
            raise _malformed("invalid Content-Length")
        content_length = int(value)
        if content_length > max_body:
            raise HTTPError(413, f"body of {content_length} bytes exceeds {max_body}")
        if end_stream and content_length:
            raise _malformed("Content-Length on a request without a body")
    if end_stream or content_length == 0:
        framing = Framing.NONE
        content_length = -1
    elif content_length > 0:
        framing = Framing.LENGTH
    else:
        framing = Framing.CHUNKED  # a body of unknown length: chunked upstream
    return RequestHead(
        method=method,
        target=path,
        version="2",
        headers=regular,
        block=scan.block,
        framing=framing,
        content_length=content_length,
        keep_alive=True,
        expect_continue=expect_continue,
        scan=scan,  # Host, and the client's forwarding headers and request id, kept aside
    )
