"""A small in-process stand-in for an exchange: a `RequestContext`, request heads, and a way to
run a filter's request-head hook to its verdict (waiting on the event loop when it stops)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from outwork.filters import Filter, Identity, RequestContext, Resume, Stop, Verdict
from outwork.http.messages import Framing, RequestHead
from outwork.tls.clientauth import ClientIdentity


@dataclass
class FakeContext:
    client_ip: str = "127.0.0.1"
    peer: str = "127.0.0.1:50000"
    listener_name: str = "public"
    route_name: str = "api"
    client_certificate: ClientIdentity | None = None
    now: float = field(default_factory=time.time)
    identity: Identity | None = None
    filter_state: dict[int, Any] = field(default_factory=dict)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def security_event(self, event: str, detail: dict[str, Any]) -> None:
        self.events.append((event, detail))


def _typed(ctx: FakeContext) -> RequestContext:
    return ctx  # mypy checks that the fake satisfies the protocol


def request(*headers: tuple[str, str]) -> RequestHead:
    """A GET with these end-to-end headers (in `headers` and serialized in `block`)."""
    pairs = [(n.encode(), v.encode()) for n, v in headers]
    block = b"".join(n + b": " + v + b"\r\n" for n, v in pairs)
    return RequestHead(
        b"GET", b"/", "1.1", [(b"Host", b"api"), *pairs], block, Framing.NONE, -1, True, False
    )


def block_headers(head: RequestHead) -> list[tuple[str, str]]:
    """What goes upstream: the head's serialized lines as (lower-case name, value)."""
    result = []
    for line in head.block.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            result.append((name.decode().lower(), value.strip().decode()))
    return result


def run_head(f: Filter, ctx: FakeContext, head: RequestHead, timeout: float = 30.0) -> Verdict:
    """The hook's verdict; after a `Stop`, the verdict it resumes with (on a running loop)."""

    async def run() -> Verdict:
        loop = asyncio.get_running_loop()
        resumed: asyncio.Future[Verdict] = loop.create_future()
        resume: Resume = resumed.set_result
        verdict = f.on_request_head(ctx, head, resume)
        if isinstance(verdict, Stop):
            return await asyncio.wait_for(resumed, timeout)
        assert not resumed.done()  # a filter that answered must not also resume
        return verdict

    return asyncio.run(run())
