"""The strict framing rules applied on top of llhttp, in one place.

Request smuggling lives in the gap between two parsers' readings of the same bytes, so anything
ambiguous is refused rather than interpreted: both Content-Length and Transfer-Encoding, several
Content-Length headers, a transfer coding other than a final `chunked`, a missing or repeated
Host. Each refusal names its status; the connection is closed after answering.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final

from outwork.http.ascii import CR, LF, UNDERSCORE
from outwork.http.errors import HTTPError, UpstreamProtocolError
from outwork.http.messages import Framing, Headers

# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_FRAMING_CHUNKED: Final = Framing.CHUNKED
_FRAMING_CLOSE: Final = Framing.CLOSE
_FRAMING_LENGTH: Final = Framing.LENGTH
_FRAMING_NONE: Final = Framing.NONE

MAX_CONTENT_LENGTH_DIGITS: Final = 18  # < 2**63; anything longer is not a real body

# Connection-level headers that describe one hop and are never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",  # re-emitted by the gateway from the framing it verified
    }
)

ALLOWED_METHODS: Final = frozenset(
    {b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"}
)


def _content_length(values: list[bytes], error: Callable[[str], Exception]) -> int:
    if len(values) != 1:
        raise error("more than one Content-Length")
    value = values[0].strip(b" \t")  # llhttp keeps trailing OWS
    if not value.isdigit() or len(value) > MAX_CONTENT_LENGTH_DIGITS:
        raise error("invalid Content-Length")
    return int(value)


def _bad_request(message: str) -> HTTPError:
    return HTTPError(400, message)


# What one pass over the headers looks for; everything else is forwarded as it came. (Final
# names: C constants in compiled code, where a tuple-unpacked name is a dict lookup per use.)
_LENGTH: Final = 0
_CODING: Final = 1
_HOST: Final = 2
_EXPECT: Final = 3
_CONNECTION: Final = 4
_DROP: Final = 5
_XFF: Final = 6
_XFP: Final = 7
_XFH: Final = 8
_FORWARDED: Final = 9
_REQUEST_ID: Final = 10
_UPGRADE: Final = 11
_SPECIAL: Final = {
    b"content-length": _LENGTH,
    b"transfer-encoding": _CODING,
    b"host": _HOST,
    b"expect": _EXPECT,  # answered by the gateway itself, not forwarded
    b"connection": _CONNECTION,
    b"keep-alive": _DROP,
    b"proxy-connection": _DROP,
    b"te": _DROP,
    b"trailer": _DROP,
    # Never forwarded as sent, whatever it asks for: the gateway speaks HTTP/1.1 upstream (h2c
    # and any other upgrade are ignored, RFC 9110 7.8); a WebSocket upgrade is re-emitted.
    b"upgrade": _UPGRADE,
    # Set by the gateway from what it knows; a client's own values would be believed upstream.
    # Kept aside (not forwarded as they came): appended to when the peer is a trusted proxy.
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _XFP,
    b"x-forwarded-host": _XFH,
    b"forwarded": _FORWARDED,
    b"x-real-ip": _DROP,
    b"x-request-id": _REQUEST_ID,  # checked, then sent on (or replaced) by the gateway
}
# The headers kept aside, by name: HeaderScan attribute.
_KEPT: Final = {
    b"x-forwarded-for": "xff",
    b"x-forwarded-proto": "xfp",
    b"x-forwarded-host": "xfh",
    b"forwarded": "forwarded",
    b"x-request-id": "request_id",
}
_CONNECTION_OPTIONS: Final = frozenset({b"close", b"keep-alive"})
# Headers the request cannot be forwarded correctly without: Connection may not declare them
# hop-by-hop (RFC 9110 7.6.1 lets a proxy drop what Connection names; a client must not be
# able to make the gateway route on a Host that the backend never sees).
_NEEDED: Final = frozenset({b"host", b"content-length", b"transfer-encoding"})

# A name that some backends fold into Content-Length or Transfer-Encoding (CGI-style servers map
# `_` to `-`; others drop punctuation): `Content_Length`, `Transfer---Encoding`. Only names
# starting with one of the prefixes pay for the regex.
_LOOKALIKE_PREFIXES: Final = (b"content", b"transfer")
_LOOKALIKE: Final = re.compile(rb"(?:content[^a-z0-9]*length|transfer[^a-z0-9]*encoding)\Z")

# Transfer codings that may precede the final chunked (RFC 9112 7; `identity` is dropped).
_KNOWN_CODINGS: Final = frozenset({b"gzip", b"x-gzip", b"deflate", b"compress", b"x-compress"})
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_PARAMETERS: Final = re.compile(
    rb"(?:[ \t]*;[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    rb"(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|\"[^\"\\\x00-\x1f\x7f]*\"))?)?)*[ \t]*\Z"
)


class HeaderScan:
    """The framing-relevant headers of a message, and its end-to-end headers serialized
    (`block`, each line ending in CRLF), found in one pass."""

    __slots__ = (
        "block",
        "lengths",
        "codings",
        "hosts",
        "host",
        "expect",
        "forwarded_codings",
        "xff",
        "xfp",
        "xfh",
        "forwarded",
        "request_id",
        "upgrade",
        "connection_upgrade",
    )

    def __init__(self) -> None:
        self.block = b""
        self.lengths: list[bytes] = []
        self.codings: list[bytes] = []
        self.hosts = 0
        self.host = b""  # the Host value (when there is exactly one)
        self.expect: bytes | None = None
        # Request codings applied before the final chunked, normalised, to forward (rare).
        self.forwarded_codings = b""
        # A client's forwarding headers and request id (several lines joined by ", "); not in
        # `block`: the gateway decides what to send (connection.py).
        self.xff: bytes | None = None
        self.xfp: bytes | None = None
        self.xfh: bytes | None = None
        self.forwarded: bytes | None = None
        self.request_id: bytes | None = None
        self.upgrade: list[bytes] = []  # Upgrade field values
        self.connection_upgrade = False  # Connection lists the `upgrade` option


def scan_headers(headers: Headers) -> HeaderScan:
    scan = HeaderScan()
    parts: list[bytes] = []
    connection: list[bytes] | None = None
    special = _SPECIAL
    for name, value in headers:
        lname = name.lower()
        kind = special.get(lname)
        if kind is None:
            if lname.startswith(_LOOKALIKE_PREFIXES) and _LOOKALIKE.match(lname):
                raise HTTPError(400, "a field name that mimics a framing header")
            if UNDERSCORE in lname and lname.replace(b"_", b"-") in special:
                # `X_Forwarded_For`: CGI-style backends read it as X-Forwarded-For, so it goes
                # the way its hyphenated form would, never on as the client sent it.
                continue
            parts += (name, b": ", value, b"\r\n")
        elif kind == _HOST:
            scan.hosts += 1
            scan.host = value
            parts += (name, b": ", value, b"\r\n")
        elif kind == _LENGTH:
            scan.lengths.append(value)
        elif kind == _CODING:
            scan.codings.append(value)
        elif kind == _EXPECT:
            scan.expect = value
        elif kind == _CONNECTION:
            if connection is None:
                connection = []
            connection.append(value)
        elif kind == _UPGRADE:
            scan.upgrade.append(value)
        elif kind != _DROP:
            _keep(scan, _KEPT[lname], value.strip(b" \t"))
    if connection is not None:
        # Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1). Rare: a second pass.
        tokens = {t.strip().lower() for v in connection for t in v.split(b",")}
        tokens -= _CONNECTION_OPTIONS
        if tokens & _NEEDED:
            raise HTTPError(400, "Connection names Host or a framing header")
        for name in tokens & _KEPT.keys():  # named hop-by-hop by the client: not kept either
            setattr(scan, _KEPT[name], None)
        if b"upgrade" in tokens:
            scan.connection_upgrade = True
            tokens.discard(b"upgrade")
        if tokens:
            parts = []
            for name, value in headers:
                lname = name.lower()
                if lname not in tokens and (lname not in special or lname == b"host"):
                    parts += (name, b": ", value, b"\r\n")
    scan.block = b"".join(parts)
    return scan


def _keep(scan: HeaderScan, attribute: str, value: bytes) -> None:
    previous = getattr(scan, attribute)
    if attribute == "request_id":
        # Two ids are no id: the gateway makes its own.
        setattr(scan, attribute, b"" if previous is not None else value)
    else:
        setattr(scan, attribute, value if previous is None else previous + b", " + value)


# Response header lines the gateway acts on or drops; any other line is forwarded byte for byte.
# `x-request-id` is dropped too: the gateway writes the id it sent upstream (never two lines).
_RESPONSE_SPECIAL_SPELLINGS: Final = (
    b"Content-Length",
    b"Transfer-Encoding",
    b"Connection",
    b"Keep-Alive",
    b"Proxy-Connection",
    b"TE",
    b"Trailer",
    b"Upgrade",
    b"X-Request-Id",
)


def _by_first_letter(spellings: tuple[bytes, ...]) -> dict[int, list[tuple[bytes, bytes]]]:
    table: dict[int, list[tuple[bytes, bytes]]] = {}
    for spelling in spellings:
        table.setdefault(spelling[0] | 0x20, []).append((spelling.lower(), spelling))
    return table


# By first letter (lower case): each name, lower case and in its usual spelling. A line starting
# with another letter is forwarded unread; one starting with such a letter is read only if a
# colon stands where the name would end, so Content-Type and the like cost two byte reads.
_RESPONSE_SPECIAL_BY_FIRST: Final = _by_first_letter(_RESPONSE_SPECIAL_SPELLINGS)
# The same, indexed by a line's first byte as it is (a tuple index costs a fraction of a dict
# lookup with a boxed int; every header line of every response is looked up).
_RESPONSE_SPECIAL_BY_BYTE: Final[tuple[list[tuple[bytes, bytes]] | None, ...]] = tuple(
    _RESPONSE_SPECIAL_BY_FIRST.get(byte | 0x20) for byte in range(256)
)

# The same lines for a head with a bare CR or LF (`_scan_irregular`), matched against b"\n" +
# the lower-cased head: a match starts at the LF before a line (the one added stands before
# the first) and ends at the line's CR, followed by its LF, so match offsets are the line's own
# offsets in the head.
_RESPONSE_SPECIAL: Final = re.compile(
    rb"\n(?:(content-length|transfer-encoding|connection|keep-alive|proxy-connection|te|trailer"
    rb"|upgrade|x-request-id):[ \t]*([^\r]*?)[ \t]*\r(?=\n)"
    rb"|[ \t])"  # a line that starts with whitespace: obs-fold
)


def _obs_fold() -> UpstreamProtocolError:
    # RFC 9112 5.2: a gateway answers 502 to obs-fold (or unfolds it); never forwards it.
    return UpstreamProtocolError("obsolete line folding in a response header")


def scan_response_head(blob: bytes) -> HeaderScan:
    """Scan an upstream's header lines (`blob`: each line ends in CRLF, already accepted by
    llhttp): collect the framing headers, cut out the hop-by-hop lines."""
    lines = blob.split(b"\r\n")
    # A bare CR or LF is one left inside a line. Looked for in the lines joined: a copy and
    # two memchr, where counting them in the head (a translate) cost ~3,500 instructions.
    joined = b"".join(lines)
    if CR not in joined and LF not in joined:
        scan, tokens = _scan_lines(lines)
    else:
        scan, tokens = _scan_irregular(blob)
    if tokens is not None:
        _cut_connection_named(scan, tokens)
    return scan


def _cut_connection_named(scan: HeaderScan, tokens: set[bytes]) -> None:
    """The Connection options: `upgrade`, and headers named hop-by-hop (rare), cut out."""
    tokens -= _CONNECTION_OPTIONS
    if b"upgrade" in tokens:
        scan.connection_upgrade = True
        tokens.discard(b"upgrade")
    if tokens:
        names = b"|".join(re.escape(t) for t in tokens)
        extra = re.compile(rb"^(?:" + names + rb")[ \t]*:[^\r]*\r\n", re.I | re.M)
        scan.block = extra.sub(b"", scan.block)


def _scan_lines(lines: list[bytes]) -> tuple[HeaderScan, set[bytes] | None]:
    """A head whose every CR and LF is in a CRLF, split at them (`lines`; the last is what
    follows the last CRLF): the scan and the Connection tokens, if it names any.

    Every proxied response takes this path. A Python step per line is cheaper here than a regex
    over the head (sre matched at about 70 instructions a byte, and each match found cost as
    much again): most lines are dismissed by their first byte."""
    scan = HeaderScan()
    tokens: set[bytes] | None = None
    kept: list[bytes] | None = None  # the lines forwarded, once one is cut
    last = len(lines) - 1
    for index, line in enumerate(lines):
        if not line:
            if kept is not None:
                kept.append(line)
            continue
        first = line[0]
        if first == 0x20 or first == 0x09:
            raise _obs_fold()
        if index < last:
            special = _special_name(line, first)
            if special is not None:
                if kept is None:
                    kept = lines[:index]
                value = line[len(special) + 1 :].strip(b" \t").lower()
                tokens = _take_response_header(scan, special, value, tokens)
                continue
        if kept is not None:
            kept.append(line)
    scan.block = b"\r\n".join(lines if kept is None else kept)
    return scan, tokens


def _special_name(line: bytes, first: int) -> bytes | None:
    """The lower-case name of `line` if it is one of _RESPONSE_SPECIAL_SPELLINGS (in any case)
    followed by a colon (what partition at the first colon would give), else None."""
    candidates = _RESPONSE_SPECIAL_BY_BYTE[first]
    if candidates is None:
        return None
    size = len(line)
    for name, spelling in candidates:
        end = len(name)
        if end < size and line[end] == 0x3A:
            head = line[:end]
            if head == spelling or head.lower() == name:
                return name
    return None


def _scan_irregular(blob: bytes) -> tuple[HeaderScan, set[bytes] | None]:
    """`_scan_lines` for a head with a bare CR or LF, where a line of the framing headers ends
    at its first CRLF and a line starting after any LF may be obs-fold."""
    scan = HeaderScan()
    pieces: list[bytes] = []
    at = 0
    tokens: set[bytes] | None = None
    # Lower-casing keeps every offset, so a match in `lower` cuts the same line out of `blob`;
    # the values used (lengths, codings, connection options) are case-insensitive anyway.
    lower = b"\n" + blob.lower()
    for match in _RESPONSE_SPECIAL.finditer(lower):
        name = match.group(1)
        if name is None:
            raise _obs_fold()
        begin, end = match.span()
        if begin > at:
            pieces.append(blob[at:begin])
        at = end
        tokens = _take_response_header(scan, name, match.group(2), tokens)
    pieces.append(blob[at:])
    scan.block = b"".join(pieces)
    return scan, tokens


def _take_response_header(
    scan: HeaderScan, name: bytes, value: bytes, tokens: set[bytes] | None
) -> set[bytes] | None:
    """Record a cut line's value (lower case, without blanks around it); returns the Connection
    tokens so far."""
    if name == b"content-length":
        scan.lengths.append(value)
    elif name == b"transfer-encoding":
        scan.codings.append(value)
    elif name == b"connection":
        if value not in _CONNECTION_OPTIONS:
            tokens = tokens or set()
            tokens.update(t.strip() for t in value.split(b","))
    elif name == b"upgrade":
        scan.upgrade.append(value)
    return tokens


# RFC 9112 3.2 / RFC 3986 3.2.2, narrowed to what a gateway routes on: a DNS name (letters,
# digits, hyphens; dot-separated labels; one optional trailing dot), which covers an IPv4
# address, or a bracketed IPv6 address; then an optional port. No userinfo, `_`, `%`, spaces,
# `/` or empty labels: each is read differently by some backend's virtual-host logic.
_HOST_VALUE: Final = re.compile(
    rb"(?:(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+\.?|\[([0-9A-Fa-f:.]{2,45})\])(?::([0-9]{1,5}))?\Z"
)


# Host values seen valid: a request costs a dict lookup, not the regex (a Host repeats on a
# connection and across clients). Bounded: cleared when full.
_VALID_HOSTS: Final[set[bytes]] = set()
_VALID_HOSTS_MAX: Final = 256


def _check_host(value: bytes) -> None:
    """Refuse (400) a Host that is not host[:port] (valid_host); remember the valid ones."""
    if not valid_host(value.strip(b" \t")):  # llhttp keeps trailing OWS
        raise HTTPError(400, "invalid Host")
    if len(_VALID_HOSTS) >= _VALID_HOSTS_MAX:
        _VALID_HOSTS.clear()
    _VALID_HOSTS.add(value)


def valid_host(value: bytes) -> bool:
    """A Host or :authority value the gateway accepts (see _HOST_VALUE)."""
    match = _HOST_VALUE.match(value)
    if match is None:
        return False
    ipv6, port = match.groups()
    if port is not None and int(port) > 65535:
        return False
    if ipv6 is not None:
        try:
            ipaddress.IPv6Address(ipv6.decode())
        except ValueError:
            return False
    return True


def _request_codings(values: list[bytes]) -> bytes:
    """Check a Transfer-Encoding list (all its field lines, RFC 9110 5.3) and return the codings
    to forward before the final chunked, normalised (lower case, no parameters, no identity).
    Last coding not chunked, chunked twice, a malformed element: 400; an unknown coding: 501."""
    codings: list[bytes] = []
    for element in b",".join(values).split(b","):
        name, semicolon, parameters = element.partition(b";")
        name = name.strip(b" \t").lower()
        if not name:
            if semicolon or element.strip(b" \t"):
                raise HTTPError(400, "malformed Transfer-Encoding")
            continue  # an empty list element (RFC 9110 5.6.1)
        if not _TOKEN.match(name) or (semicolon and not _PARAMETERS.match(b";" + parameters)):
            raise HTTPError(400, "malformed Transfer-Encoding")
        codings.append(name)
    if not codings or codings[-1] != b"chunked":
        raise HTTPError(400, "Transfer-Encoding whose last coding is not chunked")
    codings.pop()
    if b"chunked" in codings:
        raise HTTPError(400, "chunked applied more than once")
    for coding in codings:
        if coding not in _KNOWN_CODINGS and coding != b"identity":
            raise HTTPError(501, "unknown transfer coding")
    return b", ".join(c for c in codings if c != b"identity")


def request_framing(
    method: bytes, target: bytes, version: str, scan: HeaderScan
) -> tuple[Framing, int, bool]:
    """Check a request head. Returns (framing, content_length, expect_continue). The body size
    limit is the route's: checked by the reader once the head is routed."""
    if version != "1.1" and version != "1.0":
        raise HTTPError(505, f"HTTP/{version} is not supported")
    if method not in ALLOWED_METHODS:
        raise HTTPError(501 if method != b"CONNECT" else 405, "method not supported")
    if target[:1] != b"/":
        # Absolute-form (a forward proxy's) and authority-form (CONNECT) are not served: the
        # Host line alone names the site. The path itself is normalised by the reader.
        if not (method == b"OPTIONS" and target == b"*"):
            raise HTTPError(400, "request target must be origin-form (/path)")
    expect_continue = False
    if scan.expect is not None:
        if scan.expect.lower() != b"100-continue":
            raise HTTPError(417, "unsupported Expect")
        expect_continue = True
    if scan.hosts != 1 and (version == "1.1" or scan.hosts > 1):
        raise HTTPError(400, "HTTP/1.1 requires exactly one Host header")
    if scan.hosts == 1 and scan.host not in _VALID_HOSTS:
        _check_host(scan.host)
    codings = scan.codings
    lengths = scan.lengths
    if codings:
        if lengths:
            raise HTTPError(400, "both Content-Length and Transfer-Encoding")
        if version == "1.0":
            raise HTTPError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if len(codings) != 1 or codings[0] != b"chunked":  # the common case costs one compare
            scan.forwarded_codings = _request_codings(codings)
        return _FRAMING_CHUNKED, -1, expect_continue
    if lengths:
        length = _content_length(lengths, _bad_request)
        return (_FRAMING_LENGTH if length else _FRAMING_NONE), length, expect_continue
    return _FRAMING_NONE, -1, expect_continue


