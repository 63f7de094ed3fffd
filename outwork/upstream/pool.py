"""Keep-alive connection pools to plain-HTTP upstreams, and the upstream side of an exchange.

A pool keeps idle connections per target (LIFO, capped) and opens new ones when none is idle.
One exchange at a time per connection. The response is streamed to the client as it arrives;
a connection goes back to the pool only when both the request and the response ended cleanly.

The pool also decides where a request goes and what happens when that fails: a balancer picks
among the targets in rotation (`healthy`: active checks passed and not ejected by passive
health); an idempotent request that failed before any response is retried on another target;
a circuit breaker caps connections and queued requests per upstream (503 beyond).
"""

from __future__ import annotations

import asyncio
import functools
import json
import mmap
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar, cast

from outwork.config.config import UpstreamConfig
from outwork.filters import Reply
from outwork.filters.runner import response_head_verdict
from outwork.http import serialize
from outwork.http.errors import UpstreamProtocolError
from outwork.http.messages import Framing, ResponseHead
from outwork.http.reader import ResponseReader
from outwork.proxy import pipeline, response_filters
from outwork.proxy.clock import Clock
from outwork.proxy.exchange import MAX_REPLAY_BODY, RETRYABLE_METHODS, Exchange
from outwork.upstream.balancer import make_balancer
from outwork.upstream.health import HealthChecker
from outwork.upstream.tls import UpstreamTls, UpstreamTLSError

if TYPE_CHECKING:
    from outwork.observe.metrics import Metrics
    from outwork.observe.security_events import SecurityEventLog

P = TypeVar("P", bound=asyncio.BaseProtocol)

# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_CLOSE: Final = Framing.CLOSE
_CHUNKED: Final = Framing.CHUNKED
_LENGTH: Final = Framing.LENGTH

# A Content-Length body with at least this many bytes still to come is read in bulk: the
# connection's transport switches to a `BulkReader` until the body's end. (Smaller ones stay on
# `data_received`: a switch costs about what a few small reads do.)
BULK_MIN: Final = 64 * 1024
# Every connection reading in bulk reads into this one buffer (asyncio's BufferedProtocol: the
# loop calls recv_into on it, and the callbacks run one at a time), so a connection holds no
# read buffer of its own; the client seals the body straight from it, or copies it, before the
# callback returns. One spare byte follows what a read may fill: the record layer borrows the
# byte after a body chunk (records.seal_into). Anonymous memory: its pages are resident only
# once a bulk read touched them (a worker that never reads in bulk does not carry them).
# Private: workers forked after this import must not share it (mmap's default is shared).
READ_SIZE: Final = 256 * 1024
_READ: Final = memoryview(mmap.mmap(-1, READ_SIZE + 1, flags=mmap.MAP_PRIVATE))
_READ_INTO: Final = _READ[:READ_SIZE]


