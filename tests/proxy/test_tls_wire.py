"""The TLS listener's wire limits through a real gateway process, with clients built on
outwork's engine (or raw bytes) over real sockets: hello counts refused from their length
prefix (`tls.limits`), and a client that makes the gateway answer (heartbeats) but never reads
is no longer read, instead of having its answers buffered without bound."""

from __future__ import annotations

import dataclasses
import json
import select
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from outwork.tls import events as ev
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import ClientConfig
from outwork.tls.connection import ClientConnection
from outwork.tls.messages import pull_client_hello, push_client_hello
from tests.conftest import ROOT, Backend, Gateway, gateway_config

# Far more than the kernel's socket buffers on both ends can hold (loopback auto-tuning tops
# out at tens of MB): a gateway that kept reading would take all of it and buffer the answers.
PUSHED = 192 * 1024 * 1024
PAYLOAD = bytes(16_000)
STALLED = 5.0  # seconds with no room to send: the gateway has stopped reading us


@pytest.fixture
def heartbeat_gateway(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> Gateway:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    config = gateway_config(
        make_backend().url,
        listeners=[
            {
                "name": "public",
                "bind": "127.0.0.1:0",
                "tls": {
                    "certificates": [{"cert": "cert.pem", "key": "key.pem"}],
                    "alpn": ["http/1.1"],
                    "heartbeat": True,
                },
            }
        ],
        # Longer than the test's pauses: the gateway must not cut the client for them.
        limits={"header_timeout": 120, "idle_timeout": 120},
    )
    return make_gateway(config)


def connect(gateway: Gateway, ca: Path) -> tuple[socket.socket, ClientConnection]:
    parts = urlsplit(gateway.urls["public"])
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    root = x509.load_pem_x509_certificate(ca.read_bytes())
    tls = ClientConnection(
        ClientConfig(trust_roots=(root,), heartbeat=True, alpn_protocols=("http/1.1",)),
        server_name="localhost",
    )
    tls.start_handshake(time.time())
    while not tls.is_established:
        sock.sendall(tls.data_to_send())
        data = sock.recv(65536)
        assert data, "the gateway closed during the handshake"
        for event in tls.receive_data(data, time.time()):
            assert not isinstance(event, ev.ConnectionFailed), event
    sock.sendall(tls.data_to_send())
    return sock, tls


def push_without_reading(sock: socket.socket, make: Callable[[], bytes]) -> tuple[int, bytes]:
    """Send what `make` produces until the gateway stops taking it; returns the bytes sent
    and what was left unsent."""
    sock.setblocking(False)
    sent, unsent = 0, b""
    while sent < PUSHED:
        if not unsent:
            unsent = make()
        _, writable, _ = select.select([], [sock], [], STALLED)
        if not writable:
            break
        count = sock.send(unsent)
        sent, unsent = sent + count, unsent[count:]
    return sent, unsent


def read_again_and_get(sock: socket.socket, tls: ClientConnection, unsent: bytes) -> bytes:
    """Read everything the gateway answered, send the rest and a request; the response."""
    tls.send_data(b"GET /after HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    unsent += tls.data_to_send()
    body = b""
    deadline = time.monotonic() + 120
    while b"\r\n\r\n" not in body and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock] if unsent else [], [], 1.0)
        if writable:
            count = sock.send(unsent)
            unsent = unsent[count:]
        if readable:
            data = sock.recv(1 << 20)
            if not data:
                break
            for event in tls.receive_data(data, time.time()):
                assert not isinstance(event, ev.ConnectionFailed), event
                if isinstance(event, ev.ApplicationData):
                    body += event.data
            unsent += tls.data_to_send()
    return body


