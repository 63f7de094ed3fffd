"""Connection caps per listener and per client address, with raw sockets against a real
gateway: the connection past a cap is closed at once, the others keep working, closing one
frees a slot; the count holds across a reload while old connections drain."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, Backend, Gateway, gateway_config
from tests.proxy.test_gateway import curl


def open_connection(url: str, source: str = "127.0.0.1") -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection(
        (parts.hostname, parts.port), timeout=10, source_address=(source, 0)
    )


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """One response (the demo backend's have a Content-Length): (status, head + body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        body += chunk
    return int(head.split(b" ")[1]), head + b"\r\n\r\n" + body


def get(sock: socket.socket, path: str = "/") -> int:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    return read_response(sock)[0]


def is_refused(sock: socket.socket) -> bool:
    """Closed by the gateway without a byte (reset or FIN); False if it stays open."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def served_again(url: str, source: str = "127.0.0.1") -> bool:
    """A slot frees once the gateway has seen a close: retried until then (bounded)."""
    for _ in range(100):
        with open_connection(url, source) as sock:
            try:
                if get(sock) == 200:
                    return True
            except (ConnectionError, OSError):
                pass
        time.sleep(0.1)
    return False


def metric(gateway: Gateway, line_start: str) -> int:
    text = curl(f"{gateway.admin_url}/metrics").stdout.decode()
    for line in text.splitlines():
        if line.startswith(line_start):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def security_events(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def capped_gateway(
    make_gateway: Callable[..., Gateway], backend: Backend, **listener: object
) -> Gateway:
    config = gateway_config(
        backend.url,
        listeners=[{"name": "public", "bind": "127.0.0.1:0", **listener}],
        logging={"security_events": "events.jsonl"},
    )
    return make_gateway(config)


def test_connection_past_max_connections_is_closed_and_a_slot_frees(
    make_gateway: Callable[..., Gateway], backend: Backend, tmp_path: Path
) -> None:
    gateway = capped_gateway(make_gateway, backend, max_connections=3)
    url = gateway.url
    held = [open_connection(url) for _ in range(3)]
    assert [get(sock) for sock in held] == [200, 200, 200]
    extra = open_connection(url)
    assert is_refused(extra)
    extra.close()
    # The three admitted ones keep working.
    assert [get(sock) for sock in held] == [200, 200, 200]
    assert metric(gateway, 'outwork_requests_refused_total{reason="max_connections"}') == 1
    (event,) = [e for e in security_events(tmp_path) if e["event"] == "conn.limit_reached"]
    assert event["listener"] == "public"
    assert event["detail"] == {"limit": "max_connections", "max": 3}
    assert metric(gateway, "outwork_connections_active") == 3
    held.pop().close()
    assert served_again(url)
    for sock in held:
        sock.close()


def test_connection_past_max_connections_per_ip_is_closed_others_are_not(
    make_gateway: Callable[..., Gateway], backend: Backend
) -> None:
    gateway = capped_gateway(make_gateway, backend, max_connections=10, max_connections_per_ip=2)
    url = gateway.url
    held = [open_connection(url) for _ in range(2)]
    assert [get(sock) for sock in held] == [200, 200]
    extra = open_connection(url)
    assert is_refused(extra)
    extra.close()
    # Another client address still gets in (all of 127.0.0.0/8 is loopback on Linux).
    with open_connection(url, source="127.0.0.2") as other:
        assert get(other) == 200
    assert [get(sock) for sock in held] == [200, 200]
    reason = 'outwork_requests_refused_total{reason="max_connections_per_ip"}'
    assert metric(gateway, reason) == 1
    held.pop().close()
    assert served_again(url)
    held[0].close()


def test_refused_before_any_tls_work(
    make_gateway: Callable[..., Gateway], backend: Backend, tmp_path: Path
) -> None:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    tls = {"certificates": [{"cert": "cert.pem", "key": "key.pem"}]}
    gateway = capped_gateway(make_gateway, backend, max_connections=1, tls=tls)
    url = gateway.url
    held = open_connection(url)  # silent: holds the only slot without a handshake
    time.sleep(0.2)  # let the gateway accept it before the next one (ordering, not a threshold)
    extra = open_connection(url)
    extra.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a record, never looked at
    assert is_refused(extra)
    extra.close()
    assert metric(gateway, 'outwork_requests_refused_total{reason="max_connections"}') == 1
    # No handshake was attempted on it: no TLS failure counted or logged.
    assert metric(gateway, "outwork_tls_handshake_failures_total") == 0
    assert not [e for e in security_events(tmp_path) if e["event"] == "tls.handshake_failed"]
    held.close()
    for _ in range(100):
        result = curl("--cacert", str(tmp_path / "cert.pem"), url + "/")
        if result.returncode == 0:
            break
        time.sleep(0.1)
    assert result.stdout == b"hello from the outwork demo backend\n"


def test_cap_counts_connections_of_a_draining_config_after_reload(
    make_gateway: Callable[..., Gateway], backend: Backend
) -> None:
    gateway = capped_gateway(make_gateway, backend, max_connections=2)
    url = gateway.url
    held = [open_connection(url) for _ in range(2)]
    assert [get(sock) for sock in held] == [200, 200]
    # Requests in flight keep both connections open through the reload (they drain).
    for sock in held:
        sock.sendall(b"GET /slow?s=3 HTTP/1.1\r\nHost: gw\r\n\r\n")
    gateway.proc.send_signal(signal.SIGHUP)
    for _ in range(200):
        if "outwork: reloaded" in gateway.stderr():
            break
        time.sleep(0.05)
    assert "outwork: reloaded" in gateway.stderr()
    # The new config's state starts with no connections of its own, but the cap is the
    # listener's: the two draining ones still hold both slots.
    extra = open_connection(url)
    assert is_refused(extra)
    extra.close()
    for sock in held:
        status, response = read_response(sock)
        assert status == 200 and b"connection: close" in response.lower()
        sock.close()
    assert served_again(url)


@pytest.mark.parametrize(("key", "value"), [("max_connections", 0), ("max_connections_per_ip", -1)])
def test_caps_must_be_positive(key: str, value: int, tmp_path: Path) -> None:
    config = tmp_path / "outwork.yaml"
    config.write_text(
        "listeners:\n"
        f"  - {{name: public, bind: '127.0.0.1:0', {key}: {value}}}\n"
        "routes: []\n"
        "upstreams: {}\n"
    )
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "outwork"), "check", "-c", str(config)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert f"{config}:2:" in result.stderr + result.stdout
    assert key in result.stderr + result.stdout
