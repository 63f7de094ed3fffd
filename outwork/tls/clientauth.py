"""Client certificates (mTLS): verifying a client's chain and the identity it proves.

The chain is checked with `cryptography.x509.verification` (client policy: the leaf must be
valid for client authentication and lead to one of the listener's client CAs). The identity
(subject, SANs, SHA-256 fingerprint) goes to the policy layer and the access log.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.verification import PolicyBuilder, VerificationError

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.verify import trust_store


class ClientAuth(enum.Enum):
    NONE = "none"
    OPTIONAL = "optional"  # a bad or absent certificate: the connection goes on, without identity
    REQUIRED = "required"


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    subject: str  # RFC 4514
    sans: tuple[str, ...]  # "DNS:...", "email:...", "URI:...", "IP:..."
    fingerprint_sha256: str  # hex, of the leaf certificate's DER

    def encode(self) -> bytes:
        """For session tickets: resumption keeps the identity it was issued for."""
        return "\n".join((self.subject, self.fingerprint_sha256, *self.sans)).encode("utf-8")

    @staticmethod
    def decode(data: bytes) -> ClientIdentity:
        subject, fingerprint, *sans = data.decode("utf-8").split("\n")
        return ClientIdentity(subject, tuple(sans), fingerprint)


def identity_of(leaf: x509.Certificate) -> ClientIdentity:
    sans: list[str] = []
    try:
        extension = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        extension = None
    if extension is not None:
        sans += [f"DNS:{v}" for v in extension.get_values_for_type(x509.DNSName)]
        sans += [f"email:{v}" for v in extension.get_values_for_type(x509.RFC822Name)]
        sans += [f"URI:{v}" for v in extension.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [f"IP:{v}" for v in extension.get_values_for_type(x509.IPAddress)]
    return ClientIdentity(
        subject=leaf.subject.rfc4514_string(),
        sans=tuple(sans),
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
    )


def verify_client_chain(
    chain: list[x509.Certificate], client_cas: tuple[x509.Certificate, ...], now: float
) -> ClientIdentity:
    """The identity the chain proves, or a TLSError with the alert that says why not."""
    when = datetime.datetime.fromtimestamp(now, datetime.UTC)
    leaf = chain[0]
    if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
        raise TLSError(AlertDescription.CERTIFICATE_EXPIRED, "client certificate is not valid now")
    if not client_cas:
        raise TLSError(AlertDescription.UNKNOWN_CA, "no client CA configured")
    verifier = PolicyBuilder().store(trust_store(client_cas)).time(when).build_client_verifier()
    try:
        verifier.verify(leaf, chain[1:])
    except VerificationError as exc:
        message = str(exc)
        top_issuer = chain[-1].issuer
        known_issuer = any(ca.subject == top_issuer for ca in client_cas) or any(
            ca.subject == leaf.issuer for ca in client_cas
        )
        if "not valid at validation time" in message:
            alert = AlertDescription.CERTIFICATE_EXPIRED
        elif known_issuer:
            # Named after a trusted CA but not signed by it, or not fit for client auth.
            alert = AlertDescription.BAD_CERTIFICATE
        else:
            alert = AlertDescription.UNKNOWN_CA
        raise TLSError(alert, f"client certificate rejected: {message}") from exc
    return identity_of(leaf)
