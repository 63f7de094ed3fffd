"""Client certificates (mTLS): verifying a client's chain and the identity it proves.

The chain is checked with `cryptography.x509.verification` under the policy rustls/webpki
applies to client certificates: X.509 v3 only; every CA has basicConstraints CA:TRUE and, when
it has keyUsage, keyCertSign; extendedKeyUsage, where present, includes clientAuth; the leaf
needs no subjectAltName (a client is not reached by name) and no authorityKeyIdentifier.
`openssl req -x509` CAs (no keyUsage) therefore work, as with nginx, Envoy and rustls. The
identity (subject, SANs, SHA-256 fingerprint, notAfter) goes to the policy layer, the access
log and session tickets.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    VerificationError,
)

from outwork.tls.alerts import AlertDescription, TLSError, decode_error
from outwork.tls.codec import Reader, Writer
from outwork.tls.verify import (
    V1_IN_CHAIN,
    check_v3,
    error_text,
    malformed_certificates_refused,
    trust_store,
    webpki_ca_policy,
)


class ClientAuth(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"  # a bad or absent certificate: the connection goes on, without identity
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    subject: str  # RFC 4514
    sans: tuple[str, ...]  # "DNS:...", "email:...", "URI:...", "IP:..."
    fingerprint_sha256: str  # hex, of the leaf certificate's DER
    not_after: int = 0  # the leaf's notAfter, seconds since the epoch: resumption ends there

    def encode(self) -> bytes:
        """For session tickets: resumption keeps the identity it was issued for. Every field is
        length-prefixed, so no character in a subject or SAN can shift the fields after it."""
        w = Writer()
        w.opaque(2, self.subject.encode("utf-8"))
        w.opaque(1, self.fingerprint_sha256.encode("ascii"))
        w.raw(self.not_after.to_bytes(8, "big"))
        with w.block(2):
            for san in self.sans:
                w.opaque(2, san.encode("utf-8"))
        return w.getvalue()

    @staticmethod
    def decode(data: bytes) -> ClientIdentity:
        """The inverse of `encode`; anything else is a `decode_error` TLSError."""
        r = Reader(data)
        try:
            subject = r.opaque(2).decode("utf-8")
            fingerprint = r.opaque(1).decode("ascii")
            not_after = int.from_bytes(r.fixed(8), "big")
            sans = [s.decode("utf-8") for s in r.vector(2, lambda sub: sub.opaque(2))]
        except UnicodeDecodeError as exc:
            raise decode_error("client identity is not UTF-8") from exc
        r.expect_end("client identity")
        return ClientIdentity(subject, tuple(sans), fingerprint, not_after)


def identity_of(leaf: x509.Certificate) -> ClientIdentity:
    with malformed_certificates_refused("client"):
        sans: list[str] = []
        try:
            extension = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            extension = None
        if extension is not None:
            sans += [f"DNS:{v}" for v in extension.get_values_for_type(x509.DNSName)]
            sans += [f"email:{v}" for v in extension.get_values_for_type(x509.RFC822Name)]
            sans += [
                f"URI:{v}" for v in extension.get_values_for_type(x509.UniformResourceIdentifier)
            ]
            sans += [f"IP:{v}" for v in extension.get_values_for_type(x509.IPAddress)]
        return ClientIdentity(
            subject=leaf.subject.rfc4514_string(),
            sans=tuple(sans),
            fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
            not_after=int(leaf.not_valid_after_utc.timestamp()),
        )


def _not_a_ca(
    _policy: Policy, _cert: x509.Certificate, value: x509.BasicConstraints | None
) -> None:
    if value is not None and value.ca:
        raise ValueError("a CA certificate (basicConstraints CA:TRUE) used as a client certificate")


def _signs(_policy: Policy, _cert: x509.Certificate, value: x509.KeyUsage | None) -> None:
    # RFC 8446 4.4.2.2: the key proves itself by a signature (CertificateVerify).
    if value is not None and not value.digital_signature:
        raise ValueError("keyUsage of the client certificate lacks digitalSignature")


def _client_auth_eku(
    _policy: Policy, _cert: x509.Certificate, value: x509.ExtendedKeyUsage | None
) -> None:
    if value is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in value:
        raise ValueError("extendedKeyUsage of the client certificate lacks clientAuth")


# The leaf: anything may be present (unknown critical extensions are still refused); what the
# TLS client role needs is checked when present. No SAN, no AKI required.
_CLIENT_LEAF_POLICY = (
    ExtensionPolicy.permit_all()
    .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _not_a_ca)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _signs)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _client_auth_eku)
)
_CLIENT_CA_POLICY = webpki_ca_policy(ExtendedKeyUsageOID.CLIENT_AUTH)


def verify_client_chain(
    chain: list[x509.Certificate], client_cas: tuple[x509.Certificate, ...], now: float
) -> ClientIdentity:
    """The identity the chain proves, or a TLSError with the alert that says why not."""
    with malformed_certificates_refused("client"):
        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        leaf = chain[0]
        check_v3(leaf, "client")
        if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
            raise TLSError(
                AlertDescription.CERTIFICATE_EXPIRED, "client certificate is not valid now"
            )
        if not client_cas:
            raise TLSError(AlertDescription.UNKNOWN_CA, "no client CA configured")
        verifier = (
            PolicyBuilder()
            .store(trust_store(client_cas))
            .time(when)
            .extension_policies(ca_policy=_CLIENT_CA_POLICY, ee_policy=_CLIENT_LEAF_POLICY)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, chain[1:])
        except VerificationError as exc:
            message = error_text(exc)
            top_issuer = chain[-1].issuer
            known_issuer = any(ca.subject == top_issuer for ca in client_cas) or any(
                ca.subject == leaf.issuer for ca in client_cas
            )
            if "not valid at validation time" in message:
                alert = AlertDescription.CERTIFICATE_EXPIRED
            elif "X509v3" in message:
                alert = AlertDescription.BAD_CERTIFICATE
                message = V1_IN_CHAIN
            elif known_issuer or "ASN.1" in message:
                # Named after a trusted CA but not signed by it, not fit for client auth,
                # or malformed.
                alert = AlertDescription.BAD_CERTIFICATE
            else:
                alert = AlertDescription.UNKNOWN_CA
            raise TLSError(alert, f"client certificate rejected: {message}") from exc
        return identity_of(leaf)


# Hashing a tuple of certificates hashes every DER again (170 us for 100 CAs), so bindings are
# kept per tuple object, as verify.trust_store does; the entry holds the tuple (ids not reused).
_BINDINGS: dict[tuple[ClientAuth, int], tuple[tuple[x509.Certificate, ...], bytes]] = {}
MAX_CACHED_BINDINGS = 16


def trust_binding(mode: ClientAuth, client_cas: tuple[x509.Certificate, ...]) -> bytes:
    """What a session ticket is bound to (RFC 8446 4.6.1): the listener's client
    authentication settings. A ticket minted under other settings is never resumed, so a
    `client_ca` change takes effect on every session at once. Derived from the settings'
    content, so every worker of a node sharing a ticket key file agrees."""
    entry = _BINDINGS.get((mode, id(client_cas)))
    if entry is not None and entry[0] is client_cas:
        return entry[1]
    digest = hashlib.sha256(mode.value.encode("ascii"))
    for ca in client_cas:
        der = ca.public_bytes(Encoding.DER)
        digest.update(len(der).to_bytes(4, "big") + der)
    binding = digest.digest()[:16]
    if len(_BINDINGS) >= MAX_CACHED_BINDINGS:
        _BINDINGS.pop(next(iter(_BINDINGS)))  # the oldest: configs replaced by reloads
    _BINDINGS[(mode, id(client_cas))] = (client_cas, binding)
    return binding
