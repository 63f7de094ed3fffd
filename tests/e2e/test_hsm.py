"""The gateway serves with private keys held in SoftHSM2 (issue 3): ECDSA P-256 and RSA-2048
generated inside a token made in a temporary folder, named in the config by RFC 7512 URIs
(`pkcs11:token=outwork;object=api-ec?pin-source=file:...`, module from `pkcs11.module`), the
gateway started with SOFTHSM2_CONF. curl pins the token's public key (`--pinnedpubkey`), so a
passing cell shows that the handshake was signed with the key in the token; the config has no
key file at all. A probe in its own process then tries every way to get each key out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import require_file, require_tool

from . import hsm_token
from .clients import ToolRun, get_close, new_tag, run_tool, tagged_path
from .pki import TestPKI, server_certificate

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "keys" / "hsm_probe.py"


@dataclass(frozen=True)
class Token:
    folder: Path
    conf: Path
    pin_file: Path
    certs: dict[str, Path]  # label -> server certificate for the token's public key
    pins: dict[str, str]  # label -> curl --pinnedpubkey value

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}

    def uri(self, label: str) -> str:
        return f"pkcs11:token={hsm_token.TOKEN};object={label}?pin-source=file:{self.pin_file}"


@pytest.fixture(scope="session")
def token(tmp_path_factory: pytest.TempPathFactory, pki: TestPKI) -> Token:
    require_tool("softhsm2-util")
    require_file(hsm_token.MODULE, "softhsm2")
    folder = tmp_path_factory.mktemp("softhsm-e2e")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n"
        "log.level = ERROR\n"
    )
    pin_file = folder / "pin.txt"
    pin_file.write_text(hsm_token.PIN + "\n")
    pin_file.chmod(0o600)
    done = subprocess.run(
        [sys.executable, str(Path(hsm_token.__file__)), str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
    )
    assert done.returncode == 0, done.stderr
    publics = json.loads(done.stdout)
    assert pki.ca_key is not None
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    certs, pins = {}, {}
    for label in ("api-ec", "api-rsa"):
        public = serialization.load_pem_public_key(publics[label].encode())
        cert = server_certificate(ca_cert, pki.ca_key, public)  # type: ignore[arg-type]
        path = folder / f"{label}.crt.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        certs[label] = path
        spki = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        pins[label] = "sha256//" + base64.b64encode(hashlib.sha256(spki).digest()).decode()
    return Token(folder, conf, pin_file, certs, pins)


def hsm_tls(token: Token, labels: tuple[str, ...]) -> dict:
    return {"certificates": [{"cert": str(token.certs[x]), "key": token.uri(x)} for x in labels]}


TOP = {"pkcs11": {"module": hsm_token.MODULE}}


@pytest.fixture
def hsm_dual(tls_gateway, pki, token):
    """ECDSA first, RSA second, both keys in the token."""
    return tls_gateway(
        "hsm-dual", pki.leaves["ecdsa-p256"], hsm_tls(token, ("api-ec", "api-rsa")), TOP, token.env
    )


@pytest.fixture
def hsm_rsa(tls_gateway, pki, token):
    """The RSA key alone: curl (no signature-algorithm option) then gets RSA in TLS 1.3 too."""
    return tls_gateway(
        "hsm-rsa", pki.leaves["rsa-2048"], hsm_tls(token, ("api-rsa",)), TOP, token.env
    )


CURL_VERSION = {"1.3": ["--tlsv1.3"], "1.2": ["--tlsv1.2", "--tls-max", "1.2"]}


def curl(gw, pki, version: str, pin: str, tag: str, *extra: str) -> ToolRun:
    exe = require_tool("curl")
    return run_tool(
        [
            exe,
            "-sS",
            "-v",
            *CURL_VERSION[version],
            "--cacert",
            str(pki.ca_cert),
            "--pinnedpubkey",
            pin,
            "--max-time",
            "15",
            "--resolve",
            f"localhost:{gw.port}:127.0.0.1",
            *extra,
            f"https://localhost:{gw.port}{tagged_path(tag)}",
        ]  # fmt: skip
    )


def assert_served(gw, run: ToolRun, backend, tag: str, version: str) -> None:
    assert run.returncode == 0, run.explain()
    assert f"SSL connection using TLSv{version}" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    entry = gw.access_for(tag)
    assert entry["status"] == 200 and entry["tls"]["version"] == version, entry


@pytest.mark.parametrize("version", list(CURL_VERSION))
def test_curl_hsm_ecdsa(hsm_dual, pki, token, backend, version):
    tag = new_tag("hsm-ec")
    run = curl(hsm_dual, pki, version, token.pins["api-ec"], tag)
    assert_served(hsm_dual, run, backend, tag, version)


def test_curl_hsm_rsa_tls12(hsm_dual, pki, token, backend):
    tag = new_tag("hsm-rsa")
    run = curl(
        hsm_dual, pki, "1.2", token.pins["api-rsa"], tag, "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"
    )
    assert_served(hsm_dual, run, backend, tag, "1.2")
    assert "ECDHE-RSA-AES128-GCM-SHA256" in run.output, run.explain()


def test_curl_hsm_rsa_tls13(hsm_rsa, pki, token, backend):
    tag = new_tag("hsm-rsa")
    run = curl(hsm_rsa, pki, "1.3", token.pins["api-rsa"], tag)
    assert_served(hsm_rsa, run, backend, tag, "1.3")


def test_pin_mismatch_is_detected(hsm_dual, pki, token):
    """Control: curl really checks the pin (the RSA key's pin against the ECDSA certificate)."""
    run = curl(hsm_dual, pki, "1.3", token.pins["api-rsa"], new_tag("control"))
    assert run.returncode == 90, run.explain()  # CURLE_SSL_PINNEDPUBKEYNOTMATCH


def s_client(gw, pki, *extra: str) -> list[str]:
    openssl = require_tool("openssl")
    return [
        openssl, "s_client", "-connect", f"127.0.0.1:{gw.port}", "-servername", "localhost",
        "-CAfile", str(pki.ca_cert), "-verify_return_error", "-ign_eof", *extra,
    ]  # fmt: skip


def test_openssl_hsm_rsa_pkcs1_tls12(hsm_dual, pki, backend):
    """TLS 1.2 with RSA PKCS#1 v1.5 forced (`-sigalgs RSA+SHA256`): the token signs with
    CKM_RSA_PKCS over a DigestInfo."""
    tag = new_tag("pkcs1")
    run = run_tool(
        s_client(
            hsm_dual,
            pki,
            "-tls1_2",
            "-cipher",
            "ECDHE-RSA-AES256-GCM-SHA384",
            "-sigalgs",
            "RSA+SHA256",
        ),  # fmt: skip
        stdin=get_close(tag),
    )
    assert "New, TLSv1.2, Cipher is ECDHE-RSA-AES256-GCM-SHA384" in run.output, run.explain()
    assert "Peer signature type: RSA\n" in run.output, run.explain()
    assert "Peer signing digest: SHA256" in run.output, run.explain()
    assert "Verify return code: 0 (ok)" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()
    assert hsm_dual.access_for(tag)["tls"]["version"] == "1.2"


@pytest.mark.parametrize(
    ("sigalgs", "signature"),
    [("rsa_pss_rsae_sha256", "RSA-PSS"), ("ecdsa_secp256r1_sha256", "ECDSA")],
)
def test_openssl_hsm_tls13(hsm_dual, pki, backend, sigalgs, signature):
    tag = new_tag("hsm13")
    run = run_tool(s_client(hsm_dual, pki, "-tls1_3", "-sigalgs", sigalgs), stdin=get_close(tag))
    assert "New, TLSv1.3" in run.output, run.explain()
    assert f"Peer signature type: {signature}\n" in run.output, run.explain()
    assert backend.body.decode() in run.output, run.explain()


def probe(token: Token, label: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(PROBE), hsm_token.MODULE, hsm_token.TOKEN, hsm_token.PIN, label],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **token.env},
    )
    assert done.returncode == 0, done.stderr
    result: dict = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("label", ["api-ec", "api-rsa"])
