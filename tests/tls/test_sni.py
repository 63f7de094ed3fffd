"""Certificate choice by server name (exact, wildcard, default, strict) and then by what the
client can verify (an ECDSA and an RSA certificate for the same name)."""

from __future__ import annotations

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.enums import ProtocolVersion, SignatureScheme
from tests.tls.inmemory import connected_pair
from tests.tls.pki import CertAuthority, Leaf

ECDSA_ONLY = (SignatureScheme.ECDSA_SECP256R1_SHA256,)
RSA_ONLY = (SignatureScheme.RSA_PSS_RSAE_SHA256, SignatureScheme.RSA_PKCS1_SHA256)


@pytest.fixture(scope="module")
def site(ca: CertAuthority) -> dict[str, Leaf]:
    return {
        "default": ca.issue("ecdsa-p256", ("localhost",)),
        "a-ecdsa": ca.issue("ecdsa-p256", ("a.example",)),
        "a-rsa": ca.issue("rsa-2048", ("a.example",)),
        "wild": ca.issue("ecdsa-p256", ("*.wild.example",)),
    }


def served(
    site: dict[str, Leaf],
    ca: CertAuthority,
    server_name: str,
    schemes: tuple[SignatureScheme, ...] | None = None,
    strict: bool = False,
    version: ProtocolVersion = ProtocolVersion.TLS13,
) -> str | AlertDescription:
    """Which certificate (by fixture key) the client got, or the server's alert."""
    config = ServerConfig(
        certificates=tuple(site[k].certified() for k in ("default", "a-ecdsa", "a-rsa", "wild")),
        strict_sni=strict,
    )
    client, _, _, server_events = connected_pair(
        config,
        ClientConfig(
            trust_roots=(ca.cert,), verify=False, signature_schemes=schemes, max_version=version
        ),
        server_name,
    )
    failed = [e.alert for e in server_events if isinstance(e, ev.ConnectionFailed)]
    if failed:
        return failed[0]
    leaf = client.peer_certificates[0]
    return next(k for k, v in site.items() if v.cert == leaf)


@pytest.mark.parametrize("version", [ProtocolVersion.TLS13, ProtocolVersion.TLS12])
def test_exact_name_then_key_type(
    site: dict[str, Leaf], ca: CertAuthority, version: ProtocolVersion
) -> None:
    assert served(site, ca, "a.example", ECDSA_ONLY, version=version) == "a-ecdsa"
    assert served(site, ca, "a.example", RSA_ONLY, version=version) == "a-rsa"
    assert served(site, ca, "A.Example", version=version) == "a-ecdsa"


def test_wildcard_covers_one_label(site: dict[str, Leaf], ca: CertAuthority) -> None:
    assert served(site, ca, "x.wild.example") == "wild"
    assert served(site, ca, "y.x.wild.example") == "default"
    assert served(site, ca, "wild.example") == "default"


def test_unknown_name_gets_default_or_unrecognized_name(
    site: dict[str, Leaf], ca: CertAuthority
) -> None:
    assert served(site, ca, "unknown.example") == "default"
    assert served(site, ca, "unknown.example", strict=True) == AlertDescription.UNRECOGNIZED_NAME
    assert served(site, ca, "127.0.0.1", strict=True) == "default"  # no SNI is sent for an IP


def test_no_certificate_the_client_can_verify(site: dict[str, Leaf], ca: CertAuthority) -> None:
    assert served(site, ca, "localhost", RSA_ONLY) == AlertDescription.HANDSHAKE_FAILURE
