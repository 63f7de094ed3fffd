"""Request filters through a running gateway, over HTTP/1.1 and HTTP/2 alike: a filter's answer
(status, headers, body) reaches the client, is counted by reason and by route and written as a
security event; a filter that waits holds its exchange (and, on HTTP/1.1, the requests
pipelined behind it, answered in order) until it resumes; one that raises or never resumes
ends in 500 or 504 counted as `filter_error`; a body filter refuses a body before any backend
sees it when it is small, and cuts the upstream connection when it is not.

The filters are the test-only types of tests/proxy/wire_filters.py, preloaded into the gateway.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from outwork.filters import REGISTRY
from tests.conftest import Backend, Gateway, gateway_config, metric_sample, require_tool
from tests.inproc import Response, parse_http1
from tests.proxy import test_listener_tls, wire_filters
from tests.proxy.h2_client import H2Client
from tests.proxy.test_gateway import backend_stats
from tests.proxy.test_h2 import curl_h2
from tests.proxy.test_listener_tls import Pki, port_of, read_lines

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

POLICY = {
    "guard": {
        "test_wire_deny": {},
        "test_wire_park": {"delay": 0.2},
        "test_wire_body": {"marker": "EVIL"},
        "test_wire_raise": {},
    }
}
BIG = 200 * 1024  # a body larger than what is held before the upstream is taken


@pytest.fixture(autouse=True)
def registered_filters() -> Iterator[None]:
    """The test filter types, in this process, for this module's tests only."""
    wire_filters.register()
    yield
    wire_filters.unregister()
    assert not any(name.startswith("test_wire_") for name in REGISTRY)


@pytest.fixture
def gw(make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path) -> Gateway:
    backend = make_backend()
    config = gateway_config(
        backend.url,
        listeners=[
            {"name": "plain", "bind": "127.0.0.1:0"},
            {
                "name": "public",
                "bind": "127.0.0.1:0",
                "tls": {
                    "certificates": [
                        {
                            "cert": str(pki.folder / "server.pem"),
                            "key": str(pki.folder / "server.key"),
                        }
                    ]
                },
            },
        ],
        routes=[{"name": "guarded", "match": {"path_prefix": "/"}, "upstream": "backend"}],
        upstreams={"backend": {"targets": [backend.url], "read_timeout": "2s"}},
        logging={"security_events": "events.jsonl", "access_log": "access.jsonl"},
        policies=POLICY,
        default_policies=["guard"],
    )
    gateway = make_gateway(config, preload=wire_filters.__name__)
    gateway.backend = backend  # type: ignore[attr-defined]
    return gateway


# HTTP/1.1 on the plain listener, by hand (pipelining, exact bytes)


class H1:
    """One HTTP/1.1 connection to the plain listener."""

    def __init__(self, gw: Gateway) -> None:
        url = urlsplit(gw.urls["plain"])
        self.sock = socket.create_connection((url.hostname, url.port), timeout=15)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def responses(self, count: int) -> list[Response]:
        found: list[Response] = []
        while len(found) < count:
            response, self.buffer = parse_http1(self.buffer)
            if response is not None:
                found.append(response)
                continue
            data = self.sock.recv(65536)
            if not data:
                break
            self.buffer += data
        return found

    def closed(self) -> bool:
        """The gateway closed (or cut) the connection."""
        try:
            return self.sock.recv(65536) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        self.sock.close()


def request(
    path: str, headers: dict[str, str] | None = None, body: bytes | None = None, close: bool = False
) -> bytes:
    lines = [f"{'GET' if body is None else 'POST'} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def h1_exchange(
    gw: Gateway, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
) -> Response:
    client = H1(gw)
    try:
        client.send(request(path, headers, body, close=True))
        (response,) = client.responses(1)
        return response
    finally:
        client.close()


# HTTP/2 on the TLS listener


