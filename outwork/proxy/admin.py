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
- `/reload`: JSON, the running config's hash and the last reload's verdict (`reload_audit.py`),
  which `outwork reload` waits for.
- `POST /certificates` (the admin API, only with `admin.token`): install a checked certificate
  chain and key for a listener, `{"listener", "cert", "key", "index"}` (`index`: which of its
  `tls.certificates`, from 0; default 0; see `outwork/ops/install.py`); every worker swaps that
  listener's certificate set for new handshakes, nothing drains. Each change request, allowed
  or not, is an `admin.audit` line on the security-events sink.
- `POST /tickets/rotate` (admin API): every worker drops its session-ticket keys and seals new
  tickets with a fresh one, so no ticket issued before is resumed (an incident's step; see
  `outwork/ops/incident.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from prometheus_client.exposition import generate_latest

from outwork.config.config import Address, GatewayConfig
from outwork.observe import metrics_share
from outwork.observe.metrics import (
    CERTIFICATE_EXPIRY,
    CONTENT_TYPE,
    Labels,
    Metrics,
    Snapshot,
    SnapshotCollector,
    Value,
)
from outwork.observe.refusals import Refusal
from outwork.proxy import reload_audit

if TYPE_CHECKING:
    from outwork.proxy.server import GatewayState

MAX_ADMIN_REQUEST = 8 * 1024
MAX_ADMIN_BODY = 1024 * 1024  # a change request's body (JSON of a few paths): 413 beyond
MAX_FIELD = 4096  # characters of one field of a change request
MAX_CERTIFICATES = 16  # a listener's tls.certificates (the schema's bound)
# Seconds the admin waits for every worker to report it serves the new certificates.
APPLY_TIMEOUT = 10.0
# In the supervisor's run directory: the pids it told to swap certificates (written by the
# supervisor), and one file per worker holding the digest of the config it swapped to.
CERTS_SIGNALLED = "certs-signalled"
CERTS_ACK_PREFIX = "certs-"
# The same for a ticket-key rotation (SIGUSR2): the time before which keys are dropped is in
# TICKETS_NOT_BEFORE, and each worker acknowledges that value.
TICKETS_SIGNALLED = "tickets-signalled"
TICKETS_ACK_PREFIX = "tickets-"
TICKETS_NOT_BEFORE = "tickets-not-before"
# The defaults of admin.max_connections and admin.timeout (the config's values are used):
MAX_ADMIN_CONNECTIONS = 32  # scrapers and probes; more at once is a client bug or an attack
ADMIN_TIMEOUT = 5.0  # seconds a connection may stay open

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    401: b"Unauthorized",
    403: b"Forbidden",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Content Too Large",
    422: b"Unprocessable Content",
    500: b"Internal Server Error",
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
        # One change at a time: a second install waits, so each waits for its own file digest.
        self.changes = asyncio.Lock()
        # The last reload's verdict in a single process (with `workers: N`, the supervisor
        # keeps it in the run directory).
        self.last_reload: dict[str, Any] | None = None
        self.reloads = 0

    def record_reload(self, event: str, detail: dict[str, Any]) -> None:
        self.reloads += 1
        self.last_reload = reload_audit.status(self.reloads, event, detail)

    def reload_status(self) -> bytes:
        if self.run_dir is None:
            last = self.last_reload
        else:
            last = reload_audit.read_status(self.run_dir)
        summary = self.current[0].config.summary
        running = summary.digest if summary is not None else None
        return json.dumps({"running": running, "last": last}).encode() + b"\n"

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
        if self.run_dir is not None:
            own = metrics_share.gather(self.run_dir, own)
        # Not summed over workers: every worker serves the same certificates.
        own[CERTIFICATE_EXPIRY] = certificate_expiry(self.current[0].config)
        return own

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


def certificate_expiry(config: GatewayConfig) -> dict[Labels, Value]:
    """Seconds until each served certificate (leaf) expires, negative once expired."""
    now = time.time()
    out: dict[Labels, Value] = {}
    for listener in config.listeners:
        for certified in listener.tls.certificates if listener.tls is not None else ():
            leaf = certified.chain[0]
            subject = leaf.subject.rfc4514_string()
            out[(listener.name, subject)] = leaf.not_valid_after_utc.timestamp() - now
    return out


def config_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def swap_certificates(state: GatewayState, new: GatewayConfig) -> list[str]:
    """Give new connections of `state` the certificate sets `new` has for its listeners (the
    names of those that changed). Nothing else of the config changes and no connection is
    touched: each open connection keeps the ListenerConfig it was accepted with."""
    fresh = {li.name: li.tls for li in new.listeners}
    changed: list[str] = []
    listeners = []
    for listener in state.config.listeners:
        tls, new_tls = listener.tls, fresh.get(listener.name)
        if tls is not None and new_tls is not None:
            if [c.chain for c in tls.certificates] != [c.chain for c in new_tls.certificates]:
                listener = replace(listener, tls=replace(tls, certificates=new_tls.certificates))
                changed.append(listener.name)
        listeners.append(listener)
    if changed:
        # The file the installer rewrote is what a later reload's audit line compares with.
        state.config = replace(state.config, listeners=tuple(listeners), summary=new.summary)
    return changed


def drop_tickets_before(state: GatewayState, not_before: float, now: float) -> list[str]:
    """Have every TLS listener of `state` forget the ticket keys made before `not_before` (the
    names of the listeners that issue tickets)."""
    rotated = []
    for listener in state.config.listeners:
        if listener.tls is not None and listener.tls.ticket_keys is not None:
            listener.tls.ticket_keys.drop_before(not_before, now)
            rotated.append(listener.name)
    return rotated


def acknowledge_certificates(run_dir: str, digest: str) -> None:
    """A worker's note that it serves the certificates of the config whose digest is given."""
    acknowledge(run_dir, CERTS_ACK_PREFIX, digest)


def acknowledge(run_dir: str, prefix: str, value: str) -> None:
    """A worker's note that it applied the change `value` names."""
    path = os.path.join(run_dir, f"{prefix}{os.getpid()}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(value)
    os.replace(tmp, path)


def _other_workers_acknowledged(
    run_dir: str, digest: str, signalled: str = CERTS_SIGNALLED, prefix: str = CERTS_ACK_PREFIX
) -> bool | None:
    """True once every worker the supervisor signalled (and still alive) acknowledged `digest`;
    None while the supervisor has not yet written whom it signalled."""
    try:
        with open(os.path.join(run_dir, signalled)) as f:
            pids = [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return None
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            with open(os.path.join(run_dir, f"{prefix}{pid}")) as f:
                if f.read() == digest:
                    continue
        except FileNotFoundError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue  # gone: its replacement loads the new file
        return False
    return True


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
        self._busy = False  # a change request is being applied

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
        if self.transport is None or self.transport.is_closing() or self._busy:
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
        if method == b"POST" and target == b"/certificates":
            self._change(fields, end + 4, "POST /certificates", self._install_one)
        elif method == b"POST" and target == b"/tickets/rotate":
            self._change(fields, end + 4, "POST /tickets/rotate", self._rotate_tickets)
        elif method not in (b"GET", b"HEAD"):
            self._answer(405, b"method not allowed\n")
        elif target == b"/healthz":
            self._answer(200, b"ok\n", head_only=head_only)
        elif target == b"/readyz":
            status, body = self.admin.readiness()
            self._answer(status, body, head_only=head_only)
        elif target == b"/metrics":
            self._answer(200, self.admin.metrics_page(), CONTENT_TYPE, head_only=head_only)
        elif target == b"/reload":
            body = self.admin.reload_status()
            self._answer(200, body, b"application/json", head_only=head_only)
        else:
            self._answer(404, b"not found\n", head_only=head_only)

    def _field(self, fields: list[bytes], name: bytes) -> bytes | None:
        values = [v.strip() for n, _, v in (f.partition(b":") for f in fields) if n.lower() == name]
        return values[0] if len(values) == 1 else None

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return str(Address(str(peer[0]), int(peer[1]))) if peer else "?"

    def _audit(self, what: str, result: str, detail: dict[str, Any]) -> None:
        """One audit line per change request, on the security-events sink."""
        self.admin.current[0].security_log.emit(
            "admin.audit", self._peer(), "admin", {"what": what, "result": result, **detail}
        )

    def _change(
        self,
        fields: list[bytes],
        body_start: int,
        what: str,
        apply: Callable[[bytes], Awaitable[None]],
    ) -> None:
        """A change request: authorised first (no token configured: 403; missing or wrong: 401),
        then its body read (at most MAX_ADMIN_BODY) and applied."""
        if self._busy:
            return
        config = self.admin.current[0].config
        if config.admin_token is None:
            self._answer(403, b"the admin API is off: no admin.token in the config\n")
            return
        given = self._field(fields, b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(
            token.strip(), config.admin_token
        ):
            self.admin.metrics.refused[Refusal.ADMIN_UNAUTHORIZED] += 1
            self._audit(what, "unauthorized", {"token_given": bool(given)})
            self._answer(401, b"a valid bearer token is required\n", www_authenticate=True)
            return
        length_field = self._field(fields, b"content-length")
        if length_field is None or not length_field.isdigit():
            self._answer(411, b"content-length required\n")
            return
        length = int(length_field)
        if length > MAX_ADMIN_BODY:
            self._answer(413, b"body too large\n")
            return
        body = bytes(self.buffer[body_start:])
        if len(body) < length:
            return  # more to come: data_received parses the head again then
        self._busy = True
        if self._timer is not None:
            self._timer.cancel()  # the change has its own timeout (APPLY_TIMEOUT)
        asyncio.get_running_loop().create_task(self._apply(what, apply, body[:length]))

    async def _apply(
        self, what: str, apply: Callable[[bytes], Awaitable[None]], body: bytes
    ) -> None:
        async with self.admin.changes:
            try:
                await apply(body)
            except Exception as exc:  # noqa: BLE001 - answered and audited, the gateway serves on
                self._audit(what, "error", {"error": repr(exc)[:300]})
                self._answer(500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())

    async def _install_one(self, body: bytes) -> None:
        from outwork.ops import OpsError
        from outwork.ops.install import certified_of, prepare

        what = "POST /certificates"
        try:
            request = json.loads(body)
            listener, cert, key = (request[k] for k in ("listener", "cert", "key"))
            # Which of the listener's certificates (from 0, in the config's order): a listener
            # may serve an RSA and an ECDSA one, or one per SNI name.
            index = request.get("index", 0)
            if not all(
                isinstance(v, str) and 0 < len(v) <= MAX_FIELD for v in (listener, cert, key)
            ):
                raise ValueError("listener, cert and key are non-empty strings")
            if type(index) is not int or not 0 <= index < MAX_CERTIFICATES:
                raise ValueError(f"index is a number from 0 to {MAX_CERTIFICATES - 1}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            self._audit(what, "bad request", {"error": str(exc)[:200]})
            self._answer(400, b'{"error": "a JSON object with listener, cert, key (and index)"}\n')
            return
        detail = {"listener": listener, "index": index, "cert": cert, "key": key.split("?", 1)[0]}
        state = self.admin.current[0]
        try:
            prepared = prepare(Path(state.config.file), listener, cert, key, index)
        except OpsError as exc:
            self._audit(what, "refused", {**detail, "error": str(exc)})
            self._answer(422, json.dumps({"error": str(exc)}).encode() + b"\n")
            return
        prepared.commit()
        swap_certificates(self.admin.current[0], prepared.config)
        leaf = certified_of(prepared, listener, index).chain[0]
        detail["serial"] = format(leaf.serial_number, "x")
        workers = 1
        run_dir = self.admin.run_dir
        if run_dir is not None:
            ok, workers = await self._tell_workers(run_dir, config_digest(state.config.file))
            if not ok:
                self._audit(what, "partly applied", detail)
                message = {"error": "not every worker confirmed in time", **detail}
                self._answer(500, json.dumps(message).encode() + b"\n")
                return
        self._audit(what, "ok", detail)
        self._answer(200, json.dumps({**detail, "workers": workers}).encode() + b"\n")

    async def _rotate_tickets(self, body: bytes) -> None:
        """Drop every ticket key made before now, in every worker: tickets issued before are
        not resumed (their sessions do a full handshake). The body is not read."""
        what = "POST /tickets/rotate"
        not_before = time.time()
        rotated = drop_tickets_before(self.admin.current[0], not_before, time.time())
        stamp = datetime.fromtimestamp(not_before, UTC).isoformat(timespec="milliseconds")
        detail: dict[str, Any] = {"listeners": rotated, "not_before": stamp}
        workers = 1
        run_dir = self.admin.run_dir
        if run_dir is not None:
            value = repr(not_before)
            path = os.path.join(run_dir, TICKETS_NOT_BEFORE)
            with open(path + ".tmp", "w") as f:
                f.write(value)
            os.replace(path + ".tmp", path)
            ok, workers = await self._tell_workers(
                run_dir, value, signal.SIGUSR2, TICKETS_SIGNALLED, TICKETS_ACK_PREFIX
            )
            if not ok:
                self._audit(what, "partly applied", detail)
                message = {"error": "not every worker confirmed in time", **detail}
                self._answer(500, json.dumps(message).encode() + b"\n")
                return
        self._audit(what, "ok", detail)
        self._answer(200, json.dumps({**detail, "workers": workers}).encode() + b"\n")

    async def _tell_workers(
        self,
        run_dir: str,
        digest: str,
        signum: int = signal.SIGUSR1,
        signalled: str = CERTS_SIGNALLED,
        prefix: str = CERTS_ACK_PREFIX,
    ) -> tuple[bool, int]:
        """Have the supervisor tell every worker to apply a change (SIGUSR1: load the new
        certificates; SIGUSR2: drop ticket keys); wait until all of them say they did."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(run_dir, signalled))
        os.kill(os.getppid(), signum)
        deadline = time.monotonic() + APPLY_TIMEOUT
        while time.monotonic() < deadline:
            done = _other_workers_acknowledged(run_dir, digest, signalled, prefix)
            if done:
                with open(os.path.join(run_dir, signalled)) as f:
                    return True, len(f.read().split())
            await asyncio.sleep(0.05)
        return False, 0

    def _answer(
        self,
        status: int,
        body: bytes,
        ctype: bytes = b"text/plain",
        head_only: bool = False,
        www_authenticate: bool = False,
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
        if www_authenticate:
            head += b'www-authenticate: Bearer realm="outwork-admin"\r\n'
        transport.write(head + b"connection: close\r\n\r\n" + (b"" if head_only else body))
        transport.close()
