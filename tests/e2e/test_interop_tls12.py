"""Issue 3 interop matrix: real clients through a running `outwork serve` whose listener has an
ECDSA P-256 and an RSA-2048 certificate for the same names (two `tls.certificates` entries),
TLS 1.2 and 1.3, every suite each client offers. Every cell is its own test, gets the backend's
body, and finds its request in the gateway's access log (`logging.access_log`) with the
version, suite and group the client saw.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.conftest import require_tool

from . import listeners, tls_raw
from .clients import get_close, new_tag, read_http_response, run_tool, run_tool_until, tagged_path

# OpenSSL name -> (IANA name as the access log writes it, certificate kind it needs).
TLS12_SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ecdsa"),
    "ECDHE-ECDSA-AES256-GCM-SHA384": ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ecdsa"),
    "ECDHE-ECDSA-CHACHA20-POLY1305": ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ecdsa"),
    "ECDHE-RSA-AES128-GCM-SHA256": ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "rsa"),
    "ECDHE-RSA-AES256-GCM-SHA384": ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "rsa"),
    "ECDHE-RSA-CHACHA20-POLY1305": ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "rsa"),
}
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# TLS 1.3 certificate choice by what the client can verify: offer one signature scheme only.
TLS13_SIGALGS = {"ecdsa": "ecdsa_secp256r1_sha256", "rsa": "rsa_pss_rsae_sha256"}
PEER_SIGNATURE = {"ecdsa": "Peer signature type: ECDSA\n", "rsa": "Peer signature type: RSA-PSS\n"}
GNUTLS_CIPHERS = {"AES-128-GCM": "AES_128_GCM", "AES-256-GCM": "AES_256_GCM"}
GNUTLS_CIPHERS["CHACHA20-POLY1305"] = "CHACHA20_POLY1305"
GNUTLS_KX = {"ecdsa": "ECDHE-ECDSA", "rsa": "ECDHE-RSA"}
# How gnutls-cli describes the TLS 1.2 ServerKeyExchange signature.
GNUTLS_SIG = {"ecdsa": "(ECDSA-SHA256)", "rsa": "(RSA-PSS-RSAE-SHA256)"}


@pytest.fixture
def dual_gateway(tls_gateway, pki):
    return tls_gateway("dual", pki.leaves["ecdsa-p256"], listeners.dual(pki))


def s_client(openssl: str, port: int, ca: Path, version: str, *extra: str) -> list[str]:
    return [
        openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        version, "-CAfile", str(ca), "-verify_return_error", "-verify_hostname", "localhost",
        "-ign_eof", *extra,
    ]  # fmt: skip


def curl_argv(curl: str, port: int, ca: Path, tag: str, *extra: str) -> list[str]:
    return [
        curl, "-sS", "-v", "--cacert", str(ca), "--max-time", "15",
        "--resolve", f"localhost:{port}:127.0.0.1", *extra,
        f"https://localhost:{port}{tagged_path(tag)}",
    ]  # fmt: skip


def gnutls_argv(gnutls_cli: str, port: int, ca: Path, priority: str) -> list[str]:
    return [
        gnutls_cli, "--x509cafile", str(ca), "--priority", priority, "--sni-hostname",
        "localhost", "--verify-hostname", "localhost", "-p", str(port), "127.0.0.1",
    ]  # fmt: skip


def assert_logged(gw: Any, tag: str, version: str, cipher: str | None = None, **tls: Any) -> dict:
    entry = gw.access_for(tag)
    assert entry["status"] == 200, entry
    got = entry["tls"]
    assert got is not None and got["version"] == version, entry
    if cipher is not None:
        assert got["cipher"] == cipher, entry
    for name, value in tls.items():
        assert got[name] == value, (name, entry)
    assert got["sni"] == "localhost", entry
    assert isinstance(got["ja4"], str) and got["ja4"].startswith(f"t1{version[-1]}"), entry
    assert got["client_subject"] is None and got["client_fingerprint"] is None, entry
    return entry


# --- openssl s_client ----------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(TLS12_SUITES))
def test_openssl_tls12_suite(dual_gateway, pki, backend, suite):
    openssl = require_tool("openssl")
    iana, kind = TLS12_SUITES[suite]
    tag = new_tag()
    run = run_tool(
        s_client(openssl, dual_gateway.port, pki.ca_cert, "-tls1_2", "-cipher", suite),
        stdin=get_close(tag),
    )
    assert f"New, TLSv1.2, Cipher is {suite}" in run.output, run.explain()
    assert PEER_SIGNATURE[kind] in run.output, run.explain()
    assert "Verify return code: 0 (ok)" in run.output, run.explain()
    assert "Extended master secret: yes" in run.output, run.explain()
    # RFC 5746: the server answered renegotiation_info.
    assert "Secure Renegotiation IS supported" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_logged(dual_gateway, tag, "1.2", iana, resumed=False)


@pytest.mark.parametrize("kind", list(TLS13_SIGALGS))
@pytest.mark.parametrize("suite", TLS13_SUITES)
def test_openssl_tls13_suite_and_certificate(dual_gateway, pki, backend, suite, kind):
    openssl = require_tool("openssl")
    tag = new_tag()
    argv = s_client(
        openssl, dual_gateway.port, pki.ca_cert, "-tls1_3", "-ciphersuites", suite,
        "-sigalgs", TLS13_SIGALGS[kind],
    )  # fmt: skip
    run = run_tool(argv, stdin=get_close(tag))
    assert f"New, TLSv1.3, Cipher is {suite}" in run.output, run.explain()
    assert PEER_SIGNATURE[kind] in run.output, run.explain()
    assert "Verify return code: 0 (ok)" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_logged(dual_gateway, tag, "1.3", suite)


@pytest.mark.parametrize("group", ["X25519", "P-256", "P-384"])
def test_openssl_tls12_group(dual_gateway, pki, backend, group):
    openssl = require_tool("openssl")
    tag = new_tag()
    argv = s_client(openssl, dual_gateway.port, pki.ca_cert, "-tls1_2", "-groups", group)
    run = run_tool(argv, stdin=get_close(tag))
    # (with X25519 alone, RFC 8422 rules out the P-256 ECDSA certificate: RSA is chosen)
    assert "New, TLSv1.2, Cipher is ECDHE-" in run.output, run.explain()
    expected = {"X25519": "X25519", "P-256": "ECDH, prime256v1", "P-384": "ECDH, secp384r1"}
    assert f"Server Temp Key: {expected[group]}" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    names = {"X25519": "x25519", "P-256": "secp256r1", "P-384": "secp384r1"}
    assert_logged(dual_gateway, tag, "1.2", group=names[group])


def test_tls12_server_hello_carries_downgrade_sentinel(dual_gateway, pki):
    """RFC 8446 4.1.3: a TLS 1.3 server that negotiates TLS 1.2 ends ServerHello.random with
    44 4F 57 4E 47 52 44 01 ("DOWNGRD\\x01"), so a 1.3 client can detect a downgrade attack."""
    openssl = require_tool("openssl")
    argv = s_client(openssl, dual_gateway.port, pki.ca_cert, "-tls1_2", "-msg")
    # Without -ign_eof, s_client ends (close_notify) as soon as its empty stdin does.
    run = run_tool([a for a in argv if a != "-ign_eof"], b"")
    assert "New, TLSv1.2" in run.output, run.explain()
    m = re.search(
        r"<<< TLS 1.2, Handshake \[length [0-9a-f]+\], ServerHello\n((?:    .*\n)+)", run.output
    )
    assert m, run.explain()
    hello = bytes.fromhex("".join(m.group(1).split()))
    assert hello[0] == 2 and hello[4:6] == b"\x03\x03", hello.hex()
    assert hello[6 + 24 : 6 + 32] == b"DOWNGRD\x01", hello[6 : 6 + 32].hex()


# --- curl ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suite", list(TLS12_SUITES))
def test_curl_tls12_suite(dual_gateway, pki, backend, suite):
    curl = require_tool("curl")
    iana, _kind = TLS12_SUITES[suite]
    tag = new_tag()
    run = run_tool(
        curl_argv(
            curl,
            dual_gateway.port,
            pki.ca_cert,
            tag,
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--ciphers",
            suite,
        )  # fmt: skip
    )
    assert run.returncode == 0, run.explain()
    assert f"SSL connection using TLSv1.2 / {suite}" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_logged(dual_gateway, tag, "1.2", iana, alpn="h2")


@pytest.mark.parametrize("suite", TLS13_SUITES)
def test_curl_tls13_suite(dual_gateway, pki, backend, suite):
    curl = require_tool("curl")
    tag = new_tag()
    run = run_tool(
        curl_argv(curl, dual_gateway.port, pki.ca_cert, tag, "--tlsv1.3", "--tls13-ciphers", suite)
    )
    assert run.returncode == 0, run.explain()
    assert f"SSL connection using TLSv1.3 / {suite}" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_logged(dual_gateway, tag, "1.3", suite, alpn="h2")


# --- gnutls-cli ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(GNUTLS_KX))
@pytest.mark.parametrize("cipher", list(GNUTLS_CIPHERS))
def test_gnutls_tls12(dual_gateway, pki, backend, cipher, kind):
    gnutls_cli = require_tool("gnutls-cli")
    tag = new_tag()
    priority = f"NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+{GNUTLS_KX[kind]}:-CIPHER-ALL:+{cipher}"
    run = run_tool_until(
        gnutls_argv(gnutls_cli, dual_gateway.port, pki.ca_cert, priority),
        get_close(tag),
        until=backend.body,
    )
    assert "- Handshake was completed" in run.output, run.explain()
    assert "- Status: The certificate is trusted." in run.output, run.explain()
    assert "(TLS1.2-X.509)" in run.output, run.explain()
    assert GNUTLS_SIG[kind] in run.output, run.explain()
    assert f"-({cipher})" in run.output, run.explain()
    assert "- Options: extended master secret, safe renegotiation" in run.output, run.explain()
    assert backend.body in run.output.encode(), run.explain()
    suite = f"TLS_{GNUTLS_KX[kind].replace('-', '_')}_WITH_{GNUTLS_CIPHERS[cipher]}_"
    entry = assert_logged(dual_gateway, tag, "1.2")
    assert entry["tls"]["cipher"].startswith(suite), entry


@pytest.mark.parametrize("cipher", list(GNUTLS_CIPHERS))
def test_gnutls_tls13(dual_gateway, pki, backend, cipher):
    gnutls_cli = require_tool("gnutls-cli")
    tag = new_tag()
    priority = f"NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+{cipher}"
    run = run_tool_until(
        gnutls_argv(gnutls_cli, dual_gateway.port, pki.ca_cert, priority),
        get_close(tag),
        until=backend.body,
    )
    assert "- Handshake was completed" in run.output, run.explain()
    assert "- Status: The certificate is trusted." in run.output, run.explain()
    assert "(TLS1.3-X.509)" in run.output, run.explain()
    assert f"-({cipher})" in run.output, run.explain()
    assert backend.body in run.output.encode(), run.explain()
    entry = assert_logged(dual_gateway, tag, "1.3")
    assert (
        entry["tls"]["cipher"]
        == f"TLS_{GNUTLS_CIPHERS[cipher]}_SHA{'384' if '256' in cipher else '256'}"
    ), entry


# --- Python ssl ----------------------------------------------------------------------------


def _python_get(port: int, ctx: ssl.SSLContext, tag: str) -> tuple[bytes, str | None, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(get_close(tag))
            resp = read_http_response(tls)
            assert resp.status == 200
            return resp.body, tls.version(), tls.cipher()


@pytest.mark.parametrize("suite", list(TLS12_SUITES))
def test_python_ssl_tls12_suite(dual_gateway, pki, backend, suite):
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(suite)
    tag = new_tag()
    body, version, cipher = _python_get(dual_gateway.port, ctx, tag)
    assert (body, version) == (backend.body, "TLSv1.2")
    assert cipher is not None and cipher[0] == suite
    assert_logged(dual_gateway, tag, "1.2", TLS12_SUITES[suite][0])


def test_python_ssl_tls13(dual_gateway, pki, backend):
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    tag = new_tag()
    body, version, cipher = _python_get(dual_gateway.port, ctx, tag)
    assert (body, version) == (backend.body, "TLSv1.3")
    assert cipher is not None and cipher[0] in TLS13_SUITES
    assert_logged(dual_gateway, tag, "1.3", cipher[0])


# --- TLS 1.2 policy: min_version and extended master secret ---------------------------------

# OpenSSL 3.0's SSL_OP_NO_EXTENDED_MASTER_SECRET (Python's ssl has no name for it).
OP_NO_EXTENDED_MASTER_SECRET = 1 << 0


def _tls12_without_ems(port: int, ca: Path) -> tuple[bytes | None, str]:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= OP_NO_EXTENDED_MASTER_SECRET
    try:
        body, _version, _cipher = _python_get(port, ctx, new_tag("no-ems"))
    except ssl.SSLError as exc:
        return None, str(exc)
    return body, "ok"


def test_tls12_without_ems_is_refused_by_default(dual_gateway, pki):
    """`require_ems: true` is the default: a TLS 1.2 client without extended master secret
    (RFC 7627) gets handshake_failure, and the gateway says why."""
    body, error = _tls12_without_ems(dual_gateway.port, pki.ca_cert)
    assert body is None and "handshake failure" in error, error
    event = dual_gateway.wait_for_event(
        lambda e: (
            e.get("event") == "tls.handshake_failed"
            and "extended master secret" in str(e.get("detail"))
        )
    )
    assert event is not None and event["detail"]["alert"] == "handshake_failure", (
        dual_gateway.events()[-3:]
    )


def test_tls12_without_ems_accepted_when_not_required(tls_gateway, pki, backend):
    gw = tls_gateway("no-ems", pki.leaves["ecdsa-p256"], listeners.dual(pki, require_ems=False))
    body, error = _tls12_without_ems(gw.port, pki.ca_cert)
    assert body == backend.body, error


def test_gnutls_without_session_hash(tls_gateway, dual_gateway, pki, backend):
    """The same with GnuTLS (%NO_SESSION_HASH: no EMS): refused by default, served with
    `require_ems: false`."""
    gnutls_cli = require_tool("gnutls-cli")
    priority = "NORMAL:-VERS-ALL:+VERS-TLS1.2:%NO_SESSION_HASH"
    refused = run_tool(gnutls_argv(gnutls_cli, dual_gateway.port, pki.ca_cert, priority), stdin=b"")
    assert "- Handshake was completed" not in refused.output, refused.explain()
    assert "Handshake failed" in refused.output, refused.explain()
    gw = tls_gateway("no-ems", pki.leaves["ecdsa-p256"], listeners.dual(pki, require_ems=False))
    run = run_tool_until(
        gnutls_argv(gnutls_cli, gw.port, pki.ca_cert, priority), get_close(new_tag()),
        until=backend.body,
    )  # fmt: skip
    assert "- Handshake was completed" in run.output, run.explain()
    assert backend.body in run.output.encode(), run.explain()


def test_min_version_13_refuses_tls12(tls_gateway, pki, backend):
    openssl = require_tool("openssl")
    gw = tls_gateway("tls13-only", pki.leaves["ecdsa-p256"], listeners.dual(pki, min_version="1.3"))
    run = run_tool(s_client(openssl, gw.port, pki.ca_cert, "-tls1_2"), stdin=b"")
    assert "alert protocol version" in run.output, run.explain()
    assert "Cipher is (NONE)" in run.output, run.explain()
    tag = new_tag()
    ok = run_tool(s_client(openssl, gw.port, pki.ca_cert, "-tls1_3"), stdin=get_close(tag))
    assert backend.body.decode() in ok.output, ok.explain()
    assert_logged(gw, tag, "1.3")


# --- extra groups (tls.groups) -------------------------------------------------------------

ALL_GROUPS = ["X25519MLKEM768", "x25519", "secp256r1", "secp384r1", "x448", "secp521r1"]
EXTRA_GROUPS = {
    "x448": ("X448", "Server Temp Key: X448", "GROUP-X448", "(ECDHE-X448)"),
    "secp521r1": (
        "P-521",
        "Server Temp Key: ECDH, secp521r1",
        "GROUP-SECP521R1",
        "(ECDHE-SECP521R1)",
    ),
}


@pytest.fixture
def groups_gateway(tls_gateway, pki):
    return tls_gateway("groups", pki.leaves["ecdsa-p256"], listeners.dual(pki, groups=ALL_GROUPS))


@pytest.mark.parametrize("group", list(EXTRA_GROUPS))
def test_openssl_extra_group(groups_gateway, pki, backend, group):
    openssl = require_tool("openssl")
    name, temp_key, _, _ = EXTRA_GROUPS[group]
    tag = new_tag()
    argv = s_client(openssl, groups_gateway.port, pki.ca_cert, "-tls1_3", "-groups", name)
    run = run_tool(argv, stdin=get_close(tag))
    assert temp_key in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_logged(groups_gateway, tag, "1.3", group=group)


@pytest.mark.parametrize("group", list(EXTRA_GROUPS))
def test_gnutls_extra_group(groups_gateway, pki, backend, group):
    gnutls_cli = require_tool("gnutls-cli")
    _, _, priority_group, described = EXTRA_GROUPS[group]
    tag = new_tag()
    priority = f"NORMAL:-VERS-ALL:+VERS-TLS1.3:-GROUP-ALL:+{priority_group}"
    run = run_tool_until(
        gnutls_argv(gnutls_cli, groups_gateway.port, pki.ca_cert, priority), get_close(tag),
        until=backend.body,
    )  # fmt: skip
    assert described in run.output, run.explain()
    assert backend.body in run.output.encode(), run.explain()
    assert_logged(groups_gateway, tag, "1.3", group=group)


# --- headless Chromium -------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def spki_pin(cert_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def test_chromium_loads_page_with_x25519mlkem768(dual_gateway, pki, backend, tmp_path):
    chromium = require_tool("chromium")
    pins = ",".join(spki_pin(pki.leaves[k].cert) for k in ("ecdsa-p256", "rsa-2048"))
    tag = new_tag("chromium")
    try:
        result = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                f"--ignore-certificate-errors-spki-list={pins}",
                "--dump-dom",
                f"https://localhost:{dual_gateway.port}{tagged_path(tag)}",
            ],
            capture_output=True,
            timeout=90,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium timed out: {(exc.stderr or b'').decode()[-2000:]}")
    assert backend.body.decode().strip() in result.stdout.decode(), result.stderr.decode()[-3000:]
    entry = dual_gateway.access_for(tag)
    assert entry["status"] == 200, entry
    assert entry["tls"]["version"] == "1.3", entry
    assert entry["tls"]["group"] == "X25519MLKEM768", entry
    assert entry["tls"]["alpn"] == "h2", entry  # the default ALPN list offers h2 first
    assert entry["proto"] == "h2", entry
    assert entry["tls"]["ja4"].startswith("t13d"), entry


# --- a TLS 1.2 ClientHello that offers compression ----------------------------------------


def _tls12_hello(compression_methods: bytes) -> bytes:
    """A TLS 1.2-only ClientHello (no supported_versions), with EMS, x25519/P-256, ECDSA and
    RSA suites, offering `compression_methods` (what OpenSSL 1.0.x built with zlib sends:
    deflate, null)."""
    exts = tls_raw.extension(
        tls_raw.EXT_SERVER_NAME, tls_raw.vec16(b"\x00" + tls_raw.vec16(b"localhost"))
    )
    exts += tls_raw.extension(tls_raw.EXT_SUPPORTED_GROUPS, tls_raw.vec16(b"\x00\x1d\x00\x17"))
    exts += tls_raw.extension(11, tls_raw.vec8(b"\x00"))  # ec_point_formats: uncompressed
    exts += tls_raw.extension(
        tls_raw.EXT_SIGNATURE_ALGORITHMS,
        tls_raw.vec16(b"".join(tls_raw.u16(s) for s in tls_raw.SIGNATURE_SCHEMES)),
    )
    exts += tls_raw.extension(23, b"")  # extended_master_secret
    exts += tls_raw.extension(0xFF01, b"\x00")  # renegotiation_info, initial
    suites = (0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8)
    body = (
        tls_raw.u16(0x0303)
        + os.urandom(32)
        + tls_raw.vec8(b"")
        + tls_raw.vec16(b"".join(tls_raw.u16(c) for c in suites))
        + tls_raw.vec8(compression_methods)
        + tls_raw.vec16(exts)
    )
    return tls_raw.record(tls_raw.HANDSHAKE, tls_raw.handshake(tls_raw.CLIENT_HELLO, body), 0x0301)


def _server_hello_or_alert(gw: Any, hello: bytes) -> tuple[bytes | None, list[str]]:
    with tls_raw.connect(gw.address) as sock:
        sock.sendall(hello)
        got = tls_raw.receive(sock, total_timeout=5.0, idle_timeout=1.0)
    records, _ = got.records()
    return tls_raw.find_server_hello(records), [r.describe() for r in records]


def test_tls12_hello_with_null_compression_only(dual_gateway):
    """Control for the test below: the same hello with compression [null] gets a ServerHello."""
    server_hello, described = _server_hello_or_alert(dual_gateway, _tls12_hello(b"\x00"))
    assert server_hello is not None, described
    assert server_hello[:2] == b"\x03\x03", server_hello[:2]


def test_tls12_hello_offering_deflate_and_null_gets_null(dual_gateway):
    """RFC 5246 7.4.1.2: compression_methods MUST contain null and the server picks one of
    them; a server without compression picks null (RFC 3749 clients offer deflate, null).
    Only TLS 1.3 requires exactly [null] (RFC 8446 4.1.2). Refusing such a hello fails old
    clients, sslyze's AES-GCM TLS 1.2 probes (its legacy OpenSSL offers deflate) and
    testssl's CRIME check ("Check failed, couldn't connect")."""
    server_hello, described = _server_hello_or_alert(dual_gateway, _tls12_hello(b"\x01\x00"))
    assert server_hello is not None, f"no ServerHello, got {described}"
    session_id_length = server_hello[34]
    compression = server_hello[34 + 1 + session_id_length + 2]
    assert compression == 0, server_hello.hex()
