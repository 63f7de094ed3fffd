"""A small in-process `RequestContext` for calling filter hooks without a gateway."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from outwork.filters import Identity, RequestContext
from outwork.http.messages import Framing, RequestHead
from outwork.tls.clientauth import ClientIdentity


@dataclass
class FakeContext:
    identity: Identity | None = None
    filter_state: dict[int, Any] = field(default_factory=dict)
    client_ip: str = "127.0.0.1"
    peer: str = "127.0.0.1:40000"
    listener_name: str = "public"
    route_name: str = "route-0"
    client_certificate: ClientIdentity | None = None
    now: float = 1_800_000_000.0
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        self.events.append((event, detail))


def _typed(ctx: FakeContext) -> RequestContext:
    return ctx  # mypy checks that FakeContext satisfies the protocol


def head(
    method: bytes = b"POST",
    headers: list[tuple[bytes, bytes]] | None = None,
    framing: Framing = Framing.LENGTH,
    content_length: int = 10,
) -> RequestHead:
    fields = headers or []
    block = b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    return RequestHead(method, b"/api", "1.1", fields, block, framing, content_length, True, False)


def no_resume(verdict: object) -> None:
    raise AssertionError("a filter that answers at once never resumes")
