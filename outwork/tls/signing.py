"""The signer interface: the engine never touches a private key, only asks for signatures.

A file-backed key and a PKCS#11 (HSM) key look the same to the engine.
"""

from __future__ import annotations

from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.enums import SignatureScheme


class Signer(Protocol):
    def public_key(self) -> CertificatePublicKeyTypes: ...

    def schemes(self) -> tuple[SignatureScheme, ...]:
        """Signature schemes this key can produce, in order of preference."""
        ...

    def sign(self, scheme: SignatureScheme, data: bytes) -> bytes: ...


# Schemes valid in a TLS 1.3 CertificateVerify (RFC 8446 4.2.3: no PKCS#1 v1.5, no SHA-1).
TLS13_SCHEMES: Final = frozenset(
    {
        SignatureScheme.ECDSA_SECP256R1_SHA256,
        SignatureScheme.ECDSA_SECP384R1_SHA384,
        SignatureScheme.ECDSA_SECP521R1_SHA512,
        SignatureScheme.RSA_PSS_RSAE_SHA256,
        SignatureScheme.RSA_PSS_RSAE_SHA384,
        SignatureScheme.RSA_PSS_RSAE_SHA512,
        SignatureScheme.ED25519,
    }
)

# TLS 1.2 also allows RSA PKCS#1 v1.5, and its ECDSA schemes name a hash, not a curve.
TLS12_SCHEMES: Final = TLS13_SCHEMES | {
    SignatureScheme.RSA_PKCS1_SHA256,
    SignatureScheme.RSA_PKCS1_SHA384,
    SignatureScheme.RSA_PKCS1_SHA512,
}

SCHEME_HASH: Final[dict[SignatureScheme, type[hashes.HashAlgorithm]]] = {
    SignatureScheme.RSA_PKCS1_SHA256: hashes.SHA256,
    SignatureScheme.RSA_PKCS1_SHA384: hashes.SHA384,
    SignatureScheme.RSA_PKCS1_SHA512: hashes.SHA512,
    SignatureScheme.ECDSA_SECP256R1_SHA256: hashes.SHA256,
    SignatureScheme.ECDSA_SECP384R1_SHA384: hashes.SHA384,
    SignatureScheme.ECDSA_SECP521R1_SHA512: hashes.SHA512,
    SignatureScheme.RSA_PSS_RSAE_SHA256: hashes.SHA256,
    SignatureScheme.RSA_PSS_RSAE_SHA384: hashes.SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512: hashes.SHA512,
}

# The RSA schemes a key can produce, PSS first (the only kind TLS 1.3 allows).
RSA_SCHEMES: Final[tuple[SignatureScheme, ...]] = (
    SignatureScheme.RSA_PSS_RSAE_SHA256,
    SignatureScheme.RSA_PSS_RSAE_SHA384,
    SignatureScheme.RSA_PSS_RSAE_SHA512,
    SignatureScheme.RSA_PKCS1_SHA256,
    SignatureScheme.RSA_PKCS1_SHA384,
    SignatureScheme.RSA_PKCS1_SHA512,
)

# Each ECDSA scheme is bound to one curve in TLS 1.3 (cryptography's curve names).
SCHEME_CURVE: Final[dict[SignatureScheme, str]] = {
    SignatureScheme.ECDSA_SECP256R1_SHA256: "secp256r1",
    SignatureScheme.ECDSA_SECP384R1_SHA384: "secp384r1",
    SignatureScheme.ECDSA_SECP521R1_SHA512: "secp521r1",
}


ECDSA_SCHEME_FOR_CURVE: Final = {curve: scheme for scheme, curve in SCHEME_CURVE.items()}


def scheme_hash(scheme: SignatureScheme) -> hashes.HashAlgorithm:
    """The hash a (non-EdDSA) scheme signs with."""
    return SCHEME_HASH[scheme]()


_SERVER_VERIFY_PREFIX: Final = b" " * 64 + b"TLS 1.3, server CertificateVerify\x00"
_CLIENT_VERIFY_PREFIX: Final = b" " * 64 + b"TLS 1.3, client CertificateVerify\x00"


def certificate_verify_content(transcript_hash: bytes, server: bool) -> bytes:
    """RFC 8446 4.4.3: 64 spaces, context string, a zero byte, the transcript hash."""
    return (_SERVER_VERIFY_PREFIX if server else _CLIENT_VERIFY_PREFIX) + transcript_hash


def verify_signature(
    public_key: CertificatePublicKeyTypes,
    scheme: int,
    data: bytes,
    signature: bytes,
    tls12: bool = False,
) -> bool:
    """True when `signature` is a valid signature by `public_key` with `scheme`, under the
    rules of TLS 1.3 (default) or TLS 1.2."""
    try:
        named = SignatureScheme(scheme)  # a fresh name: compiled, an int variable drops the enum
    except ValueError:
        return False
    if named not in (TLS12_SCHEMES if tls12 else TLS13_SCHEMES):
        return False
    try:
        if named == SignatureScheme.ED25519:
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                return False
            public_key.verify(signature, data)
            return True
        algorithm = SCHEME_HASH[named]()
        if named in SCHEME_CURVE:
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                return False
            if not tls12 and public_key.curve.name != SCHEME_CURVE[named]:
                return False
            public_key.verify(signature, data, ec.ECDSA(algorithm))
            return True
        if not isinstance(public_key, rsa.RSAPublicKey):
            return False
        if named.name.startswith("RSA_PKCS1"):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
            return True
        pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=algorithm.digest_size)
        public_key.verify(signature, data, pss, algorithm)
        return True
    except InvalidSignature:
        return False


def sign_with(signer: Signer, scheme: SignatureScheme, data: bytes) -> bytes:
    """Ask the signer; a signer that fails (an HSM gone away, a token logged out) fails this
    handshake with internal_error instead of escaping the engine."""
    try:
        return signer.sign(scheme, data)
    except Exception as exc:  # noqa: BLE001 - any signer failure is this connection's failure
        raise TLSError(AlertDescription.INTERNAL_ERROR, f"signing failed: {exc}") from exc
