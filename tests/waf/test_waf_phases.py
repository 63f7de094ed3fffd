"""The `waf` step's phases beyond 1 to 4, through a running gateway (and in process where the
order of things must be seen): phase 5 reports CRS's anomaly scores (rule 980170) as
`waf.report` once the exchange is over, after its response is written; `early_blocking`
refuses a request whose head alone reaches the threshold before its body is read (the backend
sees nothing), and a response at its head; a response with no Content-Type is `null` to
`response_mime_types`, as ModSecurity 2 names it. Where ModSecurity 2.9 runs here (Debian's
Apache module), the report and the early refusal are held to what it logs for the same
requests."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from demo.backend import PAGES
from outwork.filters import CONTINUE, Reply
from outwork.filters.waf import WafSpec
from outwork.http.messages import Framing, ResponseHead
from outwork.waf.engine import Setup
from tests.conftest import Gateway, require_file, require_tool
from tests.e2e.servers import free_port
from tests.inproc import InProcGateway, Upstream, parse_http1, until
from tests.proxy import test_listener_tls
from tests.proxy.h2_client import H2Client
from tests.proxy.test_listener_tls import Pki, port_of
from tests.proxy.test_request_filters import (
    H1,
    PROTOCOLS,
    events,
    exchange,
    request,
    requests_seen,
)
from tests.waf import modsec_verdicts as oracle
from tests.waf.test_waf_filter import Context, head, never
from tests.waf.test_waf_gateway import XSS, start, status_of
from tests.waf.test_waf_response_filter import waf_of

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared
# Rule 980170's line in Apache's error log: its message and the transaction's unique id.
MODSECURITY_REPORT = re.compile(
    r'\[id "980170"\] \[msg "((?:[^"\\]|\\.)*)"\].*\[unique_id "([^"]+)"\]'
)

# A request CRS scores 3 at paranoia level 1 (920350: the Host is an IP address): reported,
# not refused (the threshold is 5).
SCORED = b"GET /scored HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"
# A scanner's User-Agent (913100) and a content type CRS does not allow (920420): 10 points
# from the head alone, and a body announced that is never sent.
SCANNER_HEAD = {
    "User-Agent": "nikto",
    "Content-Type": "application/octet-stream",
    "Content-Length": str(1024 * 1024),
}


def wait_for_events(gw: Gateway, name: str, count: int) -> list[dict[str, Any]]:
    """The events named `name` once there are `count` (phase 5 writes a turn after the
    response: the client may read its answer first)."""
    deadline = time.monotonic() + 20  # a hung gateway, not a timing bound
    while len(found := events(gw, name)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {name} events: {found}"
        time.sleep(0.05)
    return found


# Phase 5


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_phase_5_reports_the_anomaly_scores_of_refused_exchanges(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    """CRS 980170 logs the scores of every exchange that scored, whatever became of it: a
    request refused (inbound score) and a page refused (outbound score); a request that scored
    nothing gets no report."""
    gw = start(make_backend, make_gateway, pki)
    assert exchange(gw, pki, protocol, "/api/orders?page=2").status == 200
    assert exchange(gw, pki, protocol, XSS).status == 403
    assert exchange(gw, pki, protocol, "/page?name=sql").status == 403
    attack, leak = wait_for_events(gw, "waf.report", 2)
    for report in (attack, leak):
        assert report["detail"]["rule_ids"] == [980170]
        (message,) = report["detail"]["messages"]
        assert message.startswith("Anomaly Scores: (Inbound Scores: blocking=")
    assert (attack["detail"]["method"], attack["detail"]["path"]) == ("GET", "/search")
    assert (leak["detail"]["method"], leak["detail"]["path"]) == ("GET", "/page")
    assert attack["detail"]["score"] >= 5 and attack["detail"]["outbound_score"] == 0
    assert "XSS=" in attack["detail"]["messages"][0]
    assert "XSS=0," not in attack["detail"]["messages"][0]  # CRS's per-attack sums, as logged
    assert leak["detail"]["score"] == 0 and leak["detail"]["outbound_score"] >= 4
    assert "Outbound Scores: blocking=0" not in leak["detail"]["messages"][0]
    assert len(events(gw, "waf.report")) == 2  # none for the request that scored nothing
    assert gw.metric("outwork_waf_matches_total", family="980") == 2


def test_phase_5_reports_a_request_that_scored_below_the_threshold(
    make_backend: Any, make_gateway: Any, pki: Pki
) -> None:
    gw = start(make_backend, make_gateway, pki)
    client = H1(gw)
    try:
        client.send(SCORED)
        (passed,) = client.responses(1)
    finally:
        client.close()
    assert (passed.status, passed.body) == (200, b"GET /scored\n")
    (report,) = wait_for_events(gw, "waf.report", 1)
    assert report["detail"]["score"] == 3 and report["detail"]["outbound_score"] == 0
    assert (report["detail"]["method"], report["detail"]["path"]) == ("GET", "/scored")
    assert (
        "(Inbound Scores: blocking=3, detection=3, per_pl=3-0-0-0, threshold=5)"
        in (report["detail"]["messages"][0])
    )
    assert events(gw, "waf.blocked") == []


def test_phase_5_reports_what_modsecurity_logs(
    make_backend: Any, make_gateway: Any, pki: Pki, tmp_path: Path
) -> None:
    """The same requests to Apache + ModSecurity 2.9 (the same CRS, the same setup) and through
    the gateway: ModSecurity's error log has rule 980170's line for the same ones as
    `waf.report`, and the same message, word for word."""
    apache = require_tool("apache2")
    require_file(oracle.MODULES / "mod_security2.so", "libapache2-mod-security2")
    require_file(oracle.UNICODE_MAPPING, "libapache2-mod-security2")
    sent = {
        "/search": f"GET {XSS} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n"
        "Accept: */*\r\n\r\n".encode(),
        "/scored": SCORED,
        "/api/orders": b"GET /api/orders?page=2 HTTP/1.1\r\nHost: localhost\r\n"
        b"User-Agent: curl/8\r\nAccept: */*\r\n\r\n",
    }
    root = tmp_path / "modsecurity"
    with oracle.running(root, Setup(), apache) as server:
        unique_ids = {oracle.send(server.port, data)[1]: path for path, data in sent.items()}
        theirs = modsecurity_reports(root / "error.log", unique_ids, 2)
    gw = start(make_backend, make_gateway, pki)
    assert [status_of(gw, data) for data in sent.values()] == [403, 200, 200]
    ours = {
        e["detail"]["path"]: e["detail"]["messages"] for e in wait_for_events(gw, "waf.report", 2)
    }
    assert ours == theirs and set(ours) == {"/search", "/scored"}


def modsecurity_reports(log: Path, unique_ids: dict[str, str], count: int) -> dict[str, list[str]]:
    """Path -> the messages of rule 980170 in Apache's error log, once `count` are in (phase 5
    runs after Apache's answer)."""
    deadline = time.monotonic() + 20  # a hung Apache, not a timing bound
    while True:
        found: dict[str, list[str]] = {}
        for line in log.read_text(errors="replace").splitlines():
            match = MODSECURITY_REPORT.search(line)
            if match and match.group(2) in unique_ids:
                message = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
                found.setdefault(unique_ids[match.group(2)], []).append(message)
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"ModSecurity logged {found}"
        time.sleep(0.1)


