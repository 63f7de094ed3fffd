"""Active health checks: one task per target sends `GET path` every interval and reads the
response head; thresholds of results in a row move the target out of and back into rotation.

The tasks belong to the pool (its `close()` cancels them), so a reload or a stop leaves none
running. A check opens its own connection (`Connection: close`) and never uses the pool's, so a
check cannot take a connection a request needs, nor count against `max_connections`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from outwork.config.config import Address, HealthCheckConfig
from outwork.http.errors import UpstreamProtocolError
from outwork.http.messages import ResponseHead
from outwork.http.reader import ResponseReader

if TYPE_CHECKING:
    from outwork.upstream.pool import UpstreamPool


class _Probe(asyncio.Protocol):
    """One check on its own connection: sends the request, reads the response head (through
    the same strict reader as proxied responses, whose head cap bounds what a check reads)."""

    def __init__(self, request: bytes, statuses: tuple[int, int], loop: asyncio.AbstractEventLoop):
        self.request = request
        self.statuses = statuses
        self.verdict: asyncio.Future[str | None] = loop.create_future()  # None: healthy
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.reader = ResponseReader(self, head_request=False)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.verdict.done():
            return
        try:
            self.reader.feed(data)
        except UpstreamProtocolError as exc:
            self.verdict.set_result(f"invalid response: {exc}")
            return
        if self.status:
            low, high = self.statuses
            ok = low <= self.status <= high
            self.verdict.set_result(None if ok else f"status {self.status}")

    def eof_received(self) -> bool | None:
        self._closed()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed()

    def _closed(self) -> None:
        if not self.verdict.done():
            self.verdict.set_result("closed before a response")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ResponseSink: only the head matters

    def on_response_head(self, head: ResponseHead) -> None:
        self.status = head.status

    def on_response_body(self, data: bytes) -> None:
        pass

    def on_response_end(self, reusable: bool) -> None:
        pass


def check_request(config: HealthCheckConfig, address: Address) -> bytes:
    return (
        f"GET {config.path} HTTP/1.1\r\nhost: {address}\r\n"
        "user-agent: outwork-health-check\r\nconnection: close\r\n\r\n"
    ).encode()


async def probe(
    pool: UpstreamPool, target: int, request: bytes, config: HealthCheckConfig
) -> str | None:
    """One check of a target (over TLS for https:// targets). None: healthy; otherwise why
    not, for the log."""
    loop = pool.loop
    check: _Probe | None = None
    try:
        async with asyncio.timeout(config.timeout):
            check = await pool.open_transport(
                target, lambda: _Probe(request, config.expect_status, loop)
            )
            return await check.verdict
    except TimeoutError:
        return f"no response within {config.timeout:g}s"
    except OSError as exc:  # refused, unreachable, a failed TLS handshake
        return exc.strerror or str(exc) or type(exc).__name__
    finally:
        if check is not None:
            check.close()


class HealthChecker:
    def __init__(self, pool: UpstreamPool, config: HealthCheckConfig) -> None:
        self.pool = pool
        self.config = config
        targets = pool.config.targets
        self._requests = [check_request(config, address) for address in targets]
        self._tasks = [pool.loop.create_task(self._run(t)) for t in range(len(targets))]

    async def _run(self, target: int) -> None:
        config = self.config
        healthy = True  # every target starts in rotation
        passed = failed = 0
        while True:
            problem = await probe(self.pool, target, self._requests[target], config)
            if problem is None:
                passed, failed = passed + 1, 0
                if not healthy and passed >= config.healthy_threshold:
                    healthy = True
                    self.pool.set_checked(target, True, f"{passed} checks passed")
            else:
                passed, failed = 0, failed + 1
                if healthy and failed >= config.unhealthy_threshold:
                    healthy = False
                    self.pool.set_checked(
                        target, False, f"{failed} checks failed in a row, last: {problem}"
                    )
            await asyncio.sleep(config.interval)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
