"""Scanners against the running gateway (issue 3): a full testssl.sh run and sslyze's Mozilla
"intermediate" check, with an ECDSA and an RSA certificate from the test CA (SANs localhost and
127.0.0.1, valid 100 days) on one listener.

testssl.sh's JSON is written with `--severity LOW`, so it holds only findings of severity LOW
or above: every one must be about the test certificate's provenance (no revocation URL, OCSP,
CAA record, CT) or the HTTP header policy (HSTS, security headers), which the policy work
brings. Its notes about the machine it runs on (SCANNER_MACHINE_NOTES: the local openssl has
no GOST engine) are not findings against the gateway. The "not vulnerable" verdicts of the
named checks are OK findings, which that filter leaves out of the JSON, so they are read from
testssl's log (`--logfile`, its terminal output) and from sslyze's JSON.

Why two testssl runs: testssl.sh builds some TLS 1.2 ClientHellos itself (bash sockets: the
protocol check, Heartbleed, CCS, Ticketbleed and ROBOT probes) and they carry no extended
master secret extension. With the default `require_ems: true` the gateway refuses them at the
ClientHello (handshake_failure, security event "client does not offer extended master secret")
so testssl says "TLS 1.2 not offered" while its OpenSSL-driven cipher enumeration lists the
TLS 1.2 suites, and those probes never reach the code they are meant to test. The run with
`require_ems: false` lets them in: TLS 1.2 must show as offered there and the verdicts must
still be "not vulnerable".
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_tool

from . import listeners
from .clients import ToolRun, run_tool
from .conftest import sslyze_path

SEVERE = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
# Findings allowed (id without the " <cert#N>" suffix): the test certificate's provenance and
# the HTTP header policy. Nothing else.
ALLOWED = {
    "cert_revocation": "no CRL or OCSP URL in a test certificate",
    "cert_crlDistributionPoints": "no CRL URL in a test certificate",
    "cert_ocspURL": "no OCSP URL in a test certificate",
    "OCSP_stapling": "no OCSP for a test CA",
    "cert_mustStapleExtension": "no OCSP for a test CA",
    "DNS_CAArecord": "no CAA record for localhost",
    "cert_certificateTransparency": "a test CA logs nothing to CT",
    "HSTS": "HTTP header policy (policy work)",
    "security_headers": "HTTP header policy (policy work)",
}
# testssl's notes about the machine it runs on, not about the target: they are not findings.
# testssl writes them before it connects (fileout_insert_warning, with no target address).
# Not listed, so still failures: `old_fart` and `too_old_openssl` (the local OpenSSL is too
# old for testssl to test properly: its verdicts would not mean much) and every per-check
# "not tested due to lack of local support" WARN (a check that did not run is not a pass).
SCANNER_MACHINE_NOTES = {
    "engine_problem": (
        "'No engine or GOST support via engine with your /usr/bin/openssl': testssl 3.0 looks "
        "for a GOST engine in the local openssl to test GOST cipher suites, and OpenSSL 3 "
        "(Debian 12) has none. Only GOST suites go untested; the gateway offers none (its "
        "suites are listed by testssl's cipher enumeration and checked by sslyze)."
    ),
}
# testssl's log lines for the checks the issue names; each must say not vulnerable.
TESTSSL_VERDICTS = {
    "Heartbleed": r"Heartbleed \(CVE-2014-0160\)\s+not vulnerable \(OK\)",
    "CCS": r"CCS \(CVE-2014-0224\)\s+not vulnerable \(OK\)",
    "ROBOT": (
        r"ROBOT\s+(?:not vulnerable \(OK\)|"
        r"Server does not support any cipher suites that use RSA key transport)"
    ),
    "secure renegotiation": (
        r"Secure Renegotiation \(RFC 5746\)\s+(?:supported|not vulnerable) \(OK\)"
    ),
    "client-initiated renegotiation": (
        r"Secure Client-Initiated Renegotiation\s+not vulnerable \(OK\)"
    ),
    "CRIME": r"CRIME, TLS \(CVE-2012-4929\)\s+not vulnerable \(OK\)",
}
VERDICT_IDS = ("heartbleed", "CCS", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS")


def run_testssl(port: int, ca: Path, workdir: Path, name: str) -> tuple[list[dict], str, ToolRun]:
    testssl = require_tool("testssl", "testssl.sh")
    report = workdir / f"testssl-{name}.json"
    log = workdir / f"testssl-{name}.log"
    for path in (report, log):
        path.unlink(missing_ok=True)
    run = run_tool(
        [
            testssl,
            "--add-ca",
            str(ca),
            "--jsonfile",
            str(report),
            "--logfile",
            str(log),
            "--severity",
            "LOW",
            "--warnings",
            "off",
            "--color",
            "0",
            "--quiet",
            "--connect-timeout",
            "10",
            "--openssl-timeout",
            "10",
            "--ip",
            "127.0.0.1",
            f"localhost:{port}",
        ],  # fmt: skip
        timeout=240,
        env={"MAX_WAITSOCK": "3", "HEARTBLEED_MAX_WAITSOCK": "3"},
    )
    if not report.exists() or not log.exists():
        pytest.fail(f"testssl wrote no JSON report or log\n{run.explain()}")
    findings = json.loads(report.read_text())
    text = log.read_text(errors="replace")
    if "Done " not in text:
        pytest.fail(f"testssl did not finish\n{run.explain()}")
    return findings, text, run


def sort_findings(findings: list[dict]) -> tuple[list[dict], list[dict]]:
    """testssl's JSON findings -> (bad, allowed); notes about the scanning machine are neither."""
    bad: list[dict] = []
    allowed: list[dict] = []
    for f in findings:
        base = str(f.get("id", "")).split(" ")[0]
        severity = f.get("severity")
        if base in SCANNER_MACHINE_NOTES and severity == "WARN":
            continue
        if severity in ("WARN", "FATAL"):
            bad.append(f)  # a check that could not run is not a pass
        elif severity in SEVERE:
            (allowed if base in ALLOWED else bad).append(f)
    return bad, allowed


