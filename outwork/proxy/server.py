"""Run the gateway (one process, or one worker of `workers.py`): listeners, admin, the timeout
ticker, signals, draining."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from outwork.config.config import Address, GatewayConfig, ListenerConfig
from outwork.filters import ban
from outwork.front.conn_limits import ConnectionCounts, SocketKey, socket_key
from outwork.front.h1 import ClientProtocol
from outwork.observe import metrics_share
from outwork.observe.access_log import AccessLog
from outwork.observe.line_sink import CLOSE_WAIT_SECONDS
from outwork.observe.metrics import Metrics
from outwork.observe.security_events import SecurityEventLog
from outwork.proxy import heap, reload_audit, startup_signals
from outwork.proxy.admin import Admin, AdminProtocol
from outwork.proxy.clock import Clock
from outwork.proxy.draining import DrainingClientProtocol
from outwork.proxy.forwarding import RequestIds
from outwork.proxy.listen_sockets import BACKLOG
from outwork.proxy.rlimits import raise_open_files_limit
from outwork.proxy.router import Router
from outwork.upstream.pool import UpstreamPool

if TYPE_CHECKING:
    from outwork.config.changes import ConfigSummary
    from outwork.proxy.listen_sockets import SlotSockets

TICK_SECONDS = 0.25
# With `workers: N`, a worker publishes its metrics for the admin's sum every this many ticks.
PUBLISH_TICKS = 4
# Longest wait for a draining worker's (or a reloaded config's) connections to finish.
DRAIN_TIMEOUT = 30.0


class GatewayState:
    """What all connections of one gateway share; built once per config load."""

    def __init__(
        self,
        config: GatewayConfig,
        loop: asyncio.AbstractEventLoop,
        metrics: Metrics | None = None,
        connections: ConnectionCounts | None = None,
    ) -> None:
        self.config = config
        self._listeners: dict[SocketKey, ListenerConfig] = {}
        self._listeners_of: GatewayConfig | None = None  # the config _listeners was made from
        # Open connections per listener and client address, for the caps: handed from state to
        # state on reload, so the draining connections of the old one still count.
        self.connections = connections if connections is not None else ConnectionCounts()
        self.loop = loop
        self.clock = Clock(loop)
        # Kept across reloads (passed in): counters only grow while the process runs.
        self.metrics = metrics if metrics is not None else Metrics()
        self.security_log = SecurityEventLog(config.security_events, self.metrics)
        self.bans = ban.for_config(config, self.security_log.emit)  # refused at accept
        if self.bans is not None:
            self.security_log.watch = self.bans.on_event
        self.access_log = (
            AccessLog(config.access_log, self.metrics.log_lines_lost) if config.access_log else None
        )
        self.router = Router(config.routes, config.paths.case_sensitive)
        self.request_ids = RequestIds()  # made here: unique per process and per config load
        self.pools = {
            name: UpstreamPool(upstream, loop, self.metrics, self.clock, self.security_log)
            for name, upstream in config.upstreams.items()
        }
        self.clients: set[ClientProtocol] = set()
        self.draining = False  # stopping or replaced by a reload: no more keep-alive
        self.server_connection: Callable[[Any], Any] | None = None
        if any(listener.tls is not None for listener in config.listeners):
            from outwork.tls.connection import ServerConnection

            self.server_connection = ServerConnection

    def listener_for(self, key: SocketKey) -> ListenerConfig | None:
        """The listener of a listening socket, looked up at every accept. Made again when the
        config is replaced (a certificate swap, admin.swap_certificates, does that)."""
        if self._listeners_of is not self.config:
            self._listeners = {socket_key(item): item for item in self.config.listeners}
            self._listeners_of = self.config
        return self._listeners.get(key)

    def tick(self) -> None:
        self.clock.tick()
        if self.bans is not None:
            self.bans.tick()
        now = self.clock.now
        for client in [
            c
            for c in self.clients
            if (c.deadline and now > c.deadline) or (c.write_deadline and now > c.write_deadline)
        ]:
            client.timed_out()
        for pool in self.pools.values():
            pool.tick(now)
        self.security_log.flush()
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


def start_draining(state: GatewayState) -> None:
    state.draining = True
    for client in list(state.clients):
        if isinstance(client, DrainingClientProtocol):
            client.drain()


async def finish(state: GatewayState, timeout: float) -> None:
    """Wait (at most `timeout` seconds) for a draining state's connections, then close all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while state.clients and loop.time() < deadline:
        await asyncio.sleep(0.05)
    close_state(state)
    await asyncio.sleep(0.05)  # let transports flush close_notify / FIN
    # A slow reader of a log FIFO gets a moment to take the last lines, waited for here
    # without stalling the loop (the new state's connections are served meanwhile).
    logs: list[SecurityEventLog | AccessLog] = [state.security_log]
    if state.access_log is not None:
        logs.append(state.access_log)
    give_up = loop.time() + CLOSE_WAIT_SECONDS
    while sum([log.flush() for log in logs]) and loop.time() < give_up:
        await asyncio.sleep(0.05)
    for log in logs:
        log.close(wait=0.0)


