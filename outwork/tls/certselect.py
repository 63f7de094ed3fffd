"""Choose the certificates a listener may present for a server name (SNI).

Exact names first, then a wildcard one label deep (`*.example.com` covers `a.example.com`,
not `a.b.example.com` nor `example.com`), then the listener's default: its first certificate
and any other with the same names (an ECDSA and an RSA certificate for one site). Which of
the candidates is used then depends on what the client can verify (the handshake decides).
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.x509.oid import NameOID

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.config import CertifiedKey, ServerConfig
from outwork.tls.extensions import ClientHelloOffer


def certificate_names(certified: CertifiedKey) -> frozenset[str]:
    leaf = certified.chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {name.lower() for name in san.get_values_for_type(x509.DNSName)}
    except x509.ExtensionNotFound:
        names = set()
    if not names:
        # Legacy certificates name the host only in the subject's CN.
        names = {
            str(attr.value).lower()
            for attr in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        }
    return frozenset(names)


class CertificateIndex:
    def __init__(self, certificates: tuple[CertifiedKey, ...]) -> None:
        self._exact: dict[str, list[CertifiedKey]] = {}
        self._wildcard: dict[str, list[CertifiedKey]] = {}
        for certified in certificates:
            for name in certificate_names(certified):
                if name.startswith("*."):
                    self._wildcard.setdefault(name[2:], []).append(certified)
                else:
                    self._exact.setdefault(name, []).append(certified)
        first_names = certificate_names(certificates[0]) if certificates else frozenset()
        self.default = tuple(c for c in certificates if certificate_names(c) == first_names)

    def lookup(self, server_name: str) -> tuple[CertifiedKey, ...]:
        """Certificates valid for `server_name`; () when none is (the caller decides between
        the default and `unrecognized_name`)."""
        exact = self._exact.get(server_name)
        if exact:
            return tuple(exact)
        _, dot, parent = server_name.partition(".")
        if dot and parent:
            return tuple(self._wildcard.get(parent, ()))
        return ()


@functools.lru_cache(maxsize=64)
def index_for(certificates: tuple[CertifiedKey, ...]) -> CertificateIndex:
    """Built once per configured certificate set, not per handshake."""
    return CertificateIndex(certificates)


def certificate_candidates(
    config: ServerConfig, offer: ClientHelloOffer
) -> tuple[CertifiedKey, ...]:
    """The certificates that may answer this ClientHello's server name (see certselect)."""
    index = index_for(config.certificates)
    if offer.server_name is None:
        return index.default
    found = index.lookup(offer.server_name)
    if found:
        return found
    if config.strict_sni:
        raise TLSError(AlertDescription.UNRECOGNIZED_NAME, "no certificate for this server name")
    return index.default
