"""TLS 1.3 key schedule (RFC 8446 7.1) and the per-suite parameters it needs."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hmac import HMAC

from outwork.tls.enums import CipherSuite


@dataclass(frozen=True, slots=True)
class SuiteParams:
    suite: CipherSuite
    hash_name: str
    hash_length: int
    key_length: int
    aead: type[AESGCM] | type[ChaCha20Poly1305]


SUITES: Final[dict[int, SuiteParams]] = {
    CipherSuite.TLS_AES_128_GCM_SHA256: SuiteParams(
        CipherSuite.TLS_AES_128_GCM_SHA256, "sha256", 32, 16, AESGCM
    ),
    CipherSuite.TLS_AES_256_GCM_SHA384: SuiteParams(
        CipherSuite.TLS_AES_256_GCM_SHA384, "sha384", 48, 32, AESGCM
    ),
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256: SuiteParams(
        CipherSuite.TLS_CHACHA20_POLY1305_SHA256, "sha256", 32, 32, ChaCha20Poly1305
    ),
}

IV_LENGTH: Final = 12


def _hmac(hash_name: str, key: bytes, message: bytes) -> bytes:
    """One HMAC with a key used once. cryptography's HMAC object costs fewer instructions than
    `hmac.digest` (whose OpenSSL 3 one-shot HMAC looks the MAC and the digest up by name on
    every call)."""
    mac = HMAC(key, _ALGORITHM[hash_name])
    mac.update(message)
    return mac.finalize()


def hkdf_extract(hash_name: str, salt: bytes, ikm: bytes) -> bytes:
    return _hmac(hash_name, salt, ikm)


# The hash objects HMAC is keyed with; immutable, so shared.
_ALGORITHM: Final[dict[str, hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class HmacKey:
    """HMAC (RFC 2104) for a key that MACs several messages: the keyed state (both padded key
    blocks hashed) is made once and copied per message, which saves two hash blocks and the
    key setup per message. The handshake and master secrets derive three secrets each, and
    every traffic secret a key and an IV. One copy, update and finalize of cryptography's
    HMAC costs about a quarter fewer instructions than hand-made pads on two hashlib objects
    (two copies, two updates, two digests)."""

    __slots__ = ("_keyed",)

    def __init__(self, hash_name: str, key: bytes) -> None:
        self._keyed = HMAC(key, _ALGORITHM[hash_name])

    def digest(self, message: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(message)
        return mac.finalize()

    def expand_label(self, label: bytes, context: bytes, length: int) -> bytes:
        """HKDF-Expand-Label with this key as the secret, for a length of at most one hash."""
        info = _label_prefix(label, length) + _BYTE[len(context)] + context
        return self.digest(info + b"\x01")[:length]


def hkdf_expand(hash_name: str, prk: bytes, info: bytes, length: int) -> bytes:
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = _hmac(hash_name, prk, block + info + bytes((counter,)))
        out += block
        counter += 1
    return out[:length]


_DIGEST_SIZE: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
# The transcript hash constructors themselves: hashlib.new is a Python wrapper.
_HASH_NEW: Final = {"sha256": hashlib.sha256, "sha384": hashlib.sha384}


# One-byte strings by value: HkdfLabel's context length (opaque context<0..255>), taken from
# a table rather than built by the bytes constructor for each label.
_BYTE: Final = [bytes((i,)) for i in range(256)]


@functools.lru_cache(maxsize=64)
def _label_prefix(label: bytes, length: int) -> bytes:
    """HkdfLabel up to its context: length, then "tls13 " + label with its length byte. The
    labels are the protocol's few constants, so each is encoded once."""
    full_label = b"tls13 " + label
    return length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label