def test_gateway_stops_reading_a_client_that_does_not_read_its_answers(
    heartbeat_gateway: Gateway, tmp_path: Path
) -> None:
    # KeyUpdates asking for an update are the other such request: one reply stays pending at
    # a time (tests/tls/test_caps.py), and this same pause bounds what they leave unsent.
    sock, tls = connect(heartbeat_gateway, tmp_path / "cert.pem")
    assert tls.heartbeat_negotiated

    def heartbeats() -> bytes:
        for _ in range(8):
            tls.send_heartbeat_request(PAYLOAD)
        return tls.data_to_send()

    try:
        sent, unsent = push_without_reading(sock, heartbeats)
        assert sent < PUSHED, "the gateway kept reading a client that never read"
        # Reading again: the gateway goes on with what it held, and answers a request.
        response = read_again_and_get(sock, tls, unsent)
        assert response.startswith(b"HTTP/1.1 "), response[:200]
    finally:
        sock.close()


# --- hello counts -------------------------------------------------------------------------


@pytest.fixture
def two_listeners(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> Gateway:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    certificates = [{"cert": "cert.pem", "key": "key.pem"}]
    config = gateway_config(
        make_backend().url,
        listeners=[
            {"name": "public", "bind": "127.0.0.1:0", "tls": {"certificates": certificates}},
            {
                "name": "strict",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": certificates, "limits": {"max_extensions": 8}},
            },
        ],
        logging={"security_events": "events.jsonl"},
    )
    return make_gateway(config)


def hello_record(extensions: int | None = None) -> bytes:
    """outwork's own client hello (11 extensions), or one padded to `extensions` with empty
    unknown ones, split into records as a client would."""
    tls = ClientConnection(ClientConfig(verify=False), server_name="localhost")
    tls.start_handshake(time.time())
    data = tls.data_to_send()
    if extensions is None:
        return data
    hello = pull_client_hello(Reader(data[9:]))
    padding = tuple((0x7000 + i, b"") for i in range(extensions - len(hello.extensions)))
    w = Writer()
    push_client_hello(w, dataclasses.replace(hello, extensions=padding + hello.extensions))
    message = b"\x01" + len(w.getvalue()).to_bytes(3, "big") + w.getvalue()
    return b"".join(
        b"\x16\x03\x03" + len(message[i : i + 16384]).to_bytes(2, "big") + message[i : i + 16384]
        for i in range(0, len(message), 16384)
    )


def first_answer(gateway: Gateway, listener: str, data: bytes) -> bytes:
    parts = urlsplit(gateway.urls[listener])
    with socket.create_connection((parts.hostname, parts.port), timeout=20) as sock:
        sock.sendall(data)
        return sock.recv(7)


def failed_handshakes(gateway: Gateway, tmp_path: Path, count: int) -> list[dict[str, str]]:
    events_file = tmp_path / "events.jsonl"
    deadline = time.monotonic() + 20
    lines: list[dict[str, str]] = []
    while time.monotonic() < deadline and len(lines) < count:
        time.sleep(0.05)
        if events_file.exists():
            lines = [json.loads(line)["detail"] for line in events_file.read_text().splitlines()]
    return lines


def test_hello_counts_are_capped_and_the_cap_is_a_setting(
    two_listeners: Gateway, tmp_path: Path
) -> None:
    decode_error = b"\x15\x03\x03\x00\x02\x02\x32"
    # The hello: 60 KB of 15,000 empty extensions. Refused, not walked.
    assert first_answer(two_listeners, "public", hello_record(15_000)) == decode_error
    # A hello at the cap is served; the strict listener holds clients to 8.
    assert first_answer(two_listeners, "public", hello_record(64))[:1] == b"\x16"
    assert first_answer(two_listeners, "strict", hello_record()) == decode_error
    details = failed_handshakes(two_listeners, tmp_path, 2)
    assert [(d["alert"], d["reason"]) for d in details] == [
        ("decode_error", "more than 64 extensions"),
        ("decode_error", "more than 8 extensions"),
    ]
    assert two_listeners.metric("outwork_tls_handshake_failures_total", alert="decode_error") == 2
