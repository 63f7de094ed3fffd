"""Downloads of a Content-Length body on the gateway's bulk path (the upstream's read buffer
sealed straight into TLS records, the body counted instead of parsed): every byte arrives in
order, and the client and upstream connections go on serving requests afterwards.

The 1 GiB download with a stalled client (flat memory, backpressure) is in test_streaming.py.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Gateway
from tests.proxy import test_streaming
from tests.proxy.h2_client import H2Client
from tests.proxy.stream_backend import pattern_digest
from tests.proxy.test_streaming import MIB, connect, read_head

# The streaming tests' backend and two-listener gateway (plain and TLS), shared.
stream_backend = test_streaming.stream_backend
streaming_gateway = test_streaming.streaming_gateway

# Several upstream reads, and a last TLS record shorter than 2^14 bytes.
SIZES = [3 * MIB + 12345, 1000, 5 * 16384, 0, MIB + 1]


def get(sock: socket.socket, size: int) -> tuple[int, str]:
    """GET /source?n=size on an open keep-alive connection: the body's length and sha256."""
    sock.sendall(b"GET /source?n=%d HTTP/1.1\r\nhost: streaming\r\n\r\n" % size)
    status, headers, body = read_head(sock)
    assert status.startswith(b"HTTP/1.1 200"), status
    length = int(headers[b"content-length"])
    digest = hashlib.sha256(body)
    count = len(body)
    while count < length:
        chunk = sock.recv(1 << 20)
        assert chunk, f"connection closed after {count} of {length} bytes"
        digest.update(chunk)
        count += len(chunk)
    assert count == length, "more bytes than the Content-Length"
    return count, digest.hexdigest()


def get_chunked(sock: socket.socket, size: int) -> bytes:
    """GET /source?n=size&chunked=1 on an open keep-alive connection: the de-chunked body."""
    sock.sendall(b"GET /source?n=%d&chunked=1 HTTP/1.1\r\nhost: streaming\r\n\r\n" % size)
    status, headers, data = read_head(sock)
    assert status.startswith(b"HTTP/1.1 200"), status
    assert headers[b"transfer-encoding"] == b"chunked"
    buffer = bytearray(data)
    body = bytearray()

    def take(n: int) -> bytes:
        while len(buffer) < n:
            chunk = sock.recv(1 << 20)
            assert chunk, f"connection closed after {len(body)} body bytes"
            buffer.extend(chunk)
        taken = bytes(buffer[:n])
        del buffer[:n]
        return taken

    while True:
        while b"\r\n" not in buffer:
            buffer.extend(sock.recv(1 << 20))
        line, _, rest = bytes(buffer).partition(b"\r\n")
        buffer[:] = rest
        length = int(line.split(b";")[0], 16)
        if not length:
            assert take(2) == b"\r\n"
            assert not buffer, "bytes after the last chunk"
            return bytes(body)
        body += take(length)
        assert take(2) == b"\r\n"


@pytest.mark.parametrize("listener", ["tls", "plain"])
def test_downloads_one_after_another_on_one_connection_arrive_whole(
    streaming_gateway: Gateway, listener: str
) -> None:
    with connect(streaming_gateway.urls[listener]) as sock:
        for size in SIZES:
            assert get(sock, size) == (size, pattern_digest(size))


@pytest.mark.parametrize("listener", ["tls", "plain"])
def test_chunked_downloads_one_after_another_arrive_whole(
    streaming_gateway: Gateway, listener: str
) -> None:
    with connect(streaming_gateway.urls[listener]) as sock:
        for size in (3 * MIB + 12345, 1000, MIB + 1):
            body = get_chunked(sock, size)
            assert (len(body), hashlib.sha256(body).hexdigest()) == (size, pattern_digest(size))
        assert get(sock, 1000) == (1000, pattern_digest(1000))


def test_an_http2_download_arrives_whole_with_the_stream_after_it(
    streaming_gateway: Gateway, tmp_path: Path
) -> None:
    port = urlsplit(streaming_gateway.urls["tls"]).port
    assert port is not None
    client = H2Client(port, tmp_path / "cert.pem")  # self-signed: its own trust anchor
    try:
        for size in (2 * MIB + 7, 1000):
            response = client.get(f"/source?n={size}")
            assert response.status == 200
            assert response.headers[b"content-length"] == b"%d" % size
            assert hashlib.sha256(response.body).hexdigest() == pattern_digest(size)
        response = client.get(f"/source?n={MIB + 3}&chunked=1")
        assert response.status == 200
        assert hashlib.sha256(response.body).hexdigest() == pattern_digest(MIB + 3)
    finally:
        client.close()