class BulkReader(asyncio.BufferedProtocol):
    """An upstream connection's protocol while it reads a body in bulk: reads land in the
    shared buffer (`get_buffer`) and go to `UpstreamConnection.bulk_received`; the rest is the
    connection's own."""

    __slots__ = ("conn",)

    def __init__(self, conn: UpstreamConnection) -> None:
        self.conn = conn

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_INTO

    def buffer_updated(self, nbytes: int) -> None:
        self.conn.bulk_received(nbytes)

    def eof_received(self) -> bool | None:
        return self.conn.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.connection_lost(exc)

    def pause_writing(self) -> None:
        self.conn.pause_writing()

    def resume_writing(self) -> None:
        self.conn.resume_writing()


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, target: int) -> None:
        self.pool = pool
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.reader: ResponseReader | None = None
        self.closed = False
        self.reused = False
        self.deadline = 0.0  # read: the upstream's next bytes, once the request is sent
        self.write_deadline = 0.0  # while request bytes wait for the upstream to read them
        self.idle_since = 0.0
        self._chunked = False
        self._reusable = False
        self.tunnel = False  # switched to WebSocket (a 101): bytes pass unparsed both ways
        self.tunnel_active = 0.0  # clock time of the upstream's last tunnel bytes
        self._replay_room = 0  # bytes of request body that may still be kept for a retry
        # Reading paused because the client does not take the response as fast as it comes:
        # the read deadline does not run meanwhile (a slow client is not the target's fault).
        self.read_paused = False
        # The response, while response body filters hold it (proxy/response_filters.py).
        self.held: response_filters.HeldResponse | None = None
        # Bytes of a Content-Length body still to come (-1: not in such a body). Once the
        # parser has read the head, a long rest is counted, not parsed (`bulk_received`).
        self._body_left = -1
        self._bulk = False  # the transport's protocol is a BulkReader

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.pool.connections.add(self)

    def bulk_received(self, nbytes: int) -> None:
        """Body bytes of a known length, straight from the read buffer to the client (which
        seals them into TLS records from there, or copies them): no parser call, no bytes
        object per read. The parser read the head; the body's end is counted here."""
        ex = self.exchange
        reader = self.reader
        if ex is None or reader is None:
            self.close()  # an idle connection must stay silent
            return
        self.deadline = self.pool.clock.now + self.pool.config.read_timeout
        left = self._body_left
        take = nbytes if nbytes < left else left
        left -= take
        self._body_left = left
        client = ex.client
        client.begin()
        try:
            client.response_body_borrowed(ex, _READ[: take + 1])
            if left:
                return
            self._body_left = -1
            if take < nbytes:
                # Bytes after the response: the parser would refuse them as well.
                self._fail(502, "protocol")
                return
            reader.end_counted_body()
            if self.exchange is ex:
                self._complete()
        finally:
            client.end()

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            self._tunnel_received(data)
            return
        ex = self.exchange
        reader = self.reader
        if ex is None or reader is None:
            self.close()  # an idle connection must stay silent
            return
        self.deadline = self.pool.clock.now + self.pool.config.read_timeout
        client = ex.client
        client.begin()  # the client's output is written once, when this callback ends
        try:
            try:
                reader.feed(data)
            except UpstreamProtocolError:
                self._fail(502, "protocol")  # the upstream read the request: not retried
                return
            if reader.upgraded:
                self._open_tunnel(ex, reader.upgrade_data)
                return
            if reader.done:
                if self.exchange is ex:
                    self._complete()
            elif (
                self._body_left >= BULK_MIN
                and self.held is None
                and self.exchange is ex
                and self.pool.tls is None  # a TLS upstream's transport reads for itself
                and self.transport is not None
            ):
                self._bulk = True
                self.transport.set_protocol(BulkReader(self))
        finally:
            client.end()

    def eof_received(self) -> bool | None:
        self.closed = True  # not reused from now on
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.tunnel:
            self._tunnel_closed()
            return
        ex = self.exchange
        reader = self.reader
        if ex is None or reader is None:
            return
        if reader.framing is _CLOSE and exc is None:  # not a reset, not a TLS truncation
            reader.feed_eof()
            self._complete()
            return
        if not reader.started and self.reused and not ex.retried and ex.retryable():
            # The upstream closed an idle keep-alive connection just as we reused it: not the
            # target's fault, sent again on a fresh connection.
            self._detach()
            ex.retried = True
            ex.rewind()
            self.pool.acquire(ex, fresh=True)
            return
        # Nothing received yet: a retry on another target may still answer the client.
        self._fail(502, "reset", retry=not reader.started)

    def pause_writing(self) -> None:
        # The upstream does not read what we send: from now on it has write_timeout to do so.
        self.write_deadline = self.pool.clock.now + self.pool.config.write_timeout
        if self.exchange is not None:
            self.exchange.client.pause_reading("upstream")

    def resume_writing(self) -> None:
        self.write_deadline = 0.0
        if self.exchange is not None:
            self.exchange.client.resume_reading("upstream")

    # the exchange

    def attach(self, ex: Exchange) -> None:
        head = ex.head
        transport = self.transport
        assert head is not None and transport is not None
        self.exchange = ex
        ex.upstream = self
        self.pool.active.add(self)
        self.pool.load[self.target] += 1
        head_request = head.method == b"HEAD"
        reader = self.reader
        if reader is None or not reader.reset(head_request):
            self.reader = reader = ResponseReader(self, head_request)
        reader.expect_upgrade = head.upgrade
        self._reusable = False
        self._chunked = chunked = head.framing is _CHUNKED
        client = ex.client
        forwarded = client.forwarded
        if not head.has_host:
            # HTTP/1.0 without Host, sent on as HTTP/1.1: which requires one (RFC 9112 3.2).
            forwarded = self.pool.host_lines[self.target] + forwarded
        parts = [serialize.request_head(head, forwarded)]
        for data in ex.pending:
            if chunked:
                parts.extend(serialize.chunk(data))
            else:
                parts.append(data)
        self._replay_room = 0
        if ex.replay is None and head.method in RETRYABLE_METHODS:
            room = MAX_REPLAY_BODY - ex.pending_size
            if room >= 0:
                # A small body is kept (by reference) for a retry until the response starts;
                # what is still to come is added as it passes (send_body).
                ex.replay = list(ex.pending)
                self._replay_room = room
        if ex.pending_size:
            client.release_buffered(ex)
        if ex.request_done:
            if chunked:
                parts.append(serialize.CHUNKED_END)
            self.deadline = self.pool.clock.now + self.pool.config.read_timeout
        else:
            self.deadline = 0.0  # the client is still sending; its own timeouts apply
        transport.writelines(parts)
        # Set either way: whatever state the last exchange left, reading follows this client.
        if client.write_paused:
            self.pause_reading()
        else:
            self.resume_reading()

    def send_body(self, data: bytes) -> None:
        assert self.transport is not None
        ex = self.exchange
        if ex is not None and ex.replay is not None:
            self._replay_room -= len(data)
            if self._replay_room >= 0:
                ex.replay.append(data)
            else:
                ex.replay = None  # too long to keep: this request is sent once
        if self._chunked:
            self.transport.writelines(serialize.chunk(data))
        else:
            self.transport.write(data)

    def end_body(self) -> None:
        assert self.transport is not None
        if self._chunked:
            self.transport.write(serialize.CHUNKED_END)
        if self.deadline == 0.0:
            self.deadline = self.pool.clock.now + self.pool.config.read_timeout

    def pause_reading(self) -> None:
        """The client cannot take more now. The read deadline stops meanwhile: the client side
        bounds its own stall (and aborts the client, which drops this connection)."""
        self.read_paused = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.read_paused:
            # Only pause_reading pauses the transport, and it sets read_paused: nothing to undo
            # (twice per request, each a transport.is_closing and resume_reading call saved).
            return
        # Paused, the upstream could not send (nor, blocked on its sending, read): its timeouts
        # start again in full.
        now, config = self.pool.clock.now, self.pool.config
        if self.deadline:
            self.deadline = max(self.deadline, now + config.read_timeout)
        if self.write_deadline:
            self.write_deadline = max(self.write_deadline, now + config.write_timeout)
        self.read_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def abort(self) -> None:
        """The client went away: this connection's state is unknown, drop it."""
        self._detach()
        self.close()

    def close(self) -> None:
        self.closed = True
        self.pool.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def timed_out(self, now: float) -> None:
        if self.write_deadline and now > self.write_deadline:
            self._fail(504, "write_timeout")
        else:
            self._fail(504, "timeout")

    # ResponseSink

    def on_response_head(self, head: ResponseHead) -> None:
        self.pool.failures[self.target] = 0  # the target answers: passive health resets
        self._body_left = head.content_length if head.framing is _LENGTH else -1
        ex = self.exchange
        if ex is not None:
            ex.upstream_at = time.monotonic()
            ex.replay = None  # never sent again from now on
            if ex.filters:
                verdict = response_head_verdict(ex.filters, ex, head)
                if isinstance(verdict, Reply):
                    self._refused(ex, verdict)
                    return
                # HOOK (response body filters): the head waits while they inspect the body.
                self.held = response_filters.hold(ex, head)
                if self.held is not None:
                    return
            ex.client.response_head(ex, head)

    def on_response_body(self, data: bytes) -> None:
        if self._body_left > 0:
            self._body_left -= len(data)
        ex = self.exchange
        if ex is not None:
            held = self.held
            if held is None:
                ex.client.response_body(ex, data)
                return
            # HOOK (response body filters): held, released, or refused.
            verdict = held.feed(data)
            if verdict is False:
                self.held = None  # released: the rest streams
            elif isinstance(verdict, Reply):
                self._refused(ex, verdict)

    def _refused(self, ex: Exchange, verdict: Reply) -> None:
        """Answered by a filter instead: this upstream response is dropped whole (its
        connection too: the rest of it would come), and the filter's answer counted and sent as
        a request filter's is."""
        self._detach()
        self.close()
        if not ex.cancelled and not ex.response_done:
            pipeline.refuse(ex, verdict)

    def on_response_end(self, reusable: bool) -> None:
        self._reusable = reusable  # acted on in _complete, once the parser has returned

    # WebSocket tunnel: after a 101 this connection carries the upgraded protocol's bytes both
    # ways, unparsed, until either side closes (or the client's tunnel idle timeout). It is
    # never pooled again. Client bytes come in through send_body; these bytes go out through
    # the client's response_body, and its end through response_end.

    def _open_tunnel(self, ex: Exchange, data: bytes) -> None:
        self.tunnel = True
        self.deadline = 0.0  # no read timeout: the client side times the tunnel's idleness
        self.tunnel_active = self.pool.clock.now
        if data:  # what followed the 101 in the same read
            ex.client.response_body(ex, data)

    def _tunnel_received(self, data: bytes) -> None:
        ex = self.exchange
        if ex is None:
            self.close()
            return
        self.tunnel_active = self.pool.clock.now
        client = ex.client
        client.begin()
        try:
            client.response_body(ex, data)
        finally:
            client.end()

    def _tunnel_closed(self) -> None:
        ex = self._detach()
        if ex is not None and not ex.cancelled:
            ex.client.response_end(ex)  # the client connection closes after what is written

    # internals

    def _detach(self) -> Exchange | None:
        ex = self.exchange
        self.exchange = None  # the reader stays: reused for the next response when it can be
        self._body_left = -1
        if self._bulk:
            self._bulk = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.set_protocol(self)
        held = self.held
        if held is not None:
            self.held = None
            held.drop()  # HOOK (response body filters): its bytes leave the held budget
        self.deadline = 0.0
        self.write_deadline = 0.0
        self.pool.active.discard(self)
        if ex is not None:
            self.pool.load[self.target] -= 1
            ex.upstream = None
            ex.client.resume_reading("upstream")
        return ex

    def _complete(self) -> None:
        reusable = self._reusable
        held = self.held
        ex = self._detach()
        if ex is None:
            return
        if reusable and ex.request_done and not self.closed:
            # The read that ended the response may have paused reading for this client: an
            # idle connection must read (its reuse, or the upstream closing it, shows up).
            self.resume_reading()
            self.pool.release(self)
        else:
            self.close()
        if held is not None:
            held.end()  # HOOK (response body filters): their verdict, then the response
        else:
            ex.client.response_end(ex)

    def _fail(self, status: int, kind: str, retry: bool = False) -> None:
        ex = self._detach()
        self.close()
        if ex is not None:
            self.pool.attempt_failed(ex, self.target, status, kind, retry)


