"""`threat_protection` and CORS through a running gateway, over HTTP/1.1 and HTTP/2 alike (the
tests' own clients, and curl for the large bodies): JSON within its limits reaches the backend,
JSON past each limit is refused with its status, counted by reason and route and written as a
security event naming the limit, and the backend never sees the small refused body; a 2 MiB
JSON body streams through whole; XXE and billion laughs are refused, ordinary XML passes; a
CORS preflight is answered at the gateway (204, or 403 for an origin not allowed) and an
actual request from an allowed origin gets its Access-Control headers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from outwork.filters.headers_spec import CORS_RESPONSE
from tests.conftest import Gateway, gateway_config, require_tool
from tests.filters.test_threat import BILLION_LAUGHS, ORDINARY, XXE
from tests.proxy import test_listener_tls
from tests.proxy.test_h2 import curl_h2
from tests.proxy.test_listener_tls import Pki
from tests.proxy.test_request_filters import (
    PROTOCOLS,
    Response,
    events,
    exchange,
    refused,
    requests_seen,
)

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

JSON_LIMITS = {
    "max_depth": 4,
    "max_keys": 8,
    "max_string": 64,
    "max_array": 20000,
    "max_number": 12,
    "max_size": "3MiB",
}
APP = "https://app.example"
POLICIES = {
    "guard": {
        "threat_protection": {
            "json": JSON_LIMITS,
            "xml": {"max_depth": 4, "max_size": "4KiB"},
        },
        "headers": {
            "remove": ["Server"],
            "cors": {
                "origins": [APP],
                "methods": ["GET", "POST"],
                "headers": ["Authorization", "Content-Type"],
                "expose": ["X-Request-Id"],
                "credentials": True,
                "max_age": 120,
            },
        },
    },
    # After `guard` (a default policy): a second check, with a small size cap.
    "small": {"threat_protection": {"json": {"max_size": "1KiB"}}},
}
JSON = {"Content-Type": "application/json"}
XML = {"Content-Type": "application/xml"}


@pytest.fixture
def gw(make_backend: Any, make_gateway: Any, pki: Pki) -> Gateway:
    backend = make_backend()
    tls = {
        "certificates": [
            {"cert": str(pki.folder / "server.pem"), "key": str(pki.folder / "server.key")}
        ]
    }
    config = gateway_config(
        backend.url,
        listeners=[
            {"name": "plain", "bind": "127.0.0.1:0"},
            {"name": "public", "bind": "127.0.0.1:0", "tls": tls},
        ],
        routes=[
            {
                "name": "small",
                "match": {"path_prefix": "/small/"},
                "upstream": "backend",
                "policies": ["small"],
            },
            {"name": "guarded", "match": {"path_prefix": "/"}, "upstream": "backend"},
        ],
        upstreams={"backend": {"targets": [backend.url]}},
        logging={"security_events": "events.jsonl"},
        policies=POLICIES,
        default_policies=["guard"],
    )
    gateway = make_gateway(config)
    gateway.backend = backend  # type: ignore[attr-defined]
    return gateway


def item(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"user {i}",
        "mail": f"user{i}@example.com",
        "tags": ["a", "b,c"],
        "geo": {"lat": 48.85, "ok": True},
    }


# JSON


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_json_within_its_limits_reaches_the_backend(gw: Gateway, pki: Pki, protocol: str) -> None:
    body = json.dumps([item(i) for i in range(20)]).encode()
    seen = requests_seen(gw)
    answer = exchange(gw, pki, protocol, "/echo", JSON, body)
    assert (answer.status, answer.body) == (200, body)
    assert requests_seen(gw) == seen + 1
    assert refused(gw, "threat_json") == (0.0, 0.0)


REFUSED_JSON = [
    (b"[[[[[1]]]]]", "max_depth"),
    (json.dumps({f"k{i}": i for i in range(9)}).encode(), "max_keys"),
    (json.dumps({"a": "x" * 65}).encode(), "max_string"),
    (b"[1234567890123]", "max_number"),
    (b'{"a": 1,}', "syntax"),
    (b"{\"a\": 'single quotes'}", "syntax"),
    (b'{"a": 1} {"b": 2}', "syntax"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_json_past_each_limit_is_refused_counted_and_evented_before_the_backend(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    seen = requests_seen(gw)
    for body, _limit in REFUSED_JSON:
        answer = exchange(gw, pki, protocol, "/echo", JSON, body)
        assert (answer.status, answer.body) == (400, b"400 Bad Request\n"), body
    assert requests_seen(gw) == seen  # not one of them reached it
    count = float(len(REFUSED_JSON))
    assert refused(gw, "threat_json") == (count, count)
    found = events(gw)
    assert [e["event"] for e in found] == ["policy.threat_json"] * len(REFUSED_JSON)
    assert [e["detail"]["limit"] for e in found] == [limit for _, limit in REFUSED_JSON]
    assert found[0]["detail"]["status"] == 400 and found[0]["detail"]["path"] == "/echo"
    # Not a checked type: passes whatever it holds.
    plain = exchange(gw, pki, protocol, "/echo", {"Content-Type": "text/plain"}, b"[[[[[[")
    assert (plain.status, plain.body) == (200, b"[[[[[[")


def curl(
    gw: Gateway, pki: Pki, protocol: str, path: str, *extra: str
) -> subprocess.CompletedProcess[bytes]:
    """curl to the TLS listener, HTTP/2 or HTTP/1.1."""
    require_tool("curl")
    version = "--http1.1" if protocol == "http/1.1" else "--http2"
    return curl_h2(gw, pki, path, version, "--max-time", "30", *extra)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_large_valid_json_body_streams_through_whole(
    gw: Gateway, pki: Pki, protocol: str, tmp_path: Path
) -> None:
    body = json.dumps([item(i) for i in range(19000)]).encode()
    assert 2 << 20 < len(body) < 3 << 20
    upload, echoed = tmp_path / "upload.json", tmp_path / "echoed.json"
    upload.write_bytes(body)
    post = ("-H", "Content-Type: application/json", "--data-binary", f"@{upload}")
    # First to a backend that answers once the body is in, on a new upstream connection: the
    # body held while it connects is let go then (HTTP/2: the client's window reopened then).
    got = curl(gw, pki, protocol, "/upload", *post, "-o", "/dev/null", "-w", "%{http_code}")
    assert (got.returncode, got.stdout) == (0, b"200"), got.stderr
    got = curl(gw, pki, protocol, "/echo", *post, "-o", str(echoed), "-w", "%{http_code}")
    assert (got.returncode, got.stdout) == (0, b"200"), got.stderr
    assert echoed.read_bytes() == body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_json_body_over_max_size_is_413_before_the_backend(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    seen = requests_seen(gw)
    body = json.dumps([item(i) for i in range(20)]).encode()
    assert 1024 < len(body) < 64 * 1024  # held before any upstream is taken
    answer = exchange(gw, pki, protocol, "/small/upload", JSON, body)
    assert answer.status == 413
    assert requests_seen(gw) == seen
    assert gw.metric("outwork_policy_refused_total", route="small", reason="threat_json") == 1.0
    (event,) = events(gw)
    assert (event["detail"]["limit"], event["detail"]["status"]) == ("max_size", 413)
    small = exchange(gw, pki, protocol, "/small/upload", JSON, b'{"a": 1}')
    assert small.status == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_large_json_body_over_max_size_is_413_once_part_went_upstream(
    gw: Gateway, pki: Pki, protocol: str, tmp_path: Path
) -> None:
    upload = tmp_path / "upload.json"
    body = json.dumps([[item(i) for i in range(15000)]] * 2).encode()
    assert len(body) > 3 << 20  # and within every other limit
    upload.write_bytes(body)
    for _ in range(2):  # and the gateway goes on
        got = curl(
            gw,
            pki,
            protocol,
            "/upload",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{upload}",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        )
        # /upload answers once it has the body (an /echo answer would have begun, and a
        # refusal then can only cut it).
        assert got.stdout == b"413", got.stderr
    assert refused(gw, "threat_json") == (2.0, 2.0)
    assert [(e["detail"]["limit"], e["detail"]["status"]) for e in events(gw)] == [
        ("max_size", 413)
    ] * 2


# XML


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_xml_attacks_are_refused_before_the_backend_and_ordinary_xml_passes(
    gw: Gateway, pki: Pki, protocol: str
) -> None:
    seen = requests_seen(gw)
    for attack in (XXE, BILLION_LAUGHS, b"<a><b><c><d><e/></d></c></b></a>"):
        answer = exchange(gw, pki, protocol, "/echo", XML, attack)
        assert answer.status == 400, attack
    over = exchange(gw, pki, protocol, "/echo", XML, b"<a>" + b"x" * 5000 + b"</a>")
    assert over.status == 413
    assert requests_seen(gw) == seen
    assert refused(gw, "threat_xml") == (4.0, 4.0)
    assert [e["detail"]["limit"] for e in events(gw)] == ["dtd", "dtd", "max_depth", "max_size"]
    ordinary = exchange(gw, pki, protocol, "/echo", {"Content-Type": "text/xml"}, ORDINARY)
    assert (ordinary.status, ordinary.body) == (200, ORDINARY)


# CORS


def preflight(origin: str, method: str = "POST", requested: str = "content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": requested,
    }


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cors_preflights_are_answered_at_the_gateway(gw: Gateway, pki: Pki, protocol: str) -> None:
    seen = requests_seen(gw)
    allowed = options(gw, pki, protocol, preflight(APP))
    assert allowed.status == 204
    assert allowed.body == b""
    assert {k: v for k, v in allowed.headers.items() if k.startswith("access-control")} == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "Authorization, Content-Type",
        "access-control-allow-credentials": "true",
        "access-control-max-age": "120",
    }
    assert allowed.headers["vary"] == "Origin"
    for headers in (
        preflight("https://evil.example"),
        preflight(APP, "DELETE"),
        preflight(APP, "POST", "x-secret"),
    ):
        assert options(gw, pki, protocol, headers).status == 403
    assert requests_seen(gw) == seen  # the backend answered none of them
    assert refused(gw, "cors_rejected") == (3.0, 3.0)
    assert [e["detail"]["reason"] for e in events(gw)] == ["origin", "method", "header"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_actual_request_gets_the_origins_headers(gw: Gateway, pki: Pki, protocol: str) -> None:
    allowed = exchange(gw, pki, protocol, "/items", {"Origin": APP})
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert allowed.headers["access-control-expose-headers"] == "X-Request-Id"
    assert allowed.headers["vary"] == "Origin"
    other = exchange(gw, pki, protocol, "/items", {"Origin": "https://evil.example"})
    assert other.status == 200  # answered: it is the browser that keeps it from the page
    assert not CORS_RESPONSE & set(other.headers)
    assert events(gw) == []


def options(gw: Gateway, pki: Pki, protocol: str, headers: dict[str, str]) -> Response:
    """An OPTIONS request (the helpers send GET and POST) through curl, as a `Response`."""
    args = ["-X", "OPTIONS", "-D", "-", "-o", "/dev/null"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    got = curl(gw, pki, protocol, "/items", *args)
    assert got.returncode == 0, got.stderr
    lines = got.stdout.decode("latin-1").replace("\r\n", "\n").strip().split("\n")
    response = Response(int(lines[0].split(" ")[1]))
    for line in lines[1:]:
        name, _, value = line.partition(":")
        response.headers[name.strip().lower()] = value.strip()
    return response
