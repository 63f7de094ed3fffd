"""Run the gateway: listeners, admin, the timeout ticker, signals."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from outwork.policy.config import Address, GatewayConfig, ListenerConfig
from outwork.proxy.access_log import AccessLog
from outwork.proxy.admin import AdminProtocol
from outwork.proxy.clock import Clock
from outwork.proxy.connection import ClientProtocol
from outwork.proxy.metrics import Metrics
from outwork.proxy.router import Router
from outwork.proxy.security_events import SecurityEventLog
from outwork.proxy.upstream import UpstreamPool

TICK_SECONDS = 0.25


class GatewayState:
    """What all connections of one gateway share; built once per config load."""

    def __init__(self, config: GatewayConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.clock = Clock(loop)
        self.metrics = Metrics()
        self.security_log = SecurityEventLog(config.security_events, self.metrics)
        self.access_log = AccessLog(config.access_log) if config.access_log else None
        self.router = Router(config.routes)
        self.pools = {
            name: UpstreamPool(upstream, loop, self.metrics, self.clock)
            for name, upstream in config.upstreams.items()
        }
        self.clients: set[ClientProtocol] = set()
        self.server_connection: Callable[[Any], Any] | None = None
        if any(listener.tls is not None for listener in config.listeners):
            from outwork.tls.connection import ServerConnection

            self.server_connection = ServerConnection

    def tick(self) -> None:
        self.clock.tick()
        now = self.clock.now
        for client in [c for c in self.clients if c.deadline and now > c.deadline]:
            client.timed_out()
        for pool in self.pools.values():
            pool.tick(now)
        if self.access_log is not None:
            self.access_log.flush()


def _prepare_ticket_keys(config: GatewayConfig) -> None:
    """Make or read each listener's current ticket key now: a key file that cannot be written
    or read stops the start, instead of failing handshakes later."""
    now = time.time()
    for listener in config.listeners:
        if listener.tls is not None and listener.tls.ticket_keys is not None:
            listener.tls.ticket_keys.encryption_key(now)


def _url(listener: ListenerConfig, sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    address = Address(str(host), int(port))
    return f"{'https' if listener.tls is not None else 'http'}://{address}"


async def serve(config: GatewayConfig, log: Callable[[str], None]) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, close connections and return."""
    loop = asyncio.get_running_loop()
    try:
        state = GatewayState(config, loop)
        _prepare_ticket_keys(config)
    except (OSError, RuntimeError) as exc:
        raise SystemExit(f"outwork: cannot start: {exc}") from None
    servers: list[asyncio.Server] = []
    try:
        for listener in config.listeners:
            server = await loop.create_server(
                lambda listener=listener: ClientProtocol(state, listener),  # type: ignore[misc]
                listener.bind.host,
                listener.bind.port,
                reuse_address=True,
                backlog=1024,
            )
            servers.append(server)
            log(f"listener {listener.name} on {_url(listener, server.sockets[0].getsockname())}")
        if config.admin is not None:
            admin = await loop.create_server(
                lambda: AdminProtocol(state),
                config.admin.host,
                config.admin.port,
                reuse_address=True,
            )
            servers.append(admin)
            host, port = admin.sockets[0].getsockname()[:2]
            log(f"admin on http://{Address(str(host), int(port))} (/healthz, /metrics)")
    except OSError as exc:
        for server in servers:
            server.close()
        raise SystemExit(f"outwork: cannot listen: {exc}") from None

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    async def ticker() -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            state.tick()

    state.clock.tick()
    tick_task = loop.create_task(ticker())
    log("ready")
    await stop.wait()
    log("stopping")
    tick_task.cancel()
    for server in servers:
        server.close()
    for client in list(state.clients):
        client.close()
    for pool in state.pools.values():
        pool.close()
    await asyncio.sleep(0.05)  # let transports flush close_notify / FIN
    state.security_log.close()
    if state.access_log is not None:
        state.access_log.close()


def run(config: GatewayConfig) -> None:
    import uvloop

    def log(message: str) -> None:
        print(f"outwork: {message}", file=sys.stderr, flush=True)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config, log))