def test_key_never_leaves_the_token(hsm_dual, pki, token, backend, label):
    """While the gateway signs with it: the private key object is sensitive, never was
    extractable, was generated on the token; reading its secret attributes (CKA_VALUE, the RSA
    primes and exponents), wrapping it, or flipping its flags all fail."""
    pin = token.pins[label]
    extra = ["--ciphers", "ECDHE-RSA-AES128-GCM-SHA256"] if label == "api-rsa" else []
    run = curl(hsm_dual, pki, "1.2", pin, new_tag("in-use"), *extra)
    assert run.returncode == 0, run.explain()  # in use by the gateway right now
    result = probe(token, label)
    assert result["flags"] == {
        "sensitive": True,
        "extractable": False,
        "always_sensitive": True,
        "never_extractable": True,
        "local": True,
        "private": True,
    }, result
    attempts = result["attempts"]
    expected_reads = (
        {"read VALUE"}
        if label == "api-ec"
        else {"read PRIVATE_EXPONENT", "read PRIME_1", "read PRIME_2", "read EXPONENT_1"}
    )
    assert expected_reads <= set(attempts), attempts
    for attempt, outcome in attempts.items():
        assert str(outcome).startswith("refused"), (attempt, outcome)
    assert result["flags_after"] == {"sensitive": True, "extractable": False}, result


def test_probe_gets_an_extractable_key_out(token):
    """Control: the same probe does get an extractable key out of the same token, so the
    refusals above come from the token's attributes, not from a probe that cannot succeed."""
    result = probe(token, "loose-ec")
    assert result["flags"]["extractable"] is True
    assert str(result["attempts"]["read VALUE"]).startswith("ALLOWED")
    assert str(result["attempts"]["wrap with AES key"]).startswith("ALLOWED")
