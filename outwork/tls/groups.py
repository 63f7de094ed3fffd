"""Key exchange for the supported groups, both roles. Every peer share is size-checked."""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, mlkem, x448, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from outwork.tls.alerts import illegal_parameter
from outwork.tls.enums import NamedGroup

_CURVES: Final[dict[int, type[ec.EllipticCurve]]] = {
    NamedGroup.SECP256R1: ec.SECP256R1,
    NamedGroup.SECP384R1: ec.SECP384R1,
    NamedGroup.SECP521R1: ec.SECP521R1,
}

# Exact share sizes (RFC 8446 4.2.8.2: uncompressed points only; the ML-KEM hybrid draft).
MLKEM768_ENCAPSULATION_KEY: Final = 1184
MLKEM768_CIPHERTEXT: Final = 1088
CLIENT_SHARE_SIZE: Final[dict[int, int]] = {
    NamedGroup.X25519: 32,
    NamedGroup.X448: 56,
    NamedGroup.SECP256R1: 65,
    NamedGroup.SECP384R1: 97,
    NamedGroup.SECP521R1: 133,
    NamedGroup.X25519MLKEM768: MLKEM768_ENCAPSULATION_KEY + 32,
}
SERVER_SHARE_SIZE: Final[dict[int, int]] = {
    **CLIENT_SHARE_SIZE,
    NamedGroup.X25519MLKEM768: MLKEM768_CIPHERTEXT + 32,
}


def check_share_encoding(group: int, share: bytes) -> None:
    """Every offered share of a group we implement is validated, not only the one we pick
    (RFC 8446 4.2.8.2): exact size, EC points on their curve, no all-zero X25519/X448 key.
    An invalid offer is then refused whichever share our preference picks, as a server
    picking the client's first share would. No scalar multiplication: a point decode costs
    microseconds, and MAX_KEY_SHARES bounds how many there are."""
    size = CLIENT_SHARE_SIZE.get(group)
    if size is None:
        return  # a group we do not implement (or GREASE): never used, so never read
    if len(share) != size:
        raise illegal_parameter(f"key share of {len(share)} bytes for group {group:#x}")
    curve = _CURVES.get(group)
    if curve is not None:
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(curve(), share)
        except ValueError as exc:
            raise illegal_parameter(f"invalid key share for group {group:#x}") from exc
        return
    montgomery = share[MLKEM768_ENCAPSULATION_KEY:] if group == NamedGroup.X25519MLKEM768 else share
    if not any(montgomery):
        raise illegal_parameter(f"all-zero key share for group {group:#x}")


def _x25519_exchange(peer: bytes) -> tuple[bytes, bytes]:
    private = x25519.X25519PrivateKey.generate()
    try:
        secret = private.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
    except ValueError as exc:  # all-zero result: a small-order point
        raise illegal_parameter("x25519 share gives an all-zero secret") from exc
    return private.public_key().public_bytes_raw(), secret


def server_key_exchange(group: int, client_share: bytes) -> tuple[bytes, bytes]:
    """Answer a client's share: returns (server share, shared secret)."""
    if len(client_share) != CLIENT_SHARE_SIZE.get(group, -1):
        raise illegal_parameter(f"key share of {len(client_share)} bytes for group {group:#x}")
    try:
        if group == NamedGroup.X25519:
            return _x25519_exchange(client_share)
        if group == NamedGroup.X25519MLKEM768:
            peer_mlkem = mlkem.MLKEM768PublicKey.from_public_bytes(
                client_share[:MLKEM768_ENCAPSULATION_KEY]
            )
            kem_secret, ciphertext = peer_mlkem.encapsulate()
            x_public, x_secret = _x25519_exchange(client_share[MLKEM768_ENCAPSULATION_KEY:])
            return ciphertext + x_public, kem_secret + x_secret
        if group == NamedGroup.X448:
            x448_private = x448.X448PrivateKey.generate()
            secret = x448_private.exchange(x448.X448PublicKey.from_public_bytes(client_share))
            return x448_private.public_key().public_bytes_raw(), secret
        curve = _CURVES[group]()
        peer = ec.EllipticCurvePublicKey.from_encoded_point(curve, client_share)
        ec_private = ec.generate_private_key(curve)
        secret = ec_private.exchange(ec.ECDH(), peer)
        share = ec_private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return share, secret
    except ValueError as exc:
        raise illegal_parameter(f"invalid key share for group {group:#x}") from exc


class KeyShare:
    """A private key for one group, kept until the peer's share arrives: the client's in
    TLS 1.3, either side's ephemeral ECDHE key in TLS 1.2."""

    def __init__(self, group: NamedGroup) -> None:
        self.group = group
        self._x25519 = x25519.X25519PrivateKey.generate()
        self._mlkem: mlkem.MLKEM768PrivateKey | None = None
        self._x448: x448.X448PrivateKey | None = None
        self._ec: ec.EllipticCurvePrivateKey | None = None
        if group == NamedGroup.X25519:
            self.share = self._x25519.public_key().public_bytes_raw()
        elif group == NamedGroup.X25519MLKEM768:
            self._mlkem = mlkem.MLKEM768PrivateKey.generate()
            self.share = (
                self._mlkem.public_key().public_bytes_raw()
                + self._x25519.public_key().public_bytes_raw()
            )
        elif group == NamedGroup.X448:
            self._x448 = x448.X448PrivateKey.generate()
            self.share = self._x448.public_key().public_bytes_raw()
        else:
            self._ec = ec.generate_private_key(_CURVES[group]())
            self.share = self._ec.public_key().public_bytes(
                Encoding.X962, PublicFormat.UncompressedPoint
            )

    def shared_secret(self, server_share: bytes) -> bytes:
        if len(server_share) != SERVER_SHARE_SIZE[self.group]:
            raise illegal_parameter("peer key share has the wrong size")
        try:
            if self.group == NamedGroup.X25519:
                return self._x25519.exchange(x25519.X25519PublicKey.from_public_bytes(server_share))
            if self._mlkem is not None:
                kem_secret = self._mlkem.decapsulate(server_share[:MLKEM768_CIPHERTEXT])
                peer = x25519.X25519PublicKey.from_public_bytes(server_share[MLKEM768_CIPHERTEXT:])
                return kem_secret + self._x25519.exchange(peer)
            if self._x448 is not None:
                return self._x448.exchange(x448.X448PublicKey.from_public_bytes(server_share))
            assert self._ec is not None
            point = ec.EllipticCurvePublicKey.from_encoded_point(self._ec.curve, server_share)
            return self._ec.exchange(ec.ECDH(), point)
        except ValueError as exc:
            raise illegal_parameter("invalid server key share") from exc
