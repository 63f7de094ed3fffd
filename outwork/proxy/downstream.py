"""The client side of an exchange, as declared interfaces.

An exchange's client is either an HTTP/1.1 connection (`connection.ClientProtocol`) or one
HTTP/2 stream (`h2.H2Stream`). The exchange and its upstream connection see it only through
`Downstream`; an HTTP/2 session sees the connection carrying it only through
`DownstreamConnection`. Neither names the other's class: `connection.py` and `h2.py` each
prove, in a `TYPE_CHECKING` block checked by mypy, that their class satisfies these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import asyncio

    from outwork.config.config import ListenerConfig
    from outwork.http.messages import ResponseHead
    from outwork.proxy.exchange import Exchange
    from outwork.proxy.forwarding import Forwarding
    from outwork.proxy.local_reply import LocalReply
    from outwork.proxy.server import GatewayState
    from outwork.tls.clientauth import ClientIdentity


class DownstreamConnection(Protocol):
    """A client connection: the facts every exchange on it shares (peer, listener, TLS as the
    access log's parts), its output batch, its reading and its lifetime."""

    # Set by whoever carries the connection's timing (an HTTP/2 session sets it for its
    # streams); the gateway's ticker calls `timed_out` once it passes.
    deadline: float

    @property
    def state(self) -> GatewayState: ...
    @property
    def listener(self) -> ListenerConfig: ...
    @property
    def peer(self) -> str:
        """`host:port` (`[v6]:port`), for logs and security events."""
        ...

    @property
    def peer_host(self) -> bytes: ...
    @property
    def client_identity(self) -> ClientIdentity | None:
        """The verified client certificate (mTLS) of the handshake, or None."""
        ...

    @property
    def scheme(self) -> bytes: ...
    @property
    def forwarded(self) -> bytes:
        """The end of the head sent upstream (the gateway's own forwarding lines, if any)."""
        ...

    @property
    def forwarding(self) -> Forwarding: ...
    @property
    def log_connection(self) -> bytes:
        """The access log's per-connection part (client, listener, proto, TLS time)."""
        ...

    @property
    def log_tls(self) -> bytes:
        """The access log's `tls` object, or `null`."""
        ...

    @property
    def transport(self) -> asyncio.Transport | None: ...
    @property
    def write_paused(self) -> bool:
        """The client leaves our output unread (above the transport's high-water mark)."""
        ...

    @property
    def read_eof(self) -> bool:
        """The client ended its input (half-close, or TLS close_notify)."""
        ...

    def write(self, data: bytes | bytearray) -> None:
        """Add to the output batch (written at `end`, or soon)."""

    def write_pieces(self, pieces: list[bytes | bytearray | memoryview]) -> None:
        """`write` each, in order (they are the connection's from now on)."""

    def flush(self) -> None: ...
    def output_idle(self) -> None:
        """No response is being sent now: buffers kept for bulk output can go."""

    def begin(self) -> None:
        """Start collecting output (nested calls allowed); `end` writes it."""

    def end(self) -> None: ...
    def pause_reading(self, reason: str) -> None: ...
    def resume_reading(self, reason: str) -> None: ...
    def close(self) -> None:
        """Close after what is written (TLS: with close_notify)."""

    def abort(self) -> None:
        """Cut the connection now; what is unsent is dropped."""


class Downstream(Protocol):
    """What an exchange and its upstream connection need from the client side: where the
    request came from, flow control both ways, and where the response goes."""

    @property
    def connection(self) -> DownstreamConnection:
        """The client connection this exchange came on (itself, for HTTP/1.1)."""
        ...

    @property
    def peer_host(self) -> bytes: ...
    @property
    def forwarded(self) -> bytes: ...
    @property
    def write_paused(self) -> bool:
        """Read by an upstream connection as it attaches: True, and it starts paused."""
        ...

    def begin(self) -> None:
        """Start collecting output: an upstream read's response bytes go out in one write."""

    def end(self) -> None: ...
    def pause_reading(self, reason: str) -> None:
        """The upstream takes no more request body now: stop reading the client's."""

    def resume_reading(self, reason: str) -> None: ...
    def release_buffered(self, ex: Exchange) -> None:
        """The upstream took the exchange's held request body: it counts no more."""

    @property
    def body_before_upstream(self) -> int:
        """A request body of at most this many bytes is held whole before an upstream
        connection is taken (HTTP/2: within the stream's first window)."""
        ...

    # What the pipeline (pipeline.py) has the protocol do.

    def send_local_reply(self, ex: Exchange, reply: LocalReply) -> None:
        """Put a gateway-made answer on the wire; the exchange is answered."""

    def send_continue(self, ex: Exchange) -> None:
        """`100 Continue`: the client waits for it before sending its body."""

    def hold_body(self, ex: Exchange) -> None:
        """Keep the request body until it is whole (or too large), then take the upstream."""

    def deliver_body(self, ex: Exchange, data: bytes) -> None:
        """A request body chunk the filters let pass: to the upstream, or held for it."""

    def deliver_end(self, ex: Exchange) -> None:
        """The request's end, once the filters let it pass."""

    def response_head(self, ex: Exchange, head: ResponseHead) -> None: ...
    def response_body(self, ex: Exchange, data: bytes) -> None: ...
    def response_body_borrowed(self, ex: Exchange, data: memoryview) -> None:
        """A response body chunk, `data[:-1]`, lent from the upstream's read buffer for this
        call only: sealed or copied before returning, never kept. `data` is writable and its
        last byte spare (the TLS record layer borrows it: `send_data_into`)."""

    def response_end(self, ex: Exchange) -> None: ...
    def upstream_failed(self, ex: Exchange, status: int) -> None:
        """No upstream answer: the gateway answers `status`, or cuts a started response."""

    def abort(self) -> None:
        """Cut this exchange's response short: once its status is out, the only signal left
        (HTTP/1.1: the connection is cut; HTTP/2: the stream is reset)."""
