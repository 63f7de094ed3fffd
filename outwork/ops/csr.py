"""`outwork certs csr`: a PKCS#10 request with the names as SANs, signed where the key lives.

One path for every key: the CertificationRequestInfo is encoded here (`der`), the key's signer
(`FileSigner`, or `Pkcs11Signer` for a key in a token: the same interface the TLS engine signs
with) signs it, and the result is checked with cryptography before it is written.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID, NameOID

from outwork.ops import OpsError, der
from outwork.ops.files import PUBLIC, refuse_existing, write_file
from outwork.tls.enums import SignatureScheme
from outwork.tls.signing import Signer

MAX_NAMES = 100  # SANs in one request: more is a mistake (a file pasted), not a certificate
MAX_DNS_NAME = 253
MAX_COMMON_NAME = 64  # X.520 ub-common-name
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DNS_NAME = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")

# The scheme a CSR is signed with, by preference, and its AlgorithmIdentifier (RFC 5758, 8017,
# 8410). RSA: PKCS#1 v1.5 with SHA-256, which every CA accepts.
_ALGORITHMS: dict[SignatureScheme, bytes] = {
    SignatureScheme.ECDSA_SECP256R1_SHA256: der.sequence(der.oid("1.2.840.10045.4.3.2")),
    SignatureScheme.ECDSA_SECP384R1_SHA384: der.sequence(der.oid("1.2.840.10045.4.3.3")),
    SignatureScheme.ECDSA_SECP521R1_SHA512: der.sequence(der.oid("1.2.840.10045.4.3.4")),
    SignatureScheme.RSA_PKCS1_SHA256: der.sequence(der.oid("1.2.840.113549.1.1.11"), der.null()),
    SignatureScheme.ED25519: der.sequence(der.oid("1.3.101.112")),
}
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"  # PKCS#9 extensionRequest


def parse_name(text: str) -> x509.GeneralName:
    """An IP address (v4 or v6, no zone, no brackets) or a DNS name (LDH labels, a `*.` in front
    allowed, lower-cased); anything else raises OpsError."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if "%" in text:
            raise OpsError(f"--name {text!r}: an IP address with a zone cannot be certified")
        return x509.IPAddress(address)
    name = text.lower().removesuffix(".") if text.isascii() else text
    if not name.isascii():
        raise OpsError(f"--name {text!r}: not ASCII; give the IDN in its xn-- form")
    if len(name) > MAX_DNS_NAME or not _DNS_NAME.fullmatch(name):
        raise OpsError(f"--name {text!r}: not a DNS name or an IP address")
    if name.rsplit(".", 1)[-1].isdigit():
        # 10.0.0 or 1.2.3.400: a mistyped address, not a host name.
        raise OpsError(f"--name {text!r}: not a valid IP address, nor a DNS name")
    return x509.DNSName(name)


def parse_names(texts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for text in texts:
        name = parse_name(text)
        if name not in names:
            names.append(name)
    if not names:
        raise OpsError("give at least one --name")
    if len(names) > MAX_NAMES:
        raise OpsError(f"more than {MAX_NAMES} names in one request")
    return names


def parse_subject(text: str | None, names: list[x509.GeneralName]) -> x509.Name:
    """The --subject DN (RFC 4514: `CN=api,O=Example`), else CN = the first name."""
    if text is None:
        first = str(names[0].value)
        if len(first) > MAX_COMMON_NAME:
            return x509.Name([])  # the SANs carry the names; CN is only for old tools
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first)])
    try:
        return x509.Name.from_rfc4514_string(text)
    except ValueError as exc:
        raise OpsError(f"--subject: not an RFC 4514 name ({exc})") from None


def choose_scheme(signer: Signer) -> SignatureScheme:
    offered = signer.schemes()
    for scheme in _ALGORITHMS:
        if scheme in offered:
            return scheme
    raise OpsError(
        "the key cannot sign a CSR with any of: " + ", ".join(s.name for s in _ALGORITHMS)
    )


def build_csr(signer: Signer, names: list[x509.GeneralName], subject: x509.Name) -> bytes:
    """The DER CSR: CertificationRequest (RFC 2986) with an extensionRequest for the SANs."""
    spki = signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    san = der.sequence(
        der.oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string),
        der.octet_string(x509.SubjectAlternativeName(names).public_bytes()),
    )
    attribute = der.sequence(der.oid(_EXTENSION_REQUEST), der.set_of(der.sequence(san)))
    info = der.sequence(der.integer(0), subject.public_bytes(), spki, der.context(0, attribute))
    scheme = choose_scheme(signer)
    signature = signer.sign(scheme, info)
    request = der.sequence(info, _ALGORITHMS[scheme], der.bit_string(signature))
    # Our own encoder's output, checked by a parser we did not write before anyone sees it.
    csr = x509.load_der_x509_csr(request)
    if not csr.is_signature_valid:
        raise OpsError("the CSR's signature does not verify (the key and its public half differ)")
    return request


@contextmanager
def open_signer(key: str, passphrase: bytes | None = None) -> Iterator[Signer]:
    """The signer for KEY: a `pkcs11:` URI (its token signs) or a PEM key file."""
    if key.startswith("pkcs11:"):
        from outwork.keys.pkcs11_signer import Pkcs11KeyError, Pkcs11Signer

        if passphrase is not None:
            raise OpsError("a pkcs11: key has a PIN (pin-source in its URI), not a passphrase")
        try:
            signer = Pkcs11Signer(key)
        except (Pkcs11KeyError, ValueError) as exc:
            raise OpsError(str(exc)) from None
        with signer:
            yield signer
        return
    from outwork.keys.file_signer import FileSigner, load_private_key

    try:
        file_signer = FileSigner(load_private_key(key, passphrase))
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    yield file_signer


def make_csr(
    key: str,
    names: Iterable[str],
    subject: str | None,
    out: Path,
    passphrase: bytes | None = None,
    overwrite: bool = False,
) -> x509.CertificateSigningRequest:
    parsed = parse_names(names)
    dn = parse_subject(subject, parsed)
    refuse_existing(out, overwrite)
    with open_signer(key, passphrase) as signer:
        request = build_csr(signer, parsed, dn)
    csr = x509.load_der_x509_csr(request)
    write_file(out, csr.public_bytes(serialization.Encoding.PEM), PUBLIC, overwrite)
    return csr
