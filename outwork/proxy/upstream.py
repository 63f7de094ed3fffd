"""Keep-alive connection pools to plain-HTTP upstreams, and the upstream side of an exchange.

A pool keeps idle connections per target (LIFO, capped) and opens new ones when none is idle.
One exchange at a time per connection. The response is streamed to the client as it arrives;
a connection goes back to the pool only when both the request and the response ended cleanly.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import TYPE_CHECKING, cast

from outwork.http import serialize
from outwork.http.errors import UpstreamProtocolError
from outwork.http.messages import Framing, ResponseHead
from outwork.http.reader import ResponseReader
from outwork.policy.config import UpstreamConfig
from outwork.proxy.clock import Clock
from outwork.proxy.exchange import Exchange
from outwork.proxy.upstream_tls import UpstreamTls, UpstreamTLSError

if TYPE_CHECKING:
    from outwork.proxy.metrics import Metrics
    from outwork.proxy.security_events import SecurityEventLog


class UpstreamConnection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool, target: int) -> None:
        self.pool = pool
        self.target = target
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.reader: ResponseReader | None = None
        self.closed = False
        self.reused = False
        self.deadline = 0.0
        self.idle_since = 0.0
        self._chunked = False
        self._reusable = False
        self.tunnel = False  # switched to WebSocket (a 101): bytes pass unparsed both ways
        self.tunnel_active = 0.0  # clock time of the upstream's last tunnel bytes

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

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
                self._fail(502, "protocol")
                return
            if reader.upgraded:
                self._open_tunnel(ex, reader.upgrade_data)
                return
            if reader.done and self.exchange is ex:
                self._complete()
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
        if reader.framing is Framing.CLOSE and exc is None:  # not a reset, not a TLS truncation
            reader.feed_eof()
            self._complete()
            return
        if not reader.started and self.reused and ex.retryable():
            # The upstream closed an idle keep-alive connection just as we reused it.
            self._detach()
            ex.retried = True
            self.pool.acquire(ex, fresh=True)
            return
        self._fail(502, "reset")

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client.pause_reading("upstream")

    def resume_writing(self) -> None:
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
        head_request = head.method == b"HEAD"
        reader = self.reader
        if reader is None or not reader.reset(head_request):
            self.reader = reader = ResponseReader(self, head_request)
        reader.expect_upgrade = head.upgrade
        self._reusable = False
        self._chunked = chunked = head.framing is Framing.CHUNKED
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
        if ex.pending_size:
            client.release_buffered(ex)
        if ex.request_done:
            if chunked:
                parts.append(serialize.CHUNKED_END)
            self.deadline = self.pool.clock.now + self.pool.config.read_timeout
        else:
            self.deadline = 0.0  # the client is still sending; its own timeouts apply
        transport.writelines(parts)
        if client.write_paused:
            transport.pause_reading()

    def send_body(self, data: bytes) -> None:
        assert self.transport is not None
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
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
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

    def timed_out(self) -> None:
        self._fail(504, "timeout")

    # ResponseSink

    def on_response_head(self, head: ResponseHead) -> None:
        ex = self.exchange
        if ex is not None:
            ex.upstream_at = time.monotonic()
            ex.client.response_head(ex, head)

    def on_response_body(self, data: bytes) -> None:
        ex = self.exchange
        if ex is not None:
            ex.client.response_body(ex, data)

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
        self.deadline = 0.0
        self.pool.active.discard(self)
        if ex is not None:
            ex.upstream = None
            ex.client.resume_reading("upstream")
        return ex

    def _complete(self) -> None:
        reusable = self._reusable
        ex = self._detach()
        if ex is None:
            return
        if reusable and ex.request_done and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        ex.client.response_end(ex)

    def _fail(self, status: int, kind: str) -> None:
        ex = self._detach()
        self.close()
        if ex is not None:
            self.pool.metrics.upstream_errors[f"{self.pool.config.name}/{kind}"] += 1
            ex.client.upstream_failed(ex, status)


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
        self._idle: list[list[UpstreamConnection]] = [[] for _ in config.targets]
        # Per target: the Host line for requests that came without one, and the name the
        # access log gives it (JSON), both made once here.
        self.host_lines = [b"host: %s\r\n" % str(a).encode() for a in config.targets]
        self.log_names = [json.dumps(str(a)).encode() for a in config.targets]
        self.active: set[UpstreamConnection] = set()
        # Per target: in rotation (maintained by health checks; read by /metrics).
        self.healthy = [True] * len(config.targets)
        self._next = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # https:// targets: the engine's client role, and the targets' session tickets.
        self.tls: UpstreamTls | None = None
        if config.tls is not None:
            self.tls = UpstreamTls(
                config.name, config.tls, config.targets, clock, metrics, security_log
            )

    def acquire(self, ex: Exchange, fresh: bool = False) -> None:
        """Attach the exchange to an idle connection now, or to a new one when it is open."""
        if not self._idle:
            ex.client.upstream_failed(ex, 502)
            return
        target = self._next % len(self._idle)
        self._next += 1
        ex.target = self.log_names[target]
        idle = self._idle[target]
        while idle and not fresh:
            conn = idle.pop()  # LIFO: the most recently used connection is the least likely stale
            if not conn.closed:
                conn.reused = True
                conn.attach(ex)
                return
        task = self.loop.create_task(self._connect(target, ex))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, target: int, ex: Exchange) -> None:
        address = self.config.targets[target]
        factory = functools.partial(UpstreamConnection, self, target)
        name = self.config.name
        try:
            if self.tls is None:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(factory, address.host, address.port),
                    self.config.connect_timeout,
                )
            else:  # the handshake counts toward the connect timeout
                conn = await asyncio.wait_for(
                    self.tls.connect(self.loop, factory, target), self.config.connect_timeout
                )
        except TimeoutError:
            self.metrics.upstream_errors[f"{name}/connect_timeout"] += 1
            if not ex.cancelled and not ex.response_done:
                ex.client.upstream_failed(ex, 504)
            return
        except UpstreamTLSError:  # counted and reported as a security event already
            if not ex.cancelled and not ex.response_done:
                ex.client.upstream_failed(ex, 502)
            return
        except OSError:
            self.metrics.upstream_errors[f"{name}/connect"] += 1
            if not ex.cancelled and not ex.response_done:
                ex.client.upstream_failed(ex, 502)
            return
        self.metrics.upstream_connections_opened[name] += 1
        if ex.cancelled or ex.response_done:  # the client left, or was answered meanwhile
            self.release(conn)
        elif conn.closed:  # lost before its first use (a TLS alert right after the handshake)
            self.metrics.upstream_errors[f"{name}/reset"] += 1
            ex.client.upstream_failed(ex, 502)
        else:
            conn.attach(ex)

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed:
            return
        idle = self._idle[conn.target]
        if len(idle) >= self.config.max_idle_connections:
            conn.close()
            return
        conn.idle_since = self.clock.now
        idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        idle = self._idle[conn.target]
        if conn in idle:
            idle.remove(conn)
        self.active.discard(conn)

    def tick(self, now: float) -> None:
        """Called about twice a second: response timeouts and stale idle connections."""
        for conn in [c for c in self.active if c.deadline and now > c.deadline]:
            conn.timed_out()
        limit = now - self.config.idle_timeout
        for idle in self._idle:
            # Oldest first at the front of each list.
            while idle and idle[0].idle_since < limit:
                idle[0].close()

    def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for idle in self._idle:
            for conn in list(idle):
                conn.close()
        for conn in list(self.active):
            conn.close()
