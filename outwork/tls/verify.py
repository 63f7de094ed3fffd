"""Certificate chains a peer sends: parsing, the CA policy shared by both roles, and (client
role) verifying a server's chain and name with cryptography's verifier.

`cryptography` parses a certificate's names and extensions lazily and raises ValueError or
TypeError for malformed ones (invalid UTF-8 in a subject, a SAN IP address of 5 bytes, a bit
string where a string belongs...) on first access, possibly while formatting an error message.
Every place that reads a peer certificate's fields runs under `malformed_certificates_refused`,
so such a certificate ends the handshake with `bad_certificate`, like any refusal.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    Criticality,
    DNSName,
    ExtensionPolicy,
    IPAddress,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from outwork.tls.alerts import AlertDescription, TLSError

# Building a Store parses every root again (about 0.7 ms for a 144-root system bundle), so one
# Store is kept per trust-root tuple. A config's tuple lives as long as the config; the cache
# holds the tuple itself, so an id is never reused while its entry exists, and it is bounded.
_STORES: dict[int, tuple[tuple[x509.Certificate, ...], Store]] = {}
MAX_CACHED_STORES = 16


def trust_store(roots: tuple[x509.Certificate, ...]) -> Store:
    """The verifier Store for `roots`, built once per tuple."""
    entry = _STORES.get(id(roots))
    if entry is not None and entry[0] is roots:
        return entry[1]
    store = Store(list(roots))
    if len(_STORES) >= MAX_CACHED_STORES:
        _STORES.pop(next(iter(_STORES)))  # the oldest: configs replaced by reloads
    _STORES[id(roots)] = (roots, store)
    return store


# cryptography's messages quote the certificate's subject, which the peer chose (a 60 KB CN
# is possible): the reason in the security event is cut to this.
MAX_REASON_CERT_TEXT = 300


def error_text(exc: Exception) -> str:
    """`exc`'s message, at most MAX_REASON_CERT_TEXT characters."""
    text = str(exc)
    return text if len(text) <= MAX_REASON_CERT_TEXT else text[:MAX_REASON_CERT_TEXT] + "..."


@contextmanager
def malformed_certificates_refused(role: str) -> Iterator[None]:
    """Turn cryptography's ValueError/TypeError on a malformed certificate field into a
    `bad_certificate` TLSError (never an exception escaping the engine)."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise TLSError(
            AlertDescription.BAD_CERTIFICATE, f"malformed {role} certificate: {error_text(exc)}"
        ) from exc


def check_v3(leaf: x509.Certificate, role: str) -> None:
    """RFC 5280 extensions (basicConstraints, keyUsage...) exist only in v3: a v1 certificate
    cannot say what it may be used for, so, as in webpki, it is refused, and the reason says
    so (the verifier refuses v1 issuers too, see `V1_IN_CHAIN`)."""
    if leaf.version is not x509.Version.v3:
        raise TLSError(
            AlertDescription.BAD_CERTIFICATE,
            f"{role} certificate is X.509 {leaf.version.name}; v3 is required",
        )


V1_IN_CHAIN = "a CA certificate in the chain is X.509 v1; v3 is required"


def webpki_ca_policy(purpose: x509.ObjectIdentifier) -> ExtensionPolicy:
    """What rustls/webpki ask of a CA: basicConstraints CA:TRUE (critical or not); keyUsage
    and extendedKeyUsage checked only when present (keyCertSign; `purpose` or any). `openssl req
    -x509` makes CAs without keyUsage, and nginx, Envoy and rustls accept them."""

    def is_ca(_policy: Policy, _cert: x509.Certificate, value: x509.BasicConstraints) -> None:
        if not value.ca:
            raise ValueError("basicConstraints of an issuing certificate is not CA:TRUE")

    def signs_certificates(
        _policy: Policy, _cert: x509.Certificate, value: x509.KeyUsage | None
    ) -> None:
        if value is not None and not value.key_cert_sign:
            raise ValueError("keyUsage of an issuing certificate lacks keyCertSign")

    def for_purpose(
        _policy: Policy, _cert: x509.Certificate, value: x509.ExtendedKeyUsage | None
    ) -> None:
        # anyExtendedKeyUsage on a CA is accepted, as cryptography's own CA policy does (and
        # private PKIs use it); the leaf must name the purpose itself.
        if (
            value is not None
            and purpose not in value
            and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in value
        ):
            raise ValueError(f"extendedKeyUsage of an issuing certificate lacks {purpose._name}")

    return (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, is_ca)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, signs_certificates)
        .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, for_purpose)
    )


# Upstreams: the leaf keeps webpki's server rules (subjectAltName and the name check).
_SERVER_CA_POLICY = webpki_ca_policy(ExtendedKeyUsageOID.SERVER_AUTH)
_SERVER_LEAF_POLICY = ExtensionPolicy.webpki_defaults_ee()


def verify_server_chain(
    chain: list[x509.Certificate],
    trust_roots: tuple[x509.Certificate, ...],
    server_name: str,
    now: float,
) -> None:
    """Raise a TLSError with the fitting alert unless the chain leads to a trust root and the
    leaf is valid for `server_name` at time `now` (seconds since the epoch)."""
    if not trust_roots:
        raise TLSError(AlertDescription.UNKNOWN_CA, "no trust roots configured")
    subject: DNSName | IPAddress
    try:
        subject = IPAddress(ipaddress.ip_address(server_name))
    except ValueError:
        subject = DNSName(server_name)
    when = datetime.datetime.fromtimestamp(now, datetime.UTC)
    with malformed_certificates_refused("server"):
        leaf = chain[0]
        check_v3(leaf, "server")
        if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
            raise TLSError(
                AlertDescription.CERTIFICATE_EXPIRED, "server certificate is not valid now"
            )
        verifier = (
            PolicyBuilder()
            .store(trust_store(trust_roots))
            .time(when)
            .extension_policies(ca_policy=_SERVER_CA_POLICY, ee_policy=_SERVER_LEAF_POLICY)
            .build_server_verifier(subject)
        )
        try:
            verifier.verify(leaf, chain[1:])
        except VerificationError as exc:
            message = error_text(exc)
            if "not valid at validation time" in message:
                alert = AlertDescription.CERTIFICATE_EXPIRED  # an intermediate out of validity
            elif "X509v3" in message:
                alert = AlertDescription.BAD_CERTIFICATE
                message = V1_IN_CHAIN
            elif any(s in message for s in ("subjectAltName", "ASN.1", "validator failed")):
                alert = AlertDescription.BAD_CERTIFICATE
            else:
                alert = AlertDescription.UNKNOWN_CA
            raise TLSError(alert, f"server certificate rejected: {message}") from exc


def load_chain(ders: list[bytes] | tuple[bytes, ...]) -> list[x509.Certificate]:
    """Parse a received chain, public keys included; anything unparseable or unsupported is
    `bad_certificate` (never an exception escaping the engine)."""
    try:
        chain = [x509.load_der_x509_certificate(der) for der in ders]
        for cert in chain:
            cert.public_key()  # an unknown algorithm or a point off the curve fails here
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise TLSError(
            AlertDescription.BAD_CERTIFICATE, f"unusable certificate: {error_text(exc)}"
        ) from exc
    return chain