def test_phase_5_runs_after_the_response_is_written(tmp_path: Path) -> None:
    """In process, where the order shows: when `waf.report` is written, the client's
    connection already has the whole response (the gateway's 403, or the upstream's page)."""

    async def main() -> None:
        async with Upstream() as upstream:
            async with InProcGateway(inproc_config(upstream.url), tmp_path) as gw:
                client = gw.connect()
                written_at_report: list[bytes] = []

                def watch(event: str, peer: str, listener: str) -> None:
                    if event == "waf.report":
                        written_at_report.append(bytes(client.transport.written))

                gw.gateway.security_log.watch = watch
                attack = f"GET {XSS} HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n"
                client.send(attack.encode())
                # Refused while its bytes were read: written, and phase 5 not yet run.
                refused, _ = parse_http1(bytes(client.transport.written))
                assert refused is not None and refused.status == 403
                assert written_at_report == []
                await until(lambda: len(written_at_report) == 1, "the refusal's report")
                assert written_at_report[0] == bytes(client.transport.written)

                client.send(SCORED)
                await until(lambda: len(written_at_report) == 2, "the page's report")
                _, rest = parse_http1(written_at_report[1])
                page, _ = parse_http1(rest)
                assert page is not None and (page.status, page.body) == (200, b"GET /scored\n")
                reports = [e for e in gw.events() if e["event"] == "waf.report"]
                assert [e["detail"]["score"] for e in reports] == [refused_score(gw), 3]

    asyncio.run(main())


