"""A client connection: TLS engine (or plain HTTP), request reader, ordered exchanges.

Everything runs in asyncio Protocol callbacks; no task per request. Requests are read as they
arrive (pipelining); responses are written strictly in request order, one exchange active at a
time, the others' bodies buffered up to a cap (reading pauses beyond it).
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import time
from collections import deque
from typing import TYPE_CHECKING, Final, cast

from outwork.config.config import ListenerConfig, RouteConfig
from outwork.front.h2 import H2Session
from outwork.front.paused import OVER_CAP_GRACE, paused_by_address
from outwork.front.sealed import SealedOutput
from outwork.http import serialize
from outwork.http.errors import HTTPError
from outwork.http.messages import Framing, RequestHead, ResponseHead
from outwork.http.reader import RequestReader
from outwork.observe import access_log
from outwork.observe.refusals import Refusal, for_status
from outwork.proxy import pipeline
from outwork.proxy.clock import Clock
from outwork.proxy.exchange import BODY_BEFORE_UPSTREAM, Exchange
from outwork.proxy.forwarding import Forwarding, forwarded_node, is_trusted
from outwork.proxy.local_reply import LocalReply, exchange_done, local_reply
from outwork.tls import events as ev
from outwork.tls.records import sealed_size
from outwork.tls.server import ServerConnection

if TYPE_CHECKING:
    from outwork.proxy.downstream import Downstream, DownstreamConnection
    from outwork.proxy.server import GatewayState
    from outwork.tls.clientauth import ClientIdentity

log = logging.getLogger("outwork.proxy")

# Request bytes held for exchanges that wait their turn (pipelining) or for an upstream
# connection; reading from the client pauses beyond this.
MAX_BUFFERED_REQUEST_BYTES: Final = 1024 * 1024

# The request stream's phase: Final ints, constants in compiled code (a name assigned by
# tuple unpacking is looked up in the module's dict at every use, ~130 instructions).
_IDLE: Final = 0
_HEAD: Final = 1
_BODY: Final = 2
_WAIT: Final = 3
_TUNNEL: Final = 4  # after a WebSocket upgrade request

_REQUEST_ID: Final = b"x-request-id: "

# Room for the TLS records of one upstream read (pool.READ_SIZE) sealed in bulk.
_SEALED_SIZE: Final = sealed_size(256 * 1024)
# Output in pieces (HTTP/2 frame headers and payloads, an HTTP/1.1 chunk and its framing) of
# more than _GATHER_MIN bytes and at most _GATHER_MAX is copied once into this buffer, then
# sealed from it in place (`send_data_into`, which borrows the byte after it), instead of
# joined, copied again into each record and sealed into a zeroed buffer. One per worker: used
# within one call. (A response head with a small body comes in two pieces: never gathered.)
# Anonymous memory: resident only as far as a batch this large ever touched it; private, as
# forked workers must not share it (mmap's default is shared).
_GATHER_MIN: Final = 2 * 16384
_GATHER_MAX: Final = 1024 * 1024
_GATHER: Final = memoryview(mmap.mmap(-1, _GATHER_MAX + 1, flags=mmap.MAP_PRIVATE))

# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_FRAMING_NONE: Final = Framing.NONE
_CLOSE: Final = Framing.CLOSE
_CHUNKED: Final = Framing.CHUNKED


class ClientProtocol(asyncio.Protocol):
    # Slots, not a dict: thousands of connections sit idle at once, and the dict of these
    # 40 attributes was 1.2 KiB more per connection. A new attribute is added here too (mypy
    # reports one that is not).
    __slots__ = (
        "_accepted", "_access", "_admitted", "_batch", "_body_first", "_buffered", "_clock",
        "_body_timeout", "_closed", "_flush_handle", "_h2", "_header_timeout", "_idle_timeout",
        "_max_requests", "_metrics", "_out", "_pause_over_cap",
        "_pause_reasons", "_paused_upstream", "_phase", "_queue", "_reader", "_reading",
        "_requests", "_route", "_sealed", "_tls", "_tunnel", "_tunnel_active", "_tunnel_early",
        "client_identity",
        "deadline", "forwarded", "forwarding", "listener", "log_connection", "log_tls", "peer",
        "peer_host", "read_eof", "scheme", "state", "transport", "write_deadline", "write_paused",
    )  # fmt: skip

    def __init__(self, state: GatewayState, listener: ListenerConfig) -> None:
        self.state = state
        # The gateway's clock (made once with its state), read at every deadline: held here
        # and compiled, each read is a field, not two lookups by name on the state and clock.
        self._clock: Clock = state.clock
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.peer_host = b"?"
        self.client_identity: ClientIdentity | None = None  # set at the handshake (mTLS)
        self.scheme = b"https" if listener.tls is not None else b"http"
        # Ends the head sent upstream: the gateway's own lines (forwarding.py) are added to each
        # request's block in on_request_head.
        self.forwarded = b"\r\n"
        self.forwarding = Forwarding(self.peer_host, b"unknown", self.scheme, False)
        self._route: RouteConfig | None = None  # the route of the head being read
        self._requests = 0  # request heads read on this connection
        self._max_requests = state.config.limits.max_requests_per_connection
        # Read at every request: fields of this compiled object instead of three lookups by
        # name each (state, its config, the limits), as _max_requests and the reader's caps.
        # A state's limits are those of its config load (a certificate swap keeps them).
        limits = state.config.limits
        self._header_timeout: float = limits.header_timeout
        self._body_timeout: float = limits.body_timeout
        self._idle_timeout: float = limits.idle_timeout
        self._metrics = state.metrics  # one object for every config the process loads
        self.write_paused = False
        self.deadline = 0.0
        # While the client leaves our output unread (writing paused): when that stall ends the
        # connection (aborted). The upstream feeding it waits meanwhile without its read timeout.
        self.write_deadline = 0.0
        # Its upstream connection paused while the client leaves our output unread: counted
        # per address (paused.py); over the cap, the write deadline is OVER_CAP_GRACE away.
        self._paused_upstream = False
        self._pause_over_cap = False
        # Typed (not Any): compiled code calls the engine's methods and properties directly
        # instead of looking each up by name, about a dozen times per keep-alive request.
        self._tls: ServerConnection | None = None
        self._access = state.access_log  # None when the access log is off
        self.log_connection = b""  # the access log's per-connection parts, made once
        self.log_tls = b"null"
        self._accepted = 0.0  # time.monotonic() at accept (TLS listeners: for the handshake time)
        self._reader = RequestReader(
            self,
            limits.max_request_head,
            limits.max_headers,
            limits.max_request_body,
            max_line=limits.max_request_line,
            max_field=limits.max_header_field,
            body_limit=self._route_head,
            path_rules=state.config.paths,
        )
        self._queue: deque[Exchange] = deque()
        self._reading: Exchange | None = None
        self._buffered = 0
        self._pause_reasons: set[str] = set()
        self._phase = _HEAD
        self.read_eof = False
        self._closed = False
        self._out: list[bytes | bytearray | memoryview] = []
        self._batch = 0
        self._flush_handle: asyncio.Handle | None = None
        self._admitted = False  # counted in state.connections (released when it is lost)
        self._tunnel: Exchange | None = None  # the WebSocket upgrade exchange, once read
        self._tunnel_active = 0.0  # clock time of the client's last tunnel bytes
        self._tunnel_early: list[bytes] = []  # client bytes that came before the 101
        self._body_first: Exchange | None = None  # started, its upstream taken once the body is in
        self._h2: H2Session | None = None  # set when ALPN chose h2: it reads the requests
        self._sealed: SealedOutput | None = None  # while a response body is sealed in bulk

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        state = self.state
        if peer:
            host = str(peer[0])
            self.peer_host = host.encode()
            self.peer = f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
            self.forwarding = Forwarding(
                self.peer_host,
                forwarded_node(host, peer[1]),
                self.scheme,
                is_trusted(host, state.config.trusted_proxies),
            )
        if state.bans is not None and state.bans.refuses(self.peer_host):
            self._refuse_banned()
            return
        cap = state.connections.admit(self.listener, self.peer_host)
        if cap is not None:
            self._refuse_connection(cap)
            return
        self._admitted = True
        if self._access is not None:
            self.log_connection = access_log.connection_part(self.peer, self.listener.name)
        state.clients.add(self)
        state.metrics.connections_accepted += 1
        state.metrics.connections_active += 1
        self.deadline = self._clock.now + state.config.limits.header_timeout
        if self.listener.tls is not None:
            assert state.server_connection is not None
            self._tls = state.server_connection(self.listener.tls)
            self._accepted = time.monotonic()

    def _refuse_connection(self, cap: Refusal) -> None:
        """Over a connection cap: close at once, before any TLS or HTTP work. Aborted (RST),
        so that a flood of refused connections holds no socket in the kernel either."""
        state = self.state
        self._closed = True
        state.metrics.refused[cap] += 1
        detail = {"limit": cap, "max": getattr(self.listener, cap)}
        state.security_log.emit("conn.limit_reached", self.peer, self.listener.name, detail)
        assert self.transport is not None
        self.transport.abort()

    def _refuse_banned(self) -> None:
        """A banned address: closed at once, before any TLS or HTTP work (as over a cap)."""
        state = self.state
        self._closed = True
        state.metrics.refused[Refusal.BANNED] += 1
        state.security_log.emit("ban.refused", self.peer, self.listener.name, {})
        assert self.transport is not None
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._batch += 1
        try:
            if self._tls is None:
                self._received_plain(data)
            else:
                self._received_tls(data)
        except Exception:  # a bug, not the peer's doing: log it, drop only this connection
            log.exception("internal error on a connection from %s", self.peer)
            self.abort()
        finally:
            self.end()

    def eof_received(self) -> bool | None:
        # The client half-closed: answer what it already sent, then close.
        self.read_eof = True
        self._drop_partial_request()
        if self._nothing_more_to_answer():
            self.close()
        return True

    def _drop_partial_request(self) -> None:
        """At the client's end of input in the middle of a request body, behind complete
        pipelined requests: that request can never complete and is dropped; the ones before
        it are still answered. (The body being read by the active exchange: see
        _nothing_more_to_answer.)"""
        ex = self._reading
        if self._h2 is not None or self._phase != _BODY or ex is None:
            return
        if not self._queue or ex is self._queue[0] or ex is not self._queue[-1]:
            return
        self._queue.pop()
        self._reading = None
        ex.cancelled = True
        if ex.pending_size:
            self.release_buffered(ex)
        self._phase = _WAIT
        self.deadline = 0.0

    def _nothing_more_to_answer(self) -> bool:
        """After the client's end of input: whether to close now. Yes when nothing is pending,
        when a request body was cut short (it can never complete: waiting would hold the
        connection until the body timeout) and for a tunnel (it ends with its client)."""
        if self._h2 is not None:
            return not self._h2.streams  # HTTP/2: once its streams are answered
        return not self._queue or self._phase == _BODY or self._phase == _TUNNEL

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return  # refused by a connection cap: never counted
        self.state.connections.release(self.listener, self.peer_host)
        self._uncount_paused_upstream()
        if not self._closed:
            self._closed = True
        if self._h2 is not None:
            self._h2.cancel_all()
        self.state.clients.discard(self)
        self.state.metrics.connections_active -= 1
        for ex in self._queue:
            ex.cancelled = True
            if ex.upstream is not None:
                ex.upstream.abort()
        self._queue.clear()
        self._reading = None

    def pause_writing(self) -> None:
        self.write_paused = True
        self.write_deadline = self._clock.now + self.state.config.limits.idle_timeout
        if self._h2 is not None:
            self._h2.pause_writing()
        if self._queue and self._queue[0].upstream is not None:
            self._queue[0].upstream.pause_reading()
            self._count_paused_upstream()
        if self._tls is not None:
            # A TLS peer can make us write without reading what we write (heartbeats,
            # KeyUpdates asking for an update): above the write high-water mark, read no more.
            self.pause_reading("tls output")

    def resume_writing(self) -> None:
        self._uncount_paused_upstream()
        self.write_paused = False
        self.write_deadline = 0.0
        if self._closed:
            self._arm_close_deadline()  # it reads again: the rest gets its time anew
        if self._h2 is not None:
            self._h2.resume_writing()
        if self._queue and self._queue[0].upstream is not None:
            self._queue[0].upstream.resume_reading()
        self.resume_reading("tls output")
        if self._tls is not None and self._tls.reading_paused and not self._closed:
            self._received_tls(b"")  # records the engine held until its output went out

    def _count_paused_upstream(self) -> None:
        if self._paused_upstream:
            return
        self._paused_upstream = True
        state = self.state
        limit = state.config.limits.max_paused_upstreams_per_address
        if paused_by_address.add(self.peer_host) > limit:
            self._pause_over_cap = True
            self.write_deadline = min(self.write_deadline, self._clock.now + OVER_CAP_GRACE)

    def _uncount_paused_upstream(self) -> None:
        """Writing resumes, the upstream let go of the exchange, or the connection is gone."""
        if not self._paused_upstream:
            return
        self._paused_upstream = False
        paused_by_address.remove(self.peer_host)
        if self._pause_over_cap:
            self._pause_over_cap = False
            if self.write_paused:  # it holds no upstream now: its own stall deadline again
                self.write_deadline = self._clock.now + self.state.config.limits.idle_timeout

    # input

    def _received_plain(self, data: bytes) -> None:
        if self._phase == _IDLE:
            self._phase = _HEAD
            self.deadline = self._clock.now + self._header_timeout
        elif self._phase == _BODY:
            self.deadline = self._clock.now + self._body_timeout
        elif self._phase == _TUNNEL:
            self._tunnel_from_client(data)
            return
        self._feed_http(data)

    def _received_tls(self, data: bytes) -> None:
        tls = self._tls
        assert tls is not None
        state = self.state
        # Wall-clock time (the engine checks certificate validity with it), ticked 4x a second.
        for event in tls.receive_data(data, now=self._clock.wall):
            if isinstance(event, ev.ApplicationData):
                if self._h2 is not None:
                    self._h2.receive(event.data)
                else:
                    self._received_plain(event.data)
            elif isinstance(event, ev.HandshakeComplete):
                state.metrics.handshakes_completed[
                    (self.listener.name, event.version, event.cipher_suite, event.group)
                ] += 1
                self.client_identity = event.client_identity
                if self._access is not None:
                    self.log_tls = access_log.tls_part(event)
                    self.log_connection = access_log.connection_part(
                        self.peer,
                        self.listener.name,
                        (time.monotonic() - self._accepted) * 1000,
                        "h2" if event.alpn_protocol == "h2" else "http/1.1",
                    )
                if event.alpn_protocol == "h2":
                    self._h2 = H2Session(self)
            elif isinstance(event, ev.HeartbleedProbe):
                state.security_log.emit(
                    "tls.heartbleed_probe",
                    self.peer,
                    self.listener.name,
                    {
                        "claimed_length": event.claimed_length,
                        "actual_length": event.actual_length,
                        "encrypted": event.encrypted,
                        "heartbeat_enabled": event.heartbeat_enabled,
                        # Set as soon as the ClientHello is parsed: also before the handshake
                        # completes, when most probes come.
                        "ja4": tls.ja4,
                    },
                )
            elif isinstance(event, ev.ConnectionFailed):
                alert = event.alert.name.lower()
                state.metrics.handshakes_failed[alert] += 1
                state.security_log.emit(
                    "tls.handshake_failed",
                    self.peer,
                    self.listener.name,
                    {"alert": alert, "reason": event.reason, "ja4": tls.ja4},
                )
            elif isinstance(event, ev.ConnectionClosed):
                self.read_eof = True
                self._drop_partial_request()
        if self.transport is None or self._closed:
            return
        out = tls.data_to_write()
        if out:
            self.transport.write(out)
        if tls.is_closed:
            self._closed = True
            self.transport.close()
        elif self.read_eof and self._nothing_more_to_answer():
            self.close()
        elif tls.reading_paused and not self.write_paused:
            # The engine held records once its answers reached its high-water mark; they
            # went out above, so go on (resume_writing does it when the write was paused).
            self._received_tls(b"")

    def _feed_http(self, data: bytes) -> None:
        try:
            self._reader.feed(data)
        except HTTPError as exc:
            self._refuse(exc)
            return
        if self._phase == _TUNNEL and self._reader.upgrade_data:
            data, self._reader.upgrade_data = self._reader.upgrade_data, b""
            self._tunnel_from_client(data)  # the client's first frames, sent with its request

    def _refuse(self, exc: HTTPError, reason: Refusal | None = None) -> None:
        """The request stream is broken: answer in turn with the error, then close. The
        refusal is counted now: by the answer when it goes out at once, else here (an answer
        that waits its turn, or none: the exchange was answered already, or is cut)."""
        refusal = reason or for_status(exc.status)
        self.pause_reading("refused")
        reading = self._reading
        self._reading = None
        if reading is not None:
            if reading.response_done:
                # Answered early (its body was being read and dropped): it got its one
                # response; the connection just closes.
                self.state.metrics.refused[refusal] += 1
                self.close()
                return
            # Broken in the middle of a body: that exchange is answered with the error instead.
            if reading.response_started:
                self.state.metrics.refused[refusal] += 1
                self.abort()  # its status line is already out: cutting is the only signal left
                return
            reading.request_done = True
            reading.keep_alive = False
            reading.error_status = exc.status
            if reading.upstream is not None:
                reading.upstream.abort()
            if reading is self._queue[0]:
                self._answer(reading, exc.status, refusal)
            else:
                self.state.metrics.refused[refusal] += 1
            return
        ex = Exchange(self, None, None, exc.status)
        ex.request_id = self.state.request_ids.next()
        route = self._route  # set only when the head was routed, then refused (413)
        self._route = None
        if route is not None:
            ex.route = route.name
        self._queue.append(ex)
        if len(self._queue) == 1:
            self._answer(ex, exc.status, refusal)  # as _start would, counting the refusal
        else:
            self.state.metrics.refused[refusal] += 1

    # RequestSink: called by the reader

    def _route_head(self, head: RequestHead) -> int:
        """Called by the reader once a head is read: route it, and give its body size limit."""
        route = self._route = self.state.router.match_head(head)
        return (
            route.max_body_size if route is not None else self.state.config.limits.max_request_body
        )

    def on_request_head(self, head: RequestHead) -> None:
        state = self.state
        self._requests += 1
        last = self._max_requests
        if self._requests > last:
            # Pipelined past the last request: not answered (the connection closes after the
            # last one, which said so); the client sends it again on a new connection.
            self._reading = None
            return
        route = self._route
        self._route = None
        ex = pipeline.routed(self, head, route, state, self.forwarding)
        if self._requests == last:
            ex.keep_alive = False  # its response says `Connection: close`
        self._reading = ex
        if head.upgrade:
            self._tunnel_requested(ex)
        elif head.framing is _FRAMING_NONE:
            self._phase = _WAIT
            self.deadline = 0.0
        else:
            self._phase = _BODY
            self.deadline = self._clock.now + self._body_timeout
        self._queue.append(ex)
        if len(self._queue) == 1:
            self._start(ex)

    def on_request_body(self, data: bytes) -> None:
        ex = self._reading
        if ex is None or ex.discard_body or ex.error_status:
            return
        if ex.body_filter is not None:
            ex.body_filter.feed(data)  # delivered once the route's body filters let it pass
            return
        self.deliver_body(ex, data)

    def deliver_body(self, ex: Exchange, data: bytes) -> None:
        if ex.upstream is not None:
            ex.upstream.send_body(data)
            return
        ex.pending.append(data)
        ex.pending_size += len(data)
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED_REQUEST_BYTES:
            self.pause_reading("buffer")
        if ex is self._body_first and ex.pending_size > BODY_BEFORE_UPSTREAM:
            # A chunked body held for the body filters grew past what is held: it streams.
            self._body_first = None
            assert ex.pool is not None
            ex.pool.acquire(ex)

    def on_request_end(self) -> None:
        if self._requests >= self._max_requests and self._phase != _TUNNEL:
            # (A WebSocket upgrade that is the last request still reads: its tunnel needs it.)
            self.pause_reading("last request")  # the connection closes after its answer
        ex = self._reading
        self._reading = None
        if ex is None:
            return
        if self._phase == _BODY:
            self._phase = _WAIT
            self.deadline = 0.0
        if ex.body_filter is not None and not (ex.discard_body or ex.error_status):
            ex.body_filter.end()  # deliver_end once the body filters let it pass
            return
        self.deliver_end(ex)

    def deliver_end(self, ex: Exchange) -> None:
        ex.request_done = True
        if ex.upstream is not None:
            ex.upstream.end_body()
        elif ex is self._body_first and not ex.response_done:
            self._body_first = None
            assert ex.pool is not None
            ex.pool.acquire(ex)
        elif ex.response_done:
            self._advance()

    # exchanges, in order

    def _start(self, ex: Exchange) -> None:
        if ex.error_status:
            self._answer(ex, ex.error_status)
            return
        pipeline.begin(ex)

    # the pipeline's requests (pipeline.py)

    body_before_upstream = BODY_BEFORE_UPSTREAM

    def send_continue(self, ex: Exchange) -> None:
        self.write(serialize.CONTINUE_100)

    def hold_body(self, ex: Exchange) -> None:
        self._body_first = ex  # acquired in deliver_end (or deliver_body, past the limit)

    def _answer(self, ex: Exchange, status: int, refusal: Refusal | None = None) -> None:
        """A response made by the gateway itself (404, 413, 502, 504, ...)."""
        state = self.state
        self.send_local_reply(ex, local_reply(ex, status, state.metrics, state.router, refusal))

    def send_local_reply(self, ex: Exchange, reply: LocalReply) -> None:
        """Unless its status closes the connection, the connection stays usable after a
        gateway-made answer: the rest of a request body (bounded by max_request_body) is read
        and dropped before the next request."""
        data = reply.http1(ex.keep_alive)
        ex.bytes_sent += len(data)
        self.write(data)
        self._response_done(ex)

    def _response_done(self, ex: Exchange) -> None:
        self._uncount_paused_upstream()
        self._sealed = None  # what the transport still holds of them goes with it
        exchange_done(ex, self._metrics, self._access, self)
        if not ex.keep_alive:
            self.close()
            return
        if ex.request_done:
            self._advance()
        else:
            ex.discard_body = True  # answered early: read the rest of its body and drop it
            if ex.pending_size:
                self.release_buffered(ex)

    def _advance(self) -> None:
        ex = self._queue.popleft()
        if ex.pending_size:
            self.release_buffered(ex)
        if self._closed:
            return
        if self._queue:
            self._start(self._queue[0])
        elif self.read_eof:
            self.close()
        elif self._reading is None:
            self._phase = _IDLE
            self.deadline = self._clock.now + self._idle_timeout

    def release_buffered(self, ex: Exchange) -> None:
        if ex.pending_size:
            self._buffered -= ex.pending_size
            ex.pending_size = 0
            ex.pending = []
            if self._buffered <= MAX_BUFFERED_REQUEST_BYTES:
                self.resume_reading("buffer")

    # WebSocket: the upgrade request goes upstream like any other; a 101 turns the connection
    # into a tunnel (bytes both ways through the exchange's upstream connection, with the same
    # backpressure as bodies), any other answer is relayed and the connection closed (the reader
    # stopped at the upgrade request: what follows it is not HTTP).

    def _tunnel_requested(self, ex: Exchange) -> None:
        self._tunnel = ex
        self._phase = _TUNNEL
        self.deadline = 0.0  # until the 101, the upstream's read timeout applies
        ex.keep_alive = False

    def _tunnel_from_client(self, data: bytes) -> None:
        ex = self._tunnel
        if ex is None or ex.cancelled or ex.response_done:
            return
        self._tunnel_active = self._clock.now
        if ex.status == 101 and ex.upstream is not None:
            ex.upstream.send_body(data)
            return
        # Before the 101 (a client may send its first frames with the request): held, so that
        # an upstream that refuses the upgrade never reads them as HTTP, and a request retried
        # on a fresh upstream connection loses none.
        self._tunnel_early.append(data)
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED_REQUEST_BYTES:
            self.pause_reading("buffer")

    def _switch_protocols(self, ex: Exchange, head: ResponseHead) -> None:
        """The upstream accepted the upgrade: relay its 101; the tunnel is open."""
        ex.status = 101
        ex.response_started = True
        ex.out_framing = _FRAMING_NONE
        data = serialize.switching_protocols(head)
        ex.bytes_sent += len(data)
        self.write(data)
        self._tunnel_active = now = self._clock.now
        self.deadline = now + self.state.config.limits.websocket_idle_timeout
        early, self._tunnel_early = self._tunnel_early, []
        if early:
            self._buffered -= sum(len(piece) for piece in early)
            upstream = ex.upstream  # the connection that is answering: never None here
            if upstream is not None:
                for piece in early:
                    upstream.send_body(piece)
            if self._buffered <= MAX_BUFFERED_REQUEST_BYTES:
                self.resume_reading("buffer")

    def _tunnel_busy(self) -> bool:
        """At the tunnel's idle deadline: whether either side sent bytes since (then the
        deadline moves on instead)."""
        ex = self._tunnel
        if ex is None or ex.status != 101:
            return False
        last = self._tunnel_active
        if ex.upstream is not None:
            last = max(last, ex.upstream.tunnel_active)
        deadline = last + self.state.config.limits.websocket_idle_timeout
        if deadline <= self._clock.now:
            return False
        self.deadline = deadline
        return True

    # called by the upstream connection

    def response_head(self, ex: Exchange, head: ResponseHead) -> None:
        if head.status == 101:
            self._switch_protocols(ex, head)
            return
        framing = head.framing
        if framing is _CLOSE or framing is _CHUNKED:
            if ex.head is not None and ex.head.version == "1.1":
                framing = _CHUNKED
            else:
                framing = _CLOSE  # an HTTP/1.0 client: the body ends when we close
                ex.keep_alive = False
        ex.out_framing = framing
        ex.status = head.status
        ex.response_started = True
        extra = _REQUEST_ID + ex.request_id + b"\r\n" if ex.request_id else b""
        data = serialize.response_head(head, framing, ex.keep_alive, extra)
        ex.bytes_sent += len(data)
        self.write(data)

    def response_body(self, ex: Exchange, data: bytes) -> None:
        if ex.out_framing is _CHUNKED:
            parts = serialize.chunk(data)
            ex.bytes_sent += len(parts[0]) + len(data) + 2
            self._writelines(parts)
        else:
            ex.bytes_sent += len(data)
            self.write(data)

    def response_body_borrowed(self, ex: Exchange, data: memoryview) -> None:
        """`response_body` for the upstream's bulk path: `data[:-1]` in its read buffer, valid
        during this call only. Over TLS it is sealed from there into a buffer the transport
        takes as it is (no copy, no join); otherwise copied to bytes."""
        tls = self._tls
        transport = self.transport
        if (
            tls is None
            or transport is None
            or self._closed
            or tls.is_closed
            or ex.out_framing is _CHUNKED
            or self._h2 is not None
        ):
            self.response_body(ex, data[:-1].tobytes())
            return
        ex.bytes_sent += len(data) - 1
        self.flush()  # what was batched before (the response head) goes first
        self._send_sealed(data, transport)

    def response_end(self, ex: Exchange) -> None:
        if ex.cancelled:
            return
        if ex.out_framing is _CHUNKED:
            ex.bytes_sent += len(serialize.CHUNKED_END)
            self.write(serialize.CHUNKED_END)
        self._response_done(ex)

    def upstream_failed(self, ex: Exchange, status: int) -> None:
        if ex.cancelled:
            return
        if ex.response_started:
            self.abort()  # the status line is gone; a cut connection is the only signal left
            return
        self._answer(ex, status)

    @property
    def connection(self) -> ClientProtocol:
        """An HTTP/1.1 connection is its exchanges' client side itself."""
        return self

    # output and flow control

    # Output is collected while a callback runs and written once at its end: one syscall (and,
    # with TLS, one record) for a response head and its body instead of one per piece.

    def write(self, data: bytes | bytearray) -> None:
        if self._closed:
            return
        self._out.append(data)
        if not self._batch and self._flush_handle is None:
            self._flush_handle = self.state.loop.call_soon(self.flush)

    def write_pieces(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        self._writelines(pieces)

    def _writelines(self, parts: list[bytes] | list[bytes | bytearray | memoryview]) -> None:
        if self._closed:
            return
        self._out.extend(parts)
        if not self._batch and self._flush_handle is None:
            self._flush_handle = self.state.loop.call_soon(self.flush)

    def begin(self) -> None:
        """Start collecting output (nested calls allowed); `end` writes it."""
        self._batch += 1

    def end(self) -> None:
        self._batch -= 1
        if not self._batch:
            self.flush()

    def flush(self) -> None:
        self._flush_handle = None
        out = self._out
        transport = self.transport
        if not out or transport is None or self._closed:
            return
        self._out = []
        tls = self._tls
        if tls is None:
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
        elif not tls.is_closed:  # failed or closed under us: nothing more may be sent
            if len(out) > 2 and self._flush_gathered(out, transport):
                return
            if len(out) == 1:
                tls.send_data(cast("bytes | bytearray", out[0]))  # checked at run time
            else:
                tls.send_pieces(out)  # joined once, with the record's type byte
            transport.write(tls.data_to_write())

    def _flush_gathered(
        self, out: list[bytes | bytearray | memoryview], transport: asyncio.Transport
    ) -> bool:
        """Bulk output in pieces: `out` gathered into _GATHER and sealed from there into a
        reused buffer. False: not that large (or too large); the caller sends it as usual."""
        size = 0
        for piece in out:
            size += len(piece)
        if size < _GATHER_MIN or size > _GATHER_MAX:
            return False
        gather = _GATHER
        at = 0
        for piece in out:
            end = at + len(piece)
            gather[at:end] = piece
            at = end
        self._send_sealed(gather[: size + 1], transport)
        return True

    def _send_sealed(self, data: memoryview, transport: asyncio.Transport) -> None:
        """`data[:-1]` sealed into a buffer of `_sealed` and written (`send_data_into` borrows
        the last byte); records the engine queued on its own (a KeyUpdate) go first."""
        tls = self._tls
        assert tls is not None
        queued = tls.data_to_write()
        if queued:
            transport.write(queued)
        sealed = self._sealed
        if sealed is None:
            sealed = self._sealed = SealedOutput(_SEALED_SIZE)
        out = sealed.take(tls.sealed_size(len(data) - 1), transport.get_write_buffer_size())
        written = tls.send_data_into(data, out)
        sealed.lend(out, written)
        transport.write(memoryview(out)[:written])

    def output_idle(self) -> None:
        """No response is being sent (HTTP/2: no stream left): the bulk buffers can go."""
        self._sealed = None

    def pause_reading(self, reason: str) -> None:
        if not self._pause_reasons and self.transport is not None:
            if not self.transport.is_closing():
                self.transport.pause_reading()
        self._pause_reasons.add(reason)

    def resume_reading(self, reason: str) -> None:
        if reason not in self._pause_reasons:
            return
        self._pause_reasons.discard(reason)
        if not self._pause_reasons and self.transport is not None:
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def close(self) -> None:
        """Close after what is written (TLS: with close_notify)."""
        if self._closed or self.transport is None:
            return
        tls = self._tls
        if tls is not None and not tls.is_closed:
            # The last response and the close_notify go out in one write (one system call
            # and TCP segment instead of two: most connections of HTTP/1.0 clients end so).
            out = self._out
            if out:
                self._out = []
                pending = out[0] if len(out) == 1 else b"".join(out)
                tls.send_data(cast("bytes | bytearray", pending))
            tls.close()
            data = tls.data_to_write()
            if data:
                self.transport.write(data)
        else:
            self.flush()
        self._closed = True
        self.transport.close()
        self._arm_close_deadline()
        for ex in self._queue:
            if not ex.response_done:
                ex.cancelled = True
                if ex.upstream is not None:
                    ex.upstream.abort()

    def _arm_close_deadline(self) -> None:
        """Closed with output still unsent: a client that never reads it would hold the socket
        (and its connection-cap slot) forever. It gets idle_timeout, anew whenever it reads
        enough to resume our writing; timed_out aborts it then."""
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            self.deadline = self._clock.now + self.state.config.limits.idle_timeout
        else:
            self.deadline = 0.0

    def _stalled_over_cap(self) -> None:
        """Cut for holding a paused upstream past limits.max_paused_upstreams_per_address."""
        state = self.state
        state.metrics.refused[Refusal.PAUSED_UPSTREAMS_PER_ADDRESS] += 1
        detail = {"limit": state.config.limits.max_paused_upstreams_per_address}
        state.security_log.emit("conn.stalled_upstream", self.peer, self.listener.name, detail)

    def abort(self) -> None:
        """Cut the connection now (RST); what is unsent is dropped."""
        self._closed = True
        if self.transport is not None:
            self.transport.abort()

    def shut(self) -> None:
        """Close now (shutdown, end of a drain): what is still unsent is dropped."""
        self.close()
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size():
            transport.abort()

    def timed_out(self) -> None:
        """The header, body, keep-alive or tunnel idle timeout passed. A request cut short by
        it (a partial head, a stalled body) is answered 408 and the connection closed; a
        connection that sent nothing (idle, or still in its TLS handshake) is just closed, and
        so is an idle tunnel (both sides). A closed connection whose output is still unsent,
        and one whose client left our output unread too long, are aborted."""
        now = self._clock.now
        if self._closed or (self.write_deadline and now > self.write_deadline):
            # The client does not read: whatever it was in, it is cut (HTTP/1.1 or HTTP/2). Its
            # exchanges' upstream connections are dropped with it (connection_lost), with no
            # blame on their targets.
            if self._pause_over_cap:
                self._stalled_over_cap()
            self.deadline = self.write_deadline = 0.0
            self.abort()
            return
        if self.deadline == 0.0 or now <= self.deadline:
            return  # only a write deadline was near (not passed)
        if self._h2 is not None:
            self._h2.timed_out()
            return
        self.deadline = 0.0
        phase = self._phase
        if phase == _TUNNEL and self._tunnel_busy():
            return
        if phase != _IDLE and any(
            reason.startswith((pipeline.FILTER_PAUSE, pipeline.QUEUE_PAUSE))
            for reason in self._pause_reasons
        ):
            # Reading is paused for the request filters (a filter has its own deadline): the
            # client cannot be late meanwhile. Its time starts anew when reading resumes.
            limits = self.state.config.limits
            self.deadline = now + (limits.body_timeout if phase == _BODY else limits.header_timeout)
            return
        if (phase == _HEAD and self._reader.in_head) or phase == _BODY:
            self._refuse(HTTPError(408, "request not received in time"), reason=Refusal.TIMEOUT)
            if not self._queue:
                self.close()
            return
        if phase == _HEAD:
            self.state.metrics.refused[Refusal.TIMEOUT] += 1
        # The client stopped reading (a slow-read attack, or gone): a close would wait for the
        # unsent bytes, holding the socket and the connection's slot; cut at once instead.
        self.shut()


if TYPE_CHECKING:

    def _client_is_downstream(client: ClientProtocol) -> tuple[Downstream, DownstreamConnection]:
        """mypy proves here that an HTTP/1.1 connection is both an exchange's client side and
        the connection an HTTP/2 session runs on."""
        return client, client
