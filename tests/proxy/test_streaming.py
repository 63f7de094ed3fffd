"""1 GiB up and 1 GiB down through a running gateway, with its memory staying flat.

The backend (`stream_backend.py`) hashes the upload as it reads it and generates the download
as it writes it; the client streams its upload from a generator and hashes the download as it
arrives: no one holds a body, so the gateway is the only place where one could pile up. Its
resident memory is sampled from /proc during each transfer (and its high-water mark, VmHWM,
reset before and read after), and must stay within `RSS_BOUND` of what it used when idle.
Each transfer starts with a one-second stall on the receiving side (the backend for the upload,
the client for the download), so missing backpressure shows as growth, not just as speed.
Run with `-s` to see the figures.
"""

from __future__ import annotations

import hashlib
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, Gateway, gateway_config
from tests.proxy.stream_backend import pattern, pattern_digest

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024
# Generous: a leak or missing backpressure grows by hundreds of MiB over 1 GiB; socket and
# allocator noise stays far below this.
RSS_BOUND = 64 * MIB
BACKEND = Path(__file__).with_name("stream_backend.py")


@pytest.fixture
def stream_backend() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(BACKEND), "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("backend listening on "), line
    yield f"http://{line.split()[-1]}"
    proc.kill()
    proc.wait()


@pytest.fixture
def streaming_gateway(
    make_gateway: Callable[..., Gateway], stream_backend: str, tmp_path: Path
) -> Gateway:
    """Two listeners on one gateway: `plain` (HTTP) and `tls` (outwork's TLS engine)."""
    subprocess.run(
        [str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True, capture_output=True
    )
    config = gateway_config(
        stream_backend,
        listeners=[
            {"name": "plain", "bind": "127.0.0.1:0"},
            {
                "name": "tls",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": "cert.pem", "key": "key.pem"}]},
            },
        ],
        limits={"max_request_body": 2 * GIB},
    )
    return make_gateway(config)


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


class PeakRss:
    """Samples a process's VmRSS every few milliseconds while a transfer runs; also resets its
    VmHWM (the kernel's own peak) first, so the peak between two samples is not missed."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = status_kib(pid, "VmRSS") * 1024
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, status_kib(self.pid, "VmRSS") * 1024)

    def __enter__(self) -> PeakRss:
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")  # resets VmHWM
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False  # then VmHWM includes the start; the samples still count
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._hwm_reset:
            self.peak = max(self.peak, status_kib(self.pid, "VmHWM") * 1024)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the certificate is not what these tests are about
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        return ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def read_head(sock: socket.socket) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """Status line, headers (lower-cased names) and whatever body bytes came with them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the response head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def upload(url: str, size: int, stall: float = 0.0) -> dict[str, object]:
    """POST /sink with `size` bytes of `pattern`; the backend waits `stall` seconds before it
    reads the body."""
    with connect(url) as sock:
        sock.sendall(
            b"POST /sink?stall=%g HTTP/1.1\r\nhost: streaming\r\n"
            b"content-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n" % (stall, size)
        )
        for block in pattern(size):
            sock.sendall(block)
        status, headers, body = read_head(sock)
        assert status.startswith(b"HTTP/1.1 200"), status
        length = int(headers[b"content-length"])
        while len(body) < length:
            chunk = sock.recv(65536)
            assert chunk
            body += chunk
    result: dict[str, object] = json.loads(body)
    return result


def download(url: str, size: int, stall: float = 0.0) -> tuple[int, str]:
    """Bytes and sha256 of the body of GET /source?n=size, hashed as it arrives; the client
    reads nothing for the first `stall` seconds."""
    digest = hashlib.sha256()
    count = 0
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    with connect(url) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
        sock.sendall(b"GET /source?n=%d HTTP/1.1\r\nhost: streaming\r\n\r\n" % size)
        time.sleep(stall)
        status, headers, first = read_head(sock)
        assert status.startswith(b"HTTP/1.1 200"), status
        length = int(headers[b"content-length"])
        digest.update(first)
        count = len(first)
        while count < length:
            got = sock.recv_into(view)
            assert got, f"connection closed after {count} of {length} bytes"
            digest.update(view[:got])
            count += got
    return count, digest.hexdigest()


def warm_up(url: str) -> None:
    """One small transfer each way first: the baseline then includes the code paths and the
    buffers any request needs, and the growth is what the size of a body adds."""
    assert upload(url, 4 * MIB)["bytes"] == 4 * MIB
    assert download(url, 4 * MIB)[0] == 4 * MIB


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_a_1gib_upload_streams_through_with_flat_memory(
    streaming_gateway: Gateway, listener: str
) -> None:
    url = streaming_gateway.urls[listener]
    expected = pattern_digest(GIB)
    warm_up(url)
    with PeakRss(streaming_gateway.proc.pid) as rss:
        # The backend reads nothing for the first second, while the client could send
        # hundreds of MiB: the gateway must stop reading from the client instead of queueing.
        result = upload(url, GIB, stall=1.0)
    print(
        f"\n1 GiB upload ({listener}): gateway RSS idle {rss.baseline / MIB:.1f} MiB, "
        f"peak {rss.peak / MIB:.1f} MiB, growth {rss.growth / MIB:.1f} MiB"
    )
    assert result == {"bytes": GIB, "sha256": expected}
    assert rss.growth < RSS_BOUND, f"gateway memory grew by {rss.growth / MIB:.1f} MiB"


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_a_1gib_download_streams_through_with_flat_memory(
    streaming_gateway: Gateway, listener: str
) -> None:
    url = streaming_gateway.urls[listener]
    expected = pattern_digest(GIB)
    warm_up(url)
    with PeakRss(streaming_gateway.proc.pid) as rss:
        # The client reads nothing for the first second, while the backend could send hundreds
        # of MiB: the gateway must stop reading from the backend instead of queueing.
        received = download(url, GIB, stall=1.0)
    print(
        f"\n1 GiB download ({listener}): gateway RSS idle {rss.baseline / MIB:.1f} MiB, "
        f"peak {rss.peak / MIB:.1f} MiB, growth {rss.growth / MIB:.1f} MiB"
    )
    assert received == (GIB, expected)
    assert rss.growth < RSS_BOUND, f"gateway memory grew by {rss.growth / MIB:.1f} MiB"
