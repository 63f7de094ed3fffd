"""The engine against real TLS peers on loopback, without the proxy in between: the server
role with openssl s_client (HRR, key update), gnutls-cli and Python's ssl; the client role
with openssl s_server."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.clientauth import ClientAuth
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.enums import CipherSuite, CipherSuite12, NamedGroup, ProtocolVersion
from tests.conftest import require_tool
from tests.tls.engine_peers import EngineServer, client_exchange
from tests.tls.pki import CertAuthority, Leaf

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def need(tool: str) -> str:
    return require_tool(tool)


@pytest.fixture
def engine_server(leaves: dict[str, Leaf]) -> Iterator[EngineServer]:
    server = EngineServer(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def peer_server(command: Callable[[int], list[str]]) -> Iterator[int]:
    """Run a TLS server tool on a free loopback port (its command made from the port) until
    the block ends; yields the port once it accepts connections."""
    port = free_port()
    proc = subprocess.Popen(command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.kill()
        proc.wait()


def converse(command: list[str], lines: list[bytes], until: bytes, timeout: float = 15) -> bytes:
    """Run an interactive TLS client, type `lines` into it with pauses, and return its stdout
    once `until` has appeared (or the client exited, or time ran out)."""
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdin is not None and proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    output = b""
    deadline = time.time() + timeout
    pending = list(lines)
    next_line = time.time() + 0.5
    try:
        while time.time() < deadline and until not in output:
            if pending and time.time() >= next_line:
                proc.stdin.write(pending.pop(0))
                proc.stdin.flush()
                next_line = time.time() + 0.3
            chunk = proc.stdout.read()
            if chunk:
                output += chunk
            elif proc.poll() is not None:
                break
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    return output


def s_client(port: int, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            need("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            "localhost",
            "-ign_eof",
            *args,
        ],
        input=REQUEST,
        capture_output=True,
        timeout=20,
    )


def test_openssl_s_client_after_hello_retry_request(leaves: dict[str, Leaf]) -> None:
    server = EngineServer(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), groups=(NamedGroup.X25519,))
    )
    try:
        # openssl sends a P-256 share first; the server wants X25519 and asks again.
        result = s_client(server.port, "-tls1_3", "-groups", "P-256:X25519")
    finally:
        server.close()
    out = result.stdout.decode()
    assert "Server Temp Key: X25519" in out, result.stderr.decode()
    assert "\r\n\r\nhello" in out


def test_openssl_s_client_key_update(engine_server: EngineServer) -> None:
    # Typed alone on a line, "K" makes s_client send a KeyUpdate with update_requested.
    output = converse(
        [need("openssl"), "s_client", "-connect", f"127.0.0.1:{engine_server.port}", "-tls1_3"],
        [b"K\n", REQUEST],
        until=b"\r\n\r\nhello",
    )
    assert b"KEYUPDATE" in output
    assert b"\r\n\r\nhello" in output, output.decode()[-800:]
    assert not engine_server.wait_for(ev.ConnectionFailed, timeout=0.2)


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_gnutls_cli_each_key_type(
    kind: str, ca: CertAuthority, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    server = EngineServer(ServerConfig(certificates=(leaves[kind].certified(),)))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert.public_bytes(Encoding.PEM))
    try:
        output = converse(
            [
                need("gnutls-cli"),
                "--x509cafile",
                str(ca_file),
                "--priority",
                "NORMAL:-VERS-ALL:+VERS-TLS1.3",
                "-p",
                str(server.port),
                "localhost",
            ],
            [REQUEST],
            until=b"\r\n\r\nhello",
        )
    finally:
        server.close()
    assert b"(TLS1.3" in output, output.decode()
    assert b"\r\n\r\nhello" in output


def python_ssl_get(
    server: EngineServer, ca: CertAuthority, version: ssl.TLSVersion
) -> tuple[str | None, bytes]:
    """GET over Python's ssl pinned to one version; returns (negotiated version, response)."""
    context = ssl.create_default_context(cadata=ca.cert.public_bytes(Encoding.PEM).decode())
    context.minimum_version = context.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(REQUEST)
                body = b""
                while chunk := tls.recv(4096):
                    body += chunk
                return tls.version(), body
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519"])
def test_python_ssl_each_key_type(kind: str, ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    server = EngineServer(ServerConfig(certificates=(leaves[kind].certified(),)))
    version, body = python_ssl_get(server, ca, ssl.TLSVersion.TLSv1_3)
    assert version == "TLSv1.3"
    assert body.endswith(b"hello")


@pytest.fixture
def s_server(leaves: dict[str, Leaf], tmp_path: Path) -> Iterator[int]:
    cert, key = leaves["ecdsa-p256"].write(tmp_path, "leaf")
    with peer_server(
        lambda port: [
            need("openssl"),
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-www",
            "-groups",
            "X25519:P-256:P-384:X448",
        ]  # fmt: skip
    ) as port:
        yield port


@pytest.mark.parametrize("suite", list(CipherSuite)[:3], ids=lambda s: s.name)
@pytest.mark.parametrize(
    "groups",
    [
        (NamedGroup.X25519,),
        (NamedGroup.SECP256R1,),
        (NamedGroup.SECP384R1,),
        (NamedGroup.X25519MLKEM768,),
    ],  # the last one makes openssl 3.0 send a HelloRetryRequest
    ids=lambda g: g[0].name,
)
def test_engine_client_against_openssl_s_server(
    s_server: int, suite: CipherSuite, groups: tuple[NamedGroup, ...], ca: CertAuthority
) -> None:
    config = ClientConfig(
        trust_roots=(ca.cert,),
        cipher_suites=(suite,),
        key_share_groups=groups,
        groups=groups + (NamedGroup.X25519,) if groups[0] == NamedGroup.X25519MLKEM768 else groups,
    )
    conn, events, body = client_exchange(s_server, config, "localhost")
    assert conn.negotiated is not None, events
    assert conn.negotiated.cipher_suite == suite
    assert body.startswith(b"HTTP/1.0 200 ok")


def test_engine_client_refuses_s_server_with_untrusted_certificate(s_server: int) -> None:
    conn, events, _ = client_exchange(
        s_server, ClientConfig(trust_roots=(CertAuthority().cert,)), "localhost"
    )
    assert conn.negotiated is None
    assert any(isinstance(e, ev.ConnectionFailed) for e in events)


TLS12_CIPHERS = {
    "ecdsa": [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ],
    "rsa": [
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ],
}


@pytest.mark.parametrize(
    ("kind", "cipher"),
    [(k, c) for k in ("ecdsa-p256", "ed25519") for c in TLS12_CIPHERS["ecdsa"]]
    + [("rsa-2048", c) for c in TLS12_CIPHERS["rsa"]],
)
@pytest.mark.parametrize("group", ["X25519", "P-256", "P-384"])
def test_openssl_s_client_tls12(
    kind: str, cipher: str, group: str, leaves: dict[str, Leaf]
) -> None:
    # In TLS 1.2 the groups also bound the ECDSA certificate's curve (RFC 8422), so the
    # certificate's curve is offered too; the server then picks by its own preference.
    groups = [group] if kind != "ecdsa-p256" or group == "P-256" else [group, "P-256"]
    expected = min(groups, key=["X25519", "P-256", "P-384"].index)
    server = EngineServer(ServerConfig(certificates=(leaves[kind].certified(),)))
    try:
        result = s_client(server.port, "-tls1_2", "-cipher", cipher, "-groups", ":".join(groups))
    finally:
        server.close()
    out = result.stdout.decode()
    assert f"Cipher is {cipher}" in out, result.stderr.decode()[-500:]
    temp_key = {"X25519": "X25519", "P-256": "ECDH, prime256v1", "P-384": "ECDH, secp384r1"}
    assert f"Server Temp Key: {temp_key[expected]}" in out
    assert "Extended master secret: yes" in out
    assert "Secure Renegotiation IS supported" in out
    assert "\r\n\r\nhello" in out


def test_tls12_ecdsa_certificate_on_a_curve_the_client_refuses(leaves: dict[str, Leaf]) -> None:
    server = EngineServer(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    try:
        result = s_client(server.port, "-tls1_2", "-groups", "X25519")
    finally:
        server.close()
    assert b"handshake failure" in result.stderr


def test_tls12_renegotiation_is_refused(engine_server: EngineServer) -> None:
    # "R" typed alone on a line asks s_client to renegotiate.
    output = converse(
        [need("openssl"), "s_client", "-connect", f"127.0.0.1:{engine_server.port}", "-tls1_2"],
        [b"R\n", REQUEST],
        until=b"\r\n\r\nhello",
        timeout=5,
    )
    assert b"RENEGOTIATING" in output
    assert b"\r\n\r\nhello" not in output
    failed = engine_server.wait_for(ev.ConnectionFailed)
    assert failed and failed[0].alert == AlertDescription.NO_RENEGOTIATION  # type: ignore[union-attr]


def test_tls12_fallback_scsv_is_refused(engine_server: EngineServer) -> None:
    result = s_client(engine_server.port, "-tls1_2", "-fallback_scsv")
    assert b"inappropriate fallback" in result.stderr


def test_tls12_refused_when_listener_wants_tls13(leaves: dict[str, Leaf]) -> None:
    server = EngineServer(
        ServerConfig(
            certificates=(leaves["ecdsa-p256"].certified(),), min_version=ProtocolVersion.TLS13
        )
    )
    try:
        result = s_client(server.port, "-tls1_2")
    finally:
        server.close()
    assert b"protocol version" in result.stderr


def test_tls12_client_without_ems_is_refused_unless_allowed(
    ca: CertAuthority, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert.public_bytes(Encoding.PEM))
    for require_ems, expect_ok in ((True, False), (False, True)):
        server = EngineServer(
            ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), require_ems=require_ems)
        )
        try:
            # GnuTLS' %NO_SESSION_HASH leaves out the extended_master_secret extension.
            output = converse(
                [
                    need("gnutls-cli"),
                    "--x509cafile",
                    str(ca_file),
                    "--priority",
                    "NORMAL:-VERS-ALL:+VERS-TLS1.2:%NO_SESSION_HASH",
                    "-p",
                    str(server.port),
                    "localhost",
                ],
                [REQUEST],
                until=b"\r\n\r\nhello",
                timeout=5,
            )
        finally:
            server.close()
        assert (b"\r\n\r\nhello" in output) == expect_ok, output.decode()


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa-2048"])
def test_gnutls_cli_tls12(
    kind: str, ca: CertAuthority, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    server = EngineServer(ServerConfig(certificates=(leaves[kind].certified(),)))
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca.cert.public_bytes(Encoding.PEM))
    try:
        output = converse(
            [
                need("gnutls-cli"),
                "--x509cafile",
                str(ca_file),
                "--priority",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2",
                "-p",
                str(server.port),
                "localhost",
            ],
            [REQUEST],
            until=b"\r\n\r\nhello",
        )
    finally:
        server.close()
    assert b"(TLS1.2" in output, output.decode()
    assert b"\r\n\r\nhello" in output