def response_framing(status: int, scan: HeaderScan, head_request: bool) -> tuple[Framing, int]:
    """How the upstream's response body is delimited. Ambiguity is a 502, not a guess."""
    codings = scan.codings
    lengths = scan.lengths
    if codings and lengths:
        raise UpstreamProtocolError("both Content-Length and Transfer-Encoding")
    length = -1
    if lengths:
        length = _content_length(lengths, UpstreamProtocolError)
    if head_request or status == 204 or status == 304 or status < 200:
        return _FRAMING_NONE, length
    if codings:
        if len(codings) != 1 or codings[0].strip().lower() != b"chunked":
            raise UpstreamProtocolError("unsupported Transfer-Encoding")
        return _FRAMING_CHUNKED, -1
    if lengths:
        return _FRAMING_LENGTH, length
    return _FRAMING_CLOSE, -1


# WebSocket (RFC 6455 4.1, 4.2.2): the one upgrade passed through to the upstream. Any other
# token (h2c above all: an upstream that spoke HTTP/2 on a connection the gateway reads as
# HTTP/1.1 would be a desync) is dropped, and the request goes on as plain HTTP/1.1.
WEBSOCKET: Final = b"websocket"
# The upgrade lines the gateway sends itself (request and 101 response): what it verified.
WEBSOCKET_UPGRADE_LINES: Final = b"connection: upgrade\r\nupgrade: websocket\r\n"


def _is_websocket(scan: HeaderScan) -> bool:
    return (
        scan.connection_upgrade
        and len(scan.upgrade) == 1
        and scan.upgrade[0].strip(b" \t").lower() == WEBSOCKET
    )


def websocket_request(method: bytes, version: str, framing: Framing, scan: HeaderScan) -> bool:
    """A WebSocket opening handshake to pass through: GET, HTTP/1.1, no body, `Connection:
    upgrade` and exactly `Upgrade: websocket`. Its Sec-WebSocket-* fields are end-to-end and
    travel in the forwarded block."""
    return (
        method == b"GET" and version == "1.1" and framing is _FRAMING_NONE and _is_websocket(scan)
    )


def websocket_accepted(scan: HeaderScan) -> bool:
    """A 101 response that switches to WebSocket (anything else after an upgrade is a 502)."""
    return _is_websocket(scan)


def oversized_field(headers: Headers, cap: int) -> bytes | None:
    """The name of the first field whose line is above `cap` bytes (limits.max_header_field:
    431), or None when every field fits."""
    for name, value in headers:
        if len(name) + 2 + len(value) > cap:
            return name
    return None
