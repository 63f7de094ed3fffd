"""The headers the gateway adds to a request it forwards: X-Forwarded-For/-Proto/-Host,
Forwarded (RFC 7239) and X-Request-Id.

A client's own forwarding headers are believed only from a peer in `trusted_proxies` (another
proxy in front of this one): then X-Forwarded-For and Forwarded are appended to and
X-Forwarded-Proto/-Host kept. From anyone else they are replaced, so a client cannot claim
another address. The lines depend on the connection (peer, scheme) and on the request's Host:
they are built once per connection and again only when the Host changes.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections.abc import Sequence
from typing import Final

from outwork.http.checks import HeaderScan
from outwork.http.messages import RequestHead

# A client's X-Request-Id is kept when it is this: bounded, visible ASCII without `"` and `\`
# (it goes into JSON log lines and response heads as it is).
MAX_REQUEST_ID: Final = 128
_SANE_ID: Final = re.compile(rb"[\x21\x23-\x5b\x5d-\x7e]{1,%d}\Z" % MAX_REQUEST_ID)
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")

Networks = Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]


class RequestIds:
    """Request ids unique per process (and per config load): a random prefix and a counter."""

    __slots__ = ("_prefix", "_count")

    def __init__(self) -> None:
        self._prefix = os.urandom(6).hex().encode() + b"-"
        self._count = 0

    def next(self) -> bytes:
        self._count += 1
        return b"%s%x" % (self._prefix, self._count)


def sane_request_id(value: bytes | None) -> bool:
    return value is not None and _SANE_ID.match(value) is not None


def is_trusted(host: str, networks: Networks) -> bool:
    """Whether a peer address is one of the trusted proxies."""
    if not networks:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 on a dual-stack socket is 10.0.0.1
    return any(address in network for network in networks)


# At most this many X-Forwarded-For hops are read back for the client address; a longer chain
# from trusted proxies gives its last untrusted hop within them, or the earliest one read.
MAX_CLIENT_HOPS: Final = 32


def client_address(peer_ip: str, xff: bytes | None, networks: Networks) -> str:
    """The client as the policy sees it: the TCP peer, unless the peer is a trusted proxy that
    says whom it forwards for; then, reading X-Forwarded-For from the right, the first hop that
    is not itself a trusted proxy (the hops left of it are whatever the client wrote)."""
    if xff is None or not is_trusted(peer_ip, networks):
        return peer_ip
    client = peer_ip
    for hop in reversed(xff.split(b",")[-MAX_CLIENT_HOPS:]):
        try:
            address = str(ipaddress.ip_address(hop.strip().decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            return client  # garbage left of a trusted hop: the last trusted one is the client
        client = address
        if not is_trusted(address, networks):
            break
    return client


def forwarded_node(host: str, port: int | None) -> bytes:
    """RFC 7239 6: the `for=` value of a peer, quoted (a port or IPv6 `[...]` is not a token)."""
    parsed = _node_address(host)
    if parsed is None:
        return b"unknown"
    node, version = parsed
    if port is None:
        return node.encode() if version == 4 else b'"' + node.encode() + b'"'
    return f'"{node}:{port}"'.encode()


@functools.lru_cache(maxsize=1024)
def _node_address(host: str) -> tuple[str, int] | None:
    """A peer address as a node (IPv6 in brackets) and its IP version, or None. Parsed once per
    address: it is asked at every accepted connection, and the clients of a gateway are few
    addresses compared with their connections."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (f"[{address}]" if address.version == 6 else str(address)), address.version


def forwarded_value(value: bytes) -> bytes:
    """A Forwarded parameter value: a token as it is, anything else a quoted-string."""
    if _TOKEN.match(value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


class Forwarding:
    """The forwarding lines of one client connection."""

    __slots__ = ("peer_ip", "scheme", "trusted", "_node", "_fixed", "_host", "_lines")

    def __init__(self, peer_ip: bytes, node: bytes, scheme: bytes, trusted: bool) -> None:
        self.peer_ip = peer_ip
        self.scheme = scheme
        self.trusted = trusted
        self._node = node  # the Forwarded `for=` value
        self._fixed = b"x-forwarded-for: " + peer_ip + b"\r\nx-forwarded-proto: " + scheme + b"\r\n"
        self._host: bytes | None = None
        self._lines = b""

    def lines(self, scan: HeaderScan | None, has_host: bool) -> bytes:
        """The lines for one request (each ending in CRLF)."""
        host = scan.host if scan is not None and has_host else b""
        if scan is not None and self.trusted:
            if (
                scan.xff is not None
                or scan.forwarded is not None
                or scan.xfp is not None
                or scan.xfh is not None
            ):
                return self._appended(scan, host)
        if host != self._host:
            self._host = host
            self._lines = self._build(host)
        return self._lines

    def stamp(self, head: RequestHead, request_ids: RequestIds) -> bytes:
        """Set the gateway's lines of a request's head (`head.stamped`: forwarding, then
        X-Request-Id: the client's when it is sane, else a new one) and return the request
        id. HTTP/1.1 and HTTP/2 requests both go through here."""
        scan = head.scan
        request_id = scan.request_id if scan is not None else None
        if request_id is None or not sane_request_id(request_id):
            request_id = request_ids.next()
        head.stamped = b"".join(
            (self.lines(scan, head.has_host), b"x-request-id: ", request_id, b"\r\n")
        )
        return request_id

    def _element(self, host: bytes) -> bytes:
        element = b"for=" + self._node + b";proto=" + self.scheme
        if host:
            element += b";host=" + forwarded_value(host)
        return element

    def _build(self, host: bytes) -> bytes:
        lines = self._fixed
        if host:
            lines += b"x-forwarded-host: " + host + b"\r\n"
        return lines + b"forwarded: " + self._element(host) + b"\r\n"

    def _appended(self, scan: HeaderScan, host: bytes) -> bytes:
        """A trusted proxy's request: its chain goes on, with this hop added."""
        xff = self.peer_ip if scan.xff is None else scan.xff + b", " + self.peer_ip
        element = self._element(host)
        forwarded = element if scan.forwarded is None else scan.forwarded + b", " + element
        parts = [
            b"x-forwarded-for: ",
            xff,
            b"\r\nx-forwarded-proto: ",
            scan.xfp if scan.xfp is not None else self.scheme,
            b"\r\n",
        ]
        xfh = scan.xfh if scan.xfh is not None else host
        if xfh:
            parts += (b"x-forwarded-host: ", xfh, b"\r\n")
        parts += (b"forwarded: ", forwarded, b"\r\n")
        return b"".join(parts)