class UpstreamPool:
    def __init__(
        self,
        config: UpstreamConfig,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics,
        clock: Clock,
        security_log: SecurityEventLog | None = None,
    ) -> None:
        self.config = config
        self.loop = loop
        self.clock = clock
        self.metrics = metrics
        count = len(config.targets)
        self._idle: list[list[UpstreamConnection]] = [[] for _ in config.targets]
        # Per target: the Host line for requests that came without one, and the name the
        # access log gives it (JSON), both made once here.
        self.host_lines = [b"host: %s\r\n" % str(a).encode() for a in config.targets]
        self.log_names = [json.dumps(str(a)).encode() for a in config.targets]
        self.active: set[UpstreamConnection] = set()  # connections with an exchange
        self.connections: set[UpstreamConnection] = set()  # every open one, idle or active
        self._connecting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # https:// targets: the engine's client role, and the targets' session tickets.
        self.tls: UpstreamTls | None = None
        if config.tls is not None:
            self.tls = UpstreamTls(
                config.name, config.tls, config.targets, clock, metrics, security_log
            )
        # Health, per target. `healthy` (read by others, e.g. metrics) is True while the target
        # is in rotation: its active checks pass (`_checked`) and it is not ejected.
        self.healthy = [True] * count
        self._checked = [True] * count
        self._ejected_until = [0.0] * count
        self.failures = [0] * count  # failures in a row from real traffic (passive health)
        self._in_rotation = (1 << count) - 1  # `healthy` as a bit mask, for the balancer
        # Requests in flight per target (attached or connecting), for least_connections.
        self.load = [0] * count
        self.balancer = make_balancer(
            config.load_balancing, [str(a) for a in config.targets], config.hash_header, self.load
        )
        # Requests waiting for a connection (circuit breaker), oldest first, with deadlines.
        self._pending: deque[tuple[float, Exchange]] = deque()
        self._pending_handle: asyncio.Handle | None = None
        self._checker = (
            HealthChecker(self, config.health_check) if config.health_check is not None else None
        )

    # choosing a target

    def acquire(self, ex: Exchange, fresh: bool = False) -> None:
        """Attach the exchange to an idle connection now, or to a new one when it is open."""
        target = self.balancer.pick(ex, self._in_rotation & ~ex.tried)
        if target is None:
            self._refuse(ex, "no_healthy_target")
            return
        ex.target = self.log_names[target]
        idle = self._idle[target]
        while idle and not fresh:
            conn = idle.pop()  # LIFO: the most recently used connection is the least likely stale
            if not conn.closed:
                conn.reused = True
                conn.attach(ex)
                return
        if self._open() >= self.config.max_connections and not self._close_an_idle():
            if len(self._pending) >= self.config.max_pending:
                self._drop_cancelled_pending()
            if len(self._pending) >= self.config.max_pending:
                self._refuse(ex, "circuit_breaker")
                return
            # Waits for a connection to close or to come back idle; its target is picked then.
            self._pending.append((self.clock.now + self.config.connect_timeout, ex))
            return
        self._connecting += 1
        self.load[target] += 1
        task = self.loop.create_task(self._connect(target, ex))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _open(self) -> int:
        return len(self.connections) + self._connecting

    def _close_an_idle(self) -> bool:
        """Make room under max_connections by closing the oldest idle connection, if any."""
        oldest: UpstreamConnection | None = None
        for idle in self._idle:
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        oldest.close()
        return True

    def _refuse(self, ex: Exchange, kind: str) -> None:
        self.metrics.upstream_errors[f"{self.config.name}/{kind}"] += 1
        if not ex.cancelled and not ex.response_done:
            ex.client.upstream_failed(ex, 503)

    # opening connections

    async def _connect(self, target: int, ex: Exchange) -> None:
        conn = None
        try:
            conn = await self._open_connection(target)
        except TimeoutError:
            status, kind = 504, "connect_timeout"
        except UpstreamTLSError:  # counted, and reported as a security event, already
            status, kind = 502, ""
        except OSError:
            status, kind = 502, "connect"
        finally:
            # Before any retry below, which counts connections and load afresh.
            self._connecting -= 1
            self.load[target] -= 1
        if conn is None:
            self._connect_failed(ex, target, status, kind)
            return
        self.metrics.upstream_connections_opened[self.config.name] += 1
        if conn.closed:  # lost before its first use (closed, a TLS alert after the handshake)
            self._connect_failed(ex, target, 502, "reset")
        elif ex.cancelled or ex.response_done:  # the client left, or was answered meanwhile
            self.release(conn)
        else:
            conn.attach(ex)

    async def _open_connection(self, target: int) -> UpstreamConnection:
        """A new pooled connection. Raises TimeoutError, UpstreamTLSError or OSError."""
        factory = functools.partial(UpstreamConnection, self, target)
        # For https:// targets the handshake counts toward the connect timeout.
        return await asyncio.wait_for(
            self.open_transport(target, factory), self.config.connect_timeout
        )

    async def open_transport(self, target: int, factory: Callable[[], P]) -> P:
        """A connection to the target, plain or TLS as its URL says, for the protocol that
        `factory` makes (pooled connections, health checks). Raises OSError."""
        if self.tls is None:
            address = self.config.targets[target]
            _, protocol = await self.loop.create_connection(factory, address.host, address.port)
            return protocol
        return await self.tls.connect(self.loop, factory, target)

    def _connect_failed(self, ex: Exchange, target: int, status: int, kind: str) -> None:
        self._schedule_pending()  # a slot under max_connections is free again
        if ex.cancelled or ex.response_done:
            if kind:
                self.metrics.upstream_errors[f"{self.config.name}/{kind}"] += 1
            self._passive_failure(target)
            return
        self.attempt_failed(ex, target, status, kind, retry=True, sent=False)

    # failures, retries and passive health

    def attempt_failed(
        self, ex: Exchange, target: int, status: int, kind: str, retry: bool, sent: bool = True
    ) -> None:
        """The exchange failed on `target`; the client gets `status` unless it is retried on
        another target in rotation. A retry needs `retry` (the failure came before any
        response byte) and `retries` left, and, once the request was `sent`, an idempotent
        request whose whole body was kept. A request never sent (the connection failed) is
        safe to send elsewhere whatever its method: no upstream saw it. `kind` is the
        failure's metric label ("": counted already)."""
        if kind:
            self.metrics.upstream_errors[f"{self.config.name}/{kind}"] += 1
        self._passive_failure(target)
        ex.tried |= 1 << target
        if (
            retry
            and ex.attempts < self.config.retries
            and not ex.cancelled
            and not ex.response_started
            and (not sent or ex.retryable())
            and self._in_rotation & ~ex.tried
        ):
            ex.attempts += 1
            if sent:
                ex.rewind()
            self.acquire(ex)
            return
        if not ex.cancelled and not ex.response_done:
            ex.client.upstream_failed(ex, status)

    def _passive_failure(self, target: int) -> None:
        passive = self.config.passive_health
        if passive is None:
            return
        failures = self.failures[target] = self.failures[target] + 1
        if failures >= passive.consecutive_failures and not self._ejected_until[target]:
            self._ejected_until[target] = self.clock.now + passive.ejection_time
            self._log(
                target,
                f"ejected for {passive.ejection_time:g}s after {failures} failed requests in a row",
            )
            self._update_rotation(target)

    def set_checked(self, target: int, ok: bool, reason: str) -> None:
        """The active health checker's verdict changed."""
        self._checked[target] = ok
        if ok:
            self.failures[target] = 0
        self._log(target, f"{'healthy' if ok else 'unhealthy'} ({reason})")
        self._update_rotation(target)

    def _update_rotation(self, target: int) -> None:
        healthy = self._checked[target] and not self._ejected_until[target]
        if healthy == self.healthy[target]:
            return
        self.healthy[target] = healthy
        if healthy:
            self._in_rotation |= 1 << target
        else:
            self._in_rotation &= ~(1 << target)
        self._log(target, "back in rotation" if healthy else "out of rotation")

    def _log(self, target: int, message: str) -> None:
        # A plain stderr line, like the gateway's other operational messages: a target's health
        # is not a security event.
        name = self.config.name
        address = self.config.targets[target]
        print(f"outwork: upstream {name} target {address}: {message}", file=sys.stderr, flush=True)

    # the queue of requests waiting for a connection

    def _schedule_pending(self) -> None:
        # Served from the loop, not from inside the callback that freed the slot: acquiring
        # can answer a client, which can start its next request, which can call back here.
        if self._pending and self._pending_handle is None:
            self._pending_handle = self.loop.call_soon(self._serve_pending)

    def _serve_pending(self) -> None:
        self._pending_handle = None
        pending = self._pending
        for _ in range(len(pending)):
            if not pending:
                return
            _, ex = pending[0]
            if ex.cancelled or ex.response_done:
                pending.popleft()
                continue
            if self._open() >= self.config.max_connections and not any(self._idle):
                return
            pending.popleft()
            self.acquire(ex)

    def _drop_cancelled_pending(self) -> None:
        self._pending = deque(
            (deadline, ex)
            for deadline, ex in self._pending
            if not ex.cancelled and not ex.response_done
        )

    # connections coming back and going away

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed:
            return
        if conn.read_paused:
            conn.resume_reading()  # never pooled paused: the next exchange would time out
        idle = self._idle[conn.target]
        if len(idle) >= self.config.max_idle_connections:
            conn.close()
            return
        conn.idle_since = self.clock.now
        idle.append(conn)
        self._schedule_pending()

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle[conn.target]
        if conn in idle:
            idle.remove(conn)
        self.active.discard(conn)
        if conn in self.connections:
            self.connections.discard(conn)
            self._schedule_pending()

    def tick(self, now: float) -> None:
        """Called about twice a second: timeouts, stale idle connections, ejections that end."""
        for conn in [
            c
            for c in self.active
            if not c.read_paused  # stalled by its client: the client side times that
            and ((c.deadline and now > c.deadline) or (c.write_deadline and now > c.write_deadline))
        ]:
            conn.timed_out(now)
        limit = now - self.config.idle_timeout
        for idle in self._idle:
            # Oldest first at the front of each list.
            while idle and idle[0].idle_since < limit:
                idle[0].close()
        pending = self._pending
        while pending and pending[0][0] < now:
            _, ex = pending.popleft()
            self._refuse(ex, "queue_timeout")
        passive = self.config.passive_health
        if passive is not None:
            for target, until in enumerate(self._ejected_until):
                if until and now >= until:
                    self._ejected_until[target] = 0.0
                    # On probation: one more failure ejects it again, so a target still down
                    # costs one failed attempt per ejection_time, not consecutive_failures.
                    self.failures[target] = passive.consecutive_failures - 1
                    self._log(target, "ejection over")
                    self._update_rotation(target)

    def close(self) -> None:
        if self._checker is not None:
            self._checker.close()
        if self._pending_handle is not None:
            self._pending_handle.cancel()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()
        for idle in self._idle:
            for conn in list(idle):
                conn.close()
        for conn in list(self.active):
            conn.close()
