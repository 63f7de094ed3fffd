"""The `waf` step on responses through a running gateway, over HTTP/1.1 and HTTP/2: a backend
page that leaks (an SQL error, PHP source, a directory listing) gets a 403 instead, and nothing
of it reaches the client; a benign page passes byte for byte; a body of a type not inspected,
or past `response_body_limit` with `process_partial`, streams as documented; `reject` answers
502; `detect` reports and lets the page through; a 5xx status blocks at paranoia level 2
(CRS 950100, phase 3)."""

from __future__ import annotations

from typing import Any

import pytest

from demo.backend import PAGES
from tests.proxy import test_listener_tls
from tests.proxy.test_listener_tls import Pki
from tests.proxy.test_request_filters import PROTOCOLS, events, exchange, refused
from tests.waf.test_waf_gateway import start

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

LEAKS = {
    # page name, its type, the rule CRS v4.28 finds it with at paranoia level 1
    "sql": ("text/html", 951230),  # RESPONSE-951: mysql SQL Information Leakage
    "php": ("text/plain", 953120),  # RESPONSE-953: PHP source code leakage
    "listing": ("text/html", 950130),  # RESPONSE-950: Directory Listing
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_leaks_refused_benign_page_passes_byte_for_byte(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    gw = start(make_backend, make_gateway, pki)
    benign = exchange(gw, pki, protocol, "/page?name=benign")
    assert (benign.status, benign.body) == (200, PAGES["benign"])
    for name, (mime, _) in LEAKS.items():
        got = exchange(gw, pki, protocol, f"/page?name={name}&type={mime}")
        assert got.status == 403, name
        assert PAGES[name] not in got.body and b"SQL syntax" not in got.body
    blocked = events(gw, "waf.")
    assert [e["event"] for e in blocked] == ["waf.blocked"] * len(LEAKS)
    for event, (name, (_, rule_id)) in zip(blocked, LEAKS.items(), strict=True):
        detail = event["detail"]
        assert detail["phase"] == 4, name
        assert rule_id in detail["rule_ids"] and 959100 in detail["rule_ids"], detail
        assert detail["outbound_score"] >= 4
    assert refused(gw, "waf_blocked") == (len(LEAKS), len(LEAKS))
    assert gw.metric("outwork_waf_matches_total", family="951") >= 1
    assert gw.metric("outwork_waf_matches_total", family="953") >= 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_types_not_inspected_and_the_limit(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    """An SQL error as application/octet-stream is not inspected (ModSecurity's default
    types); past `response_body_limit` (1 KiB here) `process_partial` inspects the first KiB
    and lets the rest stream: a leak inside it is refused, one after it passes."""
    gw = start(make_backend, make_gateway, pki, response_body_limit="1KiB")
    sql = PAGES["sql"]
    octets = exchange(gw, pki, protocol, "/page?name=sql&type=application/octet-stream")
    assert (octets.status, octets.body) == (200, sql)
    late = exchange(gw, pki, protocol, "/page?name=sql&pad=4096")
    assert (late.status, late.body) == (200, b"x" * 4096 + sql)
    early = exchange(gw, pki, protocol, "/page?name=sql&after=65536")
    assert early.status == 403 and sql not in early.body
    chunked = exchange(gw, pki, protocol, "/page?name=sql&chunked=1")
    assert chunked.status == 403
    big = exchange(gw, pki, protocol, "/page?name=benign&after=200000&chunked=1")
    assert (big.status, big.body) == (200, PAGES["benign"] + b"x" * 200000)


def test_reject_beyond_the_limit(make_backend: Any, make_gateway: Any, pki: Pki) -> None:
    gw = start(
        make_backend, make_gateway, pki, response_body_limit="1KiB", on_response_body_limit="reject"
    )
    small = exchange(gw, pki, "http/1.1", "/page?name=benign")
    assert (small.status, small.body) == (200, PAGES["benign"])
    large = exchange(gw, pki, "h2", "/page?name=benign&after=4096")
    assert large.status == 502 and b"x" * 1024 not in large.body
    assert refused(gw, "response_too_large") == (1, 1)


def test_detect_mode_reports_and_lets_the_page_through(
    make_backend: Any, make_gateway: Any, pki: Pki
) -> None:
    gw = start(make_backend, make_gateway, pki, mode="detect")
    got = exchange(gw, pki, "http/1.1", "/page?name=sql")
    assert (got.status, got.body) == (200, PAGES["sql"])
    (event,) = events(gw, "waf.")
    assert event["event"] == "waf.detected" and event["detail"]["phase"] == 4
    assert 951230 in event["detail"]["rule_ids"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_error_status_blocks_at_paranoia_level_2(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    """CRS 950100 (phase 3, paranoia level 2) scores a 5xx; with no body to wait for, the
    outbound score is judged at the head."""
    gw = start(make_backend, make_gateway, pki, paranoia_level=2)
    assert exchange(gw, pki, protocol, "/status?code=500").status == 403
    (event,) = events(gw, "waf.")
    assert 950100 in event["detail"]["rule_ids"] and event["detail"]["status"] == 500
    gw1 = start(make_backend, make_gateway, pki, paranoia_level=1)
    assert exchange(gw1, pki, protocol, "/status?code=500").status == 500
