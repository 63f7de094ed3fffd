"""Listener TLS settings (issue 3) through a running gateway, each reflected in behaviour, and
the access log. Real `outwork serve` processes, real openssl/curl, a real SoftHSM2 token."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.conftest import ROOT, Backend, Gateway, gateway_config, require_file, require_tool
from tests.keys.conftest import MODULE
from tests.tls.pki import CertAuthority

GET = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JA4 = re.compile(r"^t1[23][di]\d{4}[a-z0-9]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
ACCESS_FIELDS = [
    "time",
    "request_id",
    "client",
    "listener",
    "proto",
    "tls_ms",
    "method",
    "path",
    "route",
    "identity",
    "status",
    "bytes_sent",
    "upstream",
    "upstream_ms",
    "duration_ms",
    "tls",
]
TLS_FIELDS = [
    "version",
    "cipher",
    "group",
    "ja4",
    "resumed",
    "alpn",
    "sni",
    "client_subject",
    "client_sans",
    "client_fingerprint",
]


@dataclass
class Pki:
    folder: Path
    ca: Path  # trust anchor of the server certificates
    client_ca: Path
    client_cert: Path
    client_key: Path
    client_fingerprint: str
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = CertAuthority("gateway test CA")
    (folder / "ca.pem").write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    ca.issue("ecdsa-p256", ("localhost", "a.test")).write(folder, "server")
    ca.issue("rsa-2048", ("b.test", "*.wild.test")).write(folder, "rsa")
    clients = CertAuthority("gateway client CA")
    (folder / "client_ca.pem").write_bytes(clients.cert.public_bytes(serialization.Encoding.PEM))
    leaf = clients.issue("ecdsa-p256", ("client.test", "ops@example.test"), client=True)
    cert, key = leaf.write(folder, "client")
    stranger, stranger_key = (
        CertAuthority("other CA").issue(names=("client.test",), client=True).write(folder, "other")
    )
    return Pki(
        folder=folder,
        ca=folder / "ca.pem",
        client_ca=folder / "client_ca.pem",
        client_cert=cert,
        client_key=key,
        client_fingerprint=leaf.cert.fingerprint(hashes.SHA256()).hex(),
        stranger_cert=stranger,
        stranger_key=stranger_key,
    )


def tls_config(backend: Backend, pki: Pki, tmp_path: Path, **tls: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "certificates": [
            {"cert": str(pki.folder / "server.pem"), "key": str(pki.folder / "server.key")}
        ]
    }
    settings.update(tls)
    return gateway_config(
        backend.url,
        listeners=[{"name": "public", "bind": "127.0.0.1:0", "tls": settings}],
        logging={"security_events": "events.jsonl", "access_log": "access.jsonl"},
    )


def port_of(gateway: Gateway) -> int:
    port = urlsplit(gateway.urls["public"]).port
    assert port is not None
    return port


def s_client(
    port: int, ca: Path, *extra: str, request: bytes = GET, name: str = "localhost"
) -> str:
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name]
        + ["-CAfile", str(ca), "-verify_return_error", "-ign_eof", *extra],
        input=request,
        capture_output=True,
        timeout=20,
    )
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


def curl(url: str, ca: Path, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(ca),
            "--resolve",
            f"localhost:{urlsplit(url).port}:127.0.0.1",
        ]
        + [*extra, f"https://localhost:{urlsplit(url).port}/hello"],
        capture_output=True,
        timeout=20,
    )


def read_lines(path: Path, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The first `count` JSON lines of a log (the access log is flushed 4 times a second)."""
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if text.count("\n") >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in text.splitlines()]
        time.sleep(0.05)


