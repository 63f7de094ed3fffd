"""Client certificates (mTLS), TLS 1.3 and 1.2: required and optional, every way a client
certificate can be wrong, the policy it is verified under (rustls/webpki's, with certificates
made by `openssl`), the identity the connection carries, and resumption keeping it only while
the certificate, the authentication and the listener's trust settings still hold."""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from outwork.keys.file_signer import FileSigner
from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.clientauth import ClientAuth
from outwork.tls.config import CertifiedKey, ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import ProtocolVersion
from outwork.tls.tickets import ClientSession, RotatingTicketKeys
from tests.tls.inmemory import connected_pair
from tests.tls.odd_certs import Made, OpensslCA
from tests.tls.pki import CertAuthority, Leaf

VERSIONS = [ProtocolVersion.TLS13, ProtocolVersion.TLS12]
A = AlertDescription


@pytest.fixture(scope="module")
def client_ca() -> CertAuthority:
    return CertAuthority("outwork client CA")


@pytest.fixture(scope="module")
def client_certs(client_ca: CertAuthority) -> dict[str, CertifiedKey | None]:
    good = client_ca.issue("ecdsa-p256", ("partner@example.com", "partner.example"), client=True)
    # An impostor CA with the same name as the real one: the signature cannot verify.
    impostor = CertAuthority("outwork client CA").issue(
        "ecdsa-p256", ("x@example.com",), client=True
    )
    other_key = FileSigner(ec.generate_private_key(ec.SECP256R1()))
    return {
        "good": good.certified(),
        "rsa": client_ca.issue("rsa-2048", ("rsa@example.com",), client=True).certified(),
        "none": None,
        "wrong-ca": CertAuthority("another CA")
        .issue("ecdsa-p256", ("a@b.c",), client=True)
        .certified(),
        "expired": client_ca.issue(
            "ecdsa-p256", ("old@example.com",), expired=True, client=True
        ).certified(),
        "bad-signature": impostor.certified(),
        "wrong-key": CertifiedKey(chain=good.certified().chain, signer=other_key),
    }


def handshake(
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    certificate: CertifiedKey | None,
    mode: ClientAuth,
    version: ProtocolVersion,
    **client: object,
):  # type: ignore[no-untyped-def]
    server_config = ServerConfig(
        certificates=(leaves["ecdsa-p256"].certified(),),
        client_auth=mode,
        client_ca=(client_ca.cert,),
    )
    client_config = ClientConfig(
        trust_roots=(ca.cert,),
        max_version=version,
        client_certificate=certificate,
        **client,  # type: ignore[arg-type]
    )
    return connected_pair(server_config, client_config, **{})


