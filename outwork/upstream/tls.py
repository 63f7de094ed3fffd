"""TLS to upstreams: the engine's client role run over a plain TCP transport.

`UpstreamTls` (one per pool) holds what the connections of an upstream share: the engine's
client config, the name each target is asked for and checked against, and the targets' session
tickets. `connect` opens a TCP connection, runs the handshake (the caller's connect timeout
covers both), and only then calls the application protocol's `connection_made`, with a
transport that behaves like the plain one: `write` takes plaintext, `data_received` gets
decrypted bytes, the backend's close_notify is an EOF, flow control passes through.

A handshake that fails (an untrusted chain, a wrong name, an expired certificate, an alert from
the backend) raises `UpstreamTLSError`; every TLS failure is counted as `<upstream>/tls` and
reported as the security event `upstream.tls_failed`: a backend with a bad certificate is an
operator's problem, or someone in the path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from outwork.config.config import Address, UpstreamTlsConfig
from outwork.proxy.clock import Clock
from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.connection import ClientConnection
from outwork.tls.enums import ProtocolVersion
from outwork.tls.tickets import ClientSession

if TYPE_CHECKING:
    from outwork.observe.metrics import Metrics
    from outwork.observe.security_events import SecurityEventLog

# Session tickets kept per target. TLS 1.3 tickets are used once each (RFC 8446 C.4: reuse
# lets an observer link connections) and every connection brings new ones, so a few suffice.
MAX_SESSIONS_PER_TARGET = 4

P = TypeVar("P", bound=asyncio.BaseProtocol)


class UpstreamTLSError(OSError):
    """A TLS connection to a backend failed (already counted and reported). An OSError, so
    that code which treats a refused connection as a failed target treats this one alike."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UpstreamTls:
    """TLS settings and session tickets of one upstream pool (one per config load)."""

    def __init__(
        self,
        name: str,
        config: UpstreamTlsConfig,
        targets: tuple[Address, ...],
        clock: Clock,
        metrics: Metrics,
        security_log: SecurityEventLog | None,
    ) -> None:
        self.name = name
        self.config = config
        self.targets = targets
        self.clock = clock
        self.metrics = metrics
        self.security_log = security_log
        # The name asked for (SNI) and checked in each target's certificate: `sni`, or the
        # target's own host (the engine sends no SNI for an IP address, and checks the IP).
        self.server_names = [config.server_name or t.host for t in targets]
        self._sessions: list[deque[ClientSession]] = [
            deque(maxlen=MAX_SESSIONS_PER_TARGET) for _ in targets
        ]

    async def connect(
        self, loop: asyncio.AbstractEventLoop, factory: Callable[[], P], target: int
    ) -> P:
        """Connect to `target`, complete the handshake, return the application protocol.
        Raises OSError (TCP), UpstreamTLSError (TLS); cancelled, it leaves nothing open."""
        address = self.targets[target]
        tls = ClientConnection(
            self.config.client, self.server_names[target], self._take_session(target)
        )
        transport, protocol = await loop.create_connection(
            lambda: TlsUpstreamTransport(self, target, tls, factory()),
            address.host,
            address.port,
        )
        try:
            await protocol.handshake
        except BaseException:
            transport.abort()
            raise
        return protocol.app

    # session tickets

    def _take_session(self, target: int) -> ClientSession | None:
        if not self.config.session_resumption:
            return None
        sessions = self._sessions[target]
        now = self.clock.wall
        while sessions:
            session = sessions[-1]
            if not session.usable(now, self.server_names[target]):
                sessions.pop()
                continue
            if session.version == ProtocolVersion.TLS13:
                sessions.pop()  # single use; the connection that resumes gets new ones
            return session  # a TLS 1.2 ticket stays: servers often renew it only when it ages
        return None

    def store_sessions(self, target: int, sessions: list[ClientSession]) -> None:
        if self.config.session_resumption:
            self._sessions[target].extend(sessions)

    # failures

    def failed(self, target: int, alert: str | None, alert_from: str | None, reason: str) -> None:
        self.metrics.upstream_errors[f"{self.name}/tls"] += 1
        if self.security_log is None:
            return
        address = self.targets[target]
        self.security_log.emit(
            "upstream.tls_failed",
            str(address),
            "-",  # no listener: the gateway is the client here
            {
                "upstream": self.name,
                "target": f"https://{address}",
                "server_name": self.server_names[target],
                "alert": alert,
                "alert_from": alert_from,  # "gateway", "backend", or None (no alert: a reset)
                "reason": reason,
            },
        )


