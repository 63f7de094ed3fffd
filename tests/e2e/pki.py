"""A throwaway test PKI: one CA and a leaf per key type, for `localhost` and 127.0.0.1, and a
client-certificate PKI for the mTLS tests (a client CA, a good client, an expired one, one from
another CA, and one from an impostor CA that has the real client CA's name but not its key).

Made with `cryptography` into a directory; nothing is read from the host's trust store. Server
certificates are valid for 100 days (testssl.sh and sslyze flag certificates that expire soon).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Leaf kinds the gateway must serve; the name is what tests parametrize over.
KEY_KINDS = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "ed25519")
VALID_DAYS = 100


@dataclass(frozen=True)
class Leaf:
    kind: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class TestPKI:
    __test__ = False  # not a pytest class

    ca_cert: Path
    leaves: dict[str, Leaf]
    ca_key: ec.EllipticCurvePrivateKey | None = None  # to issue more leaves (HSM keys)


def _new_key(
    kind: str,
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(kind)


def _write_key(key: object, path: Path) -> None:
    pem = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


def make_pki(directory: Path) -> TestPKI:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + datetime.timedelta(days=VALID_DAYS + 30)  # outlives every leaf

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outwork e2e test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))

    leaves: dict[str, Leaf] = {}
    for kind in KEY_KINDS:
        key = _new_key(kind)
        cert = server_certificate(ca_cert, ca_key, key.public_key())
        cert_path = directory / f"{kind}.crt.pem"
        key_path = directory / f"{kind}.key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        leaves[kind] = Leaf(kind=kind, cert=cert_path, key=key_path)
    return TestPKI(ca_cert=ca_path, leaves=leaves, ca_key=ca_key)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def server_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    public_key: CertificatePublicKeyTypes,
) -> x509.Certificate:
    """A server leaf for `localhost` and 127.0.0.1, signed by the test CA, valid VALID_DAYS."""
    now = datetime.datetime.now(datetime.UTC)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


# --- client certificates (mTLS) ----------------------------------------------------------

CLIENT_CA_NAME = "outwork e2e client CA"


@dataclass(frozen=True)
class ClientCred:
    name: str
    cert: Path
    key: Path
    subject_cn: str
    fingerprint_sha256: str  # lower-case hex of the DER certificate's SHA-256


@dataclass(frozen=True)
class ClientPKI:
    ca_cert: Path  # what the gateway trusts (`tls.client_ca`)
    good: ClientCred
    expired: ClientCred
    wrong_ca: ClientCred  # from another CA with another name
    impostor: ClientCred  # from a CA with the client CA's name but another key: bad signature


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS + 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _client_cert(
    directory: Path,
    name: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> ClientCred:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    cn = f"e2e-client-{name}"
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "outwork e2e"),
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"{name}.clients.e2e.test")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path = directory / f"client-{name}.crt.pem"
    key_path = directory / f"client-{name}.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    return ClientCred(name, cert_path, key_path, cn, fingerprint)


def make_client_pki(directory: Path) -> ClientPKI:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=VALID_DAYS))
    client_ca = _ca(CLIENT_CA_NAME)
    other_ca = _ca("outwork e2e some other CA")
    impostor_ca = _ca(CLIENT_CA_NAME)  # same name, another key
    ca_path = directory / "client-ca.pem"
    ca_path.write_bytes(client_ca[1].public_bytes(serialization.Encoding.PEM))
    return ClientPKI(
        ca_cert=ca_path,
        good=_client_cert(directory, "good", client_ca, *valid),
        expired=_client_cert(
            directory,
            "expired",
            client_ca,
            now - datetime.timedelta(days=30),
            now - datetime.timedelta(days=1),
        ),
        wrong_ca=_client_cert(directory, "wrong-ca", other_ca, *valid),
        impostor=_client_cert(directory, "impostor", impostor_ca, *valid),
    )
