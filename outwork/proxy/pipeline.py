"""An exchange from its routed head to its upstream, for HTTP/1.1 and HTTP/2 alike.

The protocols read and check a request; from there this module owns it: it routes the head
(`routed`), runs the route's request filters (head, then body chunks) and starts the upstream
(`begin`, `proceed`). A filter's `Reply` is answered through `local_reply` (`refuse`), counted
by reason and by route and written as a security event; a `Stop` parks the exchange, the
client's reading paused, until the filter resumes it or the route's upstream `read_timeout`
passes (then 504, counted as `filter_error`).

The protocols put things on the wire through `Downstream` (downstream.py): a gateway-made
answer (`send_local_reply`), `100 Continue`, and the request body once the filters let it
pass (`deliver_body`, `deliver_end`); they decide how a held body is kept (`hold_body`).
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import partial
from typing import TYPE_CHECKING, Final

from outwork.filters import CONTINUE, Continue, Reply
from outwork.filters.runner import Chain, ChainRun, Hooks, run
from outwork.http.messages import Framing
from outwork.observe.refusals import Refusal
from outwork.proxy.exchange import Exchange, route_label
from outwork.proxy.exchange_state import Event, State
from outwork.proxy.local_reply import local_reply
from outwork.proxy.router import head_host

if TYPE_CHECKING:
    from outwork.config.config import RouteConfig
    from outwork.http.messages import RequestHead
    from outwork.proxy.downstream import Downstream
    from outwork.proxy.forwarding import Forwarding
    from outwork.proxy.server import GatewayState

# The reasons the client's reading is paused (`pause_reading`): while a request filter waits,
# and while body chunks queue for the body filters (one reason per exchange, this prefix and
# the filter's id: pipelined HTTP/1.1 exchanges pause one connection for their own queues).
FILTER_PAUSE: Final = "request_filter"
QUEUE_PAUSE: Final = "request_body_queue"
# The request path in a refusal's security event is cut at this many characters.
MAX_EVENT_PATH: Final = 256

# Module globals: reading an Enum member off its class is slow in Python 3.11.
_CHUNKED: Final = Framing.CHUNKED
_LENGTH: Final = Framing.LENGTH


def routed(
    client: Downstream,
    head: RequestHead,
    route: RouteConfig | None,
    state: GatewayState,
    forwarding: Forwarding,
) -> Exchange:
    """The exchange for a checked head and the route it matched (None: 404, or 405 when
    another method would match): its pool, filters and request id. `forwarding`: that of the
    client's connection (`client.connection.forwarding`, given by the caller, which holds it:
    two lookups by name through the Protocol less per request)."""
    if route is None:
        allowed = state.router.allowed(head_host(head), head.path)
        ex = Exchange(client, head, None, 405 if allowed else 404)
    else:
        ex = Exchange(client, head, state.pools[route.upstream])
        ex.route = route.name
        filters = route.filters
        if filters:
            # Compiled at load (routes hold a Chain); a route made otherwise is compiled here.
            chain = filters if isinstance(filters, Chain) else Chain(filters)
            ex.filters = chain
            if chain.inspects_request_body:
                ex.body_filter = RequestBodyFilter(ex, chain.request_body)
    ex.request_id = forwarding.stamp(head, state.request_ids)
    return ex


def begin(ex: Exchange, ended: bool = False) -> None:
    """A routed exchange's turn has come (HTTP/1.1: the first in line; HTTP/2: opened): run
    the route's request-head filters, then start the upstream. `ended`: the request has no
    more to come (an HTTP/2 HEADERS frame that ended the stream)."""
    hooks = ex.filters.request_head
    if not hooks.calls:
        if ended:
            ex.request_done = True
        proceed(ex)
        return
    outcome = run(hooks, ex, ex.head)
    if outcome is CONTINUE:
        if ended:
            ex.request_done = True
        proceed(ex)
        return
    if not isinstance(outcome, ChainRun):
        _head_done(ex, outcome, ended)
        return
    outcome.done = lambda verdict: _head_done(ex, verdict, ended)
    ex.state.process(Event.REQUEST_FILTER_STOP)
    if ended:
        ex.request_done = True  # deferred to the resume (exchange.py)
    _park(ex, outcome)


def _head_done(ex: Exchange, verdict: Continue | Reply, ended: bool) -> None:
    client = ex.client
    parked = ex.waiting is not None
    if parked:
        client.begin()  # a resume from a timer or a lookup: its output goes in one write
    try:
        if parked:
            _unpark(ex)
            _head_resumed(ex)
        elif ended:
            ex.request_done = True
        if ex.cancelled or ex.response_done:
            return
        if isinstance(verdict, Reply):
            refuse(ex, verdict)
        else:
            proceed(ex)
    finally:
        if parked:
            client.end()


def _head_resumed(ex: Exchange) -> None:
    """Leave FILTERING_REQUEST_HEAD; a request end read meanwhile takes effect now."""
    if ex.state.request is State.FILTERING_REQUEST_HEAD:
        ex.state.process(Event.REQUEST_FILTER_RESUME)
        if ex.end_deferred:
            ex.request_done = True


def proceed(ex: Exchange) -> None:
    """Every request-head filter let the exchange pass: start its upstream as the request
    allows (a small body is held first, so that a client trickling it holds no backend
    connection and a body filter can refuse it before any backend sees it)."""
    head = ex.head
    client = ex.client
    assert head is not None and ex.pool is not None
    if head.expect_continue and not ex.request_done:
        client.send_continue(ex)  # the client waits for this before its body (RFC 9110 10.1.1)
    body = ex.body_filter
    if body is not None and body.open():  # what came meanwhile is inspected now
        if ex.cancelled or ex.response_done:
            return
    if not ex.request_done and (
        0 < head.content_length <= client.body_before_upstream
        or (body is not None and head.framing is _CHUNKED)
    ):
        client.hold_body(ex)  # the upstream is taken at its end (or once it grows too large)
        return
    ex.pool.acquire(ex)


def refuse(ex: Exchange, reply: Reply) -> None:
    """A filter's answer: counted (by reason, and by route and reason) and written as a
    security event when it is a refusal, then sent as the gateway's own answer. A request
    whose body had started upstream loses that upstream connection (never pooled again); a
    response already started is cut instead (the only signal left)."""
    client = ex.client
    state = client.connection.state
    body = ex.body_filter
    if body is not None and not body.finished:
        body.give_up()
    refusal = reply.refusal
    if refusal is not None:
        route = route_label(ex)
        state.metrics.policy_refused[(route, refusal)] += 1
        head = ex.head
        detail = {
            "route": route,
            "status": reply.status,
            "method": head.method.decode("latin-1") if head is not None else None,
            "path": head.path[:MAX_EVENT_PATH].decode("latin-1") if head is not None else None,
            **reply.detail,
        }
        ex.security_event("policy." + refusal.value, detail)
    upstream = ex.upstream
    if upstream is not None:
        upstream.abort()  # it has part of a request that will not be completed
    if ex.response_started:
        if refusal is not None:
            state.metrics.refused[refusal] += 1
        client.abort()
        return
    answer = local_reply(
        ex, reply.status, state.metrics, state.router, refusal, reply.headers, reply.body, True
    )
    client.send_local_reply(ex, answer)


# Waiting for a filter


class Parked:
    """A filter the exchange waits for: its chain run and the deadline's timer."""

    __slots__ = ("run", "timer")

    def __init__(self, run: ChainRun, timer: asyncio.TimerHandle) -> None:
        self.run = run
        self.timer = timer

    def abandon(self) -> None:
        self.timer.cancel()
        self.run.abandon()