def test_access_log_line_format(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    backend = make_backend()
    gw = make_gateway(tls_config(backend, pki, tmp_path))
    result = curl(gw.url, pki.ca, "--tlsv1.3", "-o", "/dev/null", "-w", "%{size_download}")
    assert result.returncode == 0, result.stderr
    (line,) = read_lines(tmp_path / "access.jsonl", 1)
    assert list(line) == ACCESS_FIELDS
    assert RFC3339_MS.match(line["time"])
    assert re.match(r"^[0-9a-f]{12}-[0-9a-f]+$", line["request_id"])
    assert re.match(r"^127\.0\.0\.1:\d+$", line["client"])
    assert (line["listener"], line["method"], line["path"], line["status"]) == (
        "public",
        "GET",
        "/hello",
        200,
    )
    assert line["bytes_sent"] > int(result.stdout)  # the head and the body
    assert line["route"] == "backend"  # no route name: counted under its upstream's
    assert line["upstream"] == backend.address
    # Each duration is part of the next: the handshake came before the request was read,
    # the upstream answered before the response was complete.
    assert line["tls_ms"] > 0 and line["upstream_ms"] > 0
    assert line["upstream_ms"] <= line["duration_ms"]
    tls = line["tls"]
    assert list(tls) == TLS_FIELDS
    assert tls["version"] == "1.3"
    assert tls["cipher"] in ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384")
    assert tls["group"] in ("X25519MLKEM768", "x25519")
    assert JA4.match(tls["ja4"]), tls["ja4"]
    assert (tls["resumed"], tls["alpn"], tls["sni"]) == (False, "h2", "localhost")
    assert line["proto"] == "h2"
    assert tls["client_subject"] is None and tls["client_sans"] is None
    assert tls["client_fingerprint"] is None


def test_access_log_on_a_plain_listener_and_gateway_answers(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    backend = make_backend()
    config = gateway_config(
        backend.url,
        routes=[{"match": {"path_prefix": "/api"}, "upstream": "backend"}],
        logging={"access_log": "access.jsonl"},
    )
    gw = make_gateway(config)
    for target in ("/api/x?token=secret", "/nothing", '/api/"q"'):
        subprocess.run(["curl", "-s", "-o", "/dev/null", gw.url + target], timeout=10)
    lines = read_lines(tmp_path / "access.jsonl", 3)
    assert [(x["path"], x["status"], x["upstream"]) for x in lines] == [
        ("/api/x", 200, backend.address),  # the query string is never logged
        ("/nothing", 404, None),
        ('/api/"q"', 200, backend.address),
    ]
    assert all(x["tls"] is None and x["tls_ms"] is None for x in lines)
    assert len({x["request_id"] for x in lines}) == 3
    assert [x["route"] for x in lines] == ["backend", "none", "backend"]
    # The 404 never went upstream: no upstream time; the others have one within the total.
    assert lines[1]["upstream_ms"] is None and lines[1]["duration_ms"] >= 0
    for x in (lines[0], lines[2]):
        assert 0 < x["upstream_ms"] <= x["duration_ms"]


def test_min_version_13_refuses_tls12_and_the_event_has_the_ja4(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    gw = make_gateway(tls_config(make_backend(), pki, tmp_path, min_version="1.3"))
    port = port_of(gw)
    assert "hello" not in s_client(port, pki.ca, "-tls1_2")
    out = s_client(port, pki.ca, "-tls1_3")
    assert "New, TLSv1.3" in out and "GET /hello" in out
    (event,) = read_lines(tmp_path / "events.jsonl", 1)
    assert event["event"] == "tls.handshake_failed"
    assert event["detail"]["alert"] == "protocol_version"
    # The handshake never completed: the JA4 comes from the parsed ClientHello.
    assert JA4.match(event["detail"]["ja4"]) and event["detail"]["ja4"].startswith("t12")


def test_tls12_listener_by_default(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    gw = make_gateway(tls_config(make_backend(), pki, tmp_path, groups=["secp256r1"]))
    out = s_client(port_of(gw), pki.ca, "-tls1_2")
    assert "New, TLSv1.2" in out and "GET /hello" in out
    (line,) = read_lines(tmp_path / "access.jsonl", 1)
    assert line["tls"]["version"] == "1.2" and line["tls"]["group"] == "secp256r1"
    assert line["tls"]["cipher"].startswith("TLS_ECDHE_ECDSA_WITH_")
    assert line["tls"]["ja4"].startswith("t12")
    # A group the listener does not offer: no handshake.
    assert "GET /hello" not in s_client(port_of(gw), pki.ca, "-tls1_3", "-groups", "x25519")


def test_client_auth_required(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    config = tls_config(
        make_backend(), pki, tmp_path, client_auth="required", client_ca=str(pki.client_ca)
    )
    gw = make_gateway(config)
    assert curl(gw.url, pki.ca).returncode != 0
    stranger = curl(
        gw.url, pki.ca, "--cert", str(pki.stranger_cert), "--key", str(pki.stranger_key)
    )
    assert stranger.returncode != 0
    for version in ("--tlsv1.3", "--tlsv1.2"):
        ok = curl(
            gw.url,
            pki.ca,
            version,
            *(["--tls-max", "1.2"] if version == "--tlsv1.2" else []),
            "--cert",
            str(pki.client_cert),
            "--key",
            str(pki.client_key),
        )
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == b"GET /hello\n"
    lines = read_lines(tmp_path / "access.jsonl", 2)
    assert [x["tls"]["version"] for x in lines] == ["1.3", "1.2"]
    for line in lines:
        tls = line["tls"]
        assert tls["client_subject"] == "CN=client.test"
        assert tls["client_sans"] == ["DNS:client.test", "email:ops@example.test"]
        assert tls["client_fingerprint"] == pki.client_fingerprint
    assert "Traceback" not in gw.stderr()


def test_client_auth_optional_passes_without_identity(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    config = tls_config(
        make_backend(), pki, tmp_path, client_auth="optional", client_ca=str(pki.client_ca)
    )
    gw = make_gateway(config)
    assert curl(gw.url, pki.ca).returncode == 0
    ok = curl(gw.url, pki.ca, "--cert", str(pki.client_cert), "--key", str(pki.client_key))
    assert ok.returncode == 0
    first, second = read_lines(tmp_path / "access.jsonl", 2)
    assert first["tls"]["client_subject"] is None
    assert second["tls"]["client_fingerprint"] == pki.client_fingerprint


def _peer_subject(port: int, ca: Path, name: str) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as conn:
            der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def test_certificates_chosen_by_sni_and_strict_sni(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    certificates = [
        {"cert": str(pki.folder / "server.pem"), "key": str(pki.folder / "server.key")},
        {"cert": str(pki.folder / "rsa.pem"), "key": str(pki.folder / "rsa.key")},
    ]
    backend = make_backend()
    gw = make_gateway(tls_config(backend, pki, tmp_path, certificates=certificates))
    port = port_of(gw)
    assert _peer_subject(port, pki.ca, "a.test") == "CN=localhost"
    assert _peer_subject(port, pki.ca, "b.test") == "CN=b.test"
    assert _peer_subject(port, pki.ca, "x.wild.test") == "CN=b.test"
    # Unknown name: the first certificate (s_client does not check the name).
    out = s_client(port, pki.ca, name="unknown.test")
    assert "0 s:CN = localhost" in out and "GET /hello" in out
    strict = make_gateway(
        tls_config(backend, pki, tmp_path, certificates=certificates, strict_sni=True),
        name="strict.yaml",
    )
    out = s_client(port_of(strict), pki.ca, name="unknown.test")
    assert "unrecognized name" in out and "GET /hello" not in out
    assert _peer_subject(port_of(strict), pki.ca, "b.test") == "CN=b.test"


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_ticket_key_file_shared_by_two_gateways(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
    version: str,
) -> None:
    backend = make_backend()
    tickets = {"key_file": "tickets.json", "rotation": "1h", "lifetime": "10m"}
    first = make_gateway(
        tls_config(backend, pki, tmp_path, session_tickets=tickets), name="first.yaml"
    )
    second = make_gateway(
        tls_config(backend, pki, tmp_path, session_tickets=tickets), name="second.yaml"
    )
    session = tmp_path / "session.pem"
    out = s_client(port_of(first), pki.ca, version, "-sess_out", str(session))
    assert "New, TLSv1." in out and "GET /hello" in out
    out = s_client(port_of(second), pki.ca, version, "-sess_in", str(session))
    assert "Reused, TLSv1." in out and "GET /hello" in out
    data = json.loads((tmp_path / "tickets.json").read_text())
    assert data["period_seconds"] == 3600 and len(data["keys"]) == 1
    assert (tmp_path / "tickets.json").stat().st_mode & 0o077 == 0
    # Both gateways append to the same access log: lines in the order each flushed.
    resumed = [line["tls"]["resumed"] for line in read_lines(tmp_path / "access.jsonl", 2)]
    assert sorted(resumed) == [False, True]


def test_without_key_file_each_gateway_has_its_own_keys(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    backend = make_backend()
    first = make_gateway(tls_config(backend, pki, tmp_path), name="first.yaml")
    second = make_gateway(tls_config(backend, pki, tmp_path), name="second.yaml")
    session = tmp_path / "session.pem"
    s_client(port_of(first), pki.ca, "-tls1_3", "-sess_out", str(session))
    assert "Reused" in s_client(port_of(first), pki.ca, "-tls1_3", "-sess_in", str(session))
    out = s_client(port_of(second), pki.ca, "-tls1_3", "-sess_in", str(session))
    assert "New, TLSv1.3" in out and "GET /hello" in out


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_session_tickets_disabled_means_no_resumption(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
    version: str,
) -> None:
    config = tls_config(make_backend(), pki, tmp_path, session_tickets={"enabled": False})
    gw = make_gateway(config)
    session = tmp_path / "session.pem"
    out = s_client(port_of(gw), pki.ca, version, "-sess_out", str(session))
    assert "GET /hello" in out
    # No ticket (nor, in TLS 1.2, a session id): openssl has no session to save.
    assert not session.exists()


# ----- keys in an HSM (SoftHSM2) ------------------------------------------------------------


@dataclass
class Token:
    folder: Path
    env: dict[str, str]

    def uri(self, label: str, pin_file: Path | None = None) -> str:
        pin = pin_file or self.folder / "pin.txt"
        return f"pkcs11:token=gateway;object={label}?pin-source=file:{pin}"


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Token:
    require_tool("softhsm2-util")
    require_file(MODULE, "softhsm2")
    folder = tmp_path_factory.mktemp("hsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [sys.executable, "-m", "tests.proxy.hsm_token", str(folder)],
        check=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
    )
    return Token(folder, env)


def test_pkcs11_keys_serve_tls12_and_tls13(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    token: Token,
    tmp_path: Path,
) -> None:
    certificates = [
        {"cert": str(token.folder / "gw-ec.pem"), "key": token.uri("gw-ec")},
        {"cert": str(token.folder / "gw-rsa.pem"), "key": token.uri("gw-rsa")},
    ]
    config = tls_config(make_backend(), pki, tmp_path, certificates=certificates)
    config["pkcs11"] = {"module": "/usr/lib/softhsm/libsofthsm2.so"}
    gw = make_gateway(config, env=token.env)
    port = port_of(gw)
    ca = token.folder / "ca.pem"
    for version, sigalgs, expected in (
        ("-tls1_3", "ECDSA+SHA256", "ECDSA"),
        ("-tls1_3", "rsa_pss_rsae_sha256", "RSA-PSS"),
        ("-tls1_2", "ECDSA+SHA256", "ECDSA"),
        ("-tls1_2", "RSA+SHA256", "RSA"),
    ):
        out = s_client(port, ca, version, "-sigalgs", sigalgs)
        assert "Verify return code: 0 (ok)" in out, out[-800:]
        assert "GET /hello" in out
        assert re.search(rf"Peer signature type: {expected}\b", out), out
    assert "Traceback" not in gw.stderr()


def _check(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def test_pkcs11_key_problems_are_reported_at_the_key_line(token: Token, tmp_path: Path) -> None:
    wrong_pin = tmp_path / "wrong-pin.txt"
    wrong_pin.write_text("0000\n")
    cert = token.folder / "gw-ec.pem"
    cases = {
        token.uri("gw-ec", wrong_pin): "PIN",
        token.uri("gw-ec").replace("token=gateway", "token=nosuch"): "no such token",
        token.uri("no-such-key"): "no-such-key",
        token.uri("gw-rsa"): "",  # a key that does not match the certificate
    }
    for uri, message in cases.items():
        config = tmp_path / "config.yaml"
        config.write_text(
            "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n"
            "      certificates:\n"
            f"        - cert: {cert}\n"
            f'          key: "{uri}"\n'
            "routes: []\nupstreams: {}\n"
        )
        result = _check(config, token.env)
        assert result.returncode == 1, result
        (line,) = result.stderr.splitlines()
        assert line.startswith(
            f"{config}:7: listeners[0].tls.certificates[0].key: cannot load the PKCS#11 key: "
        ), line
        assert message in line
        assert "Traceback" not in result.stderr
    config.write_text(config.read_text().replace("gw-rsa", "gw-ec"))
    assert _check(config, token.env).stdout == "ok\n"


def _half_close_exchange(port: int, ca: Path, version: ssl.TLSVersion) -> bytes:
    """Send a request and close_notify at once (as gnutls-cli does when its stdin ends), then
    read what comes back. Python's ssl over memory BIOs: OpenSSL still reads after sending
    close_notify."""
    import socket

    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = context.maximum_version = version
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:

        def pump() -> bool:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
            return bool(data)

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        tls.write(b"GET /half HTTP/1.1\r\nHost: localhost\r\n\r\n")
        try:
            tls.unwrap()  # queues close_notify; the gateway's comes later
        except ssl.SSLWantReadError:
            pass
        sock.sendall(outgoing.read())
        while True:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                if not pump():
                    break
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            received += chunk
    return received


def test_tls13_half_close_still_gets_the_answer(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> None:
    gw = make_gateway(tls_config(make_backend(), pki, tmp_path))
    received = _half_close_exchange(port_of(gw), pki.ca, ssl.TLSVersion.TLSv1_3)
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\nGET /half\n")
    (line,) = read_lines(tmp_path / "access.jsonl", 1)
    assert (line["path"], line["status"]) == ("/half", 200)
    assert "Traceback" not in gw.stderr()


def test_check_warns_about_a_pin_file_others_can_read(token: Token, tmp_path: Path) -> None:
    pin = tmp_path / "pin.txt"
    pin.write_text((token.folder / "pin.txt").read_text())
    config = tmp_path / "config.yaml"
    config.write_text(
        "listeners:\n  - name: public\n    bind: 127.0.0.1:0\n    tls:\n"
        "      certificates:\n"
        f"        - cert: {token.folder / 'gw-ec.pem'}\n"
        f'          key: "{token.uri("gw-ec", pin)}"\n'
        "routes: []\nupstreams: {}\n"
    )
    pin.chmod(0o644)
    result = _check(config, token.env)
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert result.stderr == (
        f"{config}:7: listeners[0].tls.certificates[0].key: warning: {pin} is readable by its"
        " group and others (mode 0644): only its owner should read it (chmod 600)\n"
    )
    pin.chmod(0o600)
    result = _check(config, token.env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
