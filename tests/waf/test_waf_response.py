"""The `waf` step on responses through a running gateway, over HTTP/1.1 and HTTP/2: a backend
page that leaks (an SQL error, PHP source, a directory listing) gets a 403 instead (the event
`waf.response_blocked`), and nothing of it reaches the client; a benign page passes byte for
byte; a body of a type not inspected, or past `response_body_limit` with `process_partial`,
streams as documented; `reject` answers
502; `detect` reports and lets the page through; a 5xx status blocks at paranoia level 2
(CRS 950100, phase 3)."""

from __future__ import annotations

from pathlib import Path
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
    blocked = events(gw, "waf.response_blocked")
    assert len(blocked) == len(LEAKS) and events(gw, "waf.blocked") == []
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
    # A body that ends when the upstream closes: judged at the close.
    assert exchange(gw, pki, protocol, "/page?name=sql&close=1").status == 403
    closed = exchange(gw, pki, protocol, "/page?name=benign&close=1")
    assert (closed.status, closed.body) == (200, PAGES["benign"])
    # Cut by the upstream while held: a 502, not half a page.
    cut = exchange(gw, pki, protocol, "/page?name=benign&after=600&cut=1")
    assert cut.status == 502 and b"Orders" not in cut.body
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
    (event,) = events(gw, "waf.detected")
    assert event["detail"]["phase"] == 4
    assert 951230 in event["detail"]["rule_ids"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_error_status_blocks_at_paranoia_level_2(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    """CRS 950100 (phase 3, paranoia level 2) scores a 5xx; with no body to wait for, the
    outbound score is judged at the head."""
    gw = start(make_backend, make_gateway, pki, paranoia_level=2)
    assert exchange(gw, pki, protocol, "/status?code=500").status == 403
    (event,) = events(gw, "waf.response_blocked")
    assert 950100 in event["detail"]["rule_ids"] and event["detail"]["status"] == 500
    gw1 = start(make_backend, make_gateway, pki, paranoia_level=1)
    assert exchange(gw1, pki, protocol, "/status?code=500").status == 500
    # No body, nothing held: a 204 and a 304 pass as they are.
    for code in (204, 304):
        got = exchange(gw1, pki, protocol, f"/status?code={code}")
        assert (got.status, got.body) == (code, b"")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_phase_3_rule_on_response_headers_refuses_at_the_head(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str, tmp_path: Path
) -> None:
    """A rule of an exclusion file on RESPONSE_HEADERS (phase 3) denies: the client gets 403
    and none of the upstream's response, the security event says phase 3."""
    rules = tmp_path / "response-rules.conf"
    rules.write_text(
        'SecRule RESPONSE_HEADERS:X-Debug-Token "@rx ." '
        "\"id:1001,phase:3,deny,status:403,msg:'debug token in a response'\"\n"
    )
    gw = start(make_backend, make_gateway, pki, exclusions=[str(rules)])
    json_type = {"Content-Type": "application/json"}
    leak = b'{"headers": {"X-Debug-Token": "t0k3n"}, "body": "all fine here"}'
    got = exchange(gw, pki, protocol, "/reflect", json_type, leak)
    assert got.status == 403 and b"all fine here" not in got.body
    assert "x-debug-token" not in got.headers
    (event,) = events(gw, "waf.response_blocked")
    assert event["detail"]["phase"] == 3 and event["detail"]["rule_ids"] == [1001]
    plain = b'{"headers": {"X-Trace": "1"}, "body": "all fine here"}'
    passed = exchange(gw, pki, protocol, "/reflect", json_type, plain)
    assert (passed.status, passed.body) == (200, b"all fine here")
    assert passed.headers["x-trace"] == "1"
