"""Load clients for `bench/run.py`, each run as its own process (stdlib only).

    clients.py idle PORT COUNT       open COUNT TLS connections, one GET on each, then hold them
    clients.py latency PORT RATE SECONDS CONNECTIONS
                                     GETs at a fixed rate over keep-alive TLS connections; prints
                                     the latencies as JSON

`idle`: non-blocking sockets and one selector, so a process holds thousands of connections with
no more than OpenSSL's own per-connection memory (asyncio's SSL transport keeps a 256 KiB read
buffer per connection, which would make the client, not the server, the memory problem). At
most `WINDOW` connections are being set up at a time, so the server's accept backlog never
overflows. When every connection has its answer (or failed), prints one JSON line
`{"open": n, "failed": n, "errors": {...}}`, then holds the connections until stdin closes.

`latency`: one thread per connection, each sending its share of the requests at fixed times
(`t0 + i / rate`); a request's latency runs from the time it was due, not from when it was
sent, so a stalled server is not hidden by requests that were sent late (coordinated omission).
"""

from __future__ import annotations

import json
import resource
import selectors
import socket
import ssl
import sys
import threading
import time
from collections import Counter

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
WINDOW = 64  # connections being set up at once, per process


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def response_complete(data: bytes | bytearray) -> bool:
    """Whether `data` holds one whole response with a Content-Length body."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in bytes(data[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return len(data) >= end + 4 + length


class IdleConnection:
    """connect -> TLS handshake -> send one GET -> read its answer -> idle (kept open)."""

    def __init__(self, ctx: ssl.SSLContext, port: int) -> None:
        self.ctx = ctx
        self.sock: socket.socket | ssl.SSLSocket = socket.socket()
        self.sock.setblocking(False)
        self.sock.connect_ex((HOST, port))
        self.step = "connect"
        self.received = bytearray()

    def advance(self) -> int:
        """Do what can be done now; returns the selector events to wait for, 0 when idle.
        Raises OSError (ssl.SSLError included) when the connection failed."""
        if self.step == "connect":
            error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, "connect failed")
            self.sock = self.ctx.wrap_socket(
                self.sock, server_hostname="localhost", do_handshake_on_connect=False
            )
            self.step = "handshake"
        sock = self.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            if self.step == "handshake":
                sock.do_handshake()
                sock.send(REQUEST)  # tiny: fits a fresh socket's send buffer
                self.step = "read"
            while self.step == "read":
                data = sock.recv(65536)
                if not data:
                    raise OSError("closed before the answer")
                self.received += data
                if response_complete(self.received):
                    if not self.received.startswith(b"HTTP/1.1 200"):
                        raise OSError(f"answer {bytes(self.received[:12])!r}")
                    self.step = "idle"
                    self.received = bytearray()
                    return 0
        except ssl.SSLWantReadError:
            return selectors.EVENT_READ
        except ssl.SSLWantWriteError:
            return selectors.EVENT_WRITE
        return 0


def idle(port: int, count: int) -> None:
    raise_nofile()
    ctx = tls_context()
    selector = selectors.DefaultSelector()
    held: list[socket.socket | ssl.SSLSocket] = []
    errors: Counter[str] = Counter()
    started = 0
    in_flight = 0
    deadline = time.monotonic() + 180
    while (started < count or in_flight) and time.monotonic() < deadline:
        while started < count and in_flight < WINDOW:
            conn = IdleConnection(ctx, port)
            selector.register(conn.sock, selectors.EVENT_WRITE, conn)
            started += 1
            in_flight += 1
        for key, _ in selector.select(timeout=1.0):
            conn = key.data
            try:
                events = conn.advance()
            except OSError as exc:
                errors[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                selector.unregister(key.fileobj)
                conn.sock.close()
                in_flight -= 1
                continue
            if events:
                # The SSLSocket replaces the plain one after connect: register it anew.
                selector.unregister(key.fileobj)
                selector.register(conn.sock, events, conn)
            else:
                selector.unregister(key.fileobj)
                held.append(conn.sock)
                in_flight -= 1
    failed = count - len(held)
    if in_flight:
        errors["timed out"] += in_flight
    print(json.dumps({"open": len(held), "failed": failed, "errors": dict(errors)}), flush=True)
    sys.stdin.read()  # hold the connections until the parent closes our stdin
    for sock in held:
        sock.close()


def latency(port: int, rate: float, seconds: float, connections: int) -> None:
    ctx = tls_context()
    total = int(rate * seconds)
    results: list[list[float]] = [[] for _ in range(connections)]
    errors: Counter[str] = Counter()
    socks = []
    for _ in range(connections):
        raw = socket.create_connection((HOST, port), timeout=10)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(ctx.wrap_socket(raw, server_hostname="localhost"))
    t0 = time.monotonic() + 0.2

    def run(k: int) -> None:
        sock = socks[k]
        out = results[k]
        for i in range(k, total, connections):
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                sock.sendall(REQUEST)
                data = bytearray()
                while not response_complete(data):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    data += chunk
            except OSError as exc:
                errors[type(exc).__name__] += 1
                return
            out.append(time.monotonic() - due)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sock in socks:
        sock.close()
    samples = sorted(x for r in results for x in r)
    print(json.dumps({"latencies": samples, "requests": total, "errors": dict(errors)}))


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "idle":
        idle(int(args[0]), int(args[1]))
    elif mode == "latency":
        latency(int(args[0]), float(args[1]), float(args[2]), int(args[3]))
    else:
        sys.exit(f"unknown mode {mode!r}")