def _park(ex: Exchange, run: ChainRun) -> None:
    client = ex.client
    state = client.connection.state
    assert ex.pool is not None
    timeout = ex.pool.config.read_timeout  # a filter is part of what the route waits for
    ex.waiting = Parked(run, state.loop.call_later(timeout, _filter_timed_out, ex, run))
    client.pause_reading(FILTER_PAUSE)


def _unpark(ex: Exchange) -> None:
    waiting = ex.waiting
    ex.waiting = None
    if isinstance(waiting, Parked):
        waiting.timer.cancel()
    ex.client.resume_reading(FILTER_PAUSE)


def _filter_timed_out(ex: Exchange, run: ChainRun) -> None:
    """A filter did not resume within the route's upstream read timeout: 504, counted as a
    filter error (the filter is the operator's to fix, not the client's doing)."""
    if ex.waiting is None or ex.cancelled:
        return
    waited = run.filter
    run.abandon()
    ex.waiting = None
    client = ex.client
    client.begin()
    try:
        _head_resumed(ex)
        body = ex.body_filter
        if body is not None:
            body.give_up()
        client.resume_reading(FILTER_PAUSE)
        if ex.response_done:
            return
        name = type(waited).__name__ if waited is not None else "?"
        detail = {"reason": "no resume in time", "filter": name}
        refuse(ex, Reply(504, Refusal.FILTER_ERROR, detail=detail))
    finally:
        client.end()


# The request body, through the filters that inspect it