def test_only_the_listed_machine_notes_are_ignored() -> None:
    """The JSON testssl 3.0.8 wrote here (Debian 12, OpenSSL 3.0), with a WARN and a finding
    about the target added: only `engine_problem` is set aside."""
    machine = {"id": "engine_problem", "ip": "/", "port": "443", "severity": "WARN"}
    machine["finding"] = "No engine or GOST support via engine with your /usr/bin/openssl"
    target = "localhost/127.0.0.1"
    revocation = {"id": "cert_revocation <cert#1>", "ip": target, "severity": "HIGH"}
    not_run = {"id": "SWEET32", "ip": target, "severity": "WARN"}
    not_run["finding"] = "Not tested, lack of local support (1 ciphers only)"
    old_openssl = {"id": "old_fart", "ip": "/", "severity": "WARN"}
    weak = {"id": "cipherlist_3DES_IDEA", "ip": target, "severity": "MEDIUM"}
    ok = {"id": "heartbleed", "ip": target, "severity": "OK"}
    bad, allowed = sort_findings([machine, revocation, not_run, old_openssl, weak, ok])
    assert bad == [not_run, old_openssl, weak]
    assert allowed == [revocation]
    # Set aside only as testssl writes it (WARN): the same id at another severity counts.
    high = {**machine, "severity": "HIGH"}
    assert sort_findings([high]) == ([high], [])


def check_testssl(findings: list[dict], text: str, run: ToolRun) -> list[dict]:
    """Assert the issue's rules; return the allowed findings (for the report)."""
    bad, allowed = sort_findings(findings)
    assert not bad, "testssl findings of severity LOW or above:\n" + "\n".join(
        json.dumps(f) for f in bad
    )
    for verdict_id in VERDICT_IDS:
        assert not any(str(f.get("id")) == verdict_id for f in findings), verdict_id
    missing = [name for name, rx in TESTSSL_VERDICTS.items() if not re.search(rx, text)]
    assert not missing, f"testssl did not say 'not vulnerable' for {missing}\n{run.explain()}"
    assert re.search(r"TLS 1\.3\s+offered \(OK\)", text), run.explain()
    for old in ("SSLv2", "SSLv3", "TLS 1 ", "TLS 1.1"):
        assert re.search(rf"{re.escape(old)}\s*not offered", text), (old, run.explain())
    return allowed


# A full testssl.sh run takes 45-60 s here; the suite's default per-test timeout is 60 s.
@pytest.mark.timeout(240)
def test_testssl_full_run_default_listener(tls_gateway, pki, tmp_path):
    """Default `require_ems: true`: testssl's own TLS 1.2 hellos are refused (see above); the
    TLS 1.2 suites still show in its OpenSSL-driven cipher list."""
    gw = tls_gateway("dual", pki.leaves["ecdsa-p256"], listeners.dual(pki))
    findings, text, run = run_testssl(gw.port, pki.ca_cert, tmp_path, "default")
    check_testssl(findings, text, run)
    assert re.search(r"ECDHE-ECDSA-AES128-GCM-SHA256", text), run.explain()
    assert re.search(r"ECDHE-RSA-AES128-GCM-SHA256", text), run.explain()
    # Both certificates were seen (ECDSA and RSA for the same name).
    assert "Server Certificate #2" in text, run.explain()


