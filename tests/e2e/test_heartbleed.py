"""Heartbleed (CVE-2014-0160) against the running gateway, heartbeat on and off.

A probe is a heartbeat request whose payload_length claims more than the record carries. The
gateway must never answer one with more than was sent (nothing, or one alert), and must log a
`tls.heartbleed_probe` security event naming the peer. Then three real scanners must report
"not vulnerable", read from their own reports; a deliberately leaky fake server proves the
same parsers do say "vulnerable" when it is true.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool

from . import scanners, servers, tls_raw
from .clients import GET_KEEPALIVE
from .conftest import sslyze_path
from .tls13_client import MiniTLS13Client

CLAIMED = 16384
MARKER = b"HEARTBLEED-PROBE"
# The largest thing the gateway may send after a probe: one alert, in plaintext (7 bytes) or
# protected by TLS 1.3 (5 header + 2 alert + 1 inner type + 16 tag = 24 bytes).
MAX_ALERT_RECORD = 24


def probe_record(variant: str) -> bytes:
    if variant == "bare":  # the classic exploit: type and length, not a byte of payload
        return tls_raw.record(tls_raw.HEARTBEAT, b"\x01" + CLAIMED.to_bytes(2, "big"))
    message = tls_raw.heartbeat_request(CLAIMED, MARKER, padding=16)
    return tls_raw.record(tls_raw.HEARTBEAT, message)


def peer_matches(event: dict[str, object], local_port: int) -> bool:
    return event.get("event") == "tls.heartbleed_probe" and str(event.get("peer", "")).endswith(
        f":{local_port}"
    )


def assert_no_leak(got: tls_raw.Received, sent: bytes, context: str) -> None:
    records, trailing = got.records()
    described = [r.describe() for r in records]
    assert not any(r.content_type == tls_raw.HEARTBEAT for r in records), (
        f"{context}: the server answered a lying heartbeat: {described}"
    )
    assert MARKER not in got.data, f"{context}: our payload came back"
    assert len(got.data) <= max(len(sent), MAX_ALERT_RECORD), (
        f"{context}: {len(got.data)} bytes back for a {len(sent)}-byte probe: {described}"
    )
    assert len(records) <= 1 and not trailing, f"{context}: more than one alert: {described}"
    for r in records:
        assert r.content_type in (tls_raw.ALERT, tls_raw.APPLICATION_DATA), described


def assert_probe_logged(
    gw: servers.Gateway, local_port: int, *, encrypted: bool, carried: int | None
) -> None:
    """The `tls.heartbleed_probe` line for this peer; `carried` is the number of bytes after
    the 3-byte heartbeat header (payload and padding), None when unknown."""
    if gw.kind != "outwork":
        return  # the reference nginx has no security events to look at
    event = gw.wait_for_event(lambda e: peer_matches(e, local_port), timeout=5.0)
    assert event is not None, (
        f"no tls.heartbleed_probe event for peer port {local_port} in {gw.events_path}:\n"
        + "\n".join(str(e) for e in gw.events()[-10:])
    )
    assert event.get("listener") == "public", event
    assert "time" in event, event
    detail = event.get("detail")
    assert isinstance(detail, dict), event
    assert detail.get("claimed_length") == CLAIMED, event
    assert detail.get("encrypted") is encrypted, event
    if carried is not None:
        assert detail.get("actual_length") == carried, event


def handshake_until_server_hello(sock: socket.socket) -> list[tls_raw.Record]:
    sock.sendall(tls_raw.client_hello(heartbeat_mode=1).record)
    # The whole server flight: ServerHello, CCS, then the protected handshake messages.
    got = tls_raw.receive(sock, total_timeout=5.0, idle_timeout=0.5)
    records, _ = got.records()
    server_hello = tls_raw.find_server_hello(records)
    assert server_hello is not None, f"no ServerHello: {[r.describe() for r in records]}"
    assert server_hello[2:34] != tls_raw.HRR_RANDOM, "got a HelloRetryRequest for x25519"
    assert not got.eof, "server closed after its ServerHello"
    return records


@pytest.mark.parametrize("variant", ["with-payload", "bare"])
@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_plaintext_probe_after_server_hello(gateway, heartbeat, variant):
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    with tls_raw.connect(gw.address) as sock:
        local_port = sock.getsockname()[1]
        handshake_until_server_hello(sock)
        probe = probe_record(variant)
        sock.sendall(probe)
        got = tls_raw.receive(sock, total_timeout=1.5)
    assert_no_leak(got, probe, f"plaintext {variant} probe, heartbeat {heartbeat}")
    carried = len(probe) - 5 - 3
    if gw.kind == "outwork":
        if heartbeat:  # RFC 6520 4: discarded silently
            assert got.data == b"", f"expected silence, got {got.records()[0]}"
        else:  # off: unexpected_message, and the connection is closed
            assert got.eof and got.data, "expected an alert and a close"
    assert_probe_logged(gw, local_port, encrypted=False, carried=carried)


PROBE_COUNTER = 'outwork_security_events_total{event="tls.heartbleed_probe"}'


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_probe_is_counted(gateway, heartbeat):
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    if gw.kind != "outwork":
        pytest.skip("the reference nginx has no security-event counters")
    before = gw.metric(PROBE_COUNTER)
    with tls_raw.connect(gw.address) as sock:
        local_port = sock.getsockname()[1]
        handshake_until_server_hello(sock)
        sock.sendall(probe_record("bare"))
        tls_raw.receive(sock, total_timeout=0.5)
    assert_probe_logged(gw, local_port, encrypted=False, carried=0)
    assert gw.metric(PROBE_COUNTER) == before + 1


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_plaintext_probe_before_client_hello(gateway, heartbeat):
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    with tls_raw.connect(gw.address) as sock:
        local_port = sock.getsockname()[1]
        probe = probe_record("with-payload")
        sock.sendall(probe)
        got = tls_raw.receive(sock, total_timeout=1.5)
    if servers.is_nginx_plain_http_answer(gw, got.data):
        pytest.xfail("nginx answers non-TLS bytes with an HTTP 400 page")
    assert_no_leak(got, probe, f"probe as first record, heartbeat {heartbeat}")
    assert_probe_logged(gw, local_port, encrypted=False, carried=len(probe) - 5 - 3)


# --- inside the encrypted session, with the engine's own client ------------------------------


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_in_session_probe(gateway, engine_client, backend, heartbeat):
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    client = engine_client(gw, heartbeat=True)
    client.handshake()
    assert backend.body in client.get(backend.body), f"no body before the probe: {client.events}"
    client.pump(0.3)  # drain anything post-handshake (tickets) before the probe

    message = tls_raw.heartbeat_request(CLAIMED, MARKER, padding=16)
    client.conn.send_raw_record(tls_raw.HEARTBEAT, message)
    sent = client.conn.data_to_send()
    client.sock.sendall(sent)
    raw = client.pump(1.5)
    assert_no_leak(tls_raw.Received(raw, eof=False), sent, f"in-session, heartbeat {heartbeat}")
    assert_probe_logged(gw, client.local_port, encrypted=True, carried=len(message) - 3)
    if gw.kind == "outwork" and heartbeat:
        # Dropped silently, and the session carries on.
        assert raw == b"", "expected no answer to the probe"
        assert backend.body in client.get(backend.body), f"session broken: {client.events}"
    else:
        alerts = [e for e in client.events if isinstance(e, client.ev.AlertReceived)]
        assert alerts and alerts[0].description == 10, f"expected unexpected_message: {alerts}"


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_in_session_honest_heartbeat(gateway, engine_client, heartbeat):
    """The control: an honest request is answered when on (RFC 6520), refused when off."""
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    if gw.kind != "outwork" and heartbeat:
        pytest.skip("the reference nginx (OpenSSL 3) has no heartbeat support to turn on")
    client = engine_client(gw, heartbeat=True)
    client.handshake()
    client.pump(0.3)
    payload = b"honest-heartbeat"  # 16 bytes
    client.conn.send_heartbeat_request(payload)
    client.flush()
    raw = client.pump(1.5)
    records, _ = tls_raw.Received(raw, eof=False).records()
    if heartbeat:
        # type(1) + length(2) + payload + padding(>=16), inner type(1), AEAD tag(16)
        smallest = 1 + 2 + len(payload) + 16 + 1 + 16
        assert len(records) == 1, [r.describe() for r in records]
        assert records[0].content_type == tls_raw.APPLICATION_DATA
        assert smallest <= len(records[0].payload) <= smallest + 256, records[0].describe()
        assert not client.conn.is_closed
    else:
        alerts = [e for e in client.events if isinstance(e, client.ev.AlertReceived)]
        assert alerts and alerts[0].description == 10, f"expected unexpected_message: {alerts}"


# --- inside the session, with the tests' own TLS 1.3 client ---------------------------------


def _mini_client(gw: servers.Gateway, finish: bool) -> tuple[MiniTLS13Client, int]:
    sock = tls_raw.connect(gw.address)
    client = MiniTLS13Client(sock)
    client.handshake(finish=finish)
    return client, sock.getsockname()[1]


@pytest.mark.parametrize("keys", ["application", "handshake"])
@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_protected_probe_independent_client(gateway, backend, heartbeat, keys):
    """A lying heartbeat protected with the application keys (after our Finished) or with the
    handshake keys (server flight read, our Finished not yet sent)."""
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    client, local_port = _mini_client(gw, finish=keys == "application")
    try:
        if keys == "application":
            client.send(tls_raw.APPLICATION_DATA, GET_KEEPALIVE)
            answer, _ = client.receive(1.0)
            assert backend.body in b"".join(r.content for r in answer if r.content_type == 23)
        message = tls_raw.heartbeat_request(CLAIMED, MARKER, padding=16)
        sent = client.send(tls_raw.HEARTBEAT, message)
        received, closed = client.receive(1.5)
    finally:
        client.sock.close()
    # A NewSessionTicket may come at any point here; it is not an answer to the probe.
    got = [(r.content_type, r.content) for r in received if r.content_type != tls_raw.HANDSHAKE]
    raw = sum(r.wire_length for r in received if r.content_type != tls_raw.HANDSHAKE)
    context = f"{keys} keys, heartbeat {heartbeat}"
    assert not any(t == tls_raw.HEARTBEAT for t, _ in got), f"{context}: answered: {got}"
    assert raw <= max(len(sent), MAX_ALERT_RECORD), f"{context}: {raw} bytes back: {got}"
    assert_probe_logged(gw, local_port, encrypted=True, carried=len(message) - 3)
    if gw.kind == "outwork" and heartbeat:
        assert got == [] and not closed, f"{context}: expected silence, got {got}"
    else:
        assert got == [(tls_raw.ALERT, b"\x02\x0a")] and closed, f"{context}: {got}"


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
def test_honest_heartbeat_answer_is_exact(gateway, heartbeat):
    """RFC 6520 4: the response echoes exactly the payload, with at least 16 bytes of padding
    (read decrypted, which the engine's own client cannot show). Off: unexpected_message."""
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    if gw.kind != "outwork" and heartbeat:
        pytest.skip("the reference nginx (OpenSSL 3) has no heartbeat support to turn on")
    client, _ = _mini_client(gw, finish=True)
    payload = b"honest heartbeat, 33 bytes long.."
    try:
        client.send(tls_raw.HEARTBEAT, tls_raw.heartbeat_request(len(payload), payload, 16))
        received, closed = client.receive(1.5)
    finally:
        client.sock.close()
    # Session tickets, if any, are not part of the answer.
    got = [(r.content_type, r.content) for r in received if r.content_type != tls_raw.HANDSHAKE]
    if heartbeat:
        assert len(got) == 1 and got[0][0] == tls_raw.HEARTBEAT, got
        response = got[0][1]
        assert response[:3] == b"\x02" + len(payload).to_bytes(2, "big"), response
        assert response[3 : 3 + len(payload)] == payload, response
        assert 16 <= len(response) - 3 - len(payload) <= 256, f"padding: {response!r}"
        assert not closed
    else:
        assert got == [(tls_raw.ALERT, b"\x02\x0a")] and closed, got


# --- scanners ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference_nginx(tmp_path_factory, pki, backend) -> Iterator[servers.Gateway]:
    gw = servers.start_nginx(
        tmp_path_factory.mktemp("reference-nginx"), pki.leaves["ecdsa-p256"], backend.port
    )
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def leaky_server(tmp_path_factory, pki) -> Iterator[int]:
    import subprocess

    workdir = tmp_path_factory.mktemp("leaky")
    script = Path(__file__).with_name("leaky_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pki.leaves["ecdsa-p256"].cert)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=(workdir / "leaky.stderr").open("wb"),
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    assert line.startswith("READY "), line
    yield int(line.split()[1])
    servers.stop_process(proc)


def run_scanner(name: str, port: int, workdir: Path) -> scanners.Verdict:
    if name == "testssl":
        verdict, _ = scanners.testssl_heartbleed(
            require_tool("testssl", "testssl.sh"), port, workdir
        )
    elif name == "nmap":
        verdict, _ = scanners.nmap_heartbleed(require_tool("nmap"), port, workdir)
    else:
        verdict, _ = scanners.sslyze_heartbleed(sslyze_path(), port, workdir)
    return verdict


SCANNERS = ["testssl", "nmap", "sslyze"]


@pytest.mark.parametrize("heartbeat", [False, True], ids=["heartbeat-off", "heartbeat-on"])
@pytest.mark.parametrize("scanner", SCANNERS)
def test_scanner_finds_gateway_not_vulnerable(gateway, tmp_path, scanner, heartbeat):
    gw = gateway(cert="ecdsa-p256", heartbeat=heartbeat)
    verdict = run_scanner(scanner, gw.port, tmp_path)
    assert verdict.vulnerable is False, verdict
    assert gw.alive()


@pytest.mark.parametrize("scanner", SCANNERS)
def test_scanner_control_nginx_not_vulnerable(reference_nginx, tmp_path, scanner):
    verdict = run_scanner(scanner, reference_nginx.port, tmp_path)
    assert verdict.vulnerable is False, verdict


@pytest.mark.parametrize("variant", ["with-payload", "bare"])
def test_raw_probe_control_catches_leaky_server(leaky_server, variant):
    """The raw-socket client and its checks, against a server that does leak: they must fail."""
    with tls_raw.connect(("127.0.0.1", leaky_server)) as sock:
        handshake_until_server_hello(sock)
        probe = probe_record(variant)
        sock.sendall(probe)
        got = tls_raw.receive(sock, total_timeout=1.5)
    with pytest.raises(AssertionError, match="answered a lying heartbeat"):
        assert_no_leak(got, probe, "leaky control")


@pytest.mark.parametrize("scanner", ["testssl", "nmap"])  # sslyze needs a real handshake first
def test_scanner_control_leaky_server_is_vulnerable(leaky_server, tmp_path, scanner):
    verdict = run_scanner(scanner, leaky_server, tmp_path)
    assert verdict.vulnerable is True, verdict
