"""Answers made by the gateway itself (Envoy's `sendLocalReply`), for HTTP/1.1 and HTTP/2 alike.

`local_reply` decides everything about such an answer once: its status, its short plain-text
body (no detail leaked to the peer), its headers (the request id, `allow` for a 405), whether
the connection may be kept after it, and the refusal it counts. The protocols only put it on
the wire (`LocalReply.http1`, `LocalReply.h2_headers`). `exchange_done` is where every
exchange ends, answered by the gateway or by an upstream: the request metrics, the access
log line, and (a turn later) the filters' `on_exchange_done`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, NamedTuple

from outwork.filters.runner import report_done
from outwork.http.ascii import CR, LF, NUL
from outwork.http.errors import REASONS
from outwork.proxy.router import head_host

if TYPE_CHECKING:
    from outwork.observe.access_log import AccessLog
    from outwork.observe.metrics import Metrics
    from outwork.observe.refusals import Refusal
    from outwork.proxy.downstream import DownstreamConnection
    from outwork.proxy.exchange import Exchange
    from outwork.proxy.router import Router

# Answers after which an HTTP/1.1 request stream cannot be trusted: the connection closes.
FATAL_STATUSES: Final = frozenset({400, 408, 413, 414, 417, 431, 501, 505})

_CONTENT_TYPE: Final = (b"content-type", b"text/plain; charset=utf-8")
# Statuses whose answer has no content, and no content headers (RFC 9110 8.6, 15.3.5, 15.4.5).
_NO_CONTENT: Final = frozenset({204, 304})
# A filter's extra headers never replace these: the gateway frames its answer itself.
_OWN_HEADERS: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"connection", b"x-request-id"}
)


class LocalReply(NamedTuple):
    status: int
    # Lower-case names, in the order they are sent: content-type, content-length, then
    # x-request-id and allow when they apply, then a filter's own (`Reply.headers`).
    headers: list[tuple[bytes, bytes]]
    body: bytes  # what the headers describe; not sent in answer to HEAD
    head_only: bool  # the request was HEAD
    framing: int = 2  # how many of `headers` describe the body (none for 204 and 304)

    def http1(self, keep_alive: bool) -> bytes:
        """The HTTP/1.1 bytes; `connection: close` when the connection ends after it."""
        status = self.status
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, "Error").encode())]
        headers = self.headers
        framing = self.framing
        lines += [name + b": " + value + b"\r\n" for name, value in headers[:framing]]
        if not keep_alive:
            lines.append(b"connection: close\r\n")
        lines += [name + b": " + value + b"\r\n" for name, value in headers[framing:]]
        lines.append(b"\r\n")
        if not self.head_only:
            lines.append(self.body)
        return b"".join(lines)

    def h2_headers(self) -> list[tuple[bytes, bytes]]:
        """The HTTP/2 header list (the body goes in DATA frames, unless HEAD)."""
        return [(b":status", b"%d" % self.status), *self.headers]


def _safe(field: bytes) -> bool:
    """No line break or NUL: a filter's header (say, a CORS origin taken from the request)
    can never split the answer's head, whatever it was built from."""
    return CR not in field and LF not in field and NUL not in field


def body_for(status: int) -> bytes:
    return f"{status} {REASONS.get(status, 'Error')}\n".encode()


def local_reply(
    ex: Exchange,
    status: int,
    metrics: Metrics,
    router: Router,
    refusal: Refusal | None = None,
    extra: tuple[tuple[bytes, bytes], ...] = (),
    body: bytes | None = None,
    framing_intact: bool = False,
) -> LocalReply:
    """The gateway's own answer `status` to `ex` (400, 404, 405, 408, 413, 502, 503, 504, ...).

    Counts `refusal` when the answer is one (callers whose answer waits its turn, or is cut
    short instead, count theirs where they refuse). After a status that leaves the request
    stream in doubt the exchange is not kept alive (HTTP/1.1 closes the connection).

    A filter's answer (`filters.Reply`) adds its `extra` headers (lower-case names; its
    `content-type` replaces the plain-text one) and may give its own `body`; the request's
    framing is intact then (`framing_intact`), so even a 400 or 413 keeps the connection (the
    rest of the body is read and dropped)."""
    ex.status = status
    if refusal is not None:
        metrics.refused[refusal] += 1
    if status in FATAL_STATUSES and not framing_intact:
        ex.keep_alive = False
    content_type = _CONTENT_TYPE
    if extra:
        extra = tuple(
            (name, value)
            for name, value in extra
            if name not in _OWN_HEADERS and _safe(name) and _safe(value)
        )
        for name, value in extra:
            if name == b"content-type":
                content_type = (name, value)
        if content_type is not _CONTENT_TYPE:
            extra = tuple(header for header in extra if header[0] != b"content-type")
    if status in _NO_CONTENT:
        body = b""
        headers: list[tuple[bytes, bytes]] = []
    else:
        if body is None:
            body = body_for(status)
        headers = [content_type, (b"content-length", b"%d" % len(body))]
    framing = len(headers)
    if ex.request_id:
        headers.append((b"x-request-id", ex.request_id))
    head = ex.head
    if status == 405 and head is not None:
        headers.append((b"allow", router.allowed(head_host(head), head.path)))
    headers.extend(extra)
    head_only = head is not None and head.method == b"HEAD"
    return LocalReply(status, headers, body, head_only, framing)


def exchange_done(
    ex: Exchange, metrics: Metrics, access: AccessLog | None, connection: DownstreamConnection
) -> None:
    """The response's last byte is written (or queued): count the exchange, log it."""
    ex.response_done = True
    metrics.request_done(ex, time.monotonic())
    if access is not None:
        # The connection's parts were made at accept or at the handshake (with its proto).
        access.log(ex, connection.log_connection, connection.log_tls)
    done = ex.filters.exchange_done
    if done.calls:
        # In a later turn: the response's bytes, collected while this callback runs, are
        # written first (at its end, or by the flush already scheduled ahead of this).
        connection.state.loop.call_soon(report_done, done, ex)
