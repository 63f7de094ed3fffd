"""The admin listener (plain HTTP, loopback by default): /healthz and /metrics.

Deliberately tiny: one request per connection, GET only, answered and closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from outwork.proxy.server import GatewayState

MAX_ADMIN_REQUEST = 8 * 1024


class AdminProtocol(asyncio.Protocol):
    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_ADMIN_REQUEST:
                self._answer(431, b"too large\n")
            return
        line = bytes(self.buffer[: self.buffer.find(b"\r\n")])
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(400, b"bad request\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._answer(405, b"method not allowed\n")
        elif target == b"/healthz":
            self._answer(200, b"ok\n")
        elif target == b"/metrics":
            self._answer(
                200, self.state.metrics.render(), b"text/plain; version=0.0.4; charset=utf-8"
            )
        else:
            self._answer(404, b"not found\n")

    def _answer(self, status: int, body: bytes, ctype: bytes = b"text/plain") -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        reasons = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
            status,
            reasons.get(status, b"Error"),
            ctype,
            len(body),
        )
        transport.write(head + b"connection: close\r\n\r\n" + body)
        transport.close()
