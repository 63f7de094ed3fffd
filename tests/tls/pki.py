"""A throwaway test PKI: a CA and leaves of each key type, made with `cryptography`."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from outwork.keys.file_signer import FileSigner, SigningKey
from outwork.tls.config import CertifiedKey

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519")


def new_key(kind: str) -> SigningKey:
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa-2048":
        return rsa.generate_private_key(65537, 2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def _sign_hash(key: SigningKey) -> hashes.HashAlgorithm | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


@dataclass
class Leaf:
    cert: x509.Certificate
    key: SigningKey

    def certified(self, ca: x509.Certificate | None = None) -> CertifiedKey:
        chain = (self.cert,) if ca is None else (self.cert, ca)
        return CertifiedKey(chain=chain, signer=FileSigner(self.key))

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)  # as a real key is kept (`check` warns about a readable one)
        return cert_path, key_path


class CertAuthority:
    def __init__(self, name: str = "outwork test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        public = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self,
        kind: str = "ecdsa-p256",
        names: tuple[str, ...] = ("localhost",),
        days_valid: int = 30,
        expired: bool = False,
        client: bool = False,
    ) -> Leaf:
        """A leaf for `names` (DNS names or IPs; an '@' makes an email SAN), for server
        authentication, or client authentication with `client=True`."""
        key = new_key(kind)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(days=60 if expired else 1)
        end = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days_valid)
        sans: list[x509.GeneralName] = []
        for name in names:
            if "@" in name:
                sans.append(x509.RFC822Name(name))
                continue
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return Leaf(cert, key)