def failure(events: list[ev.Event]) -> AlertDescription | None:
    failed = [e.alert for e in events if isinstance(e, ev.ConnectionFailed)]
    return failed[0] if failed else None


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize("kind", ["good", "rsa"])
def test_good_certificate_gives_identity(
    version: ProtocolVersion,
    kind: str,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    client, server, client_events, server_events = handshake(
        leaves, ca, client_ca, client_certs[kind], ClientAuth.REQUIRED, version
    )
    assert server.is_established, (client_events, server_events)
    identity = server.client_identity
    assert identity is not None and server.negotiated is not None
    assert server.negotiated.client_identity == identity
    certified = client_certs[kind]
    assert certified is not None
    leaf = certified.chain[0]
    assert identity.subject == leaf.subject.rfc4514_string()
    assert identity.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
    if kind == "good":
        assert identity.sans == ("DNS:partner.example", "email:partner@example.com")


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize(
    ("kind", "alert13", "alert12"),
    [
        ("none", A.CERTIFICATE_REQUIRED, A.HANDSHAKE_FAILURE),
        ("wrong-ca", A.UNKNOWN_CA, A.UNKNOWN_CA),
        ("expired", A.CERTIFICATE_EXPIRED, A.CERTIFICATE_EXPIRED),
        ("bad-signature", A.BAD_CERTIFICATE, A.BAD_CERTIFICATE),
        ("wrong-key", A.DECRYPT_ERROR, A.DECRYPT_ERROR),
    ],
)
def test_required_refuses(
    version: ProtocolVersion,
    kind: str,
    alert13: A,
    alert12: A,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    client, server, client_events, server_events = handshake(
        leaves, ca, client_ca, client_certs[kind], ClientAuth.REQUIRED, version
    )
    expected = alert13 if version == ProtocolVersion.TLS13 else alert12
    assert failure(server_events) == expected
    assert not server.is_established and not client.is_established
    assert any(isinstance(e, ev.AlertReceived) and e.description == expected for e in client_events)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize("kind", ["none", "wrong-ca", "expired", "bad-signature"])
def test_optional_passes_without_identity(
    version: ProtocolVersion,
    kind: str,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    client, server, _, server_events = handshake(
        leaves, ca, client_ca, client_certs[kind], ClientAuth.OPTIONAL, version
    )
    assert server.is_established and client.is_established, server_events
    assert server.client_identity is None
    assert server.negotiated is not None and server.negotiated.client_identity is None


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_optional_still_checks_proof_of_key(
    version: ProtocolVersion,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    _, _, _, server_events = handshake(
        leaves, ca, client_ca, client_certs["wrong-key"], ClientAuth.OPTIONAL, version
    )
    assert failure(server_events) == A.DECRYPT_ERROR


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_resumption_keeps_the_identity(
    version: ProtocolVersion,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    server_config = ServerConfig(
        certificates=(leaves["ecdsa-p256"].certified(),),
        client_auth=ClientAuth.REQUIRED,
        client_ca=(client_ca.cert,),
    )
    client_config = ClientConfig(
        trust_roots=(ca.cert,), max_version=version, client_certificate=client_certs["good"]
    )
    now = time.time()
    first, server, _, _ = connected_pair(server_config, client_config, now=now)
    identity = server.client_identity
    assert identity is not None and first.sessions
    # Resuming without presenting the certificate again: the ticket carries the identity.
    again = dataclasses.replace(client_config, client_certificate=None)
    second, server, _, _ = connected_pair(
        server_config, again, session=first.sessions[-1], now=now + 1
    )
    assert server.negotiated is not None and server.negotiated.resumed
    assert server.client_identity == identity
    assert server.negotiated.client_identity == identity


# ----- the client certificate policy (rustls/webpki), with certificates made by `openssl` ------


def mtls_pair(
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_cas: tuple[x509.Certificate, ...],
    certificate: CertifiedKey | None,
    version: ProtocolVersion,
    mode: ClientAuth = ClientAuth.REQUIRED,
    **server: Any,
) -> tuple[ClientConnection, ServerConnection, list[ev.Event], list[ev.Event]]:
    server_config = ServerConfig(
        certificates=(leaves["ecdsa-p256"].certified(),),
        client_auth=mode,
        client_ca=client_cas,
        **server,
    )
    client_config = ClientConfig(
        trust_roots=(ca.cert,), max_version=version, client_certificate=certificate
    )
    return connected_pair(server_config, client_config)


def failure_reason(events: list[ev.Event]) -> str:
    return " ".join(e.reason for e in events if isinstance(e, ev.ConnectionFailed))


def _sub_ca(parent: OpensslCA, name: str, extensions: str) -> OpensslCA:
    """An intermediate issued by `parent`, able to issue in turn."""
    sub = OpensslCA.__new__(OpensslCA)
    sub.folder, sub.name, sub.made = parent.folder, name, parent.issue(name, extensions)
    return sub


@pytest.fixture(scope="module")
def openssl_made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Made, CertifiedKey]]:
    """name -> (the CA the listener trusts, the client's certificate chain and key)."""
    folder = tmp_path_factory.mktemp("openssl-pki")
    plain = OpensslCA(folder, "openssl-req-x509-ca")  # no keyUsage, as `openssl req -x509` makes
    made: dict[str, tuple[Made, CertifiedKey]] = {}

    def leaf(name: str, extensions: str, ca: OpensslCA = plain, *chain: OpensslCA) -> None:
        made[name] = (ca.made, ca.issue(name, extensions).certified(*(c.made for c in chain)))

    leaf("no-san", "extendedKeyUsage=clientAuth")
    leaf("basic-constraints-only", "basicConstraints=CA:FALSE")
    leaf("digital-signature", "keyUsage=critical,digitalSignature;extendedKeyUsage=clientAuth")
    intermediate = _sub_ca(plain, "intermediate-no-key-usage", "basicConstraints=critical,CA:TRUE")
    made["via-intermediate"] = (
        plain.made,
        intermediate.issue("via-intermediate", "extendedKeyUsage=clientAuth").certified(
            intermediate.made
        ),
    )
    leaf("v1", "")
    leaf("server-auth-only", "basicConstraints=CA:FALSE;extendedKeyUsage=serverAuth")
    leaf("no-digital-signature", "keyUsage=keyEncipherment")
    leaf("ca-as-client", "basicConstraints=critical,CA:TRUE")
    leaf("unknown-critical", "extendedKeyUsage=clientAuth;1.2.3.4.5=critical,ASN1:NULL")
    for name, extensions in [
        ("ca-for-any-purpose", "basicConstraints=CA:TRUE;extendedKeyUsage=anyExtendedKeyUsage"),
        ("ca-for-servers-only", "basicConstraints=CA:TRUE;extendedKeyUsage=serverAuth"),
        ("ca-without-basic-constraints", "keyUsage=keyCertSign"),
        ("ca-not-a-ca", "basicConstraints=CA:FALSE"),
        ("v1-ca", ""),
    ]:
        leaf(name, "extendedKeyUsage=clientAuth", OpensslCA(folder, f"{name}-root", extensions))
    not_ca = _sub_ca(plain, "intermediate-not-a-ca", "basicConstraints=CA:FALSE")
    made["intermediate-not-a-ca"] = (
        plain.made,
        not_ca.issue("under-not-a-ca", "extendedKeyUsage=clientAuth").certified(not_ca.made),
    )
    return made


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize(
    "kind",
    [
        "no-san",
        "basic-constraints-only",
        "digital-signature",
        "via-intermediate",
        "ca-for-any-purpose",
    ],
)
def test_openssl_made_client_certificates_are_accepted(
    version: ProtocolVersion,
    kind: str,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    openssl_made: dict[str, tuple[Made, CertifiedKey]],
) -> None:
    # A CA without keyUsage, a leaf without subjectAltName (or any extension but one):
    # nginx, Envoy and rustls accept them.
    trusted, certified = openssl_made[kind]
    client, server, client_events, server_events = mtls_pair(
        leaves, ca, (trusted.cert,), certified, version
    )
    assert server.is_established and client.is_established, (client_events, server_events)
    identity = server.client_identity
    assert identity is not None
    assert identity.subject == f"CN={kind}" and identity.sans == ()
    assert identity.fingerprint_sha256 == certified.chain[0].fingerprint(hashes.SHA256()).hex()


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("v1", "client certificate is X.509 v1; v3 is required"),
        ("server-auth-only", "lacks clientAuth"),
        ("no-digital-signature", "lacks digitalSignature"),
        ("ca-as-client", "CA certificate (basicConstraints CA:TRUE) used as a client"),
        ("unknown-critical", "critical extensions"),
        ("ca-for-servers-only", "extendedKeyUsage of an issuing certificate lacks clientAuth"),
        ("ca-without-basic-constraints", "CA certificate has no basicConstraints"),
        ("ca-not-a-ca", "basicConstraints.cA must be asserted"),
        ("v1-ca", "a CA certificate in the chain is X.509 v1; v3 is required"),
        ("intermediate-not-a-ca", "basicConstraints.cA must be asserted"),
    ],
)
def test_client_certificates_outside_the_policy_are_refused(
    version: ProtocolVersion,
    kind: str,
    reason: str,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    openssl_made: dict[str, tuple[Made, CertifiedKey]],
) -> None:
    trusted, certified = openssl_made[kind]
    client, server, client_events, server_events = mtls_pair(
        leaves, ca, (trusted.cert,), certified, version
    )
    assert failure(server_events) == A.BAD_CERTIFICATE, (server_events, client_events)
    assert reason in failure_reason(server_events)
    assert not server.is_established and server.client_identity is None
    # optional: the connection goes on, without an identity
    client, server, _, server_events = mtls_pair(
        leaves, ca, (trusted.cert,), certified, version, ClientAuth.OPTIONAL
    )
    assert server.is_established and server.client_identity is None, server_events


# ----- resumption: the identity lives no longer than its proof ---------------------------------

DAY = 24 * 3600
STABLE_KEYS = RotatingTicketKeys(period=365 * DAY)  # no rotation gets in the way of the clock


def _resuming(
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_cas: tuple[x509.Certificate, ...],
    certificate: CertifiedKey | None,
    version: ProtocolVersion,
    lifetime: int,
) -> tuple[ServerConfig, ClientConfig]:
    server_config = ServerConfig(
        certificates=(leaves["ecdsa-p256"].certified(),),
        client_auth=ClientAuth.REQUIRED,
        client_ca=client_cas,
        ticket_keys=STABLE_KEYS,
        ticket_lifetime=lifetime,
    )
    client_config = ClientConfig(
        trust_roots=(ca.cert,), max_version=version, client_certificate=certificate
    )
    return server_config, client_config


def _offered_anyway(session: ClientSession) -> ClientSession:
    """The session as a client that ignores the lifetime it was given would offer it: what the
    server decides is under test, not the client's manners."""
    return dataclasses.replace(session, lifetime_s=7 * DAY)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_resumption_ends_at_the_client_certificate_not_after(
    version: ProtocolVersion,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
) -> None:
    certified = client_ca.issue("ecdsa-p256", ("short@example.com",), 2, client=True).certified()
    not_after = certified.chain[0].not_valid_after_utc.timestamp()
    server_config, client_config = _resuming(
        leaves, ca, (client_ca.cert,), certified, version, 7 * DAY
    )
    now = time.time()
    first, server, _, _ = connected_pair(server_config, client_config, now=now)
    assert server.client_identity is not None and first.sessions
    ticket = first.sessions[-1]
    assert ticket.lifetime_s <= not_after - now  # the ticket says so itself
    # Just before notAfter the session resumes, and every new ticket keeps the limit.
    second, server, _, _ = connected_pair(
        server_config, client_config, session=_offered_anyway(ticket), now=not_after - 60
    )
    assert server.negotiated is not None and server.negotiated.resumed
    assert second.sessions and second.sessions[-1].lifetime_s <= 60
    # After it, not even the latest ticket: a full handshake, and the certificate, checked
    # again, has expired.
    chained = _offered_anyway(second.sessions[-1])
    client, server, _, server_events = connected_pair(
        server_config, client_config, session=chained, now=not_after + 60
    )
    assert failure(server_events) == A.CERTIFICATE_EXPIRED
    assert not server.is_established and server.client_identity is None


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_chained_resumption_counts_from_the_full_handshake(
    version: ProtocolVersion,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    server_config, client_config = _resuming(
        leaves, ca, (client_ca.cert,), client_certs["good"], version, 3600
    )
    start = time.time()
    first, _, _, _ = connected_pair(server_config, client_config, now=start)
    second, server, _, _ = connected_pair(
        server_config, client_config, session=first.sessions[-1], now=start + 3000
    )
    assert server.negotiated is not None and server.negotiated.resumed
    renewed = second.sessions[-1]
    assert renewed.lifetime_s <= 600  # what is left of the hour since the full handshake
    # 1000 s after the renewed ticket, 4000 s after the certificate was last checked.
    _, server, _, _ = connected_pair(
        server_config, client_config, session=_offered_anyway(renewed), now=start + 4000
    )
    assert server.negotiated is not None and not server.negotiated.resumed
    assert server.client_identity is not None  # proved again by a full handshake


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_a_ticket_from_before_a_client_ca_change_is_not_resumed(
    version: ProtocolVersion,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
    client_certs: dict[str, CertifiedKey | None],
) -> None:
    good = client_certs["good"]
    under_a, client_config = _resuming(leaves, ca, (client_ca.cert,), good, version, 3600)
    now = time.time()
    first, _, _, _ = connected_pair(under_a, client_config, now=now)
    ticket = first.sessions[-1]
    ca_b = CertAuthority("outwork client CA B")
    under_b = dataclasses.replace(under_a, client_ca=(ca_b.cert,))  # same ticket keys
    # The old certificate with the old ticket: a full handshake, which refuses it.
    _, server, _, server_events = connected_pair(
        under_b, client_config, session=ticket, now=now + 1
    )
    assert failure(server_events) == A.UNKNOWN_CA and server.client_identity is None
    # A certificate from B with the old ticket: a full handshake, and B's identity.
    from_b = ca_b.issue("ecdsa-p256", ("b@example.com",), client=True).certified()
    client_b = dataclasses.replace(client_config, client_certificate=from_b)
    _, server, _, _ = connected_pair(under_b, client_b, session=ticket, now=now + 2)
    assert server.negotiated is not None and not server.negotiated.resumed
    assert server.client_identity is not None
    assert server.client_identity.sans == ("email:b@example.com",)


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_an_identity_with_newlines_round_trips_through_a_ticket(
    version: ProtocolVersion,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
) -> None:
    # Under the old newline-joined encoding this subject forged the fingerprint and SANs
    # seen after resumption.
    forged_fingerprint = "f" * 64
    subject_cn = f"partner\n{forged_fingerprint}\nDNS:admin.example"
    key = ec.generate_private_key(ec.SECP256R1())
    issued = time.time()
    cert = (
        x509.CertificateBuilder()
        # Longer than ub-common-name (64): a peer need not keep to it.
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn, _validate=False)])
        )
        .issuer_name(client_ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(issued - DAY, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(issued + DAY, datetime.UTC))
        .add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name("partner@example.com")]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(client_ca.key.public_key()),
            critical=False,
        )
        .sign(client_ca.key, hashes.SHA256())
    )
    certified = CertifiedKey((cert,), FileSigner(key))
    server_config, client_config = _resuming(
        leaves, ca, (client_ca.cert,), certified, version, 3600
    )
    first, server, _, _ = connected_pair(server_config, client_config, now=issued)
    identity = server.client_identity
    assert identity is not None and "\n" in identity.subject
    assert identity.fingerprint_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    _, server, _, _ = connected_pair(
        server_config, client_config, session=first.sessions[-1], now=issued + 1
    )
    assert server.negotiated is not None and server.negotiated.resumed
    assert server.client_identity == identity
    assert server.client_identity.fingerprint_sha256 != forged_fingerprint
    assert server.client_identity.sans == ("email:partner@example.com",)


