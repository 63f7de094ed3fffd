"""Client certificates through the running gateway (issue 3), with curl `--cert/--key`, TLS 1.3
and 1.2. `client_auth: required`: the good certificate gets the backend's body and the access
log shows its subject, SANs and fingerprint; none, one from another CA, an expired one, or one
whose signature does not verify (an impostor CA with the client CA's name) are refused with
their alert, which curl reports and the gateway's `tls.handshake_failed` event names.
`client_auth: optional`: every one of them gets the body, with no identity unless it is good.
A CA made by `openssl req -x509` (no keyUsage) and a client certificate without SAN work; a v1
certificate and certificates with malformed names are refused with bad_certificate, an event
and a metric, and no traceback.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from tests.conftest import require_tool
from tests.tls.odd_certs import MALFORMED, OpensslCA, placeholder_leaf, resign
from tests.tls.pki import CertAuthority

from . import listeners
from .clients import ToolRun, get_close, new_tag, run_tool, tagged_path
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


# ----- certificates as `openssl` makes them, and malformed ones (issue 8) --------------------


# curl's OpenSSL refuses to load a certificate whose UTF8String is not UTF-8; the engine tests
# (tests/tls/test_verify.py) send that one.
CURL_LOADS = [kind for kind in MALFORMED if kind != "subject-not-utf8"]


@dataclass(frozen=True)
class OddClients:
    ca_cert: Path  # `openssl req -x509`: no keyUsage
    creds: dict[str, ClientCred]


def pem_of(der: bytes) -> bytes:
    """PEM by hand: cryptography cannot re-encode a certificate whose names it cannot read."""
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    ).encode()


def _cred(name: str, cert: Path, key: Path) -> ClientCred:
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    return ClientCred(name, cert, key, name, parsed.fingerprint(hashes.SHA256()).hex())


@pytest.fixture(scope="session")
def odd_clients(tmp_path_factory: pytest.TempPathFactory) -> OddClients:
    folder = tmp_path_factory.mktemp("odd-clients")
    ca = OpensslCA(folder, "e2e-openssl-client-ca")
    creds: dict[str, ClientCred] = {}
    for name, extensions in [("no-san", "extendedKeyUsage=clientAuth"), ("v1", "")]:
        made = ca.issue(name, extensions)
        creds[name] = _cred(name, made.cert_path, made.key_path)
    # Malformed names, signed by a CA the listener also trusts (cryptography-made).
    signer = CertAuthority("e2e malformed client CA")
    bundle = folder / "client-cas.pem"
    bundle.write_bytes(
        ca.made.cert_path.read_bytes() + signer.cert.public_bytes(serialization.Encoding.PEM)
    )
    for kind in MALFORMED:
        cert, key = placeholder_leaf(signer)
        der = resign(signer, cert, MALFORMED[kind])
        cert_path = folder / f"{kind}.pem"
        cert_path.write_bytes(pem_of(der))
        key_path = folder / f"{kind}.key"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        creds[kind] = ClientCred(kind, cert_path, key_path, kind, "")
    return OddClients(bundle, creds)


@pytest.fixture
def odd_required(tls_gateway, pki, odd_clients: OddClients):
    return tls_gateway(
        "mtls-odd-required",
        pki.leaves["ecdsa-p256"],
        listeners.dual(pki, client_auth="required", client_ca=str(odd_clients.ca_cert)),
    )


@pytest.mark.parametrize("version", list(CURL_VERSION))
def test_openssl_made_ca_and_a_client_certificate_without_san(
    odd_required, pki, odd_clients: OddClients, backend, version
):
    cred = odd_clients.creds["no-san"]
    tag = new_tag("no-san")
    run = curl(odd_required, pki, version, cred, tag)
    assert run.returncode == 0, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    tls = odd_required.access_for(tag)["tls"]
    assert tls["client_subject"] == "CN=no-san" and not tls["client_sans"], tls
    assert tls["client_fingerprint"] == cred.fingerprint_sha256, tls


def _reasons(gw, alert: str) -> list[str]:
    return [
        str(e["detail"].get("reason"))
        for e in gw.events()
        if e.get("event") == "tls.handshake_failed"
        and isinstance(e.get("detail"), dict)
        and e["detail"].get("alert") == alert
    ]


@pytest.mark.parametrize("version", list(CURL_VERSION))
@pytest.mark.parametrize("kind", ["v1", *CURL_LOADS])
def test_v1_and_malformed_client_certificates_are_refused_with_an_event(
    odd_required, pki, odd_clients: OddClients, version, kind
):
    alert = "bad_certificate"
    sample = f'outwork_tls_handshake_failures_total{{alert="{alert}"}}'
    before, counted = _failures(odd_required, alert), odd_required.metric(sample)
    odd_required.mark_stderr()
    run = curl(odd_required, pki, version, odd_clients.creds[kind], new_tag(kind), "--http1.1")
    _assert_refused(odd_required, run, alert, before)
    expected = "X.509 v1; v3 is required" if kind == "v1" else "malformed client certificate"
    assert any(expected in reason for reason in _reasons(odd_required, alert))
    assert odd_required.metric(sample) > counted
    assert "Traceback" not in odd_required.stderr_since_mark()
    assert odd_required.alive()


S_CLIENT_VERSIONS = {"1.3": "-tls1_3", "1.2": "-tls1_2"}


def s_client_run(gw, pki, version: str, cred: ClientCred, tag: str, *extra: str) -> ToolRun:
    openssl = require_tool("openssl")
    return run_tool(
        [
            openssl,
            "s_client",
            "-connect",
            f"127.0.0.1:{gw.port}",
            "-servername",
            "localhost",
            S_CLIENT_VERSIONS[version],
            "-CAfile",
            str(pki.ca_cert),
            "-verify_return_error",
            "-ign_eof",
            "-cert",
            str(cred.cert),
            "-key",
            str(cred.key),
            *extra,
        ],  # fmt: skip
        stdin=get_close(tag),
    )


@pytest.mark.parametrize("version", list(S_CLIENT_VERSIONS))
def test_a_ticket_does_not_carry_an_identity_to_a_listener_with_another_client_ca(
    tls_gateway, pki, client_pki: ClientPKI, odd_clients: OddClients, backend, tmp_path, version
):
    """Two gateway processes share a ticket key file (as a node's workers, or one listener
    before and after its `client_ca` changed): A trusts the issue-3 client CA, B the openssl
    one. A's ticket offered to B with A's certificate is a full handshake that B refuses;
    with B's certificate a full handshake with B's identity, never A's from the ticket."""
    key_file = tmp_path / "ticket-keys.json"
    tickets = {"key_file": str(key_file)}

    def listener(ca: Path) -> dict[str, Any]:
        return listeners.dual(
            pki, client_auth="required", client_ca=str(ca), session_tickets=tickets
        )

    leaf = pki.leaves["ecdsa-p256"]
    under_a = tls_gateway(f"ca-a-{version}", leaf, listener(client_pki.ca_cert), fresh=True)
    under_b = tls_gateway(f"ca-b-{version}", leaf, listener(odd_clients.ca_cert), fresh=True)
    session = tmp_path / "session.pem"
    good = client_pki.good
    tag = new_tag("under-a")
    run = s_client_run(under_a, pki, version, good, tag, "-sess_out", str(session))
    assert f"New, TLSv{version}" in run.output and backend.body.decode() in run.output, (
        run.explain()
    )
    assert under_a.access_for(tag)["tls"]["client_fingerprint"] == good.fingerprint_sha256

    before = _failures(under_b, "unknown_ca")
    run = s_client_run(under_b, pki, version, good, new_tag("a-at-b"), "-sess_in", str(session))
    assert "Reused" not in run.output and backend.body.decode() not in run.output, run.explain()
    assert under_b.wait_for_event(
        lambda e: (
            e.get("event") == "tls.handshake_failed"
            and isinstance(e.get("detail"), dict)
            and e["detail"].get("alert") == "unknown_ca"
        )
    ), under_b.events()[-3:]
    assert _failures(under_b, "unknown_ca") > before

    cred_b = odd_clients.creds["no-san"]
    tag = new_tag("b-at-b")
    run = s_client_run(under_b, pki, version, cred_b, tag, "-sess_in", str(session))
    assert "Reused" not in run.output and backend.body.decode() in run.output, run.explain()
    tls = under_b.access_for(tag)["tls"]
    assert tls["resumed"] is False and tls["client_fingerprint"] == cred_b.fingerprint_sha256
