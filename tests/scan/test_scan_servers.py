"""`outwork scan` against real servers on loopback: outwork itself, nginx, Python's `ssl`, and
deliberately vulnerable servers (the positive controls that make every "not vulnerable" mean
something). Each test runs the command as a user does and reads its exit status and JSON."""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from outwork.scan.probes import HEARTBLEED_CLAIM, HEARTBLEED_PAYLOAD
from tests.conftest import Backend, Gateway, gateway_config
from tests.e2e import servers as e2e_servers
from tests.e2e.pki import TestPKI

from .conftest import run_scan
from .servers import FloodServer, LeakyServer, OldServer, PythonTLSServer, SilentServers

LEAK = HEARTBLEED_CLAIM - HEARTBLEED_PAYLOAD  # what a 1.0.1f-style server returns beyond ours
TLS_VERSIONS = {"1.0", "1.1", "1.2", "1.3"}
SEVERITIES = {"vulnerable", "warning", "info"}


def check_schema(report: dict[str, Any]) -> None:
    """The documented shape of `--json` (README, "Scanning the backends")."""
    assert isinstance(report["scanned_at"], str)
    assert set(report["summary"]) == {"targets", "vulnerable", "unreachable", "warnings", "ok"}
    assert report["summary"]["targets"] == len(report["targets"])
    for t in report["targets"]:
        host, _, port = t["target"].rpartition(":")
        assert host and port.isdigit(), t["target"]
        assert isinstance(t["reachable"], bool) and isinstance(t["tls"], bool)
        assert t["verdict"] in {"VULNERABLE", "UNREACHABLE", "WARNINGS", "OK"}
        assert isinstance(t["tls_versions"], list) and set(t["tls_versions"]) <= TLS_VERSIONS
        assert t["tls_versions"] == sorted(t["tls_versions"])
        assert set(t["cipher_suites"]) <= set(t["tls_versions"])
        assert all(isinstance(s, str) for v in t["cipher_suites"].values() for s in v)
        assert all(isinstance(g, str) for g in t["groups"])
        hb = t["heartbleed"]
        assert isinstance(hb["vulnerable"], bool) and isinstance(hb["leaked_bytes"], int)
        assert hb["vulnerable"] == (hb["leaked_bytes"] > 0)
        for part in ("before_handshake", "in_session"):
            assert set(hb[part]) == {"tested", "vulnerable", "leaked_bytes", "note"}
        assert hb["leaked_bytes"] == sum(
            hb[p]["leaked_bytes"] for p in ("before_handshake", "in_session")
        )
        cert = t["certificate"]
        if t["tls"]:
            assert isinstance(cert, dict) and isinstance(cert["days_left"], int), t
            assert isinstance(cert["names"], list) and cert["chain"], cert
        assert set(t["ccs_injection"]) == {"tested", "vulnerable", "note"}
        assert t["secure_renegotiation"] in (True, False, None)
        assert t["compression"] in (True, False, None)
        for f in t["findings"]:
            assert set(f) == {"id", "severity", "title"} and f["severity"] in SEVERITIES


def days_left(cert_path: Path) -> int:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return (cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)).days


def assert_sound(t: dict[str, Any]) -> None:
    assert t["reachable"] and t["tls"], t
    assert t["heartbleed"] == {
        **t["heartbleed"],
        "vulnerable": False,
        "leaked_bytes": 0,
    }, t["heartbleed"]
    assert t["heartbleed"]["before_handshake"]["tested"], t["heartbleed"]
    assert t["heartbleed"]["in_session"]["tested"], t["heartbleed"]
    assert not t["ccs_injection"]["vulnerable"]
    assert t["compression"] is False
    assert t["verdict"] in ("OK", "WARNINGS"), t["findings"]


