"""The admin listener: /metrics (parsed by prometheus_client) after real traffic, /healthz,
/readyz, its bounds; and the sum over `workers: N` processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Backend, Gateway, gateway_config, metric_sample, metric_sum
from tests.proxy.test_listener_tls import (  # noqa: F401 (pki: a fixture)
    Pki,
    pki,
    port_of,
    read_lines,
    s_client,
    tls_config,
)
from tests.proxy.test_workers import wait_for, worker_pids

# A heartbeat request record (type 24) claiming 16 KiB of payload and carrying none, sent
# before any ClientHello: the classic Heartbleed probe.
HEARTBLEED_PROBE = bytes([24, 3, 3, 0, 3]) + b"\x01\x40\x00"


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


def get(url: str, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One request on a new connection."""
    conn = http.client.HTTPConnection(*address(url), timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def raw(url: str, data: bytes) -> bytes:
    """Send bytes on a new connection; everything received until the peer closes."""
    with socket.create_connection(address(url), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_requests_latency_404_and_refusals_are_counted(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(
        gateway_config(
            backend.url,
            routes=[{"match": {"path_prefix": "/api"}, "upstream": "api"}],
            upstreams={"api": {"targets": [backend.url]}},
        )
    )
    for i in range(3):
        assert get(gw.url, f"/api/{i}")[0] == 200
    assert get(gw.url, "/elsewhere")[0] == 404
    refused = raw(
        gw.url,
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert refused.startswith(b"HTTP/1.1 400 ")

    text = gw.scrape()
    # The route has no name (routing in this branch): counted under its upstream's name.
    assert metric_sample(text, "outwork_requests_total", route="api", status="200") == 3
    assert metric_sample(text, "outwork_requests_total", route="none", status="404") == 1
    assert metric_sample(text, "outwork_requests_total", route="none", status="400") == 1
    assert metric_sample(text, "outwork_requests_refused_total", reason="400") == 1
    for family in ("outwork_request_duration_seconds", "outwork_upstream_response_seconds"):
        assert metric_sample(text, family + "_count", route="api") == 3
        assert metric_sample(text, family + "_bucket", route="api", le="+Inf") == 3
        assert metric_sample(text, family + "_sum", route="api") > 0
    # Buckets are cumulative: never decreasing, ending at the count.
    buckets = [
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "outwork_request_duration_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket") and sample.labels["route"] == "api"
    ]
    assert len(buckets) > 10 and buckets == sorted(buckets) and buckets[-1] == 3
    # The gateway's own answers never went upstream: no upstream time for them.
    assert metric_sample(text, "outwork_upstream_response_seconds_count", route="none") == 0
    assert metric_sample(text, "outwork_request_duration_seconds_count", route="none") == 2
    assert metric_sample(text, "outwork_connections_accepted_total") >= 5
    assert metric_sample(text, "outwork_upstream_healthy", upstream="api", target=backend.address)
    assert metric_sample(text, "outwork_workers_reporting") == 1


def test_upstream_health_and_errors(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    up, down = make_backend("up"), make_backend("down")
    dead = down.address
    down.stop()  # nothing listens there any more: a connect error
    gw = make_gateway(
        gateway_config(
            up.url,
            routes=[
                {"match": {"path_prefix": "/dead"}, "upstream": "dead"},
                {"match": {"path_prefix": "/"}, "upstream": "backend"},
            ],
            upstreams={"backend": {"targets": [up.url]}, "dead": {"targets": [f"http://{dead}"]}},
        )
    )
    assert get(gw.url, "/dead")[0] == 502
    assert get(gw.url, "/")[0] == 200
    text = gw.scrape()
    errors = metric_sample(text, "outwork_upstream_errors_total", upstream="dead", kind="connect")
    assert errors == 1
    healthy = metric_sample(text, "outwork_upstream_healthy", upstream="backend", target=up.address)
    assert healthy == 1
    assert metric_sample(text, "outwork_requests_total", route="dead", status="502") == 1


def test_tls_handshakes_by_version_suite_group_and_probes(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,  # noqa: F811
    tmp_path: Path,
) -> None:
    backend = make_backend()
    gw = make_gateway(tls_config(backend, pki, tmp_path))
    out = s_client(
        port_of(gw),
        pki.ca,
        "-tls1_3",
        "-groups",
        "X25519",
        "-ciphersuites",
        "TLS_AES_128_GCM_SHA256",
    )
    assert "HTTP/1.1 200 " in out, out
    raw(gw.urls["public"], HEARTBLEED_PROBE)
    text = gw.scrape()
    labels = {
        "listener": "public",
        "version": "1.3",
        "cipher": "TLS_AES_128_GCM_SHA256",
        "group": "x25519",
    }
    assert metric_sample(text, "outwork_tls_handshakes_total", **labels) == 1
    assert metric_sum(text, "outwork_tls_handshakes_total") == 1
    assert metric_sample(text, "outwork_security_events_total", event="tls.heartbleed_probe") == 1
    assert metric_sum(text, "outwork_tls_handshake_failures_total") >= 1  # the probe's alert
    # The access log has the handshake's duration on the connection's request.
    (line,) = read_lines(tmp_path / "access.jsonl", 1)
    assert line["tls"]["group"] == "x25519" and line["tls_ms"] > 0


def test_counters_carry_on_across_a_reload(gateway: Gateway) -> None:
    for i in range(3):
        assert get(gateway.url, f"/{i}")[0] == 200
    gateway.proc.send_signal(signal.SIGHUP)  # one process: a new config state, same counters
    wait_for(lambda: "outwork: reloaded" in gateway.stderr())
    assert get(gateway.url, "/after")[0] == 200
    text = gateway.scrape()
    assert metric_sample(text, "outwork_requests_total", route="backend", status="200") == 4
    assert metric_sample(text, "outwork_request_duration_seconds_count", route="backend") == 4


def test_healthz_readyz_and_head(gateway: Gateway) -> None:
    assert get(gateway.admin_url or "", "/healthz") == (200, b"ok\n")
    assert get(gateway.admin_url or "", "/readyz") == (200, b"ready\n")
    status, body = get(gateway.admin_url or "", "/metrics", "HEAD")
    assert status == 200 and body == b""
    assert get(gateway.admin_url or "", "/nothing")[0] == 404
    assert get(gateway.admin_url or "", "/metrics", "POST")[0] == 405


# --- workers ---------------------------------------------------------------------------------


def workers_config(backend: Backend, **extra: Any) -> dict[str, Any]:
    return {**gateway_config(backend.url), "workers": 2, **extra}


def total_requests(gw: Gateway) -> float:
    return metric_sum(gw.scrape(), "outwork_requests_total")


def test_metrics_are_summed_over_workers_and_survive_replacement(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    backend = make_backend()
    gw = make_gateway(workers_config(backend, logging={"access_log": "access.jsonl"}))
    wait_for(lambda: len(worker_pids(gw)) == 2)
    sent = 0
    for i in range(200):  # a new connection each: SO_REUSEPORT spreads them
        assert get(gw.url, f"/{i}")[0] == 200
        sent += 1
    wait_for(lambda: total_requests(gw) == sent)
    assert metric_sample(gw.scrape(), "outwork_workers_reporting") == 2
    # Both workers served (each access-log request id starts with its process's prefix).
    lines = [json.loads(line) for line in (tmp_path / "access.jsonl").read_text().splitlines()]
    assert len({line["request_id"].split("-")[0] for line in lines}) == 2

    # A worker that exits is replaced; what it counted stays in the sum.
    victim = max(worker_pids(gw))
    os.kill(victim, signal.SIGTERM)
    wait_for(lambda: victim not in worker_pids(gw) and len(worker_pids(gw)) == 2)
    for i in range(10):
        assert get(gw.url, f"/after/{i}")[0] == 200
        sent += 1
    wait_for(lambda: total_requests(gw) == sent)

    # A reload replaces every worker, the admin's too: the totals carry on.
    before = worker_pids(gw)
    gw.proc.send_signal(signal.SIGHUP)

    def reloaded() -> bool:
        # Ready throughout: the old workers drain while the new ones serve.
        assert get(gw.admin_url or "", "/readyz") == (200, b"ready\n")
        return not (worker_pids(gw) & before) and len(worker_pids(gw)) == 2

    wait_for(reloaded)
    wait_for(lambda: metric_sample(gw.scrape(), "outwork_workers_reporting") == 2)
    assert total_requests(gw) == sent
    assert get(gw.url, "/last")[0] == 200
    wait_for(lambda: total_requests(gw) == sent + 1)


def test_readyz_is_503_while_draining(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(workers_config(backend))
    admin = gw.admin_url or ""
    wait_for(lambda: get(admin, "/readyz") == (200, b"ready\n"))
    slow = subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", gw.url + "/slow?s=3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: metric_sample(gw.scrape(), "outwork_connections_active") == 1)
    gw.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: get(admin, "/readyz") == (503, b"stopping\n"))
    assert get(admin, "/healthz") == (200, b"ok\n")  # alive while draining
    assert slow.poll() is None  # the request is still in flight
    out, err = slow.communicate(timeout=15)
    assert out == b"200", err
    assert gw.proc.wait(15) == 0
