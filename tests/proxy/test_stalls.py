"""Stalled and unusual clients leave no lasting harm: an upstream connection a slow HTTP/2
client paused is pooled reading again; a client that reads slowly is timed out itself, never
blamed on the target; a connection closed with unsent output frees its slot; one request gets
one response; a half-close keeps the answers already owed; a WebSocket upgrade as the last
request tunnels; a renamed listener keeps its connection cap."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from websockets.sync.client import connect as ws_connect

from tests.conftest import Backend, Gateway, gateway_config, metric_sum
from tests.proxy import test_listener_tls
from tests.proxy.h2_client import H2Client
from tests.proxy.test_listener_tls import Pki, tls_config
from tests.proxy.test_websocket import NO_PINGS, EchoServer

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_until(check: Callable[[], bool], what: str, seconds: float = 20) -> None:
    """Poll until `check()` holds; the bound only stops a broken gateway from hanging the test."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def slow_reader(port: int, request: bytes) -> socket.socket:
    """A client with a tiny receive buffer that sends `request` and then reads nothing."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    sock.sendall(request)
    return sock


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(20)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_an_upstream_connection_paused_by_an_h2_client_is_pooled_reading(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    config["upstreams"]["backend"].update(read_timeout=2, retries=0)
    gw = make_gateway(config)
    plain = gw.urls["plain"]
    assert status_of(plain + "/") == 200  # one pooled upstream connection
    client = H2Client(port_of(gw.urls["public"]), pki.ca)
    try:
        # Twice the client's initial window: the gateway holds the rest for it, pausing the
        # upstream connection in the very read that also ends the response.
        sid = client.start("/bytes?n=131072")
        time.sleep(1.0)  # the client reads nothing meanwhile
        assert status_of(plain + "/") == 200  # on the same, pooled, connection
        assert gw.metric("outwork_upstream_connections_opened_total", upstream="backend") == 1
        response = client.wait(sid)[0]
        assert response.status == 200 and len(response.body) == 131072
    finally:
        client.sock.close()


def test_a_slow_reading_client_is_cut_and_its_target_stays_in_rotation(
    backend: Backend, make_gateway: Callable[..., Gateway]
) -> None:
    config = gateway_config(backend.url, limits={"idle_timeout": 2})
    config["upstreams"]["backend"].update(
        read_timeout=1, passive_health={"consecutive_failures": 1, "ejection_time": "60s"}
    )
    gw = make_gateway(config)
    sock = slow_reader(port_of(gw.url), b"GET /bytes?n=20000000 HTTP/1.1\r\nhost: x\r\n\r\n")
    try:
        time.sleep(3)  # past the upstream's read timeout, the client still not reading
        # The target was not blamed for the client's stall: still in rotation.
        assert status_of(gw.url + "/") == 200
        # The client's own stall timeout cut it (and dropped its upstream connection).
        wait_until(lambda: gw.metric("outwork_connections_active") == 0, "slow reader cut")
        assert metric_sum(gw.scrape(), "outwork_upstream_errors_total") == 0
        assert gw.metric("outwork_upstream_healthy", upstream="backend", target=backend.address)
        assert "ejected" not in gw.stderr()
    finally:
        sock.close()


def test_a_connection_closed_with_unsent_output_frees_its_slot(
    backend: Backend, make_gateway: Callable[..., Gateway]
) -> None:
    config = gateway_config(
        backend.url,
        listeners=[{"name": "public", "bind": "127.0.0.1:0", "max_connections_per_ip": 1}],
        limits={"idle_timeout": 1},
    )
    gw = make_gateway(config)
    request = b"GET /bytes?n=2400000 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    sock = slow_reader(port_of(gw.url), request)
    try:
        # The response is written, the connection closed behind it; the client never reads:
        # it is aborted, and the address's one slot is free again.
        wait_until(lambda: gw.metric("outwork_connections_active") == 0, "closed client cut")
        assert status_of(gw.url + "/") == 200
    finally:
        sock.close()


def test_a_request_answered_early_gets_one_response_when_its_body_stalls(
    backend: Backend, make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    config = gateway_config(
        backend.url,
        routes=[{"match": {"path_prefix": "/api"}, "upstream": "backend"}],
        limits={"body_timeout": 1},
        logging={"access_log": "access.jsonl"},
    )
    gw = make_gateway(config)
    sock = socket.create_connection(("127.0.0.1", port_of(gw.url)))
    with sock:
        head = b"POST /nothere HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n"
        sock.sendall(head + b"a" * 1000)  # then nothing: the body stalls
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 404 ")
    assert data.count(b"HTTP/1.1 ") == 1, data
    wait_until(lambda: (tmp_path / "access.jsonl").exists(), "access log written")
    time.sleep(0.5)  # the access log is flushed on the gateway's tick
    lines = (tmp_path / "access.jsonl").read_text().splitlines()
    assert [json.loads(line)["status"] for line in lines] == [404]
    assert metric_sum(gw.scrape(), "outwork_requests_total") == 1


def test_a_request_answered_early_gets_one_response_when_its_body_is_malformed(
    backend: Backend, make_gateway: Callable[..., Gateway]
) -> None:
    config = gateway_config(
        backend.url, routes=[{"match": {"path_prefix": "/api"}, "upstream": "backend"}]
    )
    gw = make_gateway(config)
    sock = socket.create_connection(("127.0.0.1", port_of(gw.url)))
    with sock:
        head = b"POST /nothere HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        sock.sendall(head + b"5\r\nhello\r\n")
        sock.settimeout(20)
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 404 ")
        sock.sendall(b"zz\r\nnot a chunk\r\n")  # the rest of the body, malformed
        data = first + read_all(sock)
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert metric_sum(gw.scrape(), "outwork_requests_total") == 1


def test_a_half_close_in_a_body_still_answers_the_requests_before_it(
    backend: Backend, make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(gateway_config(backend.url))
    sock = socket.create_connection(("127.0.0.1", port_of(gw.url)))
    with sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n" + b"b" * 10
        )
        sock.shutdown(socket.SHUT_WR)  # the POST's body can never complete
        data = read_all(sock)
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.count(b"HTTP/1.1 ") == 1, data  # the cut-short POST is not answered


def test_a_websocket_upgrade_as_the_last_request_tunnels(
    make_gateway: Callable[..., Gateway],
) -> None:
    echo = EchoServer()
    try:
        gw = make_gateway(gateway_config(echo.url, limits={"max_requests_per_connection": 1}))
        url = gw.url.replace("http://", "ws://") + "/chat"
        with ws_connect(url, open_timeout=10, **NO_PINGS) as ws:
            ws.send("hello")
            assert ws.recv(timeout=20) == "hello"
    finally:
        echo.stop()


def test_a_listener_renamed_by_a_reload_keeps_its_connection_cap(
    backend: Backend, make_gateway: Callable[..., Gateway]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        bind = f"127.0.0.1:{probe.getsockname()[1]}"
    config: dict[str, Any] = gateway_config(
        backend.url, listeners=[{"name": "a", "bind": bind, "max_connections": 1}]
    )
    gw = make_gateway(config)
    port = port_of(gw.urls["a"])
    held = socket.create_connection(("127.0.0.1", port))
    with held:
        # In the middle of a body: busy, so the reload's drain leaves it open.
        held.sendall(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        wait_until(lambda: gw.metric("outwork_connections_active") == 1, "held connection")
        config["listeners"][0]["name"] = "b"
        gw.config_file.write_text(yaml.safe_dump(config))
        gw.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "outwork: reloaded" in gw.stderr(), "reload")
        # The same socket, renamed: the draining connection still holds its one slot.
        assert gw.metric("outwork_requests_refused_total", reason="max_connections") == 0
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_all(extra) == b""
        assert gw.metric("outwork_requests_refused_total", reason="max_connections") == 1
        held.sendall(b"defghij")  # the held request completes, and is answered
        assert read_all(held).startswith(b"HTTP/1.1 200 ")
