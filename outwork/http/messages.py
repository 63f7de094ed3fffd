"""Parsed message heads. Header names are kept as sent; lookups use lower-cased copies."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outwork.http.checks import HeaderScan

Headers = list[tuple[bytes, bytes]]


class Framing(Enum):
    """How a message body is delimited (RFC 9112 section 6)."""

    NONE = "none"  # no body
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # until the connection closes (responses only)


@dataclass(slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: str  # "1.1" or "1.0"; "2" for a head built from HTTP/2 pseudo-headers
    headers: Headers
    block: bytes  # the end-to-end headers, serialized, for forwarding
    framing: Framing
    content_length: int  # -1 unless framing is LENGTH
    keep_alive: bool
    expect_continue: bool
    has_host: bool = True  # False only for an HTTP/1.0 request without Host
    codings: bytes = b""  # transfer codings before the final chunked, normalised (e.g. b"gzip")
    # The scan of the headers (Host, and the client's forwarding headers and request id, kept
    # aside from `block`); None for heads not read by RequestReader.
    scan: HeaderScan | None = None
    upgrade: bool = False  # a WebSocket upgrade, passed through (its lines are in `block`)

    @property
    def path(self) -> bytes:
        """The target without its query string."""
        q = self.target.find(b"?")
        return self.target if q < 0 else self.target[:q]


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: bytes
    block: bytes  # the end-to-end header lines as received (each ends in CRLF), for forwarding
    framing: Framing
    content_length: int  # -1 unless framing is LENGTH

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
