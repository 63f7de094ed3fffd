"""`outwork certs install` and the admin API's POST /certificates: a certificate installed into a
running gateway (2 workers, a key in a SoftHSM2 token) while a client keeps opening TLS
connections; bad input refused with one line, the config file and the served certificate
unchanged; the admin API's token rules and audit lines."""

from __future__ import annotations

import datetime
import json
import socket
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import given
from hypothesis import strategies as st

from outwork.ops.install import rewrite_certificate
from tests.conftest import Backend, Gateway, gateway_config
from tests.ops.conftest import Token, outwork, refused

ADMIN_TOKEN = "install-test-token-0123456789abcdef"
TOKEN_ENV = {"OUTWORK_ADMIN_TOKEN": ADMIN_TOKEN}


def run_ok(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = outwork(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def issue_file_cert(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A file key and its certificate for api.test from the internal CA in tmp_path/ca."""
    if not (tmp_path / "ca" / "ca.pem").exists():
        run_ok("ca", "init", "ca", cwd=tmp_path)
    run_ok("keys", "generate", "--type", "ec-p256", "--out", f"{name}.key", cwd=tmp_path)
    run_ok("certs", "csr", "--key", f"{name}.key", "--name", "api.test",
           "--out", f"{name}.csr", cwd=tmp_path)  # fmt: skip
    run_ok("ca", "issue", "ca", "--csr", f"{name}.csr", "--out", f"{name}.pem", cwd=tmp_path)
    return tmp_path / f"{name}.pem", tmp_path / f"{name}.key"


def start(
    make_gateway: Callable[..., Gateway],
    backend: Backend,
    tmp_path: Path,
    cert: Path,
    key: str,
    env: dict[str, str],
    workers: int = 1,
    token: bool = True,
) -> Gateway:
    admin: dict[str, Any] = {"bind": "127.0.0.1:0"}
    if token:
        admin["token"] = "env:OUTWORK_ADMIN_TOKEN"
    config = gateway_config(
        backend.url,
        listeners=[
            {
                "name": "public",
                "bind": "127.0.0.1:0",
                "tls": {"certificates": [{"cert": str(cert), "key": key}]},
            }
        ],
        admin=admin,
        workers=workers,
        logging={"security_events": str(tmp_path / "security.jsonl")},
    )
    text = "# operator's note: keep me\n" + yaml.safe_dump(config)
    return make_gateway(text, env=env)


def served_serial(gateway: Gateway, tmp_path: Path) -> int:
    port = urlsplit(gateway.urls["public"]).port
    context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="api.test") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def serial_of(pem: Path) -> int:
    return x509.load_pem_x509_certificates(pem.read_bytes())[0].serial_number


def admin_address(gateway: Gateway) -> str:
    assert gateway.admin_url is not None
    return urlsplit(gateway.admin_url).netloc


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "security.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [line for line in lines if line["event"] == "admin.audit"]


def test_hsm_certificate_installed_into_two_workers_without_a_failed_handshake(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    tmp_path: Path,
    token: Token,
) -> None:
    old_cert, old_key = issue_file_cert(tmp_path, "old")
    env = {**TOKEN_ENV, **token.env}
    gateway = start(make_gateway, make_backend(), tmp_path, old_cert, str(old_key), env, 2)
    assert served_serial(gateway, tmp_path) == serial_of(old_cert)
    # The new key is made in the HSM, certified by the internal CA.
    uri = token.uri("install-api")
    run_ok("keys", "generate", "--type", "ec-p256", "--out", uri, cwd=tmp_path, env=token.env)
    run_ok("certs", "csr", "--key", uri, "--name", "api.test", "--out", "new.csr",
           cwd=tmp_path, env=token.env)  # fmt: skip
    run_ok("ca", "issue", "ca", "--csr", "new.csr", "--out", "new.pem", cwd=tmp_path)
    new_serial = serial_of(tmp_path / "new.pem")

    failures: list[str] = []
    handshakes = [0]
    stop = threading.Event()

    def hammer() -> None:  # new TLS connections without pause
        while not stop.is_set():
            try:
                served_serial(gateway, tmp_path)
                handshakes[0] += 1
            except (OSError, ssl.SSLError) as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        result = outwork("certs", "install", "-c", str(gateway.config_file), "--listener",
                         "public", "--cert", "new.pem", "--key", uri, "--admin",
                         admin_address(gateway), cwd=tmp_path, env=env)  # fmt: skip
        after = handshakes[0]
        while handshakes[0] < after + 20 and thread.is_alive():  # some under the new one too
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    assert "2 worker(s)" in result.stdout
    assert failures == []
    assert handshakes[0] > 20
    # Fresh handshakes, spread by the kernel over both workers: all get the new certificate.
    assert {served_serial(gateway, tmp_path) for _ in range(24)} == {new_serial}
    # Worker 1 swapped on the supervisor's word (worker 0, the admin's, swaps itself); no reload.
    log = gateway.stderr()
    assert "worker 1 (pid" in log and "new certificates for public" in log
    assert "reload" not in log
    # The config keeps it (and its comment) for a restart.
    text = gateway.config_file.read_text()
    assert text.startswith("# operator's note: keep me\n")
    listener = yaml.safe_load(text)["listeners"][0]["tls"]["certificates"][0]
    assert listener == {"cert": str(tmp_path / "new.pem"), "key": uri}
    audit = audit_lines(tmp_path)
    assert [a["detail"]["result"] for a in audit] == ["ok"]
    assert audit[0]["detail"]["serial"] == format(new_serial, "x")
    assert "pin-source" not in json.dumps(audit)
    labels = {"listener": "public", "subject": "CN=api.test"}
    expiry = gateway.metric("outwork_certificate_expiry_seconds", **labels)
    assert expiry > 86400


def expired_cert(tmp_path: Path, key: Path) -> Path:
    """A certificate for `key`, signed by the internal CA, expired yesterday."""
    ca_key = serialization.load_pem_private_key((tmp_path / "ca" / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    leaf_key = serialization.load_pem_private_key(key.read_bytes(), None)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=api.test"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    path = tmp_path / "expired.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_bad_installs_are_refused_with_one_line_and_change_nothing(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    old_cert, old_key = issue_file_cert(tmp_path, "old")
    new_cert, new_key = issue_file_cert(tmp_path, "new")
    other_cert, other_key = issue_file_cert(tmp_path, "other")
    gateway = start(make_gateway, make_backend(), tmp_path, old_cert, str(old_key), TOKEN_ENV)
    before = gateway.config_file.read_bytes()
    # A chain out of order: the CA's certificate before the leaf.
    (tmp_path / "disordered.pem").write_bytes(
        (tmp_path / "ca" / "ca.pem").read_bytes() + new_cert.read_bytes()
    )
    # A chain whose second certificate did not issue the first.
    (tmp_path / "broken.pem").write_bytes(
        new_cert.read_bytes()
        + x509.load_pem_x509_certificate(other_cert.read_bytes()).public_bytes(
            serialization.Encoding.PEM
        )
    )
    address = admin_address(gateway)
    cases = {
        "does not match": (["--cert", str(new_cert), "--key", str(other_key)], TOKEN_ENV),
        "expired": (["--cert", str(expired_cert(tmp_path, new_key)), "--key", str(new_key)],
                    TOKEN_ENV),  # fmt: skip
        "broken chain": (["--cert", "broken.pem", "--key", str(new_key)], TOKEN_ENV),
        # The loader takes the first certificate as the leaf: the CA's, not the key's.
        "not match the certificate": (["--cert", "disordered.pem", "--key", str(new_key)],
                                      TOKEN_ENV),
        "unknown listener": (["--cert", str(new_cert), "--key", str(new_key), "--listener",
                              "nope"], TOKEN_ENV),  # fmt: skip
        "unreachable": (["--cert", str(new_cert), "--key", str(new_key), "--admin",
                         "127.0.0.1:1"], TOKEN_ENV),  # fmt: skip
        "refused the token": (["--cert", str(new_cert), "--key", str(new_key)],
                              {"OUTWORK_ADMIN_TOKEN": "a-wrong-token-but-long-enough"}),
    }  # fmt: skip
    for expected, (args, env) in cases.items():
        options = ["--listener", "public", "--admin", address]
        result = outwork("certs", "install", "-c", str(gateway.config_file), *options, *args,
                         cwd=tmp_path, env=env)  # fmt: skip
        line = refused(result)
        assert expected in line, (expected, line)
        assert gateway.config_file.read_bytes() == before, expected
        assert served_serial(gateway, tmp_path) == serial_of(old_cert), expected
    assert list(tmp_path.glob(".outwork.yaml.*")) == []  # no staged file left behind
    # The wrong token left an audit line, and counts as a refusal.
    assert [a["detail"]["result"] for a in audit_lines(tmp_path)] == ["unauthorized"]
    assert gateway.metric("outwork_requests_refused_total", reason="admin_unauthorized") == 1


def post(gateway: Gateway, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    assert gateway.admin_url is not None
    request = urllib.request.Request(
        gateway.admin_url + "/certificates", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_admin_api_without_a_token_configured_takes_no_change(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    cert, key = issue_file_cert(tmp_path, "old")
    gateway = start(make_gateway, make_backend(), tmp_path, cert, str(key), {}, token=False)
    body = json.dumps({"listener": "public", "cert": str(cert), "key": str(key)}).encode()
    status, text = post(gateway, body, {"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert (status, text) == (403, "the admin API is off: no admin.token in the config\n")


def test_admin_api_token_and_body_cap(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    cert, key = issue_file_cert(tmp_path, "old")
    gateway = start(make_gateway, make_backend(), tmp_path, cert, str(key), TOKEN_ENV)
    before = gateway.config_file.read_bytes()
    body = json.dumps({"listener": "public", "cert": str(cert), "key": str(key)}).encode()
    assert post(gateway, body, {})[0] == 401
    assert post(gateway, body, {"Authorization": "Bearer wrong"})[0] == 401
    assert [a["detail"]["result"] for a in audit_lines(tmp_path)] == ["unauthorized"] * 2
    good = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    # Refused on its declared length, before any of it is read.
    admin = admin_address(gateway).rpartition(":")
    with socket.create_connection((admin[0], int(admin[2])), timeout=10) as raw:
        raw.sendall(
            b"POST /certificates HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "
            + ADMIN_TOKEN.encode()
            + b"\r\nContent-Length: %d\r\n\r\n" % (1024 * 1024 + 1)
        )
        assert raw.recv(65536).startswith(b"HTTP/1.1 413 ")
    status, text = post(gateway, b"[1]", good)
    assert status == 400
    assert gateway.config_file.read_bytes() == before


@given(
    cert=st.text(min_size=1, max_size=60),
    key=st.text(min_size=1, max_size=60),
)
def test_rewrite_changes_only_the_two_values(cert: str, key: str) -> None:
    text = (
        "# top comment\n"
        "listeners:\n"
        "  - name: other  # not this one\n"
        "    bind: 127.0.0.1:1\n"
        "    tls: {certificates: [{cert: a.pem, key: a.key}]}\n"
        "  - bind: 127.0.0.1:2\n"
        "    tls:\n"
        "      certificates:\n"
        "        - cert: 'old.pem'   # the old one\n"
        "          key: old.key\n"
        "    name: public\n"
    )
    out = rewrite_certificate(text, "public", cert, key)
    parsed = yaml.safe_load(out)
    assert parsed["listeners"][1]["tls"]["certificates"][0] == {"cert": cert, "key": key}
    assert parsed["listeners"][0] == yaml.safe_load(text)["listeners"][0]
    assert out.startswith("# top comment\nlisteners:\n  - name: other  # not this one\n")
    assert "# the old one\n" in out


def read_response(tls: ssl.SSLSocket) -> bytes:
    """One whole response with a Content-Length body (the demo backend's)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = tls.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def test_single_process_install_leaves_open_connections_untouched(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    old_cert, old_key = issue_file_cert(tmp_path, "old")
    new_cert, new_key = issue_file_cert(tmp_path, "new")
    gateway = start(make_gateway, make_backend(), tmp_path, old_cert, str(old_key), TOKEN_ENV)
    port = urlsplit(gateway.urls["public"]).port
    context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
    request = b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="api.test") as tls:
            tls.sendall(request)
            assert read_response(tls).startswith(b"HTTP/1.1 200")
            result = outwork("certs", "install", "-c", str(gateway.config_file), "--listener",
                             "public", "--cert", str(new_cert), "--key", str(new_key),
                             "--admin", admin_address(gateway), cwd=tmp_path,
                             env=TOKEN_ENV)  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert "1 worker(s)" in result.stdout
            # The connection opened before goes on: same session, keep-alive, no close.
            tls.sendall(request)
            answer = read_response(tls)
            assert answer.startswith(b"HTTP/1.1 200")
            assert b"connection: close" not in answer.lower()
    assert served_serial(gateway, tmp_path) == serial_of(new_cert)
