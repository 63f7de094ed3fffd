"""Parsed message heads. Header names are kept as sent; lookups use lower-cased copies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final

from outwork.http.ascii import QUESTION_MARK

if TYPE_CHECKING:
    from outwork.http.checks import HeaderScan

Headers = list[tuple[bytes, bytes]]

# The names of the lines the gateway stamps on each request it forwards (proxy/forwarding.py),
# in `RequestHead.stamped`.
STAMPED_NAMES: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"x-request-id"}
)


class Framing(Enum):
    """How a message body is delimited (RFC 9112 section 6)."""

    NONE = "none"  # no body
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # until the connection closes (responses only)


# The heads write their own __init__: the one `dataclass` generates runs interpreted even in
# the compiled build (about 6,000 instructions per request head, 3,000 per response head).
@dataclass(slots=True, init=False)
class RequestHead:
    method: bytes
    target: bytes
    version: str  # "1.1" or "1.0"; "2" for a head built from HTTP/2 pseudo-headers
    headers: Headers
    block: bytes  # the end-to-end headers, serialized, for forwarding
    # The gateway's own lines (X-Forwarded-*, Forwarded, X-Request-Id; each ending in CRLF),
    # sent after `block`: apart from it, the filters that edit `block` read the client's lines
    # only (a regex over the 5 stamped lines too was over half of `authenticate`'s edit).
    stamped: bytes
    framing: Framing
    content_length: int  # -1 unless framing is LENGTH
    keep_alive: bool
    expect_continue: bool
    has_host: bool  # False only for an HTTP/1.0 request without Host
    codings: bytes  # transfer codings before the final chunked, normalised (e.g. b"gzip")
    # The scan of the headers (Host, and the client's forwarding headers and request id, kept
    # aside from `block`); None for heads not read by RequestReader.
    scan: HeaderScan | None
    upgrade: bool  # a WebSocket upgrade, passed through (its lines are in `block`)

    def __init__(
        self,
        method: bytes,
        target: bytes,
        version: str,
        headers: Headers,
        block: bytes,
        framing: Framing,
        content_length: int,
        keep_alive: bool,
        expect_continue: bool,
        has_host: bool = True,
        codings: bytes = b"",
        scan: HeaderScan | None = None,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.block = block
        self.stamped = b""
        self.framing = framing
        self.content_length = content_length
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.has_host = has_host
        self.codings = codings
        self.scan = scan
        self.upgrade = upgrade

    @property
    def path(self) -> bytes:
        """The target without its query string."""
        target = self.target
        if QUESTION_MARK not in target:  # an int needle: one memchr (ascii.py), no find call
            return target
        return target[: target.find(b"?")]


@dataclass(slots=True, init=False)
class ResponseHead:
    status: int
    reason: bytes
    block: bytes  # the end-to-end header lines as received (each ends in CRLF), for forwarding
    framing: Framing
    content_length: int  # -1 unless framing is LENGTH

    def __init__(
        self, status: int, reason: bytes, block: bytes, framing: Framing, content_length: int
    ) -> None:
        self.status = status
        self.reason = reason
        self.block = block
        self.framing = framing
        self.content_length = content_length

    @property
    def headers(self) -> Headers:
        """The forwarded headers as (name, value) pairs (parsed on demand: not on the hot path)."""
        result: Headers = []
        for line in self.block.split(b"\r\n"):
            if line:
                name, _, value = line.partition(b":")
                result.append((name, value.strip(b" \t")))
        return result


def header_values(headers: Headers, names: frozenset[bytes]) -> dict[bytes, list[bytes]]:
    """The values of the headers `names` (lower case) lists, by lower-case name, in the order
    sent, each without the optional white space around it (RFC 9110 5.5); a name not sent is
    not a key."""
    found: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in names:
            found.setdefault(lower, []).append(value.strip(b" \t"))
    return found
