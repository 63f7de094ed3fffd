"""WebSocket passthrough: a real `websockets` client through the gateway to a real `websockets`
echo server, over plain and TLS listeners."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.http11 import Request, Response
from websockets.sync.client import connect as ws_connect
from websockets.sync.server import Server, ServerConnection
from websockets.sync.server import serve as ws_serve

from outwork.proxy.draining import DRAIN_IDLE_GRACE
from tests.conftest import ROOT, Backend, Gateway, gateway_config
from tests.e2e.pki import make_pki
from tests.proxy.test_upstream_tls import leaf

# Both ends without keepalive pings (they would keep an idle tunnel busy) and without
# compression (so that the big message really is big on the wire).
NO_PINGS = {"ping_interval": None, "compression": None, "max_size": None}


class EchoServer:
    """A websockets server in a thread: echoes every message; records each request's headers.
    GET /forbidden is answered 403 instead of switching protocols."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.requests: list[Request] = []
        self.server: Server = ws_serve(
            self._echo, "127.0.0.1", 0, ssl=context, process_request=self._check, **NO_PINGS
        )
        scheme = "https" if context is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.socket.getsockname()[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if request.path == "/forbidden":
            return connection.respond(403, "no websocket here\n")
        return None

    @staticmethod
    def _echo(connection: ServerConnection) -> None:
        for message in connection:
            connection.send(message)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(10)


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def ws_gateway(
    echo_server: EchoServer, make_gateway: Callable[..., Gateway], tmp_path: Path
) -> Gateway:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    config = gateway_config(
        echo_server.url,
        listeners=[
            {"name": "plain", "bind": "127.0.0.1:0"},
            {
                "name": "tls",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": "cert.pem", "key": "key.pem"}]},
            },
        ],
        limits={"websocket_idle_timeout": 2},
    )
    return make_gateway(config)


def ws_url(gateway: Gateway, listener: str, path: str = "/chat") -> str:
    url = gateway.urls[listener]
    return url.replace("https://", "wss://").replace("http://", "ws://") + path


def client_tls(tmp_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    return context


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_messages_pass_both_ways(
    ws_gateway: Gateway, echo_server: EchoServer, tmp_path: Path, listener: str
) -> None:
    context = client_tls(tmp_path) if listener == "tls" else None
    with ws_connect(ws_url(ws_gateway, listener), ssl=context, **NO_PINGS) as ws:
        ws.send("hello, tunnel")
        assert ws.recv(timeout=10) == "hello, tunnel"
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv(timeout=10) == b"\x00\x01binary\xff"
        # Several MiB each way: the tunnel pauses one side while the other cannot take more.
        big = os.urandom(6 * 1024 * 1024)
        ws.send(big)
        assert ws.recv(timeout=60) == big
        for i in range(50):
            ws.send(f"message {i}")
        assert [ws.recv(timeout=10) for _ in range(50)] == [f"message {i}" for i in range(50)]
    # The close handshake passed both ways: the client got the server's close frame.
    assert ws.close_code == 1000
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
    # The upstream saw the opening handshake with its WebSocket headers.
    request = echo_server.requests[-1]
    assert request.headers["Upgrade"].lower() == "websocket"
    assert "upgrade" in request.headers["Connection"].lower()
    assert request.headers["Sec-WebSocket-Key"]
    assert request.headers["X-Forwarded-For"] == "127.0.0.1"


def test_first_frame_sent_with_the_request_reaches_the_upstream(
    ws_gateway: Gateway,
) -> None:
    """A client that does not wait for the 101: its first frame is in the same packet as the
    request head, and must still reach the upstream (and its echo come back after the 101)."""
    host, port = ws_gateway.urls["plain"].removeprefix("http://").rsplit(":", 1)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    head = (
        f"GET /chat HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    mask = b"\x01\x02\x03\x04"
    payload = b"early"
    frame = bytes([0x81, 0x80 | len(payload)]) + mask
    frame += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + frame)
        data = b""
        while b"early" not in data:
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in data
    # The server's unmasked text frame follows the 101 head.
    assert data.endswith(b"\x81\x05early")


@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_idle_tunnel_is_closed(ws_gateway: Gateway, tmp_path: Path, listener: str) -> None:
    context = client_tls(tmp_path) if listener == "tls" else None
    with ws_connect(ws_url(ws_gateway, listener), ssl=context, **NO_PINGS) as ws:
        ws.send("still here")
        assert ws.recv(timeout=10) == "still here"
        # websocket_idle_timeout is 2 s: the gateway closes both sides; no close frame comes.
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    assert ws.protocol.close_rcvd is None


def test_non_101_answer_is_an_ordinary_response(ws_gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(ws_url(ws_gateway, "plain", "/forbidden"), **NO_PINGS)
    response = info.value.response
    assert response.status_code == 403
    assert response.body == b"no websocket here\n"
    assert response.headers["Connection"] == "close"


def test_h2c_upgrade_is_not_forwarded(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gateway = make_gateway(gateway_config(backend.url))
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    request = (
        b"GET /one HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        # More requests in the same packet: read as HTTP/1.1.
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    responses = data.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in responses] == [b"200", b"200", b"200"]
    first = responses[0].lower()
    assert b"get /one" in first
    assert b"x-seen-upgrade" not in first and b"x-seen-http2-settings" not in first
    assert b"h2c" not in first
    assert responses[1].endswith(b"5\r\nhello\r\n0\r\n\r\n")
    assert b"get /three" in responses[2].lower()


def test_tunnel_outlives_a_reload(
    echo_server: EchoServer, make_gateway: Callable[..., Gateway]
) -> None:
    """A reload drains the old config's connections: idle keep-alive ones are closed after a
    short grace, but an open tunnel lives on (until it ends or DRAIN_TIMEOUT)."""
    gateway = make_gateway(gateway_config(echo_server.url))
    with ws_connect(ws_url(gateway, "public"), **NO_PINGS) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        gateway.proc.send_signal(signal.SIGHUP)
        for _ in range(200):
            if "outwork: reloaded" in gateway.stderr():
                break
            time.sleep(0.05)
        assert "outwork: reloaded" in gateway.stderr()
        time.sleep(DRAIN_IDLE_GRACE + 1)  # past the grace that closes idle connections
        ws.send("after")
        assert ws.recv(timeout=10) == "after"
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000


def test_tunnel_to_a_tls_upstream(make_gateway: Callable[..., Gateway], tmp_path: Path) -> None:
    """wss to the backend: the tunnel runs over the gateway's own TLS client to the upstream."""
    pki = make_pki(tmp_path / "pki")
    cert, key = leaf(pki, tmp_path, "ws-backend")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = EchoServer(context)
    try:
        upstream = {"targets": [server.url], "tls": {"ca": str(pki.ca_cert)}}
        gateway = make_gateway(gateway_config(server.url, upstreams={"backend": upstream}))
        with ws_connect(ws_url(gateway, "public"), **NO_PINGS) as ws:
            ws.send("over upstream TLS")
            assert ws.recv(timeout=10) == "over upstream TLS"
            big = os.urandom(3 * 1024 * 1024)
            ws.send(big)
            assert ws.recv(timeout=60) == big
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000
    finally:
        server.stop()
