"""One request/response pair travelling through the gateway."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final, Protocol

from outwork.filters.runner import NO_FILTERS, Chain
from outwork.http.messages import Framing, RequestHead
from outwork.proxy.exchange_state import Event, ExchangeState, State
from outwork.proxy.forwarding import client_address

if TYPE_CHECKING:
    from outwork.filters import Identity, RequestContext
    from outwork.proxy.downstream import Downstream
    from outwork.proxy.pipeline import RequestBodyFilter
    from outwork.tls.clientauth import ClientIdentity
    from outwork.upstream.pool import UpstreamConnection, UpstreamPool

# Idempotent methods (RFC 9110 9.2.2): sending one again cannot do more than sending it once.
RETRYABLE_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
# A request body kept (by reference) for a retry on another target; a longer one is sent once.
MAX_REPLAY_BODY: Final = 64 * 1024
# A request body of at most this many bytes (Content-Length) is read whole before an upstream
# connection is taken: a client that trickles a small body (slow-body attacks send a few KiB a
# byte at a time) then holds no backend connection, only its own. Larger bodies stream.
BODY_BEFORE_UPSTREAM: Final = 64 * 1024

# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_FRAMING_NONE: Final = Framing.NONE
_DONE: Final = State.DONE
_SENDING: Final = State.SENDING
_FILTERING_REQUEST_HEAD: Final = State.FILTERING_REQUEST_HEAD
_REQUEST_END: Final = Event.REQUEST_END
_RESPONSE_HEAD: Final = Event.RESPONSE_HEAD
_RESPONSE_END: Final = Event.RESPONSE_END


class Waiting(Protocol):
    """A filter the exchange waits for (`pipeline.Parked`)."""

    def abandon(self) -> None:
        """Wait no more: the filter's later resume does nothing."""


def route_label(ex: Exchange) -> str:
    """The route an exchange is counted under: the matched route's name, else its upstream's
    name, else "none" (no route matched, or refused before routing)."""
    route = ex.route
    if route:
        return route
    pool = ex.pool
    return pool.config.name if pool is not None else "none"