@pytest.mark.timeout(240)
def test_testssl_full_run_without_required_ems(tls_gateway, pki, tmp_path):
    gw = tls_gateway("no-ems", pki.leaves["ecdsa-p256"], listeners.dual(pki, require_ems=False))
    findings, text, run = run_testssl(gw.port, pki.ca_cert, tmp_path, "no-ems")
    check_testssl(findings, text, run)
    assert re.search(r"TLS 1\.2\s+offered \(OK\)", text), run.explain()
    for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-CHACHA20-POLY1305"):
        assert suite in text, run.explain()


def sslyze_scan(port: int, ca: Path, workdir: Path) -> tuple[dict[str, Any], ToolRun]:
    sslyze = sslyze_path()
    report = workdir / "sslyze.json"
    report.unlink(missing_ok=True)
    run = run_tool(
        [
            sslyze,
            "--mozilla_config=intermediate",
            f"--certinfo_ca_file={ca}",
            f"--json_out={report}",
            f"localhost:{port}{{127.0.0.1}}",
        ],  # fmt: skip
        timeout=120,
    )
    if not report.exists():
        pytest.fail(f"sslyze wrote no JSON report\n{run.explain()}")
    data = json.loads(report.read_text())
    results = data.get("server_scan_results") or []
    assert len(results) == 1, run.explain()
    server = results[0]
    assert server.get("connectivity_status") == "COMPLETED", run.explain()
    return server["scan_result"], run


def _result(scan: dict[str, Any], name: str, run: ToolRun) -> dict[str, Any]:
    entry = scan.get(name) or {}
    assert entry.get("status") == "COMPLETED", f"sslyze {name}: {entry}\n{run.explain()}"
    return entry["result"]


@pytest.mark.parametrize("require_ems", [True, False], ids=["default", "no-ems-required"])
def test_sslyze_mozilla_intermediate(tls_gateway, pki, tmp_path, require_ems):
    settings = {} if require_ems else {"require_ems": False}
    gw = tls_gateway(
        f"sslyze-{require_ems}", pki.leaves["ecdsa-p256"], listeners.dual(pki, **settings)
    )
    scan, run = sslyze_scan(gw.port, pki.ca_cert, tmp_path)
    # The compliance verdict is printed, not in the JSON; exit status 0 means compliant.
    assert run.returncode == 0, run.explain()
    assert re.search(r"localhost:\d+: OK - Compliant\.", run.output), run.explain()
    deployments = _result(scan, "certificate_info", run)["certificate_deployments"]
    assert len(deployments) >= 1, deployments
    for deployment in deployments:
        trusted = {
            p["trust_store"]["name"]: p["was_validation_successful"]
            for p in deployment["path_validation_results"]
        }
        assert trusted.get("Supplied CA file") is True, trusted
    assert _result(scan, "heartbleed", run)["is_vulnerable_to_heartbleed"] is False
    assert _result(scan, "openssl_ccs_injection", run)["is_vulnerable_to_ccs_injection"] is False
    robot = _result(scan, "robot", run)["robot_result"]
    assert robot in ("NOT_VULNERABLE_NO_ORACLE", "NOT_VULNERABLE_RSA_NOT_SUPPORTED"), robot
    reneg = _result(scan, "session_renegotiation", run)
    assert reneg["supports_secure_renegotiation"] is True, reneg
    assert reneg["is_vulnerable_to_client_renegotiation_dos"] is False, reneg
    assert _result(scan, "tls_compression", run)["supports_compression"] is False  # CRIME
    assert _result(scan, "tls_extended_master_secret", run)["supports_ems_extension"] is True
    for old in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1"):
        assert _result(scan, f"{old}_cipher_suites", run)["is_tls_version_supported"] is False
    tls12 = _result(scan, "tls_1_2_cipher_suites", run)
    names = {c["cipher_suite"]["name"] for c in tls12["accepted_cipher_suites"]}
    expected = {
        f"TLS_ECDHE_{kind}_WITH_{cipher}"
        for kind in ("ECDSA", "RSA")
        for cipher in ("AES_128_GCM_SHA256", "AES_256_GCM_SHA384", "CHACHA20_POLY1305_SHA256")
    }
    if not require_ems:
        assert names == expected, names
    else:
        # sslyze probes the AES-GCM suites with its legacy OpenSSL 1.0.2 client, which sends
        # no extended master secret: refused by design (RFC 7627). Its modern client (ChaCha)
        # sends it and is served. Real clients all send EMS (OpenSSL, NSS, BoringSSL, GnuTLS).
        assert names == {n for n in expected if "CHACHA20" in n}, names
    tls13 = _result(scan, "tls_1_3_cipher_suites", run)
    assert tls13["is_tls_version_supported"] is True