# --- not vulnerable, versions right --------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "maximum", "versions"),
    [
        (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3, ["1.2", "1.3"]),
        (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2, ["1.2"]),
        (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3, ["1.3"]),
    ],
    ids=["1.2+1.3", "1.2-only", "1.3-only"],
)
def test_python_ssl_server(
    pki: TestPKI,
    tmp_path: Path,
    minimum: ssl.TLSVersion,
    maximum: ssl.TLSVersion,
    versions: list[str],
) -> None:
    leaf = pki.leaves["ecdsa-p256"]
    server = PythonTLSServer(leaf.cert, leaf.key, minimum, maximum)
    try:
        run = run_scan(tmp_path, server.address)
    finally:
        server.close()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report is not None
    check_schema(run.report)
    t = run.target(server.address)
    assert t["tls_versions"] == versions
    assert_sound(t)
    assert t["certificate"]["days_left"] == days_left(leaf.cert)
    assert t["certificate"]["names"] == ["localhost", "127.0.0.1"]
    assert t["certificate"]["key"] == "EC secp256r1"
    assert "x25519" in t["groups"]
    if "1.3" in versions:
        assert "TLS_AES_128_GCM_SHA256" in t["cipher_suites"]["1.3"]
    if "1.2" in versions:
        assert "ECDHE-ECDSA-AES128-GCM-SHA256" in t["cipher_suites"]["1.2"]
        assert t["secure_renegotiation"] is True
        assert t["ccs_injection"]["tested"]
    assert server.address in run.stdout and "OK" in run.stdout


def test_outwork_gateway(
    pki: TestPKI,
    tmp_path: Path,
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
) -> None:
    leaf = pki.leaves["ecdsa-p256"]
    backend = make_backend()
    tls = {"certificates": [{"cert": str(leaf.cert), "key": str(leaf.key)}], "heartbeat": True}
    gw = make_gateway(
        gateway_config(
            backend.url, listeners=[{"name": "public", "bind": "127.0.0.1:0", "tls": tls}]
        )
    )
    address = gw.urls["public"].removeprefix("https://")
    run = run_scan(tmp_path, address)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report is not None
    check_schema(run.report)
    t = run.target(address)
    assert t["tls_versions"] == ["1.2", "1.3"]
    assert_sound(t)
    assert t["heartbeat_advertised"] is True  # turned on above; still not vulnerable
    assert set(t["cipher_suites"]["1.2"]) <= {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    }
    assert {"x25519", "X25519MLKEM768"} <= set(t["groups"])
    assert t["certificate"]["days_left"] == days_left(leaf.cert)


@pytest.fixture
def nginx(pki: TestPKI, tmp_path: Path, make_backend: Callable[..., Backend]) -> Iterator[int]:
    backend = make_backend()
    port = int(backend.address.rpartition(":")[2])
    gw = e2e_servers.start_nginx(tmp_path / "nginx", pki.leaves["ecdsa-p256"], port)
    yield gw.port
    gw.stop()


def test_nginx(nginx: int, tmp_path: Path, pki: TestPKI) -> None:
    address = f"127.0.0.1:{nginx}"
    run = run_scan(tmp_path, address)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report is not None
    check_schema(run.report)
    t = run.target(address)
    assert t["tls_versions"] == ["1.3"]  # the helper's nginx.conf: ssl_protocols TLSv1.3
    assert_sound(t)
    assert t["ccs_injection"]["note"].startswith("not applicable")
    assert t["certificate"]["days_left"] == days_left(pki.leaves["ecdsa-p256"].cert)


# --- vulnerable: detected, exit 1 ----------------------------------------------------------


def test_heartbleed_before_the_handshake(leaky_plaintext: LeakyServer, tmp_path: Path) -> None:
    run = run_scan(tmp_path, leaky_plaintext.address)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report is not None
    check_schema(run.report)
    hb = run.target(leaky_plaintext.address)["heartbleed"]
    assert hb["vulnerable"] and hb["leaked_bytes"] == LEAK, hb
    assert hb["before_handshake"]["leaked_bytes"] == LEAK
    assert not hb["in_session"]["vulnerable"] and hb["in_session"]["tested"]
    assert "VULNERABLE" in run.stdout


def test_heartbleed_inside_the_session(leaky_in_session: LeakyServer, tmp_path: Path) -> None:
    run = run_scan(tmp_path, leaky_in_session.address)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report is not None
    check_schema(run.report)
    t = run.target(leaky_in_session.address)
    hb = t["heartbleed"]
    assert hb["in_session"]["leaked_bytes"] == LEAK, hb
    assert not hb["before_handshake"]["vulnerable"] and hb["before_handshake"]["tested"]
    assert [f["id"] for f in t["findings"] if f["severity"] == "vulnerable"] == ["heartbleed"]


