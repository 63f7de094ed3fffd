"""The `waf` step through a running gateway, over HTTP/1.1 and HTTP/2: CRS refuses attacks
with 403 before any backend sees them, lets ordinary requests through, writes `waf.blocked`
(or `waf.detected` in detect mode) and counts matches by family; and a sample of CRS's own
regression cases per family gets the same verdict through the gateway as in process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Gateway, gateway_config
from tests.inproc import parse_http1
from tests.proxy import test_listener_tls
from tests.proxy.test_listener_tls import Pki
from tests.proxy.test_request_filters import PROTOCOLS, events, exchange, requests_seen
from tests.waf import ftw

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

SAMPLE_PER_FAMILY = 12  # cases per family and level sent through the gateway
XSS = "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E"


def start(make_backend: Any, make_gateway: Any, pki: Pki, **waf: Any) -> Gateway:
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
        routes=[{"name": "guarded", "match": {"path_prefix": "/"}, "upstream": "backend"}],
        logging={"security_events": "events.jsonl"},
        policies={"crs": {"waf": waf}},
        default_policies=["crs"],
    )
    gateway = make_gateway(config)
    gateway.backend = backend  # type: ignore[attr-defined]
    return gateway


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_attacks_refused_before_the_backend_benign_requests_pass(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    gw = start(make_backend, make_gateway, pki)
    assert exchange(gw, pki, protocol, "/api/orders?page=2").status == 200
    seen = requests_seen(gw)
    refused = exchange(gw, pki, protocol, XSS)
    assert refused.status == 403
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert exchange(gw, pki, protocol, "/login", form, b"user=x' or '1'='1'--").status == 403
    assert requests_seen(gw) == seen  # neither attack reached the backend
    blocked = events(gw, "waf.blocked")
    assert len(blocked) == 2
    assert 941100 in blocked[0]["detail"]["rule_ids"] and blocked[0]["detail"]["score"] >= 5
    assert 942100 in blocked[1]["detail"]["rule_ids"]
    assert [e["event"] for e in events(gw)] == ["policy.waf_blocked"] * 2
    assert gw.metric("outwork_waf_matches_total", family="941") >= 1
    assert gw.metric("outwork_requests_refused_total", reason="waf_blocked") == 2


def test_detect_mode_forwards_and_reports(make_backend: Any, make_gateway: Any, pki: Pki) -> None:
    gw = start(make_backend, make_gateway, pki, mode="detect")
    assert exchange(gw, pki, "http/1.1", XSS).status == 200
    (event,) = events(gw, "waf.detected")
    assert 941100 in event["detail"]["rule_ids"]


def test_exclusion_file_through_the_gateway(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    exclusion = tmp_path / "exclusions.conf"
    exclusion.write_text(
        'SecRule REQUEST_FILENAME "@beginsWith /api/upload" '
        '"id:1000,phase:1,pass,nolog,ctl:ruleRemoveById=942100"\n'
    )
    gw = start(make_backend, make_gateway, pki, exclusions=[str(exclusion)])
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b"q=1' or '1'='1"
    assert exchange(gw, pki, "http/1.1", "/api/upload", form, body).status == 200
    assert exchange(gw, pki, "http/1.1", "/api/search", form, body).status == 403


def raw_request(case: ftw.Case) -> bytes:
    if case.raw is not None:
        return case.raw
    lines = [f"{case.method} {case.uri} {case.version}"]
    lines += [f"{name}: {value}" for name, value in case.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    return head + (case.data or b"")


def status_of(gw: Gateway, data: bytes) -> int | None:
    url = urlsplit(gw.urls["plain"])
    with socket.create_connection((url.hostname, url.port), timeout=15) as sock:
        sock.sendall(data)
        buffer = b""
        while True:
            response, _ = parse_http1(buffer)
            if response is not None:
                return response.status
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            buffer += chunk


def sample(level: int) -> list[ftw.Case]:
    chosen: list[ftw.Case] = []
    for _, cases in sorted(ftw.by_family().items()):
        usable = [c for c in cases if ftw.applicable(c, level)]
        step = max(1, len(usable) // SAMPLE_PER_FAMILY)
        chosen += usable[::step][:SAMPLE_PER_FAMILY]
    return chosen


@pytest.mark.timeout(300)
@pytest.mark.parametrize("level", ftw.LEVELS)
def test_crs_regression_sample_agrees_with_the_engine(
    make_backend: Any, make_gateway: Any, pki: Pki, level: int
) -> None:
    """Each sampled case: the gateway's status (403 or not) is the engine's verdict. Cases the
    gateway's HTTP codec refuses itself (400, 501, ...: malformed on purpose) never reach the
    WAF and are counted apart; they must stay a minority."""
    gw = start(make_backend, make_gateway, pki, paranoia_level=level)
    cases = sample(level)
    agreed: list[str] = []
    disagreed: dict[str, tuple[int | None, bool]] = {}
    by_codec: list[str] = []
    for case in cases:
        status = status_of(gw, raw_request(case))
        if status is None or (status >= 400 and status != 403):
            by_codec.append(case.id)
            continue
        expected = ftw.blocked(case, level, ftw.plain_waf(level))
        if (status == 403) == expected:
            agreed.append(case.id)
        else:
            disagreed[case.id] = (status, expected)
    assert not disagreed, disagreed
    assert len(agreed) > 4 * len(by_codec), (len(agreed), by_codec)
    print(f"PL{level}: {len(agreed)} cases agree, {len(by_codec)} refused by the codec")
