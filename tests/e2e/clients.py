"""Small helpers to drive real TLS clients: external tools and Python's `ssl`."""

from __future__ import annotations

import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
GET_CLOSE = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
GET_KEEPALIVE = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def new_tag(prefix: str = "cell") -> str:
    """A unique tag for one request: `/cell/TAG` finds it in the gateway's access log (the
    backend answers it like `/`)."""
    return f"{prefix}-{secrets.token_hex(6)}"


def tagged_path(tag: str) -> str:
    return f"/cell/{tag}"


def get_close(tag: str) -> bytes:
    return (
        f"GET {tagged_path(tag)} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    )


@dataclass
class ToolRun:
    argv: list[str]
    returncode: int
    output: str  # stdout and stderr, interleaved as the tool wrote them

    def explain(self) -> str:
        return f"$ {' '.join(self.argv)}\n(exit {self.returncode})\n{self.output[-6000:]}"


def run_tool(
    argv: list[str],
    stdin: bytes = b"",
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> ToolRun:
    try:
        proc = subprocess.run(
            argv,
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env={**os.environ, **env} if env else None,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace")
        return ToolRun(argv, -1, out + f"\n(TIMED OUT after {timeout}s)")
    return ToolRun(argv, proc.returncode, proc.stdout.decode(errors="replace"))


def run_tool_until(
    argv: list[str], stdin: bytes | list[bytes], until: bytes, timeout: float = 30.0
) -> ToolRun:
    """Like run_tool, but stdin stays open until `until` shows up in the output (or the tool
    exits, or `timeout`): for clients that send close_notify as soon as stdin ends. A list
    of stdin chunks is written half a second apart (one interactive command per read)."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdin is not None and proc.stdout is not None
    chunks = stdin if isinstance(stdin, list) else [stdin]
    for i, chunk in enumerate(chunks):
        if i:
            time.sleep(0.5)
        proc.stdin.write(chunk)
        proc.stdin.flush()
    out = bytearray()
    done = threading.Event()

    def reader() -> None:
        assert proc.stdout is not None
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out.extend(chunk)
            if until in out:
                done.set()
        done.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timed_out = not done.wait(timeout)
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    thread.join(timeout=5)
    text = bytes(out).decode(errors="replace")
    if timed_out:
        text += f"\n(TIMED OUT after {timeout}s waiting for {until!r})"
    return ToolRun(argv, proc.returncode, text)


def python_tls_context(ca_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def open_tls(port: int, ca_file: Path, timeout: float = 10.0) -> ssl.SSLSocket:
    ctx = python_tls_context(ca_file)
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def read_http_response(sock: ssl.SSLSocket) -> HttpResponse:
    """One HTTP/1.1 response with a Content-Length body (what the test backend sends)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response headers ended: {buf!r}")
        buf += chunk
        if len(buf) > 65536:
            raise ValueError("response headers too large")
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" not in headers:
        raise ValueError(f"no Content-Length in response headers: {headers}")
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(rest)} of {length} body bytes")
        rest += chunk
    if len(rest) != length:
        raise ValueError(f"{len(rest) - length} bytes after the body")
    return HttpResponse(status, headers, rest)


def https_get(port: int, ca_file: Path) -> tuple[HttpResponse, str | None, tuple | None]:
    """One GET over a new Python-ssl connection: (response, TLS version, cipher)."""
    with open_tls(port, ca_file) as tls:
        tls.sendall(GET_KEEPALIVE)
        resp = read_http_response(tls)
        return resp, tls.version(), tls.cipher()