def test_leaked_bytes_are_counted_not_kept(leaky_plaintext: LeakyServer, tmp_path: Path) -> None:
    """Nothing of the server's "memory" reaches the reports or the terminal."""
    html = tmp_path / "report.html"
    run = run_scan(tmp_path, leaky_plaintext.address, "--html", str(html))
    assert run.returncode == 1
    everything = run.stdout + run.stderr + (tmp_path / "scan.json").read_text() + html.read_text()
    assert "PRIVATE KEY" not in everything and "not really" not in everything


def test_old_server_ccs_injection_compression_renegotiation(
    old_server: OldServer, tmp_path: Path
) -> None:
    run = run_scan(tmp_path, old_server.address)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.report is not None
    check_schema(run.report)
    t = run.target(old_server.address)
    assert t["tls_versions"] == ["1.0"]
    assert t["cipher_suites"]["1.0"] == ["RC4-SHA", "AES128-SHA"]
    assert t["ccs_injection"]["vulnerable"] is True
    assert t["compression"] is True
    assert t["secure_renegotiation"] is False
    ids = {f["id"] for f in t["findings"]}
    assert {"ccs-injection", "crime", "tls1.0", "renegotiation", "weak-ciphers"} <= ids
    assert not t["heartbleed"]["vulnerable"]


def test_raw_leaky_server_of_the_e2e_suite(pki: TestPKI, tmp_path: Path) -> None:
    """tests/e2e/leaky_server.py (a hand-written fake, not outwork's engine) is caught too."""
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "e2e" / "leaky_server.py"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(pki.leaves["ecdsa-p256"].cert)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        run = run_scan(tmp_path, f"127.0.0.1:{port}")
    finally:
        e2e_servers.stop_process(proc)
    assert run.returncode == 1, run.stdout + run.stderr
    hb = run.target(f"127.0.0.1:{port}")["heartbleed"]
    assert hb["before_handshake"]["leaked_bytes"] == LEAK, hb


# --- the config, several targets, unreachable ones, bad input ------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_upstreams(
    python_tls: PythonTLSServer,
    leaky_plaintext: LeakyServer,
    make_backend: Callable[..., Backend],
    tmp_path: Path,
) -> None:
    """Every upstream target of a config, https and plain http, scanned concurrently."""
    import yaml

    backend = make_backend()
    dead = _closed_port()
    config = gateway_config(
        backend.url,
        upstreams={
            "backend": {"targets": [backend.url]},
            "secure": {
                "targets": [f"https://{python_tls.address}", f"https://{leaky_plaintext.address}"],
                "tls": {"verify": False},
            },
            "gone": {"targets": [f"https://127.0.0.1:{dead}"], "tls": {"verify": False}},
        },
    )
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    html = tmp_path / "report.html"
    run = run_scan(tmp_path, "-c", str(path), "--html", str(html))
    assert run.returncode == 1, run.stdout + run.stderr  # vulnerable wins over unreachable
    assert run.report is not None
    check_schema(run.report)
    assert run.report["summary"] == {
        "targets": 4,
        "vulnerable": 1,
        "unreachable": 1,
        "warnings": 1,
        "ok": 1,
    }
    plain = run.target(backend.address)
    assert plain["reachable"] and not plain["tls"] and plain["source"] == "upstream backend"
    assert [f["id"] for f in plain["findings"]] == ["plain-http"]
    assert run.target(python_tls.address)["verdict"] == "OK"
    assert run.target(leaky_plaintext.address)["verdict"] == "VULNERABLE"
    gone = run.target(f"127.0.0.1:{dead}")
    assert not gone["reachable"] and gone["verdict"] == "UNREACHABLE"
    lines = [line for line in run.stderr.splitlines() if "unreachable" in line]
    assert lines == [f"outwork scan: 127.0.0.1:{dead} unreachable: connection refused"]
    assert html.read_text().count('class="target"') == 4


