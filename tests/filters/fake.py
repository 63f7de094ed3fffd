"""A small request context for filter tests in-process (satisfies `RequestContext`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from outwork.filters import Identity, RequestContext
from outwork.http.messages import Framing, RequestHead
from outwork.tls.clientauth import ClientIdentity


@dataclass
class FakeContext:
    client_ip: str = "192.0.2.7"
    now: float = 1_800_000_000.0
    identity: Identity | None = None
    filter_state: dict[int, Any] = field(default_factory=dict)
    peer: str = "192.0.2.7:50000"
    listener_name: str = "public"
    route_name: str = "route-0"
    client_certificate: ClientIdentity | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        self.events.append((event, detail))


def request(headers: list[tuple[bytes, bytes]] | None = None) -> RequestHead:
    headers = headers or []
    block = b"".join(b"%s: %s\r\n" % pair for pair in headers)
    return RequestHead(b"GET", b"/", "1.1", headers, block, Framing.NONE, -1, True, False)


def _typed(ctx: FakeContext) -> RequestContext:
    return ctx  # mypy checks that FakeContext satisfies the protocol