def h2_exchange(
    gw: Gateway,
    pki: Pki,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    client = H2Client(port_of(gw), pki.ca)
    try:
        method = "GET" if body is None else "POST"
        sid = client.start(path, method, list((headers or {}).items()), end=body is None)
        if body is not None:
            client.send_body(sid, body)
        (got,) = client.wait(sid)
        assert got.reset is None, f"stream reset ({got.reset})"
        names = {k.decode(): v.decode() for k, v in got.headers.items() if not k.startswith(b":")}
        return Response(got.status, names, bytes(got.body))
    finally:
        client.close()


PROTOCOLS = ("http/1.1", "h2")


def exchange(
    gw: Gateway,
    pki: Pki,
    protocol: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> Response:
    if protocol == "h2":
        return h2_exchange(gw, pki, path, headers, body)
    return h1_exchange(gw, path, headers, body)


def events(gw: Gateway, prefix: str = "policy.") -> list[dict[str, Any]]:
    path = gw.config_file.parent / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [e for e in (json.loads(line) for line in lines) if e["event"].startswith(prefix)]


def refused(gw: Gateway, reason: str) -> tuple[float, float]:
    """(outwork_requests_refused_total, outwork_policy_refused_total for route "guarded")."""
    page = gw.scrape()
    return (
        metric_sample(page, "outwork_requests_refused_total", reason=reason),
        metric_sample(page, "outwork_policy_refused_total", route="guarded", reason=reason),
    )


def requests_seen(gw: Gateway) -> int:
    """Requests the backend saw, not counting the earlier questions of this helper."""
    backend: Backend = gw.backend  # type: ignore[attr-defined]
    asked = getattr(gw, "stats_asked", 0)
    gw.stats_asked = asked + 1  # type: ignore[attr-defined]
    return backend_stats(backend)["requests"] - asked


# Allowed, refused, counted, evented


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_allowed_and_refused_with_the_filters_status_headers_and_body(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    allowed = exchange(gw, pki, protocol, "/items")
    assert (allowed.status, allowed.body) == (200, b"GET /items\n")
    seen = requests_seen(gw)
    denied = exchange(gw, pki, protocol, "/items?secret=1", {"X-Deny": "1"})
    assert denied.status == 403
    assert denied.headers["x-denied-by"] == "test"
    assert denied.headers["content-type"] == "application/json"
    assert denied.headers["x-request-id"]
    assert denied.body == b'{"denied":true}\n'
    assert requests_seen(gw) == seen  # the backend never saw it
    assert refused(gw, "forbidden") == (1.0, 1.0)
    (event,) = events(gw)
    assert event["event"] == "policy.forbidden"
    assert event["detail"] == {
        "route": "guarded",
        "status": 403,
        "method": "GET",
        "path": "/items",  # never the query string
        "rule": "deny-header",
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_reply_that_is_no_refusal_is_neither_counted_nor_evented(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    preflight = exchange(gw, pki, protocol, "/items", {"X-Preflight": "1"})
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "content-length" not in preflight.headers
    assert preflight.body == b""
    page = gw.scrape()
    assert "outwork_policy_refused_total{" not in page
    assert events(gw) == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_filter_that_raises_is_a_500_filter_error(gw: Gateway, pki: Pki, protocol: str) -> None:
    failed = exchange(gw, pki, protocol, "/x", {"X-Raise": "1"})
    assert (failed.status, failed.body) == (500, b"500 Internal Server Error\n")
    assert refused(gw, "filter_error") == (1.0, 1.0)
    assert [e["event"] for e in events(gw)] == ["policy.filter_error"]
    assert "a test filter that fails" in gw.stderr()  # the traceback is the operator's
    assert exchange(gw, pki, protocol, "/x").status == 200


# Stop and resume


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_filter_that_waits_resumes_its_exchange(gw: Gateway, pki: Pki, protocol: str) -> None:
    passed = exchange(gw, pki, protocol, "/echo", {"X-Park": "yes"}, body=b"kept while parked")
    assert (passed.status, passed.body) == (200, b"kept while parked")
    limited = exchange(gw, pki, protocol, "/x", {"X-Park": "deny"})
    assert limited.status == 429
    assert limited.headers["retry-after"] == "1"
    assert refused(gw, "rate_limited") == (1.0, 1.0)


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_over_tls_waits_for_the_filter_and_is_refused_with_its_headers(
    gw: Gateway, pki: Pki, version: str
) -> None:
    require_tool("curl")
    body = "through the wait"
    passed = curl_h2(gw, pki, "/echo", version, "-H", "X-Park: yes", "--data-binary", body)
    assert passed.returncode == 0, passed.stderr
    assert passed.stdout == body.encode()
    denied = curl_h2(gw, pki, "/x", version, "-H", "X-Deny: 1", "-D", "-")
    assert denied.returncode == 0, denied.stderr
    head, _, sent = denied.stdout.partition(b"\r\n\r\n")
    assert b" 403" in head.split(b"\r\n")[0]
    assert b"x-denied-by: test" in head.lower()
    assert sent == b'{"denied":true}\n'


def test_pipelined_requests_are_answered_in_order_behind_a_waiting_filter(gw: Gateway) -> None:
    client = H1(gw)
    try:
        client.send(
            request("/1", {"X-Park": "yes"})
            + request("/echo", body=b"second")
            + request("/3", {"X-Park": "deny"})
            + request("/4", {"X-Deny": "1"})
            + request("/5", close=True)
        )
        got = client.responses(5)
    finally:
        client.close()
    assert [(r.status, r.body) for r in got] == [
        (200, b"GET /1\n"),
        (200, b"second"),
        (429, b"429 Too Many Requests\n"),
        (403, b'{"denied":true}\n'),
        (200, b"GET /5\n"),
    ]


def test_http1_client_gone_while_parked_sends_nothing_upstream(gw: Gateway) -> None:
    seen = requests_seen(gw)
    client = H1(gw)
    client.send(request("/gone", {"X-Park": "yes"}))
    # Reset, not a half-close (after which the requests sent are still answered).
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    time.sleep(0.6)  # past the filter's resume (0.2 s): the resume finds nobody waiting
    assert requests_seen(gw) == seen
    assert h1_exchange(gw, "/after").body == b"GET /after\n"
    assert gw.proc.poll() is None


def test_http1_half_closed_client_is_answered_after_the_wait(gw: Gateway) -> None:
    client = H1(gw)
    try:
        client.send(request("/half", {"X-Park": "yes"}))
        client.sock.shutdown(socket.SHUT_WR)
        (answer,) = client.responses(1)
    finally:
        client.close()
    assert (answer.status, answer.body) == (200, b"GET /half\n")


def test_http2_stream_reset_while_parked_sends_nothing_upstream(gw: Gateway, pki: Pki) -> None:
    seen = requests_seen(gw)
    client = H2Client(port_of(gw), pki.ca)
    try:
        sid = client.start("/gone", headers=[("x-park", "yes")])
        client.conn.reset_stream(sid)
        client.flush()
        time.sleep(0.6)  # past the filter's resume (0.2 s)
        assert requests_seen(gw) == seen
        after = client.get("/after")
    finally:
        client.close()
    assert (after.status, bytes(after.body)) == (200, b"GET /after\n")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_filter_that_never_resumes_ends_at_the_upstream_timeout(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    hung = exchange(gw, pki, protocol, "/x", {"X-Hang": "1"})
    assert hung.status == 504
    assert refused(gw, "filter_error") == (1.0, 1.0)
    (event,) = events(gw)
    assert event["detail"]["filter"] == "ParkThenResume"


# The request body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_small_refused_body_never_reaches_the_backend(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    seen = requests_seen(gw)
    clean = exchange(gw, pki, protocol, "/echo", body=b"a clean body")
    assert (clean.status, clean.body) == (200, b"a clean body")
    refused_body = exchange(gw, pki, protocol, "/echo", body=b"x" * 1000 + b"EVIL" + b"y" * 10)
    assert (refused_body.status, refused_body.body) == (400, b"400 Bad Request\n")
    assert requests_seen(gw) == seen + 1  # only the clean one
    assert refused(gw, "threat_json") == (1.0, 1.0)
    (event,) = events(gw)
    assert event["detail"]["marker"] == "EVIL"


def test_http1_marker_split_over_chunks_and_the_connection_goes_on(gw: Gateway) -> None:
    seen = requests_seen(gw)
    client = H1(gw)
    try:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nabEV\r\n"
        )
        time.sleep(0.1)  # two reads: two chunks for the filter
        client.send(b"4\r\nILcd\r\n0\r\n\r\n")
        (answer,) = client.responses(1)
        assert answer.status == 400
        client.send(request("/next", close=True))  # the refused body was read whole
        (after,) = client.responses(1)
    finally:
        client.close()
    assert after.body == b"GET /next\n"
    assert requests_seen(gw) == seen + 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_large_body_refused_after_upstream_bytes_cuts_that_upstream_connection(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    assert exchange(gw, pki, protocol, "/warm").status == 200  # one pooled connection
    opened = gw.metric("outwork_upstream_connections_opened_total", upstream="backend")
    body = b"z" * BIG + b"EVIL"
    answer = exchange(gw, pki, protocol, "/upload", body=body)
    assert answer.status == 400
    assert exchange(gw, pki, protocol, "/again").status == 200
    # The connection that carried part of the refused body was not pooled again.
    assert gw.metric("outwork_upstream_connections_opened_total", upstream="backend") == opened + 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_body_filter_that_waits_on_every_chunk_passes_the_body_whole(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    body = bytes(range(256)) * (BIG // 256)
    echoed = exchange(gw, pki, protocol, "/echo", {"X-Body-Park": "1"}, body=body)
    assert echoed.status == 200
    assert echoed.body == body


def test_the_access_log_names_the_identity(gw: Gateway, pki: Pki) -> None:
    exchange(gw, pki, "http/1.1", "/a", {"X-User": "k1"})
    exchange(gw, pki, "h2", "/b", {"X-User": "k2"})
    exchange(gw, pki, "h2", "/c")
    lines = read_lines(gw.config_file.parent / "access.jsonl", 3)
    assert [(line["path"], line["identity"]) for line in lines] == [
        ("/a", "api_key:k1"),
        ("/b", "api_key:k2"),
        ("/c", None),
    ]
