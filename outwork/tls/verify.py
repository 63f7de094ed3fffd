"""Client role: verify a server's certificate chain and name with cryptography's verifier."""

from __future__ import annotations

import datetime
import ipaddress

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.verification import (
    DNSName,
    IPAddress,
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
    leaf = chain[0]
    if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
        raise TLSError(AlertDescription.CERTIFICATE_EXPIRED, "server certificate is not valid now")
    verifier = (
        PolicyBuilder().store(trust_store(trust_roots)).time(when).build_server_verifier(subject)
    )
    try:
        verifier.verify(leaf, chain[1:])
    except VerificationError as exc:
        message = str(exc)
        if "not valid at validation time" in message:
            alert = AlertDescription.CERTIFICATE_EXPIRED  # an intermediate out of its validity
        elif "subjectAltName" in message:
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
    except (ValueError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise TLSError(AlertDescription.BAD_CERTIFICATE, f"unusable certificate: {exc}") from exc
    return chain