def hkdf_expand_label(
    hash_name: str, secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    info = _label_prefix(label, length) + _BYTE[len(context)] + context
    if length <= _DIGEST_SIZE.get(hash_name, 0):
        # Every TLS 1.3 label asks for at most one hash length: HKDF-Expand is then one HMAC
        # (T(1) = HMAC(PRK, info | 0x01), RFC 5869 2.3).
        return _hmac(hash_name, secret, info + b"\x01")[:length]
    return hkdf_expand(hash_name, secret, info, length)


@functools.lru_cache(maxsize=8)
def _empty_hash(hash_name: str) -> bytes:
    return hashlib.new(hash_name).digest()


@functools.lru_cache(maxsize=8)
def _no_psk_early_secret(hash_name: str, hash_length: int) -> bytes:
    """The early secret of a handshake without a PSK: HKDF-Extract(0, 0...), a constant per
    hash."""
    return hkdf_extract(hash_name, b"\x00", bytes(hash_length))


@functools.lru_cache(maxsize=8)
def _no_psk_derived(hash_name: str, hash_length: int) -> HmacKey:
    """Derive-Secret(Early Secret, "derived", "") of a handshake without a PSK, a constant per
    hash, as the HMAC key that extracts the handshake secret."""
    early_secret = _no_psk_early_secret(hash_name, hash_length)
    empty_hash = _empty_hash(hash_name)
    derived = hkdf_expand_label(hash_name, early_secret, b"derived", empty_hash, hash_length)
    return HmacKey(hash_name, derived)


class Transcript:
    """Running hash of the handshake messages (RFC 8446 4.4.1)."""

    def __init__(self, hash_name: str, keep_messages: bool = False) -> None:
        self.hash_name = hash_name
        new = _HASH_NEW.get(hash_name)
        self._hash: Any = new() if new is not None else hashlib.new(hash_name)
        # TLS 1.2 CertificateVerify signs the messages themselves, not their hash.
        self.messages: bytearray | None = bytearray() if keep_messages else None

    def update(self, message: bytes) -> None:
        self._hash.update(message)
        if self.messages is not None:
            self.messages += message

    def digest(self) -> bytes:
        # hashlib's digest() finalizes a copy of its state, not the state itself: no copy here.
        # Typed, not wrapped in bytes(): the compiled code then checks the type instead of
        # calling the bytes constructor.
        digest: bytes = self._hash.digest()
        return digest

    def digest_with(self, data: bytes) -> bytes:
        """The hash as if `data` came next, without adding it (PSK binders)."""
        h = self._hash.copy()
        h.update(data)
        digest: bytes = h.digest()
        return digest

    def copy(self) -> Transcript:
        other = Transcript(self.hash_name)
        other._hash = self._hash.copy()
        return other

    def restart_for_hello_retry(self) -> None:
        """Replace ClientHello1 by the synthetic message_hash message (RFC 8446 4.4.1)."""
        first = self._hash.digest()
        self._hash = hashlib.new(self.hash_name)
        self._hash.update(bytes((254, 0, 0, len(first))) + first)


class KeySchedule:
    __slots__ = (
        "params", "hash_name", "_psk", "early_secret", "handshake_secret", "master_secret",
        "_handshake_key", "_master_key",
    )  # fmt: skip

    def __init__(self, params: SuiteParams, psk: bytes | None = None) -> None:
        self.params = params
        self.hash_name = params.hash_name
        self._psk = psk is not None
        if psk is None:
            self.early_secret = _no_psk_early_secret(self.hash_name, params.hash_length)
        else:
            self.early_secret = hkdf_extract(self.hash_name, b"\x00", psk)
        self.handshake_secret = b""
        self.master_secret = b""
        # The handshake and master secrets as HMAC keys (each derives three secrets).
        self._handshake_key: HmacKey | None = None
        self._master_key: HmacKey | None = None

    def derive_secret(self, secret: bytes, label: bytes, transcript_hash: bytes) -> bytes:
        return hkdf_expand_label(
            self.hash_name, secret, label, transcript_hash, self.params.hash_length
        )

    def _empty_hash(self) -> bytes:
        return _empty_hash(self.hash_name)

    def set_shared_secret(self, shared_secret: bytes) -> None:
        hash_name, hash_length = self.hash_name, self.params.hash_length
        if self._psk:
            derived = self.derive_secret(self.early_secret, b"derived", self._empty_hash())
            self.handshake_secret = hkdf_extract(hash_name, derived, shared_secret)
        else:
            extract = _no_psk_derived(hash_name, hash_length)
            self.handshake_secret = extract.digest(shared_secret)
        self._handshake_key = handshake_key = HmacKey(hash_name, self.handshake_secret)
        derived = handshake_key.expand_label(b"derived", self._empty_hash(), hash_length)
        self.master_secret = hkdf_extract(hash_name, derived, bytes(hash_length))
        self._master_key = HmacKey(hash_name, self.master_secret)

    def handshake_traffic_secrets(self, transcript_hash: bytes) -> tuple[bytes, bytes]:
        """(client, server) handshake traffic secrets, after ServerHello."""
        key = self._handshake_key
        assert key is not None
        length = self.params.hash_length
        return (
            key.expand_label(b"c hs traffic", transcript_hash, length),
            key.expand_label(b"s hs traffic", transcript_hash, length),
        )

    def application_traffic_secrets(self, transcript_hash: bytes) -> tuple[bytes, bytes]:
        """(client, server) application traffic secrets, after the server Finished."""
        key = self._master_key
        assert key is not None
        length = self.params.hash_length
        return (
            key.expand_label(b"c ap traffic", transcript_hash, length),
            key.expand_label(b"s ap traffic", transcript_hash, length),
        )

    def binder_key(self) -> bytes:
        """RFC 8446 7.1: the key a resumption PSK binder is computed with."""
        return self.derive_secret(self.early_secret, b"res binder", self._empty_hash())

    def resumption_master_secret(self, transcript_hash: bytes) -> bytes:
        key = self._master_key
        assert key is not None
        return key.expand_label(b"res master", transcript_hash, self.params.hash_length)

    def resumption_psk(self, resumption_master: bytes, ticket_nonce: bytes) -> bytes:
        return hkdf_expand_label(
            self.hash_name, resumption_master, b"resumption", ticket_nonce, self.params.hash_length
        )

    def finished_verify_data(self, base_key: bytes | HmacKey, transcript_hash: bytes) -> bytes:
        """`base_key`: a handshake traffic secret (or binder key), or its HmacKey when the
        record key was expanded from it already (one HMAC key setup less)."""
        length = self.params.hash_length
        if isinstance(base_key, HmacKey):
            finished_key = base_key.expand_label(b"finished", b"", length)
        else:
            finished_key = hkdf_expand_label(self.hash_name, base_key, b"finished", b"", length)
        return _hmac(self.hash_name, finished_key, transcript_hash)


def traffic_key_and_iv(
    params: SuiteParams, secret: bytes, prk: HmacKey | None = None
) -> tuple[bytes, bytes]:
    """`prk`: the HmacKey of `secret`, when the caller expands more from it (Finished)."""
    if prk is None:
        prk = HmacKey(params.hash_name, secret)
    return prk.expand_label(b"key", b"", params.key_length), prk.expand_label(b"iv", b"", IV_LENGTH)


def next_traffic_secret(params: SuiteParams, secret: bytes) -> bytes:
    return hkdf_expand_label(params.hash_name, secret, b"traffic upd", b"", params.hash_length)