def _huge_identity(
    client_ca: CertAuthority, purpose: x509.ObjectIdentifier, issued: float, many_sans: bool
) -> CertifiedKey:
    """33 000 commas in the CN: RFC 4514 escapes each, so the subject alone is 66 000
    characters; or 12 000 one-letter DNS SANs, 84 000 bytes as "DNS:x" with their lengths.
    Either is more than a ticket holds and than a 2-byte length says (the chain stays under
    its 64 KiB cap)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cn = "many sans" if many_sans else "," * 33_000
    sans = [x509.DNSName(chr(ord("a") + i % 26)) for i in range(12_000 if many_sans else 1)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn, _validate=False)]))
        .issuer_name(client_ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(issued - DAY, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(issued + DAY, datetime.UTC))
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(client_ca.key.public_key()),
            critical=False,
        )
        .sign(client_ca.key, hashes.SHA256())
    )
    return CertifiedKey((cert,), FileSigner(key))


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
@pytest.mark.parametrize("many_sans", [False, True], ids=["subject", "sans"])
def test_an_identity_too_large_for_a_ticket_gets_no_ticket(
    version: ProtocolVersion,
    many_sans: bool,
    leaves: dict[str, Leaf],
    ca: CertAuthority,
    client_ca: CertAuthority,
) -> None:
    issued = time.time()
    huge = _huge_identity(client_ca, ExtendedKeyUsageOID.CLIENT_AUTH, issued, many_sans)
    server_config, client_config = _resuming(leaves, ca, (client_ca.cert,), huge, version, 3600)
    client, server, client_events, server_events = connected_pair(
        server_config, client_config, now=issued
    )
    assert server.is_established and client.is_established, (client_events, server_events)
    identity = server.client_identity
    assert identity is not None and len(identity.subject) + 7 * len(identity.sans) > 66_000
    assert not client.sessions  # no ticket: nothing to resume without the certificate
    # Refused, the reason in the security event does not quote all of the subject.
    for_servers = _huge_identity(client_ca, ExtendedKeyUsageOID.SERVER_AUTH, issued, many_sans)
    refused = dataclasses.replace(client_config, client_certificate=for_servers)
    _, _, _, server_events = connected_pair(server_config, refused, now=issued)
    assert failure(server_events) == A.BAD_CERTIFICATE
    assert "lacks clientAuth" in failure_reason(server_events)
    assert len(failure_reason(server_events)) < 1000
