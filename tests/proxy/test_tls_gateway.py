"""The gateway terminating TLS with outwork's own engine (the full matrix is in tests/e2e)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import ROOT, Backend, Gateway, gateway_config, metric_sum

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def tls_gateway(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> Gateway:
    subprocess.run([str(ROOT / "scripts" / "make-demo-cert"), str(tmp_path)], check=True)
    backend = make_backend()
    config = gateway_config(
        backend.url,
        listeners=[
            {
                "name": "public",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": "cert.pem", "key": "key.pem"}]},
            },
            {"name": "plain", "bind": "127.0.0.1:0"},
        ],
        logging={"security_events": "events.jsonl"},
    )
    return make_gateway(config)


def test_curl_gets_the_backend_body_over_tls13(tls_gateway: Gateway, tmp_path: Path) -> None:
    url = tls_gateway.urls["public"]
    assert url.startswith("https://")
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--tlsv1.3",
            "--cacert",
            str(tmp_path / "cert.pem"),
            "-w",
            "\n%{http_version} %{ssl_verify_result}",
            url + "/",
        ],
        capture_output=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    # HTTP/2: the listener offers h2 first by default (tls.alpn), and curl takes it.
    assert result.stdout == b"hello from the outwork demo backend\n\n2 0"
    # Keep-alive over TLS, and a body both ways.
    (tmp_path / "body").write_bytes(b"z" * 300000)
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(tmp_path / "cert.pem"),
            url + "/a",
            "--data-binary",
            f"@{tmp_path / 'body'}",
            url + "/echo",
        ],
        capture_output=True,
        timeout=20,
    )
    assert result.stdout == b"POST /a\n" + b"z" * 300000
    assert tls_gateway.urls["plain"].startswith("http://")
    assert metric_sum(tls_gateway.scrape(), "outwork_tls_handshakes_total", listener="public") == 2


def test_failed_handshakes_are_counted_and_logged(tls_gateway: Gateway, tmp_path: Path) -> None:
    parts = urlsplit(tls_gateway.urls["public"])
    for _ in range(3):
        with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # plain HTTP on the TLS port
            while sock.recv(4096):
                pass
    events_file = tmp_path / "events.jsonl"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and events_file.read_text().count("\n") < 3:
        time.sleep(0.05)
    lines = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert len(lines) == 3
    for line in lines:
        assert set(line) == {"time", "event", "peer", "listener", "detail"}
        assert RFC3339_UTC.match(line["time"])
        assert line["event"] == "tls.handshake_failed"
        assert line["listener"] == "public"
        assert re.match(r"^127\.0\.0\.1:\d+$", line["peer"])
        assert set(line["detail"]) == {"alert", "reason", "ja4"}
        assert line["detail"]["ja4"] is None  # no ClientHello was parsed
    alert = lines[0]["detail"]["alert"]
    assert tls_gateway.metric("outwork_tls_handshake_failures_total", alert=alert) == 3
    assert "Traceback" not in tls_gateway.stderr()