class TlsUpstreamTransport(asyncio.Protocol, asyncio.Transport):
    """Two faces: the protocol of the TCP connection (the loop calls it with ciphertext) and
    the transport of the application protocol (which writes and reads plaintext through it)."""

    def __init__(self, owner: UpstreamTls, target: int, tls: ClientConnection, app: Any) -> None:
        super().__init__()
        self._owner = owner
        self._target = target
        self._tls = tls
        self.app = app
        self._transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connected = False  # app.connection_made was called
        self._failed = False  # reported once
        self._lost = False  # connection_lost was called: the TCP transport is gone
        self._truncated = False  # TCP EOF without the backend's close_notify
        self._tickets = 0  # sessions of the engine already handed to the owner
        # TLS 1.3: the handshake is complete for us at the backend's Finished, but the backend
        # checks ours (and our certificate, if it asked for one) after that. Until it sends a
        # byte more, a connection lost is the backend refusing the handshake: with an alert
        # that a reset can overtake (our first write then fails before the alert is read).
        self._unconfirmed = False

    # --- the TCP side (called by the loop) --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        self._tls.start_handshake(self._owner.clock.wall)
        self._flush()

    def data_received(self, data: bytes) -> None:
        tls = self._tls
        plain: list[bytes] = []
        self._unconfirmed = False
        for event in tls.receive_data(data, now=self._owner.clock.wall):
            if isinstance(event, ev.ApplicationData):
                plain.append(event.data)
                continue
            if plain:
                self._deliver(plain)
                plain = []
            if isinstance(event, ev.HandshakeComplete):
                self._unconfirmed = event.version == ProtocolVersion.TLS13
                self._established()
            elif isinstance(event, ev.ConnectionFailed):
                self._fail(event.alert.name.lower(), "gateway", event.reason)
            elif isinstance(event, ev.AlertReceived) and event.fatal:
                alert = _alert_name(event.description)
                self._fail(alert, "backend", f"the backend sent the alert {alert}")
            elif isinstance(event, ev.ConnectionClosed) and not self._failed:
                self._peer_closed()
        if plain:
            self._deliver(plain)
        if len(tls.sessions) > self._tickets:
            self._owner.store_sessions(self._target, tls.sessions[self._tickets :])
            self._tickets = len(tls.sessions)
        self._flush()

    def eof_received(self) -> bool | None:
        if not self._tls.peer_closed:
            if not self._connected:
                self._fail(None, None, "the backend closed the connection during the handshake")
            else:
                # Without close_notify the end of the data is not authenticated: a body that
                # ends with the connection must not be taken as complete.
                self._truncated = True
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        # The TCP connection is gone: nothing more is written to it or closed (see _fail).
        self._lost = True
        if not self._connected:
            if not self.handshake.done():  # not already failed, not cancelled (timeout)
                reason = f"connection lost during the handshake: {exc or 'closed'}"
                self._fail(None, None, reason)
            return
        if self._unconfirmed and not self._failed:
            reason = "the backend closed the connection after the handshake, before confirming it"
            self._fail(None, None, f"{reason}: {exc or 'closed'}")
            exc = UpstreamTLSError(reason)
        if exc is None and self._failed:
            exc = UpstreamTLSError("the TLS connection failed")
        elif exc is None and self._truncated:
            exc = ConnectionResetError("the backend closed the connection without close_notify")
        self.app.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._connected:
            self.app.pause_writing()

    def resume_writing(self) -> None:
        if self._connected:
            self.app.resume_writing()

    # --- engine events ----------------------------------------------------------------------

    def _established(self) -> None:
        self._connected = True
        self.app.connection_made(self)
        if not self.handshake.done():
            self.handshake.set_result(None)

    def _deliver(self, plain: list[bytes]) -> None:
        # Not `is_closing()`: the engine may already be closed by a close_notify that came
        # after this data in the same read (TLS 1.2 closes at once); the data still counts.
        transport = self._transport
        if self._connected and transport is not None and not transport.is_closing():
            self.app.data_received(plain[0] if len(plain) == 1 else b"".join(plain))

    def _fail(self, alert: str | None, alert_from: str | None, reason: str) -> None:
        if self._failed:
            return
        self._failed = True
        if self.handshake.cancelled():
            return  # the connect timed out first: counted as a timeout instead
        self._owner.failed(self._target, alert, alert_from, reason)
        if not self.handshake.done():
            self.handshake.set_exception(UpstreamTLSError(reason))
        if self._lost:
            return
        self._flush()  # our alert, if the engine queued one
        if self._transport is not None:
            self._transport.close()

    def _peer_closed(self) -> None:
        """The backend's close_notify: an EOF for the application, then we close too."""
        if not self._connected:
            self._fail(None, None, "the backend closed the connection during the handshake")
            return
        self.app.eof_received()
        self.close()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        out = self._tls.data_to_write()
        if out:
            transport.write(out)
        if self._tls.is_closed:
            transport.close()

    # --- the application side (called by UpstreamConnection) --------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.is_closing():
            return
        self._tls.send_data(bytes(data) if not isinstance(data, bytes) else data)
        self._flush()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        transport = self._transport
        return transport is None or transport.is_closing() or self._tls.is_closed

    def close(self) -> None:
        """Close after what is written, with our close_notify."""
        if self._transport is None or self._transport.is_closing():
            return
        self._tls.close()
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport is not None and self._transport.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "tls_negotiated":
            return self._tls.negotiated
        if name == "peercert_chain":
            return self._tls.peer_certificates
        if self._transport is None:
            return default
        return self._transport.get_extra_info(name, default)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._transport is not None:
            self._transport.set_write_buffer_limits(high, low)

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close the backend would understand as end of request


def _alert_name(description: AlertDescription | int) -> str:
    if isinstance(description, AlertDescription):
        return description.name.lower()
    return str(description)
