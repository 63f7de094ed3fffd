"""One request/response pair travelling through the gateway."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from outwork.http.messages import Framing, RequestHead

if TYPE_CHECKING:
    from outwork.proxy.connection import ClientProtocol
    from outwork.proxy.upstream import UpstreamConnection, UpstreamPool

RETRYABLE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


class Exchange:
    __slots__ = (
        "client",
        "head",
        "pool",
        "error_status",
        "pending",
        "pending_size",
        "request_done",
        "upstream",
        "response_started",
        "response_done",
        "status",
        "out_framing",
        "keep_alive",
        "discard_body",
        "cancelled",
        "retried",
        "target",
        "started",
        "upstream_at",
        "bytes_sent",
        "route",
        "request_id",
    )

    def __init__(
        self,
        client: ClientProtocol,
        head: RequestHead | None,
        pool: UpstreamPool | None,
        error_status: int = 0,
    ) -> None:
        self.client = client
        self.head = head
        self.pool = pool
        self.error_status = error_status  # non-zero: answered by the gateway itself
        self.pending: list[bytes] = []  # request body received before an upstream took it
        self.pending_size = 0
        self.request_done = head is None
        self.upstream: UpstreamConnection | None = None
        self.response_started = False
        self.response_done = False
        self.status = 0
        self.out_framing = Framing.NONE
        self.keep_alive = head is not None and head.keep_alive
        self.discard_body = False
        self.cancelled = False  # the client went away
        self.retried = False
        self.target = b"null"  # the upstream target, as JSON for the access log
        # time.monotonic() when the request head was read, and when the upstream's response head
        # arrived (0.0: none), for the latency metrics and the access log.
        self.started = time.monotonic()
        self.upstream_at = 0.0
        self.bytes_sent = 0  # response bytes written for this exchange (head and body)
        self.route = ""  # the matched route's name; "" when none matched (404, refusals)
        self.request_id = b""  # X-Request-Id: the client's (when sane) or the gateway's

    def retryable(self) -> bool:
        """Safe to send again on a fresh connection (a reused one was closed under us)."""
        head = self.head
        return (
            not self.retried
            and head is not None
            and self.request_done
            and head.framing is Framing.NONE
            and head.method in RETRYABLE_METHODS
        )
