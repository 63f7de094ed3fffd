"""What the engine reports to its caller after `receive_data`.

The caller (the proxy, the scanner, a test) owns the socket: it feeds bytes in, acts on
these events, and writes whatever `data_to_send()` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from outwork.tls.alerts import AlertDescription
from outwork.tls.clientauth import ClientIdentity
from outwork.tls.enums import CipherSuite, CipherSuite12, NamedGroup
from outwork.tls.frozen import frozen


@frozen
class HandshakeComplete:
    version: int  # 0x0304 for TLS 1.3, 0x0303 for TLS 1.2
    cipher_suite: CipherSuite | CipherSuite12
    group: NamedGroup | None
    alpn_protocol: str | None
    server_name: str | None  # SNI the client sent (server role) or asked for (client role)
    ja4: str | None = None  # JA4 of the ClientHello (server role)
    resumed: bool = False  # a session ticket (TLS 1.3 PSK or TLS 1.2 RFC 5077) was used
    client_identity: ClientIdentity | None = None  # a verified client certificate (mTLS)


class ApplicationData:
    """Application bytes from the peer, one per received record. A plain class, not `@frozen`:
    compiled code calls a decorated class through the interpreter and its dataclass `__init__`
    runs as Python (about 1,000 instructions a record), this one's directly. It compares,
    hashes and shows itself as the dataclass did; `data` is Final to the type checker."""

    __slots__ = ("data",)
    __match_args__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data: Final = data

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, ApplicationData)
        return self.data == other.data

    def __hash__(self) -> int:
        return hash((self.data,))

    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}(data={self.data!r})"


@dataclass(frozen=True, slots=True)
class HeartbleedProbe:
    """A heartbeat request whose payload_length claims more bytes than the record carries.

    Always a security event: nothing is ever echoed for it. `encrypted` tells whether it came
    inside the protected session or in plaintext during the handshake.
    """

    claimed_length: int
    actual_length: int
    encrypted: bool
    heartbeat_enabled: bool


@dataclass(frozen=True, slots=True)
class HeartbeatAnswered:
    payload_length: int


@frozen
class AlertReceived:
    description: AlertDescription | int
    fatal: bool


@frozen
class ConnectionClosed:
    """The peer sent close_notify (or closed after a fatal alert). No more data will come."""


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The engine found a protocol error. The alert is already queued in data_to_send();
    the caller flushes it and closes the transport. The connection stays failed."""

    alert: AlertDescription
    reason: str


Event = (
    HandshakeComplete
    | ApplicationData
    | HeartbleedProbe
    | HeartbeatAnswered
    | AlertReceived
    | ConnectionClosed
    | ConnectionFailed
)
