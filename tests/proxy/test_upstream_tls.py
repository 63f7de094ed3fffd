"""TLS to upstreams: outwork's own engine (client role) in front of real TLS backends.

The backends are Python's `ssl` (OpenSSL) around a threaded HTTP server (`tls_backend.py`),
each a process of its own; the gateway is a real `outwork serve`. Every backend answers with
what it saw of the TLS connection (version, resumption, SNI, client certificate, connection
number), so the tests assert on what the backend really got.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection, IncompleteRead
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import Gateway, gateway_config, require_tool
from tests.e2e.pki import ClientPKI, TestPKI, make_client_pki, make_pki
from tests.e2e.servers import free_port, port_accepts
from tests.proxy.test_listener_tls import Token, token  # noqa: F401 (the SoftHSM2 fixture)

TLS_BACKEND = Path(__file__).with_name("tls_backend.py")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> ClientPKI:
    return make_client_pki(tmp_path_factory.mktemp("client-pki"))


@dataclass
class TlsBackend:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture
def make_tls_backend() -> Iterator[Callable[..., TlsBackend]]:
    started: list[TlsBackend] = []

    def make(
        cert: Path, key: Path, client_ca: Path | None = None, max_version: str = "1.3"
    ) -> TlsBackend:
        args = [sys.executable, str(TLS_BACKEND), "--cert", str(cert), "--key", str(key)]
        args += ["--max-version", max_version]
        if client_ca is not None:
            args += ["--client-ca", str(client_ca)]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.match(r"READY (\d+)", line)
        assert match, f"TLS backend did not start: {line!r}"
        backend = TlsBackend(proc, int(match.group(1)))
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.proc.kill()
        backend.proc.wait()


def leaf(
    pki: TestPKI,
    directory: Path,
    name: str,
    dns: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1",),
    expired: bool = False,
) -> tuple[Path, Path]:
    """A server certificate from the test CA for the given names (cert and key files)."""
    assert pki.ca_key is not None
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    if expired:
        not_before, not_after = now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(pki.ca_key.public_key()),
            critical=False,
        )
        .sign(pki.ca_key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.crt.pem"
    key_path = directory / f"{name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 15
    while not port_accepts(port):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)


def tls_gateway(
    make_gateway: Callable[..., Gateway],
    targets: list[str],
    tls: dict[str, Any] | None,
    **upstream: Any,
) -> Gateway:
    spec: dict[str, Any] = {"targets": targets, **upstream}
    if tls is not None:
        spec["tls"] = tls
    config = gateway_config(
        targets[0],
        upstreams={"backend": spec},
        logging={"security_events": "events.jsonl"},
    )
    return make_gateway(config)


def get(gateway: Gateway, paths: list[str]) -> list[tuple[int, bytes]]:
    """GET each path in turn on one keep-alive connection to the gateway."""
    parts = urlsplit(gateway.url)
    conn = HTTPConnection(parts.hostname or "", parts.port, timeout=20)
    answers = []
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            answers.append((response.status, response.read()))
    finally:
        conn.close()
    return answers


def seen(answers: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    assert [status for status, _ in answers] == [200] * len(answers), answers
    return [json.loads(body) for _, body in answers]


def events(gateway: Gateway) -> list[dict[str, Any]]:
    file = gateway.config_file.parent / "events.jsonl"
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text().splitlines()]


def tls_failures(gateway: Gateway) -> list[dict[str, Any]]:
    return [e for e in events(gateway) if e["event"] == "upstream.tls_failed"]


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    """The value of one sample on the admin /metrics page (0 when absent)."""
    assert gateway.admin_url is not None
    parts = urlsplit(gateway.admin_url)
    conn = HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    total = 0.0
    for match in re.finditer(rf"^{name}(?:{{(.*)}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


# --- a good backend --------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_verified_backend_serves_over_keep_alive(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    version: str,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, max_version=version)
    target = f"https://localhost:{backend.port}"
    gw = tls_gateway(make_gateway, [target], {"ca": str(pki.ca_cert)})
    got = seen(get(gw, ["/a", "/b", "/c", "/d"]))
    assert [g["path"] for g in got] == ["/a", "/b", "/c", "/d"]
    assert {g["version"] for g in got} == {f"TLSv{version}"}
    assert {g["sni"] for g in got} == {"localhost"}  # the target's host name, sent as SNI
    assert {g["alpn"] for g in got} == {"http/1.1"}
    # Keep-alive over TLS: four requests, fewer TLS connections on the backend.
    assert len({g["conn"] for g in got}) < len(got)
    assert tls_failures(gw) == []
    assert metric(gw, "outwork_upstream_connections_opened_total", upstream="backend") == 1


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_large_bodies_both_ways(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    version: str,
) -> None:
    """32 MiB down and up through the TLS upstream: records split and joined, writes paused
    and resumed on both sides, every byte intact."""
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, max_version=version)
    size = 32 * 1024 * 1024
    tls = {"ca": str(pki.ca_cert)}
    gw = make_gateway(
        gateway_config(
            backend.url,
            upstreams={"backend": {"targets": [backend.url], "tls": tls}},
            limits={"max_request_body": size},
        )
    )
    expected = (bytes(range(256)) * (size // 256))[:size]
    parts = urlsplit(gw.url)
    conn = HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        conn.request("GET", f"/bytes/{size}")
        response = conn.getresponse()
        assert response.status == 200
        assert hashlib.sha256(response.read()).hexdigest() == hashlib.sha256(expected).hexdigest()
        conn.request("POST", "/sha256", body=expected)
        response = conn.getresponse()
        assert response.status == 200
        assert response.read().decode() == hashlib.sha256(expected).hexdigest()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["rsa-2048", "ed25519", "ecdsa-p384"])
def test_backend_key_types(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    kind: str,
) -> None:
    cert = pki.leaves[kind]
    backend = make_tls_backend(cert.cert, cert.key)
    gw = tls_gateway(make_gateway, [backend.url], {"ca": str(pki.ca_cert)})
    (got,) = seen(get(gw, ["/"]))
    assert got["version"] == "TLSv1.3"
    assert got["sni"] is None  # an IP target: no SNI; the certificate's IP SAN is checked


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_second_connection_resumes_the_session(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    version: str,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, max_version=version)
    # No idle connections kept: every request opens a new TLS connection.
    gw = tls_gateway(make_gateway, [backend.url], {"ca": str(pki.ca_cert)}, max_idle_connections=0)
    got = seen(get(gw, ["/1", "/2", "/3"]))
    assert len({g["conn"] for g in got}) == 3
    assert [g["resumed"] for g in got] == [False, True, True]
    assert {g["version"] for g in got} == {f"TLSv{version}"}


def test_resumption_can_be_turned_off(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key)
    tls = {"ca": str(pki.ca_cert), "session_resumption": False}
    gw = tls_gateway(make_gateway, [backend.url], tls, max_idle_connections=0)
    got = seen(get(gw, ["/1", "/2"]))
    assert [g["resumed"] for g in got] == [False, False]


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_close_delimited_body_needs_close_notify(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    version: str,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, max_version=version)
    gw = tls_gateway(make_gateway, [backend.url], {"ca": str(pki.ca_cert)})
    # Ended by close_notify: the body is complete (the client gets it chunked, with its end).
    assert get(gw, ["/close-notify"]) == [(200, b"all of the body\n")]
    # Ended by a FIN without close_notify: the end is not authenticated, the gateway cuts the
    # client's connection instead of passing the body on as complete.
    with pytest.raises(IncompleteRead) as info:
        get(gw, ["/close-truncated"])
    assert info.value.partial == b"all of the body\n"
    assert metric(gw, "outwork_upstream_errors_total", upstream="backend", kind="reset") == 1


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_gnutls_backend(
    make_gateway: Callable[..., Gateway], pki: TestPKI, tmp_path: Path, version: str
) -> None:
    """Another TLS implementation: `gnutls-serv --http` answers HTTP/1.0, close-delimited,
    ended with close_notify, with a page that describes the session it saw."""
    gnutls = require_tool("gnutls-serv")
    ecdsa = pki.leaves["ecdsa-p256"]
    port = free_port()
    priority = "NORMAL" if version == "1.3" else "NORMAL:-VERS-TLS1.3"
    args = [gnutls, "--http", "-p", str(port), f"--priority={priority}"]
    args += ["--x509certfile", str(ecdsa.cert), "--x509keyfile", str(ecdsa.key)]
    log = open(tmp_path / "gnutls.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_listening(proc, port, tmp_path / "gnutls.log")
        target = f"https://localhost:{port}"
        gw = tls_gateway(make_gateway, [target], {"ca": str(pki.ca_cert)})
        answers = get(gw, ["/one", "/two"])
        assert [status for status, _ in answers] == [200, 200]
        for _, body in answers:
            page = re.sub(rb"<[^>]*>", b" ", body).decode()
            assert re.search(rf"Protocol version:\s+TLS{version}", page), page
            assert "Server Name: localhost" in page
            assert "X-Forwarded-Proto: http" in page or "x-forwarded-proto: http" in page
        assert tls_failures(gw) == []
    finally:
        proc.kill()
        proc.wait()
        log.close()


def start_nginx(workdir: Path, server: str) -> tuple[subprocess.Popen[bytes], int]:
    """nginx in the foreground on a free loopback port, everything it writes under `workdir`;
    `server` is the body of its one server block after the `listen` line's address."""
    nginx = require_tool("nginx")
    port = free_port()
    temp = "\n".join(
        f"  {d}_temp_path {workdir / d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (workdir / "nginx.conf").write_text(
        f"""\
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
daemon off;
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections 64; }}
http {{
  access_log off;
{temp}
  server {{
    listen 127.0.0.1:{port}{server}
  }}
}}
"""
    )
    proc = subprocess.Popen(
        [nginx, "-p", str(workdir), "-c", str(workdir / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(proc, port, workdir / "error.log")
    return proc, port


def start_nginx_backend(
    workdir: Path, pki: TestPKI, client_ca: Path, version: str
) -> subprocess.Popen[bytes]:
    """nginx as a TLS backend that requires a client certificate and answers with what it saw
    of the connection: `$connection $ssl_protocol $ssl_session_reused ...`."""
    ecdsa = pki.leaves["ecdsa-p256"]
    proc, port = start_nginx(
        workdir,
        f""" ssl;
    ssl_protocols TLSv{version};
    ssl_certificate {ecdsa.cert};
    ssl_certificate_key {ecdsa.key};
    ssl_verify_client on;
    ssl_client_certificate {client_ca};
    default_type text/plain;
    location / {{
      return 200 "$connection $ssl_protocol $ssl_session_reused $ssl_client_s_dn\\n";
    }}""",
    )
    proc.port = port  # type: ignore[attr-defined]
    return proc


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_nginx_backend_with_mutual_tls(
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    client_pki: ClientPKI,
    tmp_path: Path,
    version: str,
) -> None:
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    nginx = start_nginx_backend(workdir, pki, client_pki.ca_cert, version)
    try:
        good = client_pki.good
        target = f"https://localhost:{nginx.port}"  # type: ignore[attr-defined]
        tls = {
            "ca": str(pki.ca_cert),
            "client_cert": {"cert": str(good.cert), "key": str(good.key)},
        }
        keep_alive = tls_gateway(make_gateway, [target], tls)
        answers = get(keep_alive, ["/1", "/2", "/3"])
        assert [status for status, _ in answers] == [200] * 3
        lines = [body.decode().split(" ", 3) for _, body in answers]
        assert len({conn for conn, _, _, _ in lines}) == 1  # one TLS connection, reused
        assert {proto for _, proto, _, _ in lines} == {f"TLSv{version}"}
        assert all(f"CN={good.subject_cn}" in dn for _, _, _, dn in lines)
        # A new connection per request: the second and third resume the first's session.
        fresh = make_gateway(
            gateway_config(
                target,
                upstreams={"backend": {"targets": [target], "tls": tls, "max_idle_connections": 0}},
            ),
            name="fresh.yaml",
        )
        answers = get(fresh, ["/1", "/2", "/3"])
        assert [status for status, _ in answers] == [200] * 3
        reused = [body.decode().split(" ")[2] for _, body in answers]
        assert reused == [".", "r", "r"]
    finally:
        nginx.terminate()  # the master stops its worker (SIGKILL would orphan it)
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait()


# --- backends that must be refused ----------------------------------------------------------


def assert_refused(gw: Gateway, reason: str, alert: str | None) -> dict[str, Any]:
    """One request answered 502, one `upstream.tls_failed` event saying why, one tls error."""
    ((status, _),) = get(gw, ["/"])
    assert status == 502
    (event,) = tls_failures(gw)
    assert event["listener"] == "-"
    detail = event["detail"]
    assert detail["upstream"] == "backend"
    assert reason in detail["reason"], detail
    assert detail["alert"] == alert, detail
    assert metric(gw, "outwork_upstream_errors_total", upstream="backend", kind="tls") == 1
    return detail


def test_unknown_ca_is_502_with_an_event(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    client_pki: ClientPKI,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key)
    # The gateway trusts another CA than the one that issued the backend's certificate.
    gw = tls_gateway(make_gateway, [backend.url], {"ca": str(client_pki.ca_cert)})
    detail = assert_refused(gw, "server certificate rejected", "unknown_ca")
    assert detail["alert_from"] == "gateway"
    assert detail["target"] == backend.url


def test_system_trust_store_refuses_a_private_ca(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key)
    gw = tls_gateway(make_gateway, [backend.url], None)  # https:// target, no tls block
    assert_refused(gw, "server certificate rejected", "unknown_ca")


def test_wrong_name_is_502_and_sni_sets_the_name_checked(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    tmp_path: Path,
) -> None:
    cert, key = leaf(pki, tmp_path, "api.internal", dns=("api.internal",), ips=())
    backend = make_tls_backend(cert, key)
    # Target 127.0.0.1: the certificate names only api.internal.
    refused = tls_gateway(make_gateway, [backend.url], {"ca": str(pki.ca_cert)})
    assert_refused(refused, "server certificate rejected", "bad_certificate")
    # With sni: api.internal the same backend is asked for, and checked as, api.internal.
    tls = {"ca": str(pki.ca_cert), "sni": "api.internal"}
    gw = make_gateway(
        gateway_config(
            backend.url,
            upstreams={"backend": {"targets": [backend.url], "tls": tls}},
            logging={"security_events": "events.jsonl"},
        ),
        name="sni.yaml",
    )
    (got,) = seen(get(gw, ["/"]))
    assert got["sni"] == "api.internal"


def test_sni_name_must_be_in_the_certificate(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]  # localhost and 127.0.0.1
    backend = make_tls_backend(ecdsa.cert, ecdsa.key)
    tls = {"ca": str(pki.ca_cert), "sni": "other.example"}
    gw = tls_gateway(make_gateway, [backend.url], tls)
    detail = assert_refused(gw, "server certificate rejected", "bad_certificate")
    assert detail["server_name"] == "other.example"


def test_expired_certificate_is_502(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    tmp_path: Path,
) -> None:
    cert, key = leaf(pki, tmp_path, "expired", expired=True)
    backend = make_tls_backend(cert, key)
    gw = tls_gateway(make_gateway, [backend.url], {"ca": str(pki.ca_cert)})
    assert_refused(gw, "not valid now", "certificate_expired")


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_mutual_tls_to_a_backend(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    client_pki: ClientPKI,
    version: str,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(
        ecdsa.cert, ecdsa.key, client_ca=client_pki.ca_cert, max_version=version
    )
    good = client_pki.good
    tls = {"ca": str(pki.ca_cert), "client_cert": {"cert": str(good.cert), "key": str(good.key)}}
    gw = tls_gateway(make_gateway, [backend.url], tls)
    got = seen(get(gw, ["/1", "/2"]))
    subject = f"organizationName=outwork e2e,commonName={good.subject_cn}"
    assert {g["client"] for g in got} == {subject}
    assert tls_failures(gw) == []
    # Without a client certificate the backend refuses the connection: 502 and an event.
    bare = make_gateway(
        gateway_config(
            backend.url,
            upstreams={"backend": {"targets": [backend.url], "tls": {"ca": str(pki.ca_cert)}}},
            logging={"security_events": "events.jsonl"},
        ),
        name="bare.yaml",
    )
    ((status, _),) = get(bare, ["/"])
    assert status == 502
    (event,) = tls_failures(bare)
    detail = event["detail"]
    if detail["alert"] is None:
        # TLS 1.3: the backend's reset overtook its alert (our request's write failed before
        # the alert was read); still a TLS failure of the handshake, and said so.
        assert version == "1.3"
        assert detail["reason"].startswith("the backend closed the connection after the handshake")
    else:
        assert detail["alert_from"] == "backend"
        assert detail["alert"] in ("certificate_required", "handshake_failure")


def test_min_version_refuses_an_older_backend(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, max_version="1.2")
    tls = {"ca": str(pki.ca_cert), "min_version": "1.3"}
    gw = tls_gateway(make_gateway, [backend.url], tls)
    detail = assert_refused(gw, "the backend sent the alert protocol_version", "protocol_version")
    assert detail["alert_from"] == "backend"


def test_client_key_in_an_hsm(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    token: Token,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    """mTLS with the gateway's client key in SoftHSM2: the key never leaves the token, the
    gateway asks it to sign the CertificateVerify."""
    assert pki.ca_key is not None
    hsm_cert = x509.load_pem_x509_certificate((token.folder / "gw-ec.pem").read_bytes())
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    now = datetime.datetime.now(datetime.UTC)
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway-in-hsm")]))
        .issuer_name(ca_cert.subject)
        .public_key(hsm_cert.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(pki.ca_key, hashes.SHA256())
    )
    cert_path = tmp_path / "gateway-client.pem"
    cert_path.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, client_ca=pki.ca_cert)
    client = {"cert": str(cert_path), "key": token.uri("gw-ec")}
    tls = {"ca": str(pki.ca_cert), "client_cert": client}
    config = gateway_config(
        backend.url,
        upstreams={"backend": {"targets": [backend.url], "tls": tls}},
        pkcs11={"module": "/usr/lib/softhsm/libsofthsm2.so"},
    )
    gw = make_gateway(config, env=token.env)
    (got,) = seen(get(gw, ["/"]))
    assert got["client"] == "commonName=gateway-in-hsm"


def test_plain_http_backend_on_an_https_target_is_502(
    make_gateway: Callable[..., Gateway],
) -> None:
    # A plain-HTTP server that answers whatever it gets with a 400, as real ones do when a
    # ClientHello arrives: the engine sees a record type that does not exist.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        target = f"https://127.0.0.1:{server.getsockname()[1]}"
        gw = tls_gateway(make_gateway, [target], {"verify": False})
        ((status, _),) = get(gw, ["/"])
        assert status == 502
        (event,) = tls_failures(gw)
        assert event["detail"]["alert"] == "unexpected_message"
        assert "unknown record content type 72" in event["detail"]["reason"]  # "H"
    finally:
        thread.join(10)
        server.close()


def test_handshake_counts_toward_the_connect_timeout(
    make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    # A backend that accepts TCP connections (the kernel does, into the backlog) and never
    # says a word: the handshake cannot finish.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        target = f"https://127.0.0.1:{silent.getsockname()[1]}"
        gw = tls_gateway(make_gateway, [target], {"verify": False}, connect_timeout=0.5)
        ((status, _),) = get(gw, ["/"])
        assert status == 504
        errors = metric(gw, "outwork_upstream_errors_total", kind="connect_timeout")
        assert errors == 1
        assert tls_failures(gw) == []
    finally:
        silent.close()


# --- verify: false ---------------------------------------------------------------------------


def test_verify_false_connects_and_warns_loudly(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    tmp_path: Path,
) -> None:
    cert, key = leaf(pki, tmp_path, "expired-too", expired=True, dns=("x.example",), ips=())
    backend = make_tls_backend(cert, key)
    gw = tls_gateway(make_gateway, [backend.url], {"verify": False})
    (got,) = seen(get(gw, ["/"]))
    assert got["version"] == "TLSv1.3"
    assert "upstreams.backend.tls.verify: warning: verify: false" in gw.stderr()
    check = subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(gw.config_file)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0
    assert check.stdout == "ok\n"
    assert re.search(r"outwork\.yaml:\d+: upstreams\.backend\.tls\.verify: warning:", check.stderr)
    assert "NOT checked" in check.stderr


# --- a man in the middle between the gateway and its backend ---------------------------------


class CloseNotifyInjector:
    """A TCP relay on the path to a TLS backend that cannot break TLS, but, when the backend
    ends the connection, slips a plaintext close_notify in front of the FIN: to a client that
    took it, a body cut short there would look complete."""

    PLAINTEXT_CLOSE_NOTIFY = b"\x15\x03\x03\x00\x02\x01\x00"

    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.injected = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                gateway, _ = self.listener.accept()
            except OSError:
                return
            backend = socket.create_connection(("127.0.0.1", self.backend_port))
            threading.Thread(target=self._pump, args=(gateway, backend, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(backend, gateway, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, inject: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            if inject:
                sink.sendall(self.PLAINTEXT_CLOSE_NOTIFY)
                self.injected.set()
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("version", ["1.3", "1.2"])
def test_injected_plaintext_close_notify_does_not_complete_a_body(
    make_tls_backend: Callable[..., TlsBackend],
    make_gateway: Callable[..., Gateway],
    pki: TestPKI,
    version: str,
) -> None:
    ecdsa = pki.leaves["ecdsa-p256"]
    backend = make_tls_backend(ecdsa.cert, ecdsa.key, max_version=version)
    relay = CloseNotifyInjector(backend.port)
    try:
        gw = tls_gateway(
            make_gateway, [f"https://127.0.0.1:{relay.port}"], {"ca": str(pki.ca_cert)}
        )
        # The backend ends its body with a bare FIN; the relay puts a plaintext close_notify
        # before it. Only a protected close_notify authenticates the end (RFC 8446 5, 6): the
        # client's connection is cut, not given the body as complete.
        with pytest.raises(IncompleteRead) as info:
            get(gw, ["/close-truncated"])
        assert relay.injected.is_set()
        assert info.value.partial == b"all of the body\n"
    finally:
        relay.close()
