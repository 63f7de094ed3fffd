"""`outwork ca init` and `outwork ca issue`: a small internal CA, so the key flow (and the demo and
the tests) runs offline. DIR holds `ca.key` (0600) and `ca.pem`; the folder is 0700."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from outwork.config.files import MAX_PEM_FILE, FileTooLarge, read_bounded
from outwork.keys.file_signer import SigningKey, load_private_key
from outwork.ops import OpsError
from outwork.ops.files import PRIVATE, PUBLIC, refuse_existing, write_file
from outwork.ops.keygen import new_private_key, private_key_pem

CA_KEY = "ca.key"
CA_CERT = "ca.pem"
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 90
# CA/Browser Forum cap on a TLS server certificate's validity; the internal CA keeps to it so
# that what works here works with a public CA too.
MAX_LEAF_DAYS = 397
MAX_CA_DAYS = 20 * 365
MAX_CSR_FILE = 64 * 1024  # bytes; a CSR with 100 names is a few KiB
_BACKDATE = datetime.timedelta(minutes=5)  # clocks of the peers a little behind


@dataclass(frozen=True)
class Authority:
    key: SigningKey
    cert: x509.Certificate


def _hash_for(key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | None:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def init_ca(
    folder: Path,
    key_type: str = "ec-p384",
    subject: str | None = None,
    days: int = DEFAULT_CA_DAYS,
) -> Authority:
    if not 1 <= days <= MAX_CA_DAYS:
        raise OpsError(f"--days must be between 1 and {MAX_CA_DAYS}")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OpsError(f"{folder}: exists and is not an empty folder")
    try:
        name = (
            x509.Name.from_rfc4514_string(subject)
            if subject
            else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outwork internal CA")])
        )
    except ValueError as exc:
        raise OpsError(f"--subject: not an RFC 4514 name ({exc})") from None
    key = new_private_key(key_type)
    public = key.public_key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, _hash_for(key))
    )
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    except OSError as exc:
        raise OpsError(f"{folder}: cannot create: {exc.strerror}") from None
    write_file(folder / CA_KEY, private_key_pem(key, None), PRIVATE)
    write_file(folder / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), PUBLIC)
    return Authority(key, cert)


def load_ca(folder: Path) -> Authority:
    try:
        certs = x509.load_pem_x509_certificates(read_bounded(folder / CA_CERT, MAX_PEM_FILE))
    except OSError as exc:
        raise OpsError(f"{folder / CA_CERT}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise OpsError(f"{folder / CA_CERT}: not a PEM certificate") from None
    try:
        key = load_private_key(folder / CA_KEY)
    except ValueError as exc:
        raise OpsError(str(exc)) from None
    cert = certs[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise OpsError(f"{folder}: {CA_KEY} is not the key of {CA_CERT}")
    return Authority(key, cert)


def read_csr(path: Path) -> x509.CertificateSigningRequest:
    """A PEM or DER CSR whose signature verifies (its requester holds the key)."""
    try:
        data = read_bounded(path, MAX_CSR_FILE)
    except OSError as exc:
        raise OpsError(f"{path}: cannot read: {exc.strerror}") from None
    except FileTooLarge:
        raise OpsError(f"{path}: larger than {MAX_CSR_FILE} bytes; not a CSR") from None
    try:
        if b"-----BEGIN" in data:
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise OpsError(f"{path}: not a certificate signing request") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # an algorithm cryptography cannot check is not a verified request
        valid = False
    if not valid:
        raise OpsError(f"{path}: the CSR's signature does not verify; not issued")
    return csr


def _requested_names(
    csr: x509.CertificateSigningRequest, path: Path
) -> x509.SubjectAlternativeName:
    try:
        return csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise OpsError(f"{path}: the CSR asks for no names (no subjectAltName)") from None
    except ValueError as exc:
        raise OpsError(f"{path}: unreadable CSR extensions ({exc})") from None


def issue(
    folder: Path, csr_path: Path, out: Path, days: int = DEFAULT_LEAF_DAYS, overwrite: bool = False
) -> x509.Certificate:
    """Issue a leaf for the CSR: its subject and SANs (nothing else from the request), our
    EKU/KU/basic constraints; write leaf + CA certificate to `out`."""
    if not 1 <= days <= MAX_LEAF_DAYS:
        raise OpsError(f"--days must be between 1 and {MAX_LEAF_DAYS}")
    refuse_existing(out, overwrite)
    ca = load_ca(folder)
    csr = read_csr(csr_path)
    san = _requested_names(csr, csr_path)
    public = csr.public_key()
    if not isinstance(
        public, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)
    ):
        raise OpsError(f"{csr_path}: unsupported key type {type(public).__name__}")
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < 2048:
        raise OpsError(f"{csr_path}: RSA key of {public.key_size} bits (minimum 2048)")
    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    if not_after > ca.cert.not_valid_after_utc:
        raise OpsError(f"{folder}: the CA certificate expires before {days} days from now")
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public, rsa.RSAPublicKey),  # TLS 1.2 RSA key exchange
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(san, critical=not list(csr.subject))  # RFC 5280 4.2.1.6: empty subject
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, _hash_for(ca.key))
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.cert.public_bytes(
        serialization.Encoding.PEM
    )
    write_file(out, chain, PUBLIC, overwrite)
    return cert
