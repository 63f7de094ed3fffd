"""Certificates as others make them: with the `openssl` command line (CAs without keyUsage, v1
certificates, leaves without subjectAltName), and malformed ones that `cryptography` parses
but raises on when a field is read (re-signed, so they verify)."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from outwork.keys.file_signer import FileSigner
from outwork.tls.config import CertifiedKey
from tests.conftest import require_tool
from tests.tls.pki import CertAuthority


@dataclass(frozen=True)
class Made:
    cert_path: Path
    key_path: Path

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def certified(self, *issuers: Made) -> CertifiedKey:
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return CertifiedKey((self.cert, *(i.cert for i in issuers)), FileSigner(key))


class OpensslCA:
    """`openssl req -x509` (or, with `extensions`, a self-signed `openssl x509 -req`, "" for
    none: a v1 certificate) and leaves issued with `openssl x509 -req -extfile`."""

    def __init__(self, folder: Path, name: str, extensions: str | None = None) -> None:
        self.folder = folder
        self.name = name
        folder.mkdir(parents=True, exist_ok=True)
        key = folder / f"{name}.key"
        cert = folder / f"{name}.pem"
        subject = f"/CN={name}"
        if extensions is None:
            _openssl("req", "-x509", *_EC, "-keyout", key, "-out", cert, "-days", "30",
                     "-subj", subject)  # fmt: skip
        else:
            csr = self._csr(name, subject)
            _openssl("x509", "-req", "-in", csr, "-signkey", key, "-out", cert, "-days", "30",
                     *self._extfile(name, extensions))  # fmt: skip
        self.made = Made(cert, key)

    def _csr(self, name: str, subject: str) -> Path:
        csr = self.folder / f"{name}.csr"
        _openssl("req", "-new", *_EC, "-keyout", self.folder / f"{name}.key", "-out", csr,
                 "-subj", subject)  # fmt: skip
        return csr

    def _extfile(self, name: str, extensions: str) -> list[str | Path]:
        if not extensions:
            return []
        path = self.folder / f"{name}.ext"
        path.write_text(extensions.replace(";", "\n") + "\n")
        return ["-extfile", path]

    def issue(self, name: str, extensions: str, cn: str | None = None) -> Made:
        """A certificate for /CN=`cn or name` with `extensions` ("a=b;c=d", "" for a v1)."""
        csr = self._csr(name, f"/CN={cn or name}")
        cert = self.folder / f"{name}.pem"
        _openssl("x509", "-req", "-in", csr, "-CA", self.made.cert_path, "-CAkey",
                 self.made.key_path, "-set_serial", str(abs(hash(name)) % 10**12 + 1),
                 "-out", cert, "-days", "10", *self._extfile(name, extensions))  # fmt: skip
        return Made(cert, self.folder / f"{name}.key")


_EC = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


def _openssl(*args: str | Path) -> None:
    exe = require_tool("openssl")
    subprocess.run([exe, *map(str, args)], check=True, capture_output=True, timeout=60)


# ----- malformed fields ------------------------------------------------------------------

PLACEHOLDER_CN = "AAAAAAAA"  # a UTF8String of 8 bytes, replaced in the DER by a malformed value
PLACEHOLDER_IP = bytes([203, 0, 113, 77])  # a SAN IP address, replaced likewise


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(body)) + body


def _header(der: bytes, pos: int) -> int:
    first = der[pos + 1]
    return 2 if first < 0x80 else 2 + (first & 0x7F)


def resign(ca: CertAuthority, cert: x509.Certificate, *replace: tuple[bytes, bytes]) -> bytes:
    """`cert`'s DER with each (old, new) replaced (old once in the TBS, new of the same length,
    so no enclosing length changes), signed again by `ca`."""
    body = cert.tbs_certificate_bytes
    tbs = body
    for old, new in replace:
        assert body.count(old) == 1 and len(new) == len(old)
        body = body.replace(old, new)
    der = cert.public_bytes(serialization.Encoding.DER)
    start = _header(der, 0) + len(tbs)
    algorithm = der[start : start + _header(der, start) + der[start + 1]]
    signature = ca.key.sign(body, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, body + algorithm + tlv(0x03, b"\x00" + signature))


def placeholder_leaf(
    ca: CertAuthority, server: bool = False
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf of `ca` (client auth, or server auth for localhost) with the placeholders."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address(PLACEHOLDER_IP))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, PLACEHOLDER_CN)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


CN_TLV = tlv(0x0C, PLACEHOLDER_CN.encode())
IP_TLV = tlv(0x87, PLACEHOLDER_IP)

# Each is a certificate field cryptography parses lazily and raises on (checked by the tests).
MALFORMED = {
    # the subject's CN as a UTF8String that is not UTF-8: ValueError on `subject`
    "subject-not-utf8": (CN_TLV, tlv(0x0C, b"\xff" * 8)),
    # an IA5String CN with a byte over 0x7f: ValueError
    "subject-ia5-high-byte": (CN_TLV, tlv(0x16, b"\xfe" * 8)),
    # a BIT STRING as the CN's value: TypeError ("oid must be X500_UNIQUE_IDENTIFIER")
    "subject-bit-string": (CN_TLV, tlv(0x03, b"\x00" + b"\x01" * 7)),
    # a SAN IP address whose octet string is a SEQUENCE-shaped 4 bytes: a 2-byte "address"
    "san-ip-two-bytes": (IP_TLV, tlv(0x87, b"\x01\x02") + tlv(0x87, b"")),
}


def malformed_leaf(
    ca: CertAuthority, kind: str, server: bool = False
) -> tuple[bytes, CertifiedKey]:
    """(DER, CertifiedKey) of a leaf of `ca` whose field `kind` (see MALFORMED) is malformed."""
    cert, key = placeholder_leaf(ca, server)
    old, new = MALFORMED[kind]
    der = resign(ca, cert, (old, new))
    return der, CertifiedKey((x509.load_der_x509_certificate(der),), FileSigner(key))