class Exchange:
    __slots__ = (
        "client",
        "head",
        "pool",
        "error_status",
        "pending",
        "pending_size",
        "state",
        "upstream",
        "status",
        "out_framing",
        "keep_alive",
        "discard_body",
        "_cancelled",
        "retried",
        "attempts",
        "tried",
        "replay",
        "target",
        "started",
        "upstream_at",
        "bytes_sent",
        "route",
        "request_id",
        "filters",
        "identity",
        "filter_state",
        "waiting",
        "end_deferred",
        "body_filter",
        "_client_ip",
    )

    def __init__(
        self,
        client: Downstream,
        head: RequestHead | None,
        pool: UpstreamPool | None,
        error_status: int = 0,
        *,
        body_follows: bool = False,
    ) -> None:
        self.client = client
        self.head = head
        self.pool = pool
        self.error_status = error_status  # non-zero: answered by the gateway itself
        self.pending: list[bytes] = []  # request body received before an upstream took it
        self.pending_size = 0
        # A refused head (None) has no body to read, unless HTTP/2 says its DATA follows.
        self.state = ExchangeState(request_done=head is None and not body_follows)
        self.upstream: UpstreamConnection | None = None
        self.status = 0
        self.out_framing = _FRAMING_NONE
        self.keep_alive = head is not None and head.keep_alive
        self.discard_body = False
        self._cancelled = False  # the client went away
        self.retried = False  # sent again after a reused keep-alive connection was closed
        self.attempts = 0  # retries on another target so far
        self.tried = 0  # bit mask of the targets that failed this request
        self.replay: list[bytes] | None = None  # the whole body, kept while a retry may need it
        self.target = b"null"  # the upstream target, as JSON for the access log
        # time.monotonic() when the request head was read, and when the upstream's response head
        # arrived (0.0: none), for the latency metrics and the access log.
        self.started = time.monotonic()
        self.upstream_at = 0.0
        self.bytes_sent = 0  # response bytes written for this exchange (head and body)
        self.route = ""  # the matched route's name; "" when none matched (404, refusals)
        self.request_id = b""  # X-Request-Id: the client's (when sane) or the gateway's
        self.filters: Chain = NO_FILTERS  # the matched route's chain (its policies)
        self.identity: Identity | None = None  # who `authenticate` found (RequestContext)
        self.filter_state: dict[int, Any] = {}  # per-filter state, by id(filter)
        self._client_ip = ""  # made on first use
        # The request filter the exchange waits for (a `Stop`), in FILTERING_REQUEST_HEAD or
        # while a body chunk is inspected; None when it waits for none.
        self.waiting: Waiting | None = None
        # The request ended while a head filter waited: its REQUEST_END comes at the resume.
        self.end_deferred = False
        # Set when a filter of the route inspects the request body (pipeline.py).
        self.body_filter: RequestBodyFilter | None = None

    @property
    def cancelled(self) -> bool:
        """The client went away, or the exchange was answered otherwise: nothing more of it
        goes upstream or to the client."""
        return self._cancelled

    @cancelled.setter
    def cancelled(self, cancelled: bool) -> None:
        self._cancelled = cancelled
        waiting = self.waiting
        if cancelled and waiting is not None:
            self.waiting = None
            waiting.abandon()  # a filter that resumes later finds nobody waiting

    # RequestContext: what a filter sees of the exchange (outwork/filters/__init__.py).

    @property
    def client_ip(self) -> str:
        if not self._client_ip:
            connection = self.client.connection
            scan = self.head.scan if self.head is not None else None
            peer_ip = connection.peer_host.decode("ascii", "replace")
            if scan is None or scan.xff is None:
                self._client_ip = peer_ip  # client_address's answer, without its arguments
            else:
                trusted = connection.state.config.trusted_proxies
                self._client_ip = client_address(peer_ip, scan.xff, trusted)
        return self._client_ip

    @property
    def peer(self) -> str:
        return self.client.connection.peer

    @property
    def listener_name(self) -> str:
        return self.client.connection.listener.name

    @property
    def route_name(self) -> str:
        return route_label(self)

    @property
    def client_certificate(self) -> ClientIdentity | None:
        return self.client.connection.client_identity

    @property
    def now(self) -> float:
        return self.client.connection.state.clock.wall

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        connection = self.client.connection
        connection.state.security_log.emit(event, connection.peer, connection.listener.name, detail)

    # The progress flags the protocols read and set, as views of `state`: setting one fires its
    # event (once; setting it again is a no-op), so every move goes through the table.

    @property
    def request_done(self) -> bool:
        """The whole request is in."""
        return self.state.request is _DONE

    @request_done.setter
    def request_done(self, done: bool) -> None:
        if not done:
            raise ValueError("a request once in cannot be un-received")
        if self.state.request is _FILTERING_REQUEST_HEAD:
            # Read along with its head (reading pauses only the socket, not what it already
            # gave): it ends once the filter resumes (pipeline.py).
            self.end_deferred = True
        elif self.state.request is not _DONE:
            self.state.process(_REQUEST_END)

    @property
    def response_started(self) -> bool:
        """The answer's head is written (and, for a gateway-made answer, all of it)."""
        response = self.state.response
        return response is _SENDING or response is _DONE

    @response_started.setter
    def response_started(self, started: bool) -> None:
        if started:
            response = self.state.response
            if response is not _SENDING and response is not _DONE:
                self.state.process(_RESPONSE_HEAD)
        else:
            self.state.process(Event.RESPONSE_HEAD_UNSENT)

    @property
    def response_done(self) -> bool:
        """The answer's last byte is written (or queued)."""
        return self.state.response is _DONE

    @response_done.setter
    def response_done(self, done: bool) -> None:
        if not done:
            raise ValueError("an answer once sent cannot be un-sent")
        if self.state.response is not _DONE:
            self.state.process(_RESPONSE_END)

    def retryable(self) -> bool:
        """Safe to send again: idempotent, the whole body received and kept, nothing
        answered yet."""
        head = self.head
        return (
            head is not None
            and self.request_done
            and self.replay is not None
            and not self.response_started
            and not self.cancelled
            and head.method in RETRYABLE_METHODS
        )

    def rewind(self) -> None:
        """Make the kept body the one the next attach sends (accounted for already)."""
        if self.replay is not None:
            self.pending = self.replay
            self.pending_size = 0


if TYPE_CHECKING:

    def _exchange_is_context(ex: Exchange) -> RequestContext:
        return ex  # mypy proves Exchange satisfies the filters' RequestContext
