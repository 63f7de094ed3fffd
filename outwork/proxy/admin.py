"""The admin listener (plain HTTP, loopback by default): /healthz, /readyz and /metrics.

Deliberately tiny and bounded: one request per connection, GET or HEAD only, a request head of
at most 8 KiB, answered and closed; at most `admin.max_connections` open at once, each closed
after `admin.timeout` seconds whatever it sent. A new connection beyond the cap closes the oldest
one instead of being refused: idle or slow sockets must not lock out a liveness probe (which a
Kubernetes kubelet would turn into a restart loop). The `Host` of a request must be localhost,
an IP address of the listener (any, when it binds 0.0.0.0 or ::) or a name in
`admin.allowed_hosts`: else 421, so a web page whose name was re-pointed at this address (DNS
rebinding) cannot read the admin pages through a browser.

- `/healthz`: 200 while the process runs its event loop (liveness).
- `/readyz`: 200 once the listeners serve and the config is loaded; 503 while starting (with
  `workers: N`: until every worker of the first generation is ready) and from the moment the
  gateway is asked to stop (SIGTERM/SIGINT: draining). A reload does not make it 503: the old
  config keeps serving until the new one does. Upstreams without a healthy target are listed
  in the body but do not change the status: other routes may still work, and taking the whole
  gateway out of a load balancer would turn one backend's outage into a total one.
- `/metrics`: Prometheus text format (see `metrics.py`), summed over all workers.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import TYPE_CHECKING, cast

from prometheus_client.exposition import generate_latest

from outwork.observe.refusals import Refusal
from outwork.policy.config import Address
from outwork.proxy import metrics_share
from outwork.proxy.metrics import CONTENT_TYPE, Metrics, Snapshot, SnapshotCollector

if TYPE_CHECKING:
    from outwork.proxy.server import GatewayState

MAX_ADMIN_REQUEST = 8 * 1024
# The defaults of admin.max_connections and admin.timeout (the config's values are used):
MAX_ADMIN_CONNECTIONS = 32  # scrapers and probes; more at once is a client bug or an attack
ADMIN_TIMEOUT = 5.0  # seconds a connection may stay open

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    421: b"Misdirected Request",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}


class Admin:
    """What the admin listener reports on: shared by its connections, owned by `serve`."""

    def __init__(self, metrics: Metrics, current: list[GatewayState], run_dir: str | None) -> None:
        self.metrics = metrics  # one object for all configs this process loads (reloads)
        self.current = current  # [the state new connections get]; replaced by a reload
        self.run_dir = run_dir  # the supervisor's run directory with `workers: N`, else None
        self.serving = False  # listeners bound and the config loaded
        self.stopping = False  # SIGTERM/SIGINT received
        # Open connections, oldest first (dicts keep insertion order): the first is evicted.
        self.open: dict[AdminProtocol, None] = {}

    def admit(self, conn: AdminProtocol) -> None:
        """Take a new connection; at the cap, the oldest open one makes room."""
        while len(self.open) >= self.current[0].config.admin_max_connections:
            oldest = next(iter(self.open))
            del self.open[oldest]
            oldest.evict()
            self.metrics.refused[Refusal.ADMIN_EVICTED] += 1
        self.open[conn] = None

    def host_allowed(self, host: bytes) -> bool:
        config = self.current[0].config
        return host_allowed(host, config.admin, config.admin_hosts)

    def snapshot(self) -> Snapshot:
        own = self.metrics.snapshot(self.current[0].pools.values())
        if self.run_dir is None:
            return own
        return metrics_share.gather(self.run_dir, own)

    def metrics_page(self) -> bytes:
        snapshot = self.snapshot()
        return generate_latest(SnapshotCollector(lambda: snapshot))

    def readiness(self) -> tuple[int, bytes]:
        run_dir = self.run_dir
        if run_dir is None:
            stopping, ready = self.stopping, self.serving
        else:
            # The gateway's state, kept by the supervisor: a worker of an older generation
            # drains after a reload while the new ones serve, and the gateway stays ready.
            stopping = metrics_share.marked(run_dir, metrics_share.STOPPING)
            ready = self.serving and metrics_share.marked(run_dir, metrics_share.READY)
        if stopping:
            return 503, b"stopping\n"
        if not ready:
            return 503, b"starting\n"
        lines = [b"ready\n"]
        for name, pool in self.current[0].pools.items():
            if not any(pool.healthy):
                lines.append(b"upstream %s: no healthy target\n" % name.encode())
        return 200, b"".join(lines)


def host_allowed(host: bytes, bind: Address | None, names: tuple[str, ...]) -> bool:
    """Whether a request's `Host` names an admin listener bound to `bind`, not a name an
    attacker points at it. The port is ignored: a port forward or a load balancer may change it.
    """
    text = host.decode("ascii", "replace").strip().lower()
    if text.startswith("["):
        name = text[1:].partition("]")[0]
    else:
        name = text.rpartition(":")[0] if text.count(":") == 1 else text
    name = name.removesuffix(".")
    if name == "localhost" or name in names:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False  # a name nobody configured
    try:
        bound = ipaddress.ip_address(bind.host if bind is not None else "localhost")
    except ValueError:  # bound by name (localhost): its loopback addresses
        return address.is_loopback
    return bound.is_unspecified or address == bound


class AdminProtocol(asyncio.Protocol):
    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.admin.admit(self)
        loop = asyncio.get_running_loop()
        timeout = self.admin.current[0].config.admin_timeout
        self._timer = loop.call_later(timeout, self.transport.abort)

    def evict(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.admin.open.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_ADMIN_REQUEST:
                self._answer(431, b"too large\n")
            return
        line, *fields = bytes(self.buffer[:end]).split(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(400, b"bad request\n")
            return
        hosts = [v for n, _, v in (f.partition(b":") for f in fields) if n.lower() == b"host"]
        if len(hosts) > 1:
            self._answer(400, b"more than one host\n")
            return
        # No Host at all (HTTP/1.0 probes) is no rebinding: browsers always send one.
        if hosts and not self.admin.host_allowed(hosts[0]):
            self.admin.metrics.refused[Refusal.ADMIN_HOST] += 1
            state = self.admin.current[0]
            peer = self.transport.get_extra_info("peername")
            state.security_log.emit(
                "admin.host_refused",
                str(Address(str(peer[0]), int(peer[1]))) if peer else "?",
                "admin",
                {"host": hosts[0].decode("ascii", "replace").strip()[:256]},
            )
            self._answer(421, b"host not allowed here (see admin.allowed_hosts)\n")
            return
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        head_only = method == b"HEAD"
        if method not in (b"GET", b"HEAD"):
            self._answer(405, b"method not allowed\n")
        elif target == b"/healthz":
            self._answer(200, b"ok\n", head_only=head_only)
        elif target == b"/readyz":
            status, body = self.admin.readiness()
            self._answer(status, body, head_only=head_only)
        elif target == b"/metrics":
            self._answer(200, self.admin.metrics_page(), CONTENT_TYPE, head_only=head_only)
        else:
            self._answer(404, b"not found\n", head_only=head_only)

    def _answer(
        self, status: int, body: bytes, ctype: bytes = b"text/plain", head_only: bool = False
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            ctype,
            len(body),
        )
        transport.write(head + b"connection: close\r\n\r\n" + (b"" if head_only else body))
        transport.close()
