"""The supervisor of `workers: N` (N >= 2): forks the workers, replaces dead ones, reloads.

    supervisor (no event loop, no keys, no client traffic; holds every listening socket)
      |- worker 0  asyncio server on every listener (slot 0's SO_REUSEPORT sockets) + the admin
      |- worker 1  asyncio server on every listener (slot 1's SO_REUSEPORT sockets)
      ...

The supervisor checks the config (to refuse a broken one and to learn the listener addresses)
but keeps nothing from it: each worker loads the config itself after the fork, so PKCS#11
signers, ticket keys, upstream pools and logs belong to the process that uses them. The
supervisor owns the listening sockets (see `listen_sockets.py`): per listener one SO_REUSEPORT
socket per worker slot, opened before the first fork (a port 0 resolved there) and kept across
reloads; a worker inherits its slot's sockets, a replacement or a reloaded worker those of the
worker it succeeds, so no queued connection is lost in a socket that closes. The admin listener
runs in worker 0 only; its `/metrics` sums the counters of all workers, which each worker
publishes about once a second to a run directory the supervisor owns (see `metrics_share.py`;
the supervisor keeps the counters of the workers that exit there too).

Signals to the supervisor:
- SIGTERM / SIGINT: forwarded as SIGTERM; each worker stops accepting, answers what is in flight
  (with `Connection: close`), closes idle connections and exits 0; then the supervisor exits 0.
- SIGHUP: re-read the config. Errors: logged with their lines, the running workers stay. Valid:
  a new generation of workers starts; once every one of them is ready the old generation gets
  SIGTERM and drains as above. No connection is cut: a client's next request on an old
  keep-alive connection is answered with `Connection: close` and it reconnects to a new worker;
  a new connection waits in its slot's queue, which the new worker of the slot accepts from.
A worker that dies (other than while draining) is replaced in its slot.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from outwork.config.config import GatewayConfig
from outwork.config.load import load_config
from outwork.config.source import ConfigError
from outwork.filters import node_table
from outwork.front.conn_limits import socket_key
from outwork.observe import metrics_share
from outwork.proxy import reload_audit, startup_signals
from outwork.proxy.listen_sockets import (
    SlotSockets,
    SocketSet,
    bound_address,
    close_unused,
    open_set,
)
from outwork.proxy.rlimits import raise_open_files_limit

if TYPE_CHECKING:
    from outwork.config.changes import ConfigSummary

RESPAWN_DELAY = 1.0  # seconds before replacing a worker that died before it was ready
KILL_AFTER = 40.0  # seconds after SIGTERM before a worker still alive is killed
EXIT_BAD_CONFIG = 2  # a worker could not load the config (changed since the supervisor read it)


@dataclass
class Worker:
    pid: int
    slot: int
    generation: int
    ready_fd: int
    ready: bool = False
    stopping: bool = False
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, config: GatewayConfig, log: Callable[[str], None]) -> None:
        self.path = config.file
        self.log = log
        self.count = config.workers
        self.generation = 0
        self.workers: dict[int, Worker] = {}
        # The running config's listening sockets, and those of the config a reload starts.
        self.sockets = self._open(config, None)
        self.pending_sockets: SocketSet | None = None
        self._old_count = self.count  # the worker count a failed reload goes back to
        self.pending: int | None = None  # generation being started by a reload
        self.respawn: list[tuple[float, int, int]] = []  # (when, slot, generation)
        self.signals: list[int] = []
        self.started_ok = False  # every worker of the first generation became ready once
        self.start_failed = False
        # For the reload audit: the running config's hash and parts, and its sink; those of
        # the one a reload is starting.
        self.summary = config.summary
        self.audit_target = config.security_events
        self.pending_config: tuple[ConfigSummary | None, str] | None = None
        self.reloads = 0  # reloads applied or refused, numbering GET /reload's verdicts
        self.run_dir = metrics_share.make_run_dir()  # workers' metrics; removed when we stop

    # sockets

    def _open(self, config: GatewayConfig, running: SocketSet | None) -> SocketSet:
        """The listening sockets `config` needs, keeping those of `running`; raises OSError."""
        names = {listener.name: socket_key(listener) for listener in config.listeners}
        return open_set(names, config.admin, config.workers, running)

    def _held(self) -> list[socket.socket]:
        held = list(self.sockets)
        if self.pending_sockets is not None:
            held.extend(self.pending_sockets)
        return held

    # workers

    def _spawn(self, slot: int, generation: int) -> None:
        sockets = self.sockets
        if generation == self.pending and self.pending_sockets is not None:
            sockets = self.pending_sockets
        own = sockets.for_slot(slot)
        read_fd, write_fd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                # Only its own slot's sockets: another slot's (or a removed listener's) socket
                # must close when the supervisor and that slot's workers let it go.
                kept = {id(sock) for sock in own}
                for sock in self._held():
                    if id(sock) not in kept:
                        sock.close()
                for w in self.workers.values():
                    os.close(w.ready_fd)
                _follow_supervisor(supervisor)
                code = _worker_main(self.path, slot, write_fd, own, self.run_dir)
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    print(exc.code, file=sys.stderr, flush=True)
                    code = 1
                else:
                    code = 0
            except BaseException:  # noqa: BLE001 - reported, and the child must not return
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        os.set_blocking(read_fd, False)
        self.workers[pid] = Worker(pid, slot, generation, read_fd)
        self.log(f"worker {slot} started (pid {pid})")

    def _start_generation(self, generation: int) -> None:
        for slot in range(self.count):
            self._spawn(slot, generation)

    def _signal(self, worker: Worker, signum: int) -> None:
        try:
            os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass

    def _stop(self, worker: Worker) -> None:
        if not worker.stopping:
            worker.stopping = True
            worker.started = time.monotonic()  # now: when it was asked to stop
            self._signal(worker, signal.SIGTERM)

    def _stop_all(self) -> None:
        """Let go of every socket, then stop every worker: a listening socket closes as its
        workers stop accepting (the admin's when worker 0 exits), so a new connection is
        refused at once instead of waiting, unanswered, in a queue nobody accepts from."""
        for sock in self._held():
            sock.close()
        for worker in list(self.workers.values()):
            self._stop(worker)

    # the loop

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        for handled in (
            signal.SIGTERM,
            signal.SIGINT,
            signal.SIGHUP,
            signal.SIGUSR1,
            signal.SIGUSR2,
        ):
            signal.signal(handled, self._on_signal)
        for name, address in self.sockets.addresses().items():
            self.log(f"listener {name} on {_SCHEMES.get(name, 'http')}://{address}")
        if (admin := self.sockets.admin_address()) is not None:
            self.log(f"admin on http://{admin} (/healthz, /readyz, /metrics of all workers)")
        self._start_generation(self.generation)
        announced = False
        stopping = False
        deferred_reload = False  # a SIGHUP before the first generation is ready
        while True:
            while self.signals:
                signum = self.signals.pop(0)
                if signum == signal.SIGHUP and not stopping and not announced:
                    deferred_reload = True
                elif signum == signal.SIGHUP and not stopping:
                    self._safe_reload()
                elif signum == signal.SIGUSR1:
                    self._tell_certificates()
                elif signum == signal.SIGUSR2:
                    self._tell(signal.SIGUSR2, "tickets-signalled")
                elif signum in (signal.SIGTERM, signal.SIGINT) and not stopping:
                    stopping = True
                    metrics_share.mark(self.run_dir, metrics_share.STOPPING)  # /readyz: 503
                    self.log("stopping")
                    self.respawn.clear()
                    self._stop_all()
            self._reap(stopping)
            if stopping and not self.workers:
                break
            self._read_ready()
            current = [w for w in self.workers.values() if w.generation == self.generation]
            if not announced and len(current) == self.count and all(w.ready for w in current):
                announced = self.started_ok = True
                metrics_share.mark(self.run_dir, metrics_share.READY)
                self.log("ready")
                if (startup_signals.take_reload_request() or deferred_reload) and not stopping:
                    self._safe_reload()  # the file may have changed after it was read
            if self.start_failed and not stopping:
                # A worker that cannot start at all (a port taken, an unusable key file) would
                # fail the same way again: give up instead of respawning forever.
                stopping = True
                metrics_share.mark(self.run_dir, metrics_share.STOPPING)
                self.log("cannot start: a worker failed before it was ready")
                self._stop_all()
            self._check_pending()
            now = time.monotonic()
            for when, slot, generation in list(self.respawn):
                if now >= when and not stopping:
                    self.respawn.remove((when, slot, generation))
                    if generation in (self.generation, self.pending):
                        self._spawn(slot, generation)
            for worker in self.workers.values():
                if worker.stopping and now - worker.started > KILL_AFTER:
                    self._signal(worker, signal.SIGKILL)
            fds = [w.ready_fd for w in self.workers.values() if not w.ready]
            try:
                select.select(fds, [], [], 0.1)
            except InterruptedError:
                pass
        for sock in self._held():
            sock.close()
        metrics_share.remove_run_dir(self.run_dir)
        self.log("stopped")
        return 1 if self.start_failed else 0

    def _tell_certificates(self) -> None:
        """The admin API (worker 0) installed a certificate: every serving worker re-reads the
        certificate sets (SIGUSR1), without a reload. Whom we told goes to the run directory,
        so the admin knows whose acknowledgements to wait for. A worker still starting
        loads the config file, which already holds the new certificate."""
        self._tell(signal.SIGUSR1, "certs-signalled")

    def _tell(self, signum: int, signalled: str) -> None:
        """Pass an admin change on to every serving worker; note whom in `signalled`. (SIGUSR2:
        drop the ticket keys made before the admin's time; a worker still starting reads the
        key file the admin already rewrote, or makes new keys in memory.)"""
        told = [w for w in self.workers.values() if w.ready and not w.stopping]
        for worker in told:
            self._signal(worker, signum)
        path = os.path.join(self.run_dir, signalled)
        with open(path + ".tmp", "w") as f:
            f.write(" ".join(str(w.pid) for w in told))
        os.replace(path + ".tmp", path)
        try:
            # The rewritten file is what a later reload's audit line compares with.
            self.summary = load_config(self.path).summary
        except ConfigError:
            pass  # the workers keep what they serve; the next reload reports the file

    def _read_ready(self) -> None:
        for worker in self.workers.values():
            if worker.ready:
                continue
            try:
                data = os.read(worker.ready_fd, 16)
            except BlockingIOError:
                continue
            if data:
                worker.ready = True

    def _reap(self, stopping: bool) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            os.close(worker.ready_fd)
            try:
                metrics_share.retire(self.run_dir, pid)  # its counters stay in the sum
            except (OSError, ValueError) as exc:
                self.log(f"metrics of worker {worker.slot} (pid {pid}) lost: {exc}")
            code = os.waitstatus_to_exitcode(status)
            how = f"exited {code}" if code >= 0 else f"killed by signal {-code}"
            if worker.stopping:
                self.log(f"worker {worker.slot} (pid {pid}) {how} after draining")
                continue
            self.log(f"worker {worker.slot} (pid {pid}) {how}")
            if stopping:
                continue
            if not self.started_ok and not worker.ready:
                self.start_failed = True
                continue
            if worker.generation == self.pending and not worker.ready:
                self._abort_reload(f"worker {worker.slot} of the new config did not start")
                continue
            # Replaced at once, unless it died while starting (a broken key file, a port taken):
            # then after a pause, so a failing start does not spin.
            delay = RESPAWN_DELAY if not worker.ready else 0.0
            self.respawn.append((time.monotonic() + delay, worker.slot, worker.generation))

    # reload

    def _safe_reload(self) -> None:
        """A reload, whatever goes wrong in it: the supervisor (its workers, its pid file) must
        outlive any config file; a failure leaves the running generation serving."""
        try:
            self._reload()
        except Exception as exc:  # noqa: BLE001 - logged; the old workers stay
            reason = f"{type(exc).__name__}: {exc}"
            if self.pending is not None:
                self._abort_reload(reason)
            else:
                if self.pending_sockets is not None:  # opened before what failed
                    close_unused(self.pending_sockets, self.sockets)
                    self.pending_sockets = None
                self.log(f"reload refused: {reason}; the running workers stay")
                self._audit_refused(None, reason)

    def _audit_refused(
        self, new: ConfigSummary | None, reason: str, problems: list[str] | None = None
    ) -> None:
        detail = reload_audit.refused_detail(self.path, self.summary, new, reason, problems)
        self._audit(reload_audit.REFUSED, detail)

    def _audit(self, event: str, detail: dict[str, Any]) -> None:
        """The audit line, and the verdict for the admin's GET /reload (in worker 0)."""
        reload_audit.emit_to(self.audit_target, event, detail)
        self.reloads += 1
        reload_audit.write_status(self.run_dir, reload_audit.status(self.reloads, event, detail))

    def _reload(self) -> None:
        if self.pending is not None:
            self.log("reload refused: the previous reload is still starting its workers")
            return
        self.log(f"reloading {self.path}")
        try:
            config = load_config(self.path)
        except ConfigError as exc:
            problems = [problem.format() for problem in exc.problems]
            for problem in problems:
                self.log(problem)
            reason = "the config has errors; the running workers stay"
            self.log(f"reload refused: {reason}")
            self._audit_refused(exc.summary, reason, problems)
            return
        for warning in config.warnings:
            self.log(warning)
        try:
            self.pending_sockets = self._open(config, self.sockets)
        except OSError as exc:
            self.log(f"reload refused: cannot listen: {exc}")
            self._audit_refused(config.summary, f"cannot listen: {exc}")
            return
        self._old_count = self.count
        self.count = config.workers
        for listener in config.listeners:
            _SCHEMES[listener.name] = "https" if listener.tls is not None else "http"
        self.pending_config = (config.summary, config.security_events)
        del config  # the workers load it themselves
        self.pending = self.generation + 1
        for slot in range(self.count):
            self._spawn(slot, self.pending)

    def _check_pending(self) -> None:
        if self.pending is None:
            return
        new = [w for w in self.workers.values() if w.generation == self.pending]
        if len(new) < self.count or not all(w.ready for w in new):
            return
        for worker in list(self.workers.values()):
            if worker.generation != self.pending:
                self._stop(worker)
        self.generation = self.pending
        self.pending = None
        if self.pending_sockets is not None:
            # The supervisor lets go of removed listeners' (and slots') sockets; each closes
            # when the old workers holding it stop accepting.
            close_unused(self.sockets, self.pending_sockets)
            self.sockets, self.pending_sockets = self.pending_sockets, None
        self.respawn = [r for r in self.respawn if r[2] == self.generation]
        self.log("reloaded")
        before = self.summary
        if self.pending_config is not None:
            self.summary, self.audit_target = self.pending_config
            self.pending_config = None
        detail = reload_audit.applied_detail(self.path, before, self.summary)
        self._audit(reload_audit.APPLIED, detail)

    def _abort_reload(self, reason: str) -> None:
        for worker in list(self.workers.values()):
            if worker.generation == self.pending:
                self._stop(worker)
        self.respawn = [r for r in self.respawn if r[2] != self.pending]
        self.pending = None
        self.count = self._old_count
        if self.pending_sockets is not None:
            close_unused(self.pending_sockets, self.sockets)
            self.pending_sockets = None
        self.log(f"reload failed: {reason}; the running workers stay")
        new = self.pending_config[0] if self.pending_config is not None else None
        self.pending_config = None
        self._audit_refused(new, reason)


# Listener name -> "http" or "https", for log lines (the supervisor keeps no compiled config).
_SCHEMES: dict[str, str] = {}


def _follow_supervisor(supervisor: int) -> None:
    """Have the kernel send this worker SIGTERM (a drain) when its supervisor dies, however it
    dies (SIGKILL, OOM killer): orphaned workers would serve on with a config nobody can reload
    or stop through the pid file."""
    # Default action first: until now SIGTERM is the supervisor's (inherited) handler, which
    # would swallow the signal asked for here.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != supervisor:  # gone before the call took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(
    path: str,
    slot: int,
    ready_fd: int,
    sockets: SlotSockets,
    run_dir: str,
) -> int:
    """A worker: load the config (keys, ticket keys, pools are made here), serve, drain."""
    import asyncio

    import uvloop

    from outwork.proxy.server import serve

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    # Until serve() handles it (new certificates): ignored, not the default (which kills).
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    # A worker never reloads (the supervisor replaces it): a SIGHUP to the process group (a
    # terminal hang-up, `kill -HUP -PGID`) must not kill it while it starts.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    pid = os.getpid()

    def log(message: str) -> None:
        sys.stderr.write(f"outwork: worker {slot} (pid {pid}): {message}\n")
        sys.stderr.flush()

    from outwork.proxy.admin import config_digest

    try:
        digest = config_digest(path)  # before loading: a change in between is caught at ready
    except OSError:
        digest = None  # load_config reports it
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            log(problem.format())
        return EXIT_BAD_CONFIG
    # The supervisor's config names the listeners this worker serves (the file may have
    # changed since it read it): those, on the sockets it opened.
    listeners = tuple(
        replace(li, bind=bound_address(sockets.listeners[li.name]))
        for li in config.listeners
        if li.name in sockets.listeners
    )
    admin = None if sockets.admin is None else bound_address(sockets.admin)
    config = replace(config, listeners=listeners, admin=admin)

    def ready() -> None:
        os.write(ready_fd, b"r")
        os.close(ready_fd)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(
            serve(
                config,
                log,
                worker=True,
                on_ready=ready,
                run_dir=run_dir,
                loaded_digest=digest,
                inherited=sockets,
            )
        )
    return 0


def supervise(config: GatewayConfig) -> int:
    """Run `config.workers` workers until SIGTERM or SIGINT; the exit code."""

    def log(message: str) -> None:
        sys.stderr.write(f"outwork: {message}\n")
        sys.stderr.flush()

    # Before the first fork: the workers inherit the raised limit.
    if warning := raise_open_files_limit():
        log(warning)
    # The table the workers count local rate limits and bans in: made here, before any fork,
    # so that every worker (replacements and reloaded generations too) maps the same memory.
    node_table.shared(workers=True)
    for listener in config.listeners:
        _SCHEMES[listener.name] = "https" if listener.tls is not None else "http"
    try:
        supervisor = Supervisor(config, log)
    except OSError as exc:
        raise SystemExit(f"outwork: cannot listen: {exc}") from None
    del config
    return supervisor.run()