def test_unreachable_target_exit_2(python_tls: PythonTLSServer, tmp_path: Path) -> None:
    dead = _closed_port()
    run = run_scan(tmp_path, python_tls.address, f"127.0.0.1:{dead}")
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.report is not None
    assert run.report["summary"]["unreachable"] == 1
    assert [line for line in run.stderr.splitlines() if "unreachable" in line] == [
        f"outwork scan: 127.0.0.1:{dead} unreachable: connection refused"
    ]
    assert "1 unreachable" in run.stdout


def test_not_tls(make_backend: Callable[..., Backend], tmp_path: Path) -> None:
    """An https target that answers in plain HTTP: reachable, no TLS, said so."""
    backend = make_backend()
    run = run_scan(tmp_path, backend.address, "--timeout", "1")  # it waits for an HTTP head
    assert run.returncode == 0, run.stdout + run.stderr
    t = run.target(backend.address)
    assert t["reachable"] and not t["tls"] and t["verdict"] == "WARNINGS"
    assert t["findings"][0]["id"] == "no-tls"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["not-a-target"],
        ["127.0.0.1:99999"],
        ["host:port"],
        ["-c", "/nonexistent/outwork.yaml"],
        ["127.0.0.1:443", "--json", "/nonexistent/dir/out.json"],
        ["127.0.0.1:443", "--concurrency", "0"],
        ["127.0.0.1:443", "--concurrency", "65"],  # runner.MAX_CONCURRENCY
        ["127.0.0.1:443", "--timeout", "0"],
    ],
    ids=[
        "nothing",
        "no-port",
        "port-range",
        "port-word",
        "no-config",
        "json-dir",
        "concurrency-0",
        "concurrency-cap",
        "timeout-0",
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    run = run_scan(tmp_path, *args, json_report=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.strip(), "no message"
    assert "Traceback" not in run.stderr


def test_silent_server_times_out_per_connection(tmp_path: Path) -> None:
    """A port that accepts and never answers: each connection gives up after --timeout,
    and the target is reported as reachable without TLS."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        run = run_scan(tmp_path, address, "--timeout", "0.3")
    assert run.returncode == 0, run.stdout + run.stderr
    t = run.target(address)
    assert t["reachable"] and not t["tls"]
    assert t["error"] == "no TLS: no ServerHello within 0.3 s"


def test_progress_bar_on_a_terminal(python_tls: PythonTLSServer, tmp_path: Path) -> None:
    """On a terminal (a pseudo-terminal here), a rich progress bar; without one, plain lines."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "outwork", "scan", python_tls.address],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
        cwd=Path(__file__).parents[2],
    )
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    assert proc.wait(timeout=120) == 0, shown.decode(errors="replace")
    text = shown.decode(errors="replace")
    assert "scanning" in text and "1/1" in text, text
    assert f"scanned {python_tls.address}" not in text
    plain = run_scan(tmp_path, python_tls.address)
    assert f"scanned {python_tls.address}: OK" in plain.stderr


def test_flooding_server_is_cut_off(tmp_path: Path) -> None:
    """A server whose handshake never ends: the scanner's buffer caps stop it at once."""
    server = FloodServer()
    try:
        run = run_scan(tmp_path, server.address)
    finally:
        server.close()
    assert run.returncode == 0, run.stdout + run.stderr
    t = run.target(server.address)
    assert t["reachable"] and not t["tls"]
    assert "handshake message of 723723 bytes" in t["error"], t["error"]


def test_target_cap(tmp_path: Path) -> None:
    from outwork.scan.runner import MAX_TARGETS

    targets = [f"127.0.0.1:{1 + i}" for i in range(MAX_TARGETS + 1)]
    run = run_scan(tmp_path, *targets, json_report=False)
    assert run.returncode == 2
    assert (
        run.stderr.strip()
        == f"outwork scan: {MAX_TARGETS + 1} targets, at most {MAX_TARGETS} per scan"
    )


def _self_signed(tmp_path: Path, days: int) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 that expires in `days` (negative: ago)."""
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old backend")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(days=days, hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "old.crt", tmp_path / "old.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize(("days", "finding"), [(-3, "cert-expired"), (10, "cert-expiring")])
def test_certificate_expiry(tmp_path: Path, days: int, finding: str) -> None:
    cert, key = _self_signed(tmp_path, days)
    server = PythonTLSServer(cert, key)
    try:
        run = run_scan(tmp_path, server.address)
    finally:
        server.close()
    assert run.returncode == 0, run.stdout + run.stderr  # a warning, not a vulnerability
    t = run.target(server.address)
    assert t["certificate"]["days_left"] == days
    assert t["certificate"]["self_signed"] is True
    assert t["verdict"] == "WARNINGS"
    assert finding in [f["id"] for f in t["findings"]]


def test_in_session_probe_falls_back_to_tls13(pki: TestPKI, tmp_path: Path) -> None:
    """TLS 1.2 with CBC suites only (which outwork's client engine refuses to speak) and
    TLS 1.3: the session probe runs over TLS 1.3 rather than not at all."""
    leaf = pki.leaves["ecdsa-p256"]
    server = PythonTLSServer(leaf.cert, leaf.key)
    server.context.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    try:
        run = run_scan(tmp_path, server.address)
    finally:
        server.close()
    assert run.returncode == 0, run.stdout + run.stderr
    t = run.target(server.address)
    assert t["cipher_suites"]["1.2"] == ["ECDHE-ECDSA-AES128-SHA256"]
    assert t["heartbleed"]["in_session"]["tested"], t["heartbleed"]
    assert "not-tested" not in [f["id"] for f in t["findings"]]


def test_in_session_probe_not_possible_is_said(pki: TestPKI, tmp_path: Path) -> None:
    leaf = pki.leaves["ecdsa-p256"]
    server = PythonTLSServer(leaf.cert, leaf.key, maximum=ssl.TLSVersion.TLSv1_2)
    server.context.set_ciphers("ECDHE-ECDSA-AES128-SHA256")
    try:
        run = run_scan(tmp_path, server.address)
    finally:
        server.close()
    t = run.target(server.address)
    assert not t["heartbleed"]["in_session"]["tested"]
    assert t["heartbleed"]["before_handshake"]["tested"]
    titles = [f["title"] for f in t["findings"] if f["id"] == "not-tested"]
    assert len(titles) == 1 and titles[0].startswith("Heartbleed inside a session not tested")


@pytest.mark.parametrize("concurrency", [1, 3])
def test_concurrency_is_bounded(tmp_path: Path, concurrency: int) -> None:
    """Six targets that never answer: never more than --concurrency connections at once
    (each target's connections are sequential), and with room, targets overlap."""
    silent = SilentServers(6)
    try:
        run = run_scan(
            tmp_path, *silent.addresses, "--timeout", "0.3", "--concurrency", str(concurrency)
        )
    finally:
        silent.close()
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.report is not None and run.report["summary"]["targets"] == 6
    assert 1 <= silent.most_open <= concurrency
    if concurrency > 1:
        assert silent.most_open > 1, "targets were scanned one after the other"


def test_config_scan_section(tmp_path: Path, make_backend: Callable[..., Backend]) -> None:
    """`scan.concurrency` and `scan.timeout` of the config apply to `outwork scan -c`."""
    import yaml

    backend = make_backend()
    silent = SilentServers(3)
    config = gateway_config(
        backend.url,
        upstreams={
            "backend": {
                "targets": [f"https://{a}" for a in silent.addresses],
                "tls": {"verify": False},
            }
        },
        scan={"concurrency": 1, "timeout": 0.3},
    )
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        run = run_scan(tmp_path, "-c", str(path))
    finally:
        silent.close()
    assert run.returncode == 0, run.stdout + run.stderr
    assert silent.most_open == 1
    for address in silent.addresses:
        assert run.target(address)["error"] == "no TLS: no ServerHello within 0.3 s"


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        ({"concurrency": 0}, "scan.concurrency"),
        ({"concurrency": 65}, "scan.concurrency"),
        ({"timeout": "0.05"}, "below the minimum 0.1s"),
        ({"timeout": "10m"}, "longer than the maximum 120s"),
        ({"threads": 4}, "scan"),
    ],
)
def test_config_scan_section_bounds(
    tmp_path: Path, make_backend: Callable[..., Backend], scan: dict[str, Any], message: str
) -> None:
    import yaml

    backend = make_backend()
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(gateway_config(backend.url, scan=scan)))
    run = run_scan(tmp_path, "-c", str(path), json_report=False)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr, run.stderr