def test_python_ssl_tls12_sees_no_downgrade(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    server = EngineServer(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    version, body = python_ssl_get(server, ca, ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2"
    assert body.endswith(b"hello")


@pytest.fixture
def gnutls_serv_without_ems(leaves: dict[str, Leaf], tmp_path: Path) -> Iterator[int]:
    cert, key = leaves["ecdsa-p256"].write(tmp_path, "leaf")
    with peer_server(
        lambda port: [
            need("gnutls-serv"),
            "--http",
            "-p",
            str(port),
            "--x509certfile",
            str(cert),
            "--x509keyfile",
            str(key),
            "--priority",
            "NORMAL:-VERS-ALL:+VERS-TLS1.2:%NO_SESSION_HASH",
        ]  # fmt: skip
    ) as port:
        yield port


@pytest.mark.parametrize("require_ems", [True, False])
def test_engine_client_ems_policy_against_gnutls_serv(
    gnutls_serv_without_ems: int, require_ems: bool, ca: CertAuthority
) -> None:
    config = ClientConfig(trust_roots=(ca.cert,), require_ems=require_ems)
    conn, events, body = client_exchange(gnutls_serv_without_ems, config, "localhost")
    if require_ems:
        assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [
            AlertDescription.HANDSHAKE_FAILURE
        ]
    else:
        assert conn.negotiated is not None and conn.negotiated.version == ProtocolVersion.TLS12
        assert body.startswith(b"HTTP/1.0 200 OK")


@pytest.mark.parametrize(
    "suite", [s for s in CipherSuite12 if "ECDSA" in s.name], ids=lambda s: s.name
)
def test_engine_client_tls12_against_openssl_s_server(
    s_server: int, suite: CipherSuite12, ca: CertAuthority
) -> None:
    config = ClientConfig(
        trust_roots=(ca.cert,), max_version=ProtocolVersion.TLS12, cipher_suites_tls12=(suite,)
    )
    conn, events, body = client_exchange(s_server, config, "localhost")
    assert conn.negotiated is not None, events
    assert conn.negotiated.version == ProtocolVersion.TLS12
    assert body.startswith(b"HTTP/1.0 200 ok")


@pytest.mark.parametrize("version", [ProtocolVersion.TLS13, ProtocolVersion.TLS12])
def test_engine_client_resumes_with_openssl_s_server(
    s_server: int, version: ProtocolVersion, ca: CertAuthority
) -> None:
    config = ClientConfig(trust_roots=(ca.cert,), max_version=version)
    first, _, _ = client_exchange(s_server, config, "localhost")
    assert first.negotiated is not None and not first.negotiated.resumed
    assert first.sessions
    second, events, body = client_exchange(
        s_server, config, "localhost", session=first.sessions[-1]
    )
    assert second.negotiated is not None and second.negotiated.resumed, events
    assert body.startswith(b"HTTP/1.0 200 ok")


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
def test_openssl_s_client_resumes(
    engine_server: EngineServer, version: str, tmp_path: Path
) -> None:
    session = tmp_path / "session.pem"
    first = s_client(engine_server.port, version, "-sess_out", str(session))
    assert "New, TLSv1." in first.stdout.decode()
    second = s_client(engine_server.port, version, "-sess_in", str(session))
    out = second.stdout.decode()
    assert "Reused, TLSv1." in out, second.stderr.decode()[-500:]
    assert "\r\n\r\nhello" in out
    resumed = [e for e in engine_server.events if isinstance(e, ev.HandshakeComplete)]
    assert [e.resumed for e in resumed] == [False, True]


@pytest.mark.parametrize("version", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("present", [True, False], ids=["with-cert", "without-cert"])
def test_openssl_s_client_certificate(
    version: str, present: bool, leaves: dict[str, Leaf], tmp_path: Path
) -> None:
    client_ca = CertAuthority("interop client CA")
    cert, key = client_ca.issue("ecdsa-p256", ("client.example",), client=True).write(
        tmp_path, "client"
    )
    server = EngineServer(
        ServerConfig(
            certificates=(leaves["ecdsa-p256"].certified(),),
            client_auth=ClientAuth.REQUIRED,
            client_ca=(client_ca.cert,),
        )
    )
    try:
        args = ["-cert", str(cert), "-key", str(key)] if present else []
        result = s_client(server.port, version, *args)
    finally:
        server.close()
    assert ("\r\n\r\nhello" in result.stdout.decode()) == present
    done = [e for e in server.events if isinstance(e, ev.HandshakeComplete)]
    if present:
        assert done and done[0].client_identity is not None
        assert done[0].client_identity.sans == ("DNS:client.example",)


@pytest.mark.parametrize("version", [ProtocolVersion.TLS13, ProtocolVersion.TLS12])
def test_engine_client_certificate_against_openssl_s_server(
    version: ProtocolVersion, leaves: dict[str, Leaf], ca: CertAuthority, tmp_path: Path
) -> None:
    client_ca = CertAuthority("interop client CA")
    client_leaf = client_ca.issue("ecdsa-p256", ("client.example",), client=True)
    ca_file = tmp_path / "client-ca.pem"
    ca_file.write_bytes(client_ca.cert.public_bytes(Encoding.PEM))
    cert, key = leaves["ecdsa-p256"].write(tmp_path, "leaf")
    config = ClientConfig(
        trust_roots=(ca.cert,), max_version=version, client_certificate=client_leaf.certified()
    )
    with peer_server(
        lambda port: [
            need("openssl"),
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-www",
            "-Verify",
            "1",
            "-CAfile",
            str(ca_file),
        ]  # fmt: skip
    ) as port:
        conn, events, body = client_exchange(port, config, "localhost")
    assert conn.negotiated is not None, events
    assert body.startswith(b"HTTP/1.0 200 ok")
