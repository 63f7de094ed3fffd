"""Client certificates through the running gateway (issue 3), with curl `--cert/--key`, TLS 1.3
and 1.2. `client_auth: required`: the good certificate gets the backend's body and the access
log shows its subject, SANs and fingerprint; none, one from another CA, an expired one, or one
whose signature does not verify (an impostor CA with the client CA's name) are refused with
their alert, which curl reports and the gateway's `tls.handshake_failed` event names.
`client_auth: optional`: every one of them gets the body, with no identity unless it is good.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import require_tool

from . import listeners
from .clients import ToolRun, new_tag, run_tool, tagged_path
from .pki import ClientCred, ClientPKI

CURL_VERSION = {"1.3": ["--tlsv1.3"], "1.2": ["--tlsv1.2", "--tls-max", "1.2"]}

# What is wrong with the certificate -> the gateway's alert.
REFUSALS = {
    "expired": "certificate_expired",
    "wrong_ca": "unknown_ca",
    "impostor": "bad_certificate",
}
# No certificate at all: TLS 1.3 has its own alert (RFC 8446 4.4.2.4); TLS 1.2 says
# handshake_failure (RFC 5246 7.4.6).
NO_CERTIFICATE = {"1.3": "certificate_required", "1.2": "handshake_failure"}
# How curl shows a received alert: OpenSSL's error string, and the -v trace line
# ("TLSv1.2 (IN), TLS alert, certificate expired (557)"). For certificate_expired curl prints
# only the trace line and exits 60 ("SSL certificate verification failed"): its OpenSSL
# backend files that alert under peer verification failures.
CURL_ALERT_TEXT = {
    "certificate_expired": ("sslv3 alert certificate expired", "TLS alert, certificate expired"),
    "unknown_ca": ("tlsv1 alert unknown ca", "TLS alert, unknown CA"),
    "bad_certificate": ("sslv3 alert bad certificate", "TLS alert, bad certificate"),
    "certificate_required": (
        "tlsv13 alert certificate required",
        "TLS alert, certificate required",
    ),
    "handshake_failure": ("sslv3 alert handshake failure", "TLS alert, handshake failure"),
}


def curl(gw, pki, version: str, cred: ClientCred | None, tag: str, *extra: str) -> ToolRun:
    exe = require_tool("curl")
    creds = ["--cert", str(cred.cert), "--key", str(cred.key)] if cred else []
    return run_tool(
        [
            exe,
            "-sS",
            "-v",
            *CURL_VERSION[version],
            "--cacert",
            str(pki.ca_cert),
            "--max-time",
            "15",
            "--resolve",
            f"localhost:{gw.port}:127.0.0.1",
            *creds,
            *extra,
            f"https://localhost:{gw.port}{tagged_path(tag)}",
        ]  # fmt: skip
    )


@pytest.fixture
def required(tls_gateway, pki, client_pki: ClientPKI):
    return tls_gateway(
        "mtls-required", pki.leaves["ecdsa-p256"], listeners.mtls(pki, client_pki, "required")
    )


@pytest.fixture
def optional(tls_gateway, pki, client_pki: ClientPKI):
    return tls_gateway(
        "mtls-optional", pki.leaves["ecdsa-p256"], listeners.mtls(pki, client_pki, "optional")
    )


def assert_identity(entry: dict[str, Any], cred: ClientCred) -> None:
    tls = entry["tls"]
    assert tls["client_subject"] is not None and f"CN={cred.subject_cn}" in tls["client_subject"]
    assert "O=outwork e2e" in tls["client_subject"], tls
    fingerprint = str(tls["client_fingerprint"]).replace(":", "").lower()
    assert fingerprint == cred.fingerprint_sha256, tls
    assert any(f"{cred.name}.clients.e2e.test" in str(san) for san in tls["client_sans"]), tls


def assert_no_identity(entry: dict[str, Any]) -> None:
    tls = entry["tls"]
    assert tls["client_subject"] is None, tls
    assert tls["client_fingerprint"] is None, tls
    assert not tls["client_sans"], tls


@pytest.mark.parametrize("version", list(CURL_VERSION))
def test_required_good_certificate(required, pki, client_pki, backend, version):
    tag = new_tag("good")
    run = curl(required, pki, version, client_pki.good, tag)
    assert run.returncode == 0, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    entry = required.access_for(tag)
    assert entry["status"] == 200 and entry["tls"]["version"] == version, entry
    assert_identity(entry, client_pki.good)


def _failures(gw, alert: str) -> int:
    return sum(
        1
        for e in gw.events()
        if e.get("event") == "tls.handshake_failed"
        and isinstance(e.get("detail"), dict)
        and e["detail"].get("alert") == alert
    )


def _assert_refused(gw, run: ToolRun, alert: str, before: int) -> None:
    # curl: 35 when the alert ends the handshake (TLS 1.2), 56 when it comes as the first
    # read after the client's Finished (TLS 1.3: the server checks the certificate last),
    # 60 for certificate_expired (see CURL_ALERT_TEXT).
    allowed = (35, 56, 60) if alert == "certificate_expired" else (35, 56)
    assert run.returncode in allowed, run.explain()
    assert any(text in run.output for text in CURL_ALERT_TEXT[alert]), run.explain()
    assert "HTTP/1.1 200" not in run.output, run.explain()
    assert "HTTP/2 200" not in run.output, run.explain()  # curl takes h2 when offered
    deadline = time.monotonic() + 5
    while _failures(gw, alert) <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _failures(gw, alert) > before, (
        f"no new tls.handshake_failed event with alert {alert}: {gw.events()[-3:]}"
    )


@pytest.mark.parametrize("version", list(CURL_VERSION))
def test_required_without_certificate_is_refused(required, pki, backend, version):
    alert = NO_CERTIFICATE[version]
    before = _failures(required, alert)
    # HTTP/1.1, for the reason given in the next test.
    run = curl(required, pki, version, None, new_tag("none"), "--http1.1")
    _assert_refused(required, run, alert, before)


@pytest.mark.parametrize("version", list(CURL_VERSION))
@pytest.mark.parametrize("problem", list(REFUSALS))
def test_required_bad_certificate_is_refused(required, pki, client_pki, version, problem):
    alert = REFUSALS[problem]
    before = _failures(required, alert)
    # HTTP/1.1: with h2, curl writes its connection preface in pieces right after its Finished
    # and, when the refusal closes the connection first, reports the failed send (55) without
    # reading the alert this test is about.
    cred = getattr(client_pki, problem)
    run = curl(required, pki, version, cred, new_tag(problem), "--http1.1")
    _assert_refused(required, run, alert, before)


@pytest.mark.parametrize("version", list(CURL_VERSION))
@pytest.mark.parametrize("problem", ["none", *REFUSALS])
def test_optional_passes_without_identity(optional, pki, client_pki, backend, version, problem):
    tag = new_tag(problem)
    cred = None if problem == "none" else getattr(client_pki, problem)
    run = curl(optional, pki, version, cred, tag)
    assert run.returncode == 0, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_no_identity(optional.access_for(tag))


@pytest.mark.parametrize("version", list(CURL_VERSION))
def test_optional_good_certificate_has_identity(optional, pki, client_pki, backend, version):
    tag = new_tag("good")
    run = curl(optional, pki, version, client_pki.good, tag)
    assert run.returncode == 0, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert_identity(optional.access_for(tag), client_pki.good)