class RequestBodyFilter:
    """The request body of an exchange whose route has filters with `inspects_request_body`:
    each chunk passes their `on_request_body` before it is held or sent upstream, in order.
    The filters learn of the request's end with the chunk that completes a Content-Length body
    (`end=True`: one call for a body read whole), else alone with b"" once the protocol reads
    it; the protocol's end is delivered after that, either way. Chunks that arrive before the
    head filters are done, or while a body filter waits, queue here with the client's reading
    paused."""

    __slots__ = (
        "ex",
        "hooks",
        "queue",
        "opened",
        "client_ended",
        "finished",
        "paused",
        "unseen",
    )

    def __init__(self, ex: Exchange, hooks: Hooks) -> None:
        self.ex = ex
        self.hooks = hooks
        # (chunk, the filters' `end`, the request's end): in the order the protocol gave them.
        self.queue: deque[tuple[bytes, bool, bool]] = deque()
        self.opened = False  # the head filters let the exchange pass
        self.client_ended = False  # the protocol delivered the request's end
        self.finished = False  # the end passed, or the body was refused
        self.paused = False  # the client's reading paused for the queue
        # Bytes of a Content-Length body not fed yet (-1: no length; the protocols never feed
        # more than the length, nor end before it is all in).
        head = ex.head
        self.unseen = -1
        if head is not None and head.framing is _LENGTH:
            self.unseen = head.content_length

    def feed(self, chunk: bytes) -> None:
        """A request body chunk from the client (after the protocol's own checks)."""
        unseen = self.unseen
        last = False
        if unseen > 0:
            unseen -= len(chunk)
            self.unseen = unseen
            last = unseen <= 0
        if self.queue or not self.opened or self.ex.waiting is not None:
            self.queue.append((chunk, last, False))
            self._pump()
        else:
            self._inspect(chunk, last, False)  # nothing before it waits: at once

    def end(self) -> None:
        """The request's end from the client."""
        self.client_ended = True
        end = self.unseen != 0  # with a Content-Length, the filters saw it with the last chunk
        if self.queue or not self.opened or self.ex.waiting is not None:
            self.queue.append((b"", end, True))
            self._pump()
        else:
            self._inspect(b"", end, True)

    def open(self) -> bool:
        """The head filters let the exchange pass; True when chunks had come meanwhile."""
        self.opened = True
        if not self.queue:
            return False
        self._pump()
        return True

    def give_up(self) -> None:
        """The exchange is answered otherwise: nothing more is inspected or delivered."""
        self.finished = True
        self.queue.clear()
        ex = self.ex
        if self.client_ended:
            ex.request_done = True
        if self.paused:
            self.paused = False
            ex.client.resume_reading(self._reason())  # the rest is read and dropped

    def _finish(self, ex: Exchange) -> None:
        """The request's end passed every body filter: the protocol has read the whole request
        and feeds nothing more, so the exchange lets go of this filter. It held the exchange
        that held it: a reference cycle per request, 16 objects left to the garbage collector
        (about 9,000 instructions a request in its collections). A body given up is kept: the
        protocol may still read the rest of it, and must drop it here."""
        self.finished = True
        ex.body_filter = None
        ex.client.deliver_end(ex)

    def _reason(self) -> str:
        return f"{QUEUE_PAUSE}:{id(self):x}"

    def _live(self) -> bool:
        ex = self.ex
        return not (self.finished or ex.cancelled or ex.discard_body or ex.response_done)

    def _pump(self) -> None:
        ex = self.ex
        queue = self.queue
        while self.opened and ex.waiting is None and queue:
            if not self._inspect(*queue.popleft()):
                break
        if queue and self._live():
            if not self.paused:
                self.paused = True
                ex.client.pause_reading(self._reason())  # bounded: one read more comes at most
        elif ex.waiting is None:
            queue.clear()
            if self.paused:
                self.paused = False
                ex.client.resume_reading(self._reason())

    def _inspect(self, chunk: bytes, end: bool, request_end: bool) -> bool:
        """One chunk (or the end) through the filters, then on to the protocol; False when a
        filter waits (the exchange parks) or the body is not live any more."""
        ex = self.ex
        if not self._live():
            return False
        outcome: Continue | Reply | ChainRun = CONTINUE
        if chunk or end:
            outcome = run(self.hooks, ex, chunk, end)
        if outcome is CONTINUE:
            client = ex.client
            if chunk:
                client.deliver_body(ex, chunk)
            if request_end:
                self._finish(ex)
            return True
        if isinstance(outcome, ChainRun):
            outcome.done = partial(self._passed, chunk, request_end)
            _park(ex, outcome)
            return False
        self._passed(chunk, request_end, outcome)
        return True

    def _passed(self, chunk: bytes, request_end: bool, verdict: Continue | Reply) -> None:
        ex = self.ex
        client = ex.client
        parked = ex.waiting is not None
        if parked:
            client.begin()
            _unpark(ex)
        try:
            if not self._live():
                return
            if isinstance(verdict, Reply):
                self.give_up()
                refuse(ex, verdict)
                return
            if chunk:
                client.deliver_body(ex, chunk)
            if request_end:
                self._finish(ex)
            if parked:
                self._pump()
        finally:
            if parked:
                client.end()
