"""Signer for a private key held in a PEM file (the embedded default; HSM keys come later)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from outwork.config.files import MAX_PEM_FILE, read_bounded
from outwork.tls.config import CertifiedKey
from outwork.tls.enums import SignatureScheme
from outwork.tls.signing import ECDSA_SCHEME_FOR_CURVE, RSA_SCHEMES, scheme_hash

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class FileSigner:
    """Signs with an in-memory private key loaded from a file."""

    def __init__(self, key: SigningKey) -> None:
        self._key = key
        self._schemes: tuple[SignatureScheme, ...]
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if key.curve.name not in ECDSA_SCHEME_FOR_CURVE:
                raise ValueError(f"unsupported EC curve {key.curve.name}")
            self._schemes = (ECDSA_SCHEME_FOR_CURVE[key.curve.name],)
        elif isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < 2048:
                raise ValueError(f"RSA key of {key.key_size} bits is too small (minimum 2048)")
            self._schemes = RSA_SCHEMES
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self._schemes = (SignatureScheme.ED25519,)
        else:
            raise ValueError(f"unsupported private key type {type(key).__name__}")
        # Each scheme's signing call, its parameters made once: a handshake then makes no
        # padding, hash or ECDSA objects and no isinstance checks against cryptography's
        # abstract classes.
        self._sign = {scheme: _signing_call(key, scheme) for scheme in self._schemes}

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._key.public_key()

    def schemes(self) -> tuple[SignatureScheme, ...]:
        return self._schemes

    def sign(self, scheme: SignatureScheme, data: bytes) -> bytes:
        sign = self._sign.get(scheme)
        if sign is None:
            raise ValueError(f"key cannot sign with {scheme.name}")
        return sign(data)


def _signing_call(key: SigningKey, scheme: SignatureScheme) -> Callable[[bytes], bytes]:
    """`data` -> the signature of `data` by `key` with `scheme` (one the key can produce)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign
    algorithm = scheme_hash(scheme)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        ecdsa = ec.ECDSA(algorithm)
        return lambda data: key.sign(data, ecdsa)
    if scheme.name.startswith("RSA_PSS"):
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        return lambda data: key.sign(data, pss, algorithm)
    pkcs1 = padding.PKCS1v15()
    return lambda data: key.sign(data, pkcs1, algorithm)


def load_private_key(key_path: str | Path, passphrase: bytes | None = None) -> SigningKey:
    """A PEM private key (PKCS#8 or traditional), decrypted with `passphrase` when encrypted.
    Raises ValueError with one line naming the file (never the passphrase)."""
    try:
        data = read_bounded(key_path, MAX_PEM_FILE)
    except OSError as exc:
        raise ValueError(f"{key_path}: cannot read the key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:
        # cryptography: a passphrase for a plain key, or none for an encrypted one.
        if passphrase is None:
            raise ValueError(f"{key_path}: the key is encrypted; give its passphrase") from None
        raise ValueError(
            f"{key_path}: the key is not encrypted, but a passphrase was given"
        ) from None
    except ValueError:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise ValueError(f"{key_path}: wrong passphrase for the key") from None
        raise ValueError(f"{key_path}: not a PEM private key") from None
    except Exception:  # UnsupportedAlgorithm and friends
        raise ValueError(f"{key_path}: not a usable PEM private key") from None
    if not isinstance(
        key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
    ):
        raise ValueError(f"{key_path}: unsupported key type {type(key).__name__}")
    return key


def load_certified_key(
    cert_path: str | Path, key_path: str | Path, passphrase: bytes | None = None
) -> CertifiedKey:
    """Load a PEM chain (leaf first) and its PEM private key (encrypted: with `passphrase`);
    check that they belong together."""
    chain = tuple(x509.load_pem_x509_certificates(read_bounded(cert_path, MAX_PEM_FILE)))
    if not chain:
        raise ValueError(f"{cert_path}: no certificate found")
    key = load_private_key(key_path, passphrase)
    signer = FileSigner(key)
    public_der = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if chain[0].public_key().public_bytes(encoding, public_der) != key.public_key().public_bytes(
        encoding, public_der
    ):
        raise ValueError(f"{key_path}: private key does not match the certificate in {cert_path}")
    return CertifiedKey(chain=chain, signer=signer)
