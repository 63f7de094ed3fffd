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


@pytest.mark.parametrize("listener", ["tls", "plain"])
def test_downloads_one_after_another_on_one_connection_arrive_whole(
    streaming_gateway: Gateway, listener: str
) -> None:
    with connect(streaming_gateway.urls[listener]) as sock:
        for size in SIZES:
            assert get(sock, size) == (size, pattern_digest(size))


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
    finally:
        client.close()