def test_phase_5_runs_after_the_response_is_written_on_http2(tmp_path: Path) -> None:
    """The same over HTTP/2: when `waf.report` is written, the stream's last frame (END_STREAM)
    is already on the connection, for a refusal and for the upstream's page."""

    async def main() -> None:
        async with Upstream() as upstream:
            async with InProcGateway(inproc_config(upstream.url), tmp_path) as gw:
                client = gw.connect_h2()
                written_at_report: list[bytes] = []

                def watch(event: str, peer: str, listener: str) -> None:
                    if event == "waf.report":
                        written_at_report.append(bytes(client.transport.written))

                gw.gateway.security_log.watch = watch
                refused = client.request(XSS, {"accept": "*/*"})
                assert stream_ended(bytes(client.transport.written), refused)
                assert written_at_report == []
                assert (await client.response(refused)).status == 403
                await until(lambda: len(written_at_report) == 1, "the refusal's report")
                # CRS 920330 (an empty User-Agent) scores 2: the page passes, reported.
                page = client.request("/scored", {"accept": "*/*", "user-agent": ""})
                got = await client.response(page)
                assert (got.status, got.body) == (200, b"GET /scored\n")
                await until(lambda: len(written_at_report) == 2, "the page's report")
                assert stream_ended(written_at_report[1], page)
                reports = [e for e in gw.events() if e["event"] == "waf.report"]
                assert [e["detail"]["score"] for e in reports] == [refused_score(gw), 2]

    asyncio.run(main())


def inproc_config(upstream: str) -> dict[str, Any]:
    return {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
        "upstreams": {"backend": {"targets": [upstream]}},
        "policies": {"crs": {"waf": {}}},
        "default_policies": ["crs"],
        "logging": {"security_events": "events.jsonl"},
    }


def stream_ended(written: bytes, stream_id: int) -> bool:
    """Whether the HTTP/2 frames in `written` (the gateway's, from the start of the connection)
    end the stream: a HEADERS or DATA frame of it with END_STREAM."""
    at = 0
    while at + 9 <= len(written):
        length = int.from_bytes(written[at : at + 3], "big")
        kind, flags = written[at + 3], written[at + 4]
        sid = int.from_bytes(written[at + 5 : at + 9], "big") & 0x7FFFFFFF
        if sid == stream_id and kind in (0, 1) and flags & 0x1:
            return True
        at += 9 + length
    return False


def refused_score(gw: InProcGateway) -> int:
    (blocked,) = [e for e in gw.events() if e["event"] == "waf.blocked"]
    score: int = blocked["detail"]["score"]
    return score


def test_phase_5_runs_after_allow_and_decides_nothing(tmp_path: Path) -> None:
    """In process: a rule that lets the request go (`allow`, phase 2) and a phase-5 rule that
    denies: phase 5 still runs, logs, and the exchange it reports on is not refused."""
    rules = tmp_path / "rules.conf"
    rules.write_text(
        'SecRule REQUEST_FILENAME "@beginsWith /trusted" "id:1010,phase:2,allow,nolog"\n'
        "SecAction \"id:1011,phase:5,deny,msg:'logged after the exchange'\"\n"
    )
    waf = waf_of(exclusions=[str(rules)])
    ctx = Context()
    assert waf.on_request_head(ctx, head(b"GET", b"/trusted/page"), never) is CONTINUE
    waf.on_exchange_done(ctx)
    ((event, detail),) = ctx.events
    assert event == "waf.report" and detail["rule_ids"] == [1011]
    assert detail["messages"] == ["logged after the exchange"]
    assert ctx.filter_state == {}  # the transaction is let go with the exchange


def test_reporting_level_chooses_the_exchanges_reported() -> None:
    """In process: CRS's tx.reporting_level from `reporting_level`: 0 reports nothing, 1 only
    what was refused, 4 (the default) whatever scored, 5 every exchange."""
    attack = head(b"GET", XSS.encode())
    scored = head(b"GET", b"/orders")
    scored.headers[0] = (b"Host", b"127.0.0.1")  # 920350: 3 points, let through
    benign = head(b"GET", b"/orders")
    expected = {
        0: (False, False, False),
        1: (True, False, False),
        4: (True, True, False),
        5: (True, True, True),
    }
    for level, reported in expected.items():
        waf = waf_of(reporting_level=level) if level != 4 else waf_of()
        got = []
        for request_head in (attack, scored, benign):
            ctx = Context()
            waf.on_request_head(ctx, request_head, never)
            waf.on_exchange_done(ctx)
            got.append([e for e, _ in ctx.events].count("waf.report") == 1)
        assert tuple(got) == reported, level


