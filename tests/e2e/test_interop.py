"""Interop matrix: real TLS clients through the running gateway to the real backend.

Every cell is its own test: one client, one suite or group or certificate type, one GET that
must come back with the backend's body.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import require_tool

from . import servers, tls_raw
from .clients import (
    GET_CLOSE,
    GET_KEEPALIVE,
    https_get,
    open_tls,
    read_http_response,
    run_tool,
    run_tool_until,
)
from .pki import KEY_KINDS

SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# openssl -groups name -> what `openssl s_client` prints as "Server Temp Key".
OPENSSL_GROUPS = {
    "x25519": "Server Temp Key: X25519",
    "P-256": "Server Temp Key: ECDH, prime256v1",
    "P-384": "Server Temp Key: ECDH, secp384r1",
}
# What `openssl s_client` prints as "Peer signature type" for each leaf kind.
OPENSSL_SIGNATURE = {
    "ecdsa-p256": ("ECDSA", "SHA256"),
    "ecdsa-p384": ("ECDSA", "SHA384"),
    "rsa-2048": ("RSA-PSS", None),
    "ed25519": ("ed25519", None),  # OpenSSL 3.0 prints it in lower case
}
# gnutls-cli priority names and the pieces of its "- Description:" line.
GNUTLS_SUITES = {
    "TLS_AES_128_GCM_SHA256": "AES-128-GCM",
    "TLS_AES_256_GCM_SHA384": "AES-256-GCM",
    "TLS_CHACHA20_POLY1305_SHA256": "CHACHA20-POLY1305",
}
GNUTLS_GROUPS = {
    "X25519": "ECDHE-X25519",
    "SECP256R1": "ECDHE-SECP256R1",
    "SECP384R1": "ECDHE-SECP384R1",
}
GNUTLS_SIGNATURE = {
    "ecdsa-p256": "ECDSA-SECP256R1-SHA256",
    "ecdsa-p384": "ECDSA-SECP384R1-SHA384",
    "rsa-2048": "RSA-PSS-RSAE-SHA",
    "ed25519": "EdDSA-Ed25519",
}


def s_client(openssl: str, port: int, ca: str, *extra: str) -> list[str]:
    return [
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        "-tls1_3", "-CAfile", ca, "-verify_return_error", "-verify_hostname", "localhost",
        "-ign_eof", *extra,
    ]  # fmt: skip


def assert_body(run, body: bytes) -> None:
    assert body.decode() in run.output, f"backend body missing from the response\n{run.explain()}"


@pytest.mark.parametrize("group", list(OPENSSL_GROUPS))
@pytest.mark.parametrize("suite", SUITES)
def test_openssl_s_client_suite_and_group(gateway, pki, backend, suite, group):
    openssl = require_tool("openssl")
    gw = gateway(cert="ecdsa-p256")
    argv = s_client(openssl, gw.port, str(pki.ca_cert), "-ciphersuites", suite, "-groups", group)
    run = run_tool(argv, stdin=GET_CLOSE)
    assert f"New, TLSv1.3, Cipher is {suite}" in run.output, run.explain()
    assert OPENSSL_GROUPS[group] in run.output, run.explain()
    assert "Verify return code: 0 (ok)" in run.output, run.explain()
    assert "HTTP/1.1 200" in run.output, run.explain()
    assert_body(run, backend.body)


@pytest.mark.parametrize("cert", KEY_KINDS)
def test_openssl_s_client_certificate_types(gateway, pki, backend, cert):
    openssl = require_tool("openssl")
    gw = gateway(cert=cert)
    run = run_tool(s_client(openssl, gw.port, str(pki.ca_cert)), stdin=GET_CLOSE)
    sig_type, digest = OPENSSL_SIGNATURE[cert]
    assert "New, TLSv1.3, Cipher is " in run.output, run.explain()
    assert f"Peer signature type: {sig_type}\n" in run.output, run.explain()
    if digest:
        assert f"Peer signing digest: {digest}" in run.output, run.explain()
    assert "Verify return code: 0 (ok)" in run.output, run.explain()
    assert_body(run, backend.body)


@pytest.mark.parametrize("group", ["X448", "P-521"])
def test_default_listener_refuses_opt_in_groups(gateway, pki, group):
    """x448 and secp521r1 are not offered by default: a client with nothing else must get
    handshake_failure (RFC 8446 4.1.1), not a hang or a crash."""
    openssl = require_tool("openssl")
    gw = gateway(cert="ecdsa-p256")
    if gw.kind != "outwork":
        pytest.skip("nginx offers x448 and P-521 by default")
    run = run_tool(s_client(openssl, gw.port, str(pki.ca_cert), "-groups", group), GET_CLOSE)
    assert "alert handshake failure" in run.output, run.explain()
    assert "Cipher is (NONE)" in run.output, run.explain()


def test_openssl_s_client_hello_retry_request(gateway, pki, backend):
    """The key share is for ffdhe2048, which outwork does not support; P-256 is offered too:
    the server must answer with a HelloRetryRequest (a second ClientHello) and finish."""
    openssl = require_tool("openssl")
    gw = gateway(cert="ecdsa-p256")
    if gw.kind != "outwork":
        pytest.skip("nginx takes the ffdhe2048 share: there is no HelloRetryRequest to see")
    argv = s_client(openssl, gw.port, str(pki.ca_cert), "-groups", "ffdhe2048:P-256", "-msg")
    run = run_tool(argv, stdin=GET_CLOSE)
    hellos = re.findall(r">>> TLS 1.3, Handshake \[length [0-9a-f]+\], ClientHello", run.output)
    assert len(hellos) == 2, f"expected a HelloRetryRequest\n{run.explain()}"
    assert OPENSSL_GROUPS["P-256"] in run.output, run.explain()
    assert_body(run, backend.body)


@pytest.mark.parametrize("command", ["k", "K"], ids=["key-update", "key-update-requested"])
def test_openssl_s_client_key_update(gateway, pki, backend, command):
    """s_client's interactive `k` sends a KeyUpdate, `K` one that asks the server to update
    its keys too (RFC 8446 4.6.3); the request after it must still get its answer."""
    openssl = require_tool("openssl")
    gw = gateway(cert="ecdsa-p256")
    argv = [a for a in s_client(openssl, gw.port, str(pki.ca_cert)) if a != "-ign_eof"]
    run = run_tool_until(argv, [b"", f"{command}\n".encode(), GET_CLOSE], until=backend.body)
    assert "KEYUPDATE" in run.output, run.explain()
    assert_body(run, backend.body)


@pytest.mark.parametrize("cert", KEY_KINDS)
def test_curl_get(gateway, pki, backend, cert):
    curl = require_tool("curl")
    gw = gateway(cert=cert)
    run = run_tool(
        [
            curl,
            "-sS",
            "--tlsv1.3",
            "--cacert",
            str(pki.ca_cert),
            "--max-time",
            "15",
            "--resolve",
            f"localhost:{gw.port}:127.0.0.1",
            "-w",
            "\n%{http_code}",
            f"https://localhost:{gw.port}/",
        ]  # fmt: skip
    )
    assert run.returncode == 0, run.explain()
    assert run.output == backend.body.decode() + "\n200", run.explain()


@pytest.mark.parametrize("suite", SUITES)
def test_curl_tls13_ciphers(gateway, pki, backend, suite):
    curl = require_tool("curl")
    gw = gateway(cert="ecdsa-p256")
    run = run_tool(
        [
            curl,
            "-sS",
            "-v",
            "--tlsv1.3",
            "--tls13-ciphers",
            suite,
            "--cacert",
            str(pki.ca_cert),
            "--max-time",
            "15",
            "--resolve",
            f"localhost:{gw.port}:127.0.0.1",
            f"https://localhost:{gw.port}/",
        ]  # fmt: skip
    )
    assert run.returncode == 0, run.explain()
    assert f"SSL connection using TLSv1.3 / {suite}" in run.output, run.explain()
    assert_body(run, backend.body)


def gnutls(gnutls_cli: str, port: int, ca: str, priority: str) -> list[str]:
    return [
        gnutls_cli, "--x509cafile", ca, "--priority", priority, "--sni-hostname", "localhost",
        "--verify-hostname", "localhost", "-p", str(port), "127.0.0.1",
    ]  # fmt: skip


TLS13_ONLY = "NORMAL:-VERS-ALL:+VERS-TLS1.3"


@pytest.mark.parametrize("cert", KEY_KINDS)
def test_gnutls_cli_certificate_types(gateway, pki, backend, cert):
    gnutls_cli = require_tool("gnutls-cli")
    gw = gateway(cert=cert)
    argv = gnutls(gnutls_cli, gw.port, str(pki.ca_cert), TLS13_ONLY)
    run = run_tool_until(argv, GET_CLOSE, until=backend.body)
    assert "- Handshake was completed" in run.output, run.explain()
    assert "- Status: The certificate is trusted." in run.output, run.explain()
    assert "(TLS1.3-X.509)" in run.output, run.explain()
    assert f"-({GNUTLS_SIGNATURE[cert]}" in run.output, run.explain()
    assert_body(run, backend.body)


@pytest.mark.parametrize("group", list(GNUTLS_GROUPS))
@pytest.mark.parametrize("suite", SUITES)
def test_gnutls_cli_suite_and_group(gateway, pki, backend, suite, group):
    gnutls_cli = require_tool("gnutls-cli")
    gw = gateway(cert="ecdsa-p256")
    cipher = GNUTLS_SUITES[suite]
    priority = f"{TLS13_ONLY}:-GROUP-ALL:+GROUP-{group}:-CIPHER-ALL:+{cipher}"
    argv = gnutls(gnutls_cli, gw.port, str(pki.ca_cert), priority)
    run = run_tool_until(argv, GET_CLOSE, until=backend.body)
    assert "- Handshake was completed" in run.output, run.explain()
    assert f"-({GNUTLS_GROUPS[group]})-" in run.output, run.explain()
    assert f"-({cipher})" in run.output, run.explain()
    assert_body(run, backend.body)


def test_gnutls_cli_half_close_still_gets_response(gateway, pki, backend):
    """gnutls-cli sends close_notify as soon as its stdin ends, right after the request.
    RFC 8446 6.1: close_notify closes the sender's write side only; the server must still
    send the response before its own close_notify (nginx does)."""
    gnutls_cli = require_tool("gnutls-cli")
    gw = gateway(cert="ecdsa-p256")
    run = run_tool(gnutls(gnutls_cli, gw.port, str(pki.ca_cert), TLS13_ONLY), stdin=GET_CLOSE)
    assert "- Handshake was completed" in run.output, run.explain()
    assert_body(run, backend.body)


@pytest.mark.parametrize("cert", KEY_KINDS)
def test_python_ssl_keepalive(gateway, pki, backend, cert):
    gw = gateway(cert=cert)
    with open_tls(gw.port, pki.ca_cert) as tls:
        assert tls.version() == "TLSv1.3"
        cipher = tls.cipher()
        assert cipher is not None and cipher[0] in SUITES
        for _ in range(3):  # keep-alive: several requests on one connection
            tls.sendall(GET_KEEPALIVE)
            resp = read_http_response(tls)
            assert resp.status == 200
            assert resp.body == backend.body


def test_python_ssl_rejects_wrong_name(gateway, pki):
    """A control: the client really verifies, so the passing cells above mean something."""
    import ssl

    gw = gateway(cert="ecdsa-p256")
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    with socket.create_connection(gw.address, timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="not-localhost.test")


# --- a broken connection never affects the others -------------------------------------------

BAD_CONNECTIONS = 300


def _bad_inputs(rng: random.Random) -> list[tuple[str, bytes]]:
    hello = tls_raw.client_hello().record
    cases: list[tuple[str, bytes]] = []
    for i in range(BAD_CONNECTIONS):
        kind = i % 10
        if kind == 0:
            cases.append(("garbage", rng.randbytes(rng.randint(1, 3000))))
        elif kind == 1:
            cases.append(("truncated-client-hello", hello[: rng.randint(1, len(hello) - 1)]))
        elif kind == 2:
            n = rng.randint(2**14 + 257, 2**16 - 1)
            cases.append(
                ("oversized-record", struct.pack("!BHH", 22, 0x0301, n) + rng.randbytes(n))
            )
        elif kind == 3:
            huge = tls_raw.handshake(1, b"")[:1] + b"\xff\xff\xff" + rng.randbytes(200)
            cases.append(("huge-handshake-length", tls_raw.record(22, huge, 0x0301)))
        elif kind == 4:
            mutated = bytearray(hello)
            for _ in range(rng.randint(1, 8)):
                mutated[rng.randrange(5, len(mutated))] = rng.randrange(256)
            cases.append(("mutated-client-hello", bytes(mutated)))
        elif kind == 5:
            cases.append(("plain-http", b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
        elif kind == 6:
            cases.append(("empty-records", tls_raw.record(22, b"", 0x0301) * 200))
        elif kind == 7:
            cases.append(("app-data-first", tls_raw.record(23, rng.randbytes(64))))
        elif kind == 8:
            cases.append(("hello-then-garbage", hello + rng.randbytes(rng.randint(1, 500))))
        else:
            cases.append(("nothing", b""))
    return cases


def _send_bad(gw: servers.Gateway, name: str, payload: bytes) -> str | None:
    """Send, half-close, read. Returns a problem description, or None if the server behaved."""
    try:
        with tls_raw.connect(gw.address, timeout=10) as sock:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the server gave up on us first; still read what it said
            got = tls_raw.receive(sock, total_timeout=10.0)
    except OSError as exc:
        return f"{name}: {exc!r}"
    if not got.eof:
        return f"{name}: server kept the connection open 10 s after our FIN"
    records, trailing = got.records()
    if servers.is_nginx_plain_http_answer(gw, got.data):
        return None
    if name in ("mutated-client-hello", "hello-then-garbage"):
        return None  # the server may legitimately have answered the hello first
    bad = [r.describe() for r in records if r.content_type != tls_raw.ALERT]
    if bad or trailing:
        return f"{name}: expected only alerts or nothing, got {bad} trailing={trailing[:32]!r}"
    return None


def test_good_connection_survives_flood_of_bad_ones(gateway, pki, backend):
    gw = gateway(cert="ecdsa-p256", fresh=True)
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    with open_tls(gw.port, pki.ca_cert) as held:
        held.sendall(GET_KEEPALIVE)
        assert read_http_response(held).body == backend.body

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=32) as pool:
            problems = [
                p for p in pool.map(lambda c: _send_bad(gw, *c), _bad_inputs(rng)) if p is not None
            ]
        elapsed = time.monotonic() - started

        # The held connection still works, and so does a new one.
        held.sendall(GET_KEEPALIVE)
        assert read_http_response(held).body == backend.body
    resp, version, _ = https_get(gw.port, pki.ca_cert)
    assert (resp.status, resp.body, version) == (200, backend.body, "TLSv1.3")
    assert gw.alive(), gw.stderr_since_mark()
    assert "Traceback" not in gw.stderr_since_mark()
    assert not problems, (
        f"{len(problems)} bad connections mishandled ({elapsed:.1f}s):\n" + "\n".join(problems[:20])
    )


@pytest.mark.parametrize(
    ("name", "payload", "alert"),
    [
        # RFC 8446 5.1: a TLSPlaintext longer than 2^14 gets record_overflow.
        ("oversized-plaintext-record", tls_raw.record(22, bytes(2**14 + 1), 0x0301), 22),
        # RFC 8446 5: an unknown record type gets unexpected_message.
        ("unknown-content-type", tls_raw.record(99, b"hello"), 10),
        # RFC 8446 5: application data before the handshake is an unexpected record.
        ("app-data-before-hello", tls_raw.record(23, bytes(32)), 10),
        # RFC 8446 5: change_cipher_spec is tolerated only after the first ClientHello.
        ("ccs-before-hello", tls_raw.record(20, b"\x01"), 10),
    ],
    ids=[
        "oversized-plaintext-record",
        "unknown-content-type",
        "app-data-before-hello",
        "ccs-before-hello",
    ],
)
def test_bad_record_gets_its_alert(gateway, name, payload, alert):
    gw = gateway(cert="ecdsa-p256")
    with tls_raw.connect(gw.address) as sock:
        sock.sendall(payload)
        got = tls_raw.receive(sock, total_timeout=5.0)
    if servers.is_nginx_plain_http_answer(gw, got.data):
        pytest.xfail("nginx answers non-TLS bytes with an HTTP 400 page")
    records, _ = got.records()
    alerts = [
        r.payload[1] for r in records if r.content_type == tls_raw.ALERT and len(r.payload) == 2
    ]
    assert got.eof, f"{name}: connection not closed; got {[r.describe() for r in records]}"
    assert alerts == [alert], (
        f"{name}: got {[r.describe() for r in records]}, raw {got.data[:64]!r}"
    )


@pytest.mark.parametrize("mode", ["one-byte-records", "one-byte-writes"])
def test_fragmented_client_hello_is_accepted(gateway, mode):
    """RFC 8446 5.1: a handshake message may be split over any number of records, and TCP
    may deliver a record in any number of pieces. Either way the ServerHello must come."""
    gw = gateway(cert="ecdsa-p256")
    hello = tls_raw.client_hello(heartbeat_mode=None)
    with tls_raw.connect(gw.address) as sock:
        if mode == "one-byte-records":
            msg = hello.message
            sock.sendall(
                b"".join(tls_raw.record(22, msg[i : i + 1], 0x0301) for i in range(len(msg)))
            )
        else:
            for byte in hello.record:
                sock.sendall(bytes([byte]))
                time.sleep(0.001)
        got = tls_raw.receive(sock, total_timeout=5.0, idle_timeout=1.0)
    records, _ = got.records()
    described = [r.describe() for r in records]
    assert tls_raw.find_server_hello(records) is not None, f"no ServerHello: {described}"
    assert not any(r.content_type == tls_raw.ALERT for r in records), described


# A listener's default groups (outwork.tls.config.DEFAULT_GROUPS); x448 and secp521r1 are
# opt-in (`tls.groups`, not in the config schema yet).
ENGINE_GROUPS = ("X25519MLKEM768", "X25519", "SECP256R1", "SECP384R1")


@pytest.mark.parametrize("group", ENGINE_GROUPS)
def test_engine_client_each_group(gateway, engine_client, backend, group):
    """outwork's own client through the gateway, one group at a time: the only local peer
    for X25519MLKEM768 (OpenSSL 3.0 and GnuTLS 3.7 predate it)."""
    from outwork.tls.enums import NamedGroup

    named = NamedGroup[group]
    gw = gateway(cert="ecdsa-p256")
    if gw.kind != "outwork" and named == NamedGroup.X25519MLKEM768:
        pytest.skip("the reference nginx (OpenSSL 3.0) has no X25519MLKEM768")
    client = engine_client(gw, groups=(named,), key_share_groups=(named,))
    client.handshake()
    done = [e for e in client.events if isinstance(e, client.ev.HandshakeComplete)]
    assert done and done[0].group == named, client.events
    assert backend.body in client.get(backend.body), client.events
