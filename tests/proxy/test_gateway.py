"""The gateway as a client sees it: real backend, real `outwork serve`, curl and raw sockets."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Backend, Gateway, gateway_config, metric_sample


def curl(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(timeout), *args], capture_output=True, timeout=timeout + 5
    )


def status_of(url: str, *args: str) -> int:
    result = curl("-o", "/dev/null", "-w", "%{http_code}", *args, url)
    return int(result.stdout or b"0")


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the gateway closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def backend_stats(backend: Backend) -> dict[str, int]:
    """What the backend saw, not counting this question itself (one connection, one request)."""
    stats = json.loads(curl(f"{backend.url}/stats").stdout)
    return {
        "connections": stats["connections"] - 1,
        "open": stats["open"] - 1,
        "requests": stats["requests"] - 1,
    }


def test_get_returns_the_backend_body(gateway: Gateway) -> None:
    result = curl("-i", gateway.url + "/")
    assert result.returncode == 0
    assert result.stdout.startswith(b"HTTP/1.1 200 ")
    assert result.stdout.endswith(b"\r\n\r\nhello from the outwork demo backend\n")


def test_forwarded_headers_and_hop_by_hop_removed(gateway: Gateway) -> None:
    result = curl(
        "-i",
        "-H",
        "Connection: keep-alive, x-secret",
        "-H",
        "x-secret: 1",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "X-Forwarded-For: 6.6.6.6",
        gateway.url + "/seen",
    )
    head = result.stdout.split(b"\r\n\r\n")[0].lower()
    assert b"x-seen-x-forwarded-for: 127.0.0.1" in head
    assert b"x-seen-x-forwarded-proto: http" in head
    assert b"x-seen-x-secret" not in head and b"x-seen-keep-alive" not in head
    assert b"x-seen-connection" not in head
    assert b"6.6.6.6" not in head  # the client's own claim is dropped, ours replaces it


def test_routes_longest_prefix_and_exact_path(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    a, b = make_backend("a"), make_backend("b")
    config = gateway_config(
        a.url,
        routes=[
            {"match": {"path_prefix": "/"}, "upstream": "a"},
            {"match": {"path_prefix": "/api"}, "upstream": "b"},
            {"match": {"path_prefix": "/api/v2"}, "upstream": "a"},
            {"match": {"path": "/api/v2/special"}, "upstream": "b"},
        ],
        upstreams={"a": {"targets": [a.url]}, "b": {"targets": [b.url]}},
    )
    gw = make_gateway(config)

    def served_by(path: str) -> str:
        head = curl("-I", gw.url + path).stdout.lower()
        return head.split(b"x-backend: ")[1].split(b"\r\n")[0].decode()

    assert served_by("/") == "a"
    assert served_by("/api") == "b"
    assert served_by("/api/users?x=1") == "b"
    assert served_by("/api/v2/users") == "a"
    assert served_by("/api/v2/special") == "b"
    assert served_by("/api/v2/special/more") == "a"


def test_no_route_is_404(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(
        gateway_config(
            backend.url, routes=[{"match": {"path_prefix": "/api/"}, "upstream": "backend"}]
        )
    )
    result = curl("-i", gw.url + "/other")
    assert result.stdout.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert status_of(gw.url + "/api/x") == 200
    assert backend_stats(backend)["requests"] == 1  # the 404 never reached the backend


def test_upstream_connections_are_reused(gateway: Gateway, backend: Backend) -> None:
    for i in range(20):  # separate client connections, one at a time
        assert status_of(f"{gateway.url}/n{i}") == 200
    # One keep-alive connection from the gateway served all of them.
    assert backend_stats(backend) == {"connections": 1, "open": 1, "requests": 20}
    metrics = gateway.scrape()
    opened = metric_sample(metrics, "outwork_upstream_connections_opened_total", upstream="backend")
    assert opened == 1
    assert metric_sample(metrics, "outwork_requests_total", route="backend", status="200") == 20


def test_idle_pool_is_capped(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    config = gateway_config(backend.url)
    config["upstreams"]["backend"]["max_idle_connections"] = 1
    gw = make_gateway(config)
    # Three concurrent slow requests need three upstream connections; only one stays idle.
    procs = [
        subprocess.Popen(["curl", "-s", "-o", "/dev/null", f"{gw.url}/slow?s=0.5"])
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.wait(10) == 0
    time.sleep(0.2)
    assert backend_stats(backend)["open"] == 1  # the two extra connections were closed
    for _ in range(3):
        assert status_of(f"{gw.url}/") == 200
    # 3 from the gateway (the idle one was reused), 1 from the earlier /stats question
    assert backend_stats(backend)["connections"] == 3 + 1


def hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_bodies_stream_both_ways_without_buffering(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    backend = make_backend()
    size = 96 * 1024 * 1024
    config = gateway_config(backend.url, limits={"max_request_body": 2 * size})
    gw = make_gateway(config)
    assert status_of(gw.url + "/") == 200
    baseline = hwm_kib(gw.proc.pid)

    body = tmp_path / "body"
    with open(body, "wb") as f:
        block = bytes(range(256)) * 4096
        for _ in range(size // len(block)):
            f.write(block)
    echoed = tmp_path / "echoed"
    result = curl("--data-binary", f"@{body}", "-o", str(echoed), gw.url + "/echo", timeout=60)
    assert result.returncode == 0, result.stderr
    assert (
        hashlib.sha256(echoed.read_bytes()).digest() == hashlib.sha256(body.read_bytes()).digest()
    )

    result = curl("-o", str(echoed), f"{gw.url}/bytes?n={size}", timeout=60)
    assert result.returncode == 0 and echoed.stat().st_size == size

    grown_mib = (hwm_kib(gw.proc.pid) - baseline) / 1024
    assert grown_mib < 24, f"gateway memory grew by {grown_mib:.0f} MiB for {size >> 20} MiB bodies"


def test_chunked_request_body_is_forwarded(gateway: Gateway) -> None:
    result = curl(
        "-H", "Transfer-Encoding: chunked", "--data-binary", "x" * 100000, gateway.url + "/echo"
    )
    assert result.stdout == b"x" * 100000


def test_chunked_and_close_delimited_responses(gateway: Gateway) -> None:
    assert curl(f"{gateway.url}/bytes?n=70000&chunked=1").stdout == b"x" * 70000
    result = curl("-i", f"{gateway.url}/close")
    assert result.stdout.endswith(b"close-delimited body\n")
    assert b"transfer-encoding: chunked" in result.stdout.lower()  # re-framed for the client


def test_http10_client_gets_close_delimited_body(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    sock.sendall(b"GET /bytes?n=1000&chunked=1 HTTP/1.0\r\n\r\n")
    response = read_all(sock)
    head, body = response.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower()
    assert body == b"x" * 1000


def test_http10_request_without_host_gets_the_upstream_authority(
    gateway: Gateway, backend: Backend
) -> None:
    """Sent upstream as HTTP/1.1, which needs a Host (nginx answers 400 without one)."""
    for request, host in (
        (b"GET /seen HTTP/1.0\r\n\r\n", backend.address.encode()),
        (b"GET /seen HTTP/1.0\r\nHost: api.example\r\n\r\n", b"api.example"),
    ):
        sock = connect(gateway.url)
        sock.sendall(request)
        head = read_all(sock).split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200")
        assert head.count(b"x-seen-host:") == 1
        assert b"x-seen-host: " + host + b"\r\n" in head + b"\r\n"


def test_head_204_and_304_have_no_body(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    sock.sendall(
        b"HEAD /bytes?n=5000 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /status?code=204 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET /status?code=304 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    response = read_all(sock)
    parts = response.split(b"HTTP/1.1 ")[1:]
    assert [p[:3] for p in parts] == [b"200", b"204", b"304", b"200"]
    assert b"content-length: 5000\r\n\r\n" in parts[0].lower() and parts[0].endswith(b"\r\n\r\n")
    assert parts[3].endswith(b"hello from the outwork demo backend\n")


def test_pipelined_requests_are_answered_in_order(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    requests = b"".join(
        b"GET /slow?s=%s HTTP/1.1\r\nHost: a\r\n\r\n" % delay for delay in (b"0.3", b"0", b"0.1")
    )
    requests += b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    requests += b"GET /last HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    sock.sendall(requests)
    response = read_all(sock)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in response.split(b"HTTP/1.1 200 ")[1:]]
    assert bodies[:3] == [b"GET /slow\n"] * 3
    assert bodies[3] == b"5\r\nhello\r\n0\r\n\r\n"
    assert bodies[4] == b"GET /last\n"


def test_content_length_with_transfer_encoding_is_400_and_closed(
    gateway: Gateway, backend: Backend
) -> None:
    sock = connect(gateway.url)
    sock.sendall(
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    )
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close" in response.lower()
    assert response.count(b"HTTP/1.1") == 1
    assert backend_stats(backend)["requests"] == 0


def test_pipelined_request_before_a_bad_one_is_answered_first(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"GET /first\n" in response
    assert response.split(b"GET /first\n")[1].startswith(b"HTTP/1.1 400 ")


def test_oversized_head_is_431(gateway: Gateway) -> None:
    assert status_of(gateway.url + "/", "-H", "X-Big: " + "a" * 70000) == 431


def test_oversized_body_is_413(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(gateway_config(backend.url, limits={"max_request_body": 1000}))
    assert status_of(gw.url + "/echo", "--data-binary", "x" * 1001) == 413
    assert status_of(gw.url + "/echo", "--data-binary", "x" * 1000) == 200
    chunked = curl(
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "x" * 5000,
        gw.url + "/echo",
    )
    assert chunked.stdout in (b"413", b"000")  # 413, unless the cut races the upload


def test_upstream_refused_is_502(make_gateway: Callable[..., Gateway]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    gw = make_gateway(gateway_config(f"http://127.0.0.1:{port}"))
    result = curl("-i", gw.url + "/")
    assert result.stdout.startswith(b"HTTP/1.1 502 Bad Gateway\r\n")
    assert b"Traceback" not in result.stdout


def test_upstream_reset_and_garbage_are_502(gateway: Gateway) -> None:
    assert status_of(gateway.url + "/reset") == 502
    assert status_of(gateway.url + "/garbage") == 502
    assert status_of(gateway.url + "/") == 200  # and the gateway is fine


def test_upstream_timeout_is_504(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    config = gateway_config(backend.url)
    config["upstreams"]["backend"]["read_timeout"] = 0.5
    gw = make_gateway(config)
    started = time.monotonic()
    assert status_of(gw.url + "/slow?s=5") == 504
    assert time.monotonic() - started < 3
    assert status_of(gw.url + "/slow?s=0") == 200


def test_header_timeout_answers_408_to_a_partial_head_and_closes_a_silent_one(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(gateway_config(backend.url, limits={"header_timeout": 0.5}))
    sock = connect(gw.url)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # never finished
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in response.lower()
    silent = connect(gw.url)  # nothing sent: nothing to answer, just closed
    assert read_all(silent) == b""
    assert backend_stats(backend)["requests"] == 0


def test_half_closed_client_still_gets_its_answer(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    sock.sendall(b"GET /half HTTP/1.1\r\nHost: a\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)
    assert read_all(sock).endswith(b"GET /half\n")


def test_expect_100_continue(gateway: Gateway) -> None:
    result = curl("-H", "Expect: 100-continue", "--data-binary", "y" * 2000, gateway.url + "/echo")
    assert result.stdout == b"y" * 2000


def test_admin_healthz_and_metrics(gateway: Gateway) -> None:
    assert curl(f"{gateway.admin_url}/healthz").stdout == b"ok\n"
    curl(gateway.url + "/")
    metrics = curl(f"{gateway.admin_url}/metrics").stdout.decode()
    assert metric_sample(metrics, "outwork_requests_total", route="backend", status="200") == 1
    assert 'outwork_security_events_total{event="tls.heartbleed_probe"} 0.0' in metrics
    assert "# TYPE outwork_tls_handshake_failures_total counter" in metrics


def test_sigterm_stops_cleanly(gateway: Gateway) -> None:
    sock = connect(gateway.url)  # an idle client connection must not block the exit
    assert gateway.stop() == 0
    assert read_all(sock) == b""
    assert "Traceback" not in gateway.stderr()


def test_many_bad_clients_do_not_disturb_a_good_one(gateway: Gateway) -> None:
    good = connect(gateway.url)
    good.sendall(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert good.recv(65536).startswith(b"HTTP/1.1 200")
    for i in range(100):
        bad = connect(gateway.url)
        bad.sendall([b"\x16\x03\x01\x00\x05hello", b"GET / HTTP/9\r\n\r\n", b"\x00" * 100][i % 3])
        bad.close()
    good.sendall(b"GET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert read_all(good).endswith(b"GET /2\n")
    assert "Traceback" not in gateway.stderr()


@pytest.mark.parametrize("method", [b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
def test_other_methods_are_forwarded(gateway: Gateway, method: bytes) -> None:
    sock = connect(gateway.url)
    sock.sendall(
        method + b" /m HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    assert read_all(sock).endswith(method + b" /m\n")


def test_dot_segments_are_resolved_before_routing(gateway: Gateway, backend: Backend) -> None:
    # Routed and forwarded as /admin: the backend sees the path the router matched.
    assert curl("--path-as-is", gateway.url + "/api/../admin").stdout == b"GET /admin\n"
    assert curl("--path-as-is", gateway.url + "/api/%2e%2e/admin").stdout == b"GET /admin\n"
    assert status_of(gateway.url + "/api/..%2fadmin", "--path-as-is") == 400
    assert backend_stats(backend)["requests"] == 2


def test_body_broken_behind_a_pending_request_is_answered_in_turn(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    sock.sendall(
        b"GET /slow?s=0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
    )
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"GET /slow\n" in response
    assert response.split(b"GET /slow\n", 1)[1].startswith(b"HTTP/1.1 400 ")