# Early blocking


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_early_blocking_refuses_a_head_before_its_body(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    """With `early_blocking: true` a request whose head scores 10 is refused at the end of
    phase 1 (CRS 949111) although none of its 1 MiB body was sent: the client's answer does
    not wait for it, and the backend sees nothing."""
    gw = start(make_backend, make_gateway, pki, early_blocking=True)
    seen = requests_seen(gw)
    if protocol == "h2":
        client = H2Client(port_of(gw), pki.ca)
        try:
            headers = [(name.lower(), value) for name, value in SCANNER_HEAD.items()]
            sid = client.start("/upload", "POST", headers, end=False)
            (refused,) = client.wait(sid)
        finally:
            client.close()
        status = refused.status
    else:
        h1 = H1(gw)
        try:
            h1.send(request("/upload", SCANNER_HEAD).replace(b"GET ", b"POST ", 1))
            (answer,) = h1.responses(1)
        finally:
            h1.close()
        status = answer.status
    assert status == 403
    assert requests_seen(gw) == seen
    (event,) = events(gw, "waf.blocked")
    assert 949111 in event["detail"]["rule_ids"] and 949110 not in event["detail"]["rule_ids"]
    assert {913100, 920420} <= set(event["detail"]["rule_ids"])


def test_early_blocking_denies_in_phase_1_as_modsecurity_does(tmp_path: Path) -> None:
    """ModSecurity 2.9 given what the config key sets (tx.early_blocking=1 in the setup) denies
    the scanner's head in phase 1 with CRS 949111, before reading the body it announces."""
    apache = require_tool("apache2")
    require_file(oracle.MODULES / "mod_security2.so", "libapache2-mod-security2")
    setup = WafSpec(early_blocking=True).setup()
    head_only = request("/upload", SCANNER_HEAD).replace(b"GET ", b"POST ", 1)
    root = tmp_path / "modsecurity"
    with oracle.running(root, setup, apache) as server:
        # (Apache's status is its own: it tries to discard the body the client, having shut
        # its side, never sends, and answers 400. ModSecurity's decision is in its log.)
        _, unique_id = oracle.send(server.port, head_only)
    assert unique_id
    lines = [line for line in (root / "error.log").read_text().splitlines() if unique_id in line]
    denied = [line for line in lines if "Access denied with code 403 (phase 1)" in line]
    assert len(denied) == 1 and '[id "949111"]' in denied[0]


def test_without_early_blocking_the_score_is_judged_after_the_body(
    make_backend: Any, make_gateway: Any, pki: Pki
) -> None:
    """CRS's default: the same head is judged once its body is in (949110, phase 2)."""
    gw = start(make_backend, make_gateway, pki)
    headers = {**SCANNER_HEAD, "Content-Length": "4"}
    client = H1(gw)
    try:
        client.send(request("/upload", headers).replace(b"GET ", b"POST ", 1))
        client.send(b"data")
        (answer,) = client.responses(1)
    finally:
        client.close()
    assert answer.status == 403
    (event,) = events(gw, "waf.blocked")
    assert 949110 in event["detail"]["rule_ids"] and 949111 not in event["detail"]["rule_ids"]


def test_early_blocking_refuses_a_response_at_its_head(
    make_backend: Any, make_gateway: Any, pki: Pki
) -> None:
    """At paranoia level 2 a 5xx scores 5 at the response head (CRS 950100): with early
    blocking it is refused there (959101, phase 3), without its body being held; without, once
    the body was read (959100, phase 4)."""
    json_type = {"Content-Type": "application/json", "User-Agent": "curl/8", "Accept": "*/*"}
    error_page = b'{"status": 500, "body": "oops"}'  # text/plain: a body held for phase 4
    cases = ((True, 959101, 3), (False, 959100, 4))
    for count, (early, rule_id, phase) in enumerate(cases, 1):
        gw = start(make_backend, make_gateway, pki, paranoia_level=2, early_blocking=early)
        got = exchange(gw, pki, "http/1.1", "/reflect", json_type, error_page)
        assert got.status == 403 and b"oops" not in got.body
        blocked = events(gw, "waf.response_blocked")  # both gateways write to one file
        assert len(blocked) == count and events(gw, "waf.blocked") == []
        detail = blocked[-1]["detail"]
        assert detail["phase"] == phase and rule_id in detail["rule_ids"], detail


# A response without Content-Type: `null`


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_response_without_content_type_is_inspected_when_null_is_listed(
    make_backend: Any, make_gateway: Any, pki: Pki, protocol: str
) -> None:
    """ModSecurity 2 looks a response with no Content-Type up as `null` in its
    SecResponseBodyMimeType list: not in the default list (the leak passes, as it does with
    ModSecurity's recommended types), inspected once `null` is listed."""
    untyped = "/page?name=sql&type=none"
    plain = start(make_backend, make_gateway, pki)
    passed = exchange(plain, pki, protocol, untyped)
    assert (passed.status, passed.body) == (200, PAGES["sql"])
    assert "content-type" not in passed.headers
    gw = start(make_backend, make_gateway, pki, response_mime_types=["null", "text/html"])
    refused = exchange(gw, pki, protocol, untyped)
    assert refused.status == 403 and PAGES["sql"] not in refused.body
    (event,) = events(gw, "waf.response_blocked")
    assert 951230 in event["detail"]["rule_ids"] and event["detail"]["phase"] == 4
    benign = exchange(gw, pki, protocol, "/page?name=benign&type=none")
    assert (benign.status, benign.body) == (200, PAGES["benign"])
    assert "content-type" not in benign.headers
    # A type not listed is still not inspected.
    octets = exchange(gw, pki, protocol, "/page?name=sql&type=application/octet-stream")
    assert (octets.status, octets.body) == (200, PAGES["sql"])


def test_null_is_what_modsecurity_calls_a_response_without_content_type(tmp_path: Path) -> None:
    """ModSecurity 2.9 with the same CRS and setup, serving the SQL error page with no
    Content-Type (Apache without mod_mime types nothing): with `SecResponseBodyMimeType null`
    it refuses the page (403), with `text/html` only it lets it through untyped, as the
    gateway does with `response_mime_types` (the test above)."""
    apache = require_tool("apache2")
    require_file(oracle.MODULES / "mod_security2.so", "libapache2-mod-security2")
    got = {}
    for types in ("null text/html", "text/html"):
        root = tmp_path / types.replace(" ", "-").replace("/", "_")
        port = free_port()
        (root / "htdocs").mkdir(parents=True)
        (root / "htdocs" / "leak").write_bytes(PAGES["sql"])
        config = oracle.apache_config(root, port, Setup()) + (
            f"SecResponseBodyAccess On\nSecResponseBodyMimeType {types}\n"
        )
        with oracle.httpd(root, config, port, apache, tries=600):
            answer = b""
            data = b"GET /leak HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n"
            with socket.create_connection((oracle.HOST, port), timeout=30) as conn:
                conn.sendall(data + b"Accept: */*\r\n\r\n")
                conn.shutdown(socket.SHUT_WR)
                while chunk := conn.recv(65536):
                    answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        typed = b"content-type:" in head.lower()
        got[types] = (int(head.split(b" ", 2)[1]), PAGES["sql"] in body, typed)
    # Refused (the 403 is Apache's own page, typed), and let through untyped.
    assert got == {"null text/html": (403, False, True), "text/html": (200, True, False)}


def test_no_content_type_is_no_response_content_type_variable(tmp_path: Path) -> None:
    """In process: as ModSecurity 2, a response without Content-Type has no
    RESPONSE_CONTENT_TYPE (`&` counts 0), one with an empty Content-Type has an empty one."""
    rules = tmp_path / "rules.conf"
    rules.write_text(
        'SecRule &RESPONSE_CONTENT_TYPE "@eq 0" '
        "\"id:1020,phase:3,deny,status:403,msg:'no content type'\"\n"
    )
    waf = waf_of(exclusions=[str(rules)])
    for block, refused in (
        (b"", True),
        (b"content-type: \r\n", False),
        (b"content-type: text/html\r\n", False),
    ):
        ctx = Context()
        assert waf.on_request_head(ctx, head(b"GET", b"/orders"), never) is CONTINUE
        answer = waf.on_response_head(ctx, ResponseHead(200, b"OK", block, Framing.NONE, -1), never)
        assert isinstance(answer, Reply) == refused, block
    # The config takes `null` in any case, and still nothing that is not a type.
    assert waf_of(response_mime_types=["NULL"]).response_mime_types == frozenset({b"null"})
    with pytest.raises(Exception, match="response_mime_types"):
        waf_of(response_mime_types=["nothing"])