def close_state(state: GatewayState) -> None:
    for client in list(state.clients):
        client.shut()  # a client still not reading after the drain is cut, not waited for
    for pool in state.pools.values():
        pool.close()


async def serve(
    config: GatewayConfig,
    log: Callable[[str], None],
    *,
    worker: bool = False,
    on_ready: Callable[[], None] | None = None,
    run_dir: str | None = None,
    loaded_digest: str | None = None,
    inherited: SlotSockets | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT.

    A single process (`worker=False`) then stops accepting, closes connections and returns; a
    SIGHUP re-reads the config file and applies it to new connections while the old ones drain;
    listeners whose bind address stays keep their socket, new ones are opened (a bind that fails
    refuses the reload) and removed ones stop accepting (the admin listener likewise).
    A worker (`worker=True`, forked by the supervisor in `workers.py`) serves on the listening
    sockets it `inherited` from the supervisor (its slot's; the successor of this worker gets the
    same ones, so closing them here loses no queued connection), ignores SIGHUP (the supervisor
    reloads by replacing workers) and on SIGTERM drains: stops accepting, answers what is in
    flight (with `Connection: close`), closes idle connections, returns when none is left (or
    after `DRAIN_TIMEOUT`). Its metrics go to `run_dir` (see
    `metrics_share.py`) about once a second and when it exits. The admin listener stays open
    until the end, so /readyz can say 503 while connections drain.
    """
    loop = asyncio.get_running_loop()
    metrics = Metrics()
    try:
        state = GatewayState(config, loop, metrics)
        _prepare_ticket_keys(config)
    except (OSError, RuntimeError) as exc:
        raise SystemExit(f"outwork: cannot start: {exc}") from None
    current = [state]  # the state new connections get; replaced by a reload
    draining: set[GatewayState] = set()
    retiring: set[asyncio.Task[None]] = set()
    # One listening socket per configured bind address: a reload keeps the sockets whose address
    # stays (a listener may change its name or TLS settings on them), opens the new ones and
    # closes those no longer configured.
    servers: dict[SocketKey, asyncio.Server] = {}
    admin = Admin(metrics, current, run_dir)
    admin_server: list[asyncio.Server] = []  # zero or one

    async def open_listener(listener: ListenerConfig) -> asyncio.Server:
        bind, key = listener.bind, socket_key(listener)
        sock = inherited.listeners.get(listener.name) if inherited is not None else None
        if sock is not None:
            server = await loop.create_server(
                lambda: _client(current[0], key), sock=sock, backlog=BACKLOG
            )
        else:
            server = await loop.create_server(
                lambda: _client(current[0], key),
                bind.host,
                bind.port,
                reuse_address=True,
                backlog=BACKLOG,
            )
        log(f"listener {listener.name} on {_url(listener, server.sockets[0].getsockname())}")
        return server

    async def open_admin(bind: Address) -> asyncio.Server:
        sock = inherited.admin if inherited is not None else None
        if sock is not None:
            server = await loop.create_server(lambda: AdminProtocol(admin), sock=sock)
        else:
            server = await loop.create_server(
                lambda: AdminProtocol(admin), bind.host, bind.port, reuse_address=True
            )
        host, port = server.sockets[0].getsockname()[:2]
        log(f"admin on http://{Address(str(host), int(port))} (/healthz, /readyz, /metrics)")
        return server

    try:
        for listener in config.listeners:
            servers[socket_key(listener)] = await open_listener(listener)
        if config.admin is not None:
            admin_server.append(await open_admin(config.admin))
    except OSError as exc:
        for server in servers.values():
            server.close()
        raise SystemExit(f"outwork: cannot listen: {exc}") from None

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    reloading: list[asyncio.Task[None]] = []

    def refuse(new: ConfigSummary | None, reason: str, problems: list[str] | None = None) -> None:
        """A refused reload: logged, and audited on the running config's sink."""
        log(f"reload refused: {reason}")
        running = current[0].config
        detail = reload_audit.refused_detail(running.file, running.summary, new, reason, problems)
        reload_audit.emit(current[0].security_log, reload_audit.REFUSED, detail)
        admin.record_reload(reload_audit.REFUSED, detail)

    async def reload() -> None:
        from outwork.config.load import load_config
        from outwork.config.source import ConfigError

        old = current[0]
        try:
            new_config = load_config(old.config.file)
        except ConfigError as exc:
            problems = [problem.format() for problem in exc.problems]
            for problem in problems:
                log(problem)
            refuse(exc.summary, "the config has errors; the running one stays", problems)
            return
        for warning in new_config.warnings:
            log(warning)
        try:
            new_state = GatewayState(new_config, loop, metrics, old.connections)
        except (OSError, RuntimeError) as exc:
            refuse(new_config.summary, str(exc))
            return
        try:
            _prepare_ticket_keys(new_config)
        except (OSError, RuntimeError) as exc:
            close_state(new_state)  # its pools' health checks must not outlive it
            refuse(new_config.summary, str(exc))
            return
        # New sockets first: a bind that fails refuses the whole reload, the old config stays.
        opened: dict[SocketKey, asyncio.Server] = {}
        new_admin: asyncio.Server | None = None
        try:
            for listener in new_config.listeners:
                if socket_key(listener) not in servers:
                    opened[socket_key(listener)] = await open_listener(listener)
            if new_config.admin is not None and new_config.admin != old.config.admin:
                new_admin = await open_admin(new_config.admin)
        except OSError as exc:
            for server in opened.values():
                server.close()
            close_state(new_state)
            refuse(new_config.summary, f"cannot listen: {exc}")
            return
        new_state.clock.tick()
        current[0] = new_state
        servers.update(opened)
        keys = {socket_key(listener) for listener in new_config.listeners}
        for key in [k for k in servers if k not in keys]:
            servers.pop(key).close()  # stops accepting; its connections drain with `old`
            log(f"listener on {key.bind} closed")
        if new_config.admin != old.config.admin:
            for server in admin_server:
                server.close()
            admin_server[:] = [new_admin] if new_admin is not None else []
        draining.add(old)
        start_draining(old)

        async def retire() -> None:
            await finish(old, DRAIN_TIMEOUT)
            draining.discard(old)
            retiring.discard(task)

        task = loop.create_task(retire())
        retiring.add(task)
        log("reloaded")
        detail = reload_audit.applied_detail(
            new_config.file, old.config.summary, new_config.summary
        )
        reload_audit.emit(new_state.security_log, reload_audit.APPLIED, detail)
        admin.record_reload(reload_audit.APPLIED, detail)

    async def safe_reload() -> None:
        # Whatever fails in a reload is logged and leaves the running config serving; the
        # process must outlive any config file.
        try:
            await reload()
        except Exception as exc:  # noqa: BLE001 - logged; the old config stays
            log(f"reload failed: {type(exc).__name__}: {exc}; the running config stays")
            running = current[0].config
            reason = f"{type(exc).__name__}: {exc}"
            detail = reload_audit.refused_detail(running.file, running.summary, None, reason)
            reload_audit.emit(current[0].security_log, reload_audit.REFUSED, detail)
            admin.record_reload(reload_audit.REFUSED, detail)

    def start_reload() -> None:
        if reloading and not reloading[0].done():
            log("reload already in progress; SIGHUP ignored")
            return
        reloading[:] = [loop.create_task(safe_reload())]

    def certificates_changed() -> None:
        """SIGUSR1 from the supervisor: the admin API installed a certificate in the config
        file; serve the file's certificate sets to new connections, change nothing else."""
        from outwork.config.load import load_config
        from outwork.config.source import ConfigError
        from outwork.proxy.admin import acknowledge_certificates, config_digest, swap_certificates

        try:
            digest = config_digest(current[0].config.file)
            changed = swap_certificates(current[0], load_config(current[0].config.file))
        except (ConfigError, OSError) as exc:
            log(f"certificates not changed: {exc}")
            return
        if changed:
            log(f"new certificates for {', '.join(changed)}")
        if run_dir is not None:
            acknowledge_certificates(run_dir, digest)

    def tickets_rotated(signalled: bool = True) -> None:
        """SIGUSR2 from the supervisor: the admin API dropped the ticket keys made before the
        time in the run directory; do the same here (also at start: a worker that made its
        keys before that time but became ready after the supervisor signalled)."""
        from outwork.proxy.admin import (
            TICKETS_ACK_PREFIX,
            TICKETS_NOT_BEFORE,
            acknowledge,
            drop_tickets_before,
        )

        if run_dir is None:
            return
        try:
            with open(os.path.join(run_dir, TICKETS_NOT_BEFORE)) as f:
                value = f.read()
            drop_tickets_before(current[0], float(value), time.time())
        except FileNotFoundError:
            return  # no rotation asked since the supervisor started
        except (OSError, ValueError, RuntimeError) as exc:
            log(f"ticket keys not rotated: {exc}")
            return
        if signalled:
            log("ticket keys rotated")
        acknowledge(run_dir, TICKETS_ACK_PREFIX, value)

    if worker:
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
        loop.add_signal_handler(signal.SIGUSR1, certificates_changed)
        loop.add_signal_handler(signal.SIGUSR2, tickets_rotated)
    else:
        loop.add_signal_handler(signal.SIGHUP, start_reload)

    def publish() -> None:
        if run_dir is not None:
            metrics_share.publish(run_dir, metrics.snapshot(current[0].pools.values()))

    async def ticker() -> None:
        ticks = 0
        while True:
            await asyncio.sleep(TICK_SECONDS)
            current[0].tick()
            for old in list(draining):
                old.tick()
            ticks += 1
            if ticks % PUBLISH_TICKS == 0:
                publish()

    state.clock.tick()
    tick_task = loop.create_task(ticker())
    admin.serving = True
    publish()
    heap.settle()
    log("ready")
    if on_ready is not None:
        on_ready()
    if worker and loaded_digest is not None:
        # A certificate installed while this worker loaded its config: the supervisor signals
        # ready workers only, so catch up with the file now.
        from outwork.proxy.admin import config_digest

        try:
            if config_digest(config.file) != loaded_digest:
                certificates_changed()
        except OSError as exc:
            log(f"config file unreadable: {exc}")
        tickets_rotated(signalled=False)
    if not worker and startup_signals.take_reload_request():
        start_reload()  # a SIGHUP while starting: the file may have changed after it was read
    await stop.wait()
    log("stopping")
    admin.stopping = True
    for task in reloading:
        task.cancel()
    for server in servers.values():
        server.close()
    if worker:
        start_draining(current[0])
        await finish(current[0], DRAIN_TIMEOUT)
    else:
        close_state(current[0])
        await asyncio.sleep(0.05)  # let transports flush close_notify / FIN
        current[0].security_log.close()
        if current[0].access_log is not None:
            current[0].access_log.close()
    for task in list(retiring):
        task.cancel()  # before it closes anything: closed here instead
    for old in list(draining):
        close_state(old)
        old.security_log.close()
        if old.access_log is not None:
            old.access_log.close()
    tick_task.cancel()
    publish()  # the last counts, for the supervisor to keep once this worker is gone
    for server in admin_server:
        server.close()


def _client(state: GatewayState, key: SocketKey) -> ClientProtocol:
    """A connection on the socket of `key`, with that listener of the current config."""
    listener = state.listener_for(key)
    if listener is None:
        # The socket of a listener a reload removed is closed before the new state serves.
        raise RuntimeError(f"no listener for {key}")
    return DrainingClientProtocol(state, listener)


def run(config: GatewayConfig) -> None:
    import uvloop

    def log(message: str) -> None:
        print(f"outwork: {message}", file=sys.stderr, flush=True)

    if warning := raise_open_files_limit():
        log(warning)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config, log))
