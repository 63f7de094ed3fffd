"""TLS 1.2 (RFC 5246) pieces the handshake and record layer need: the suites we allow, the
PRF, key-block expansion, Finished, and AEAD record protection (RFC 5288, RFC 7905).

Only ECDHE with AEAD: no CBC, no RSA key exchange, no DHE, no compression.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.codec import Reader
from outwork.tls.enums import CipherSuite12

AEAD_TAG = 16
EXPLICIT_NONCE = 8  # AES-GCM's per-record nonce part (RFC 5288 3)
MAX_PLAINTEXT = 1 << 14
VERIFY_DATA_LENGTH = 12
_MAX_SEQUENCE = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Suite12:
    suite: CipherSuite12
    signing: str  # "ecdsa" (ECDSA or EdDSA certificates, RFC 8422) or "rsa"
    hash_name: str
    key_length: int
    iv_length: int  # 4-byte implicit salt for GCM, 12-byte IV for ChaCha20-Poly1305
    aead: type[AESGCM] | type[ChaCha20Poly1305]


SUITES12: dict[int, Suite12] = {
    s.suite: s
    for s in (
        Suite12(
            CipherSuite12.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ecdsa", "sha256", 16, 4, AESGCM
        ),
        Suite12(CipherSuite12.ECDHE_RSA_WITH_AES_128_GCM_SHA256, "rsa", "sha256", 16, 4, AESGCM),
        Suite12(
            CipherSuite12.ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ecdsa", "sha384", 32, 4, AESGCM
        ),
        Suite12(CipherSuite12.ECDHE_RSA_WITH_AES_256_GCM_SHA384, "rsa", "sha384", 32, 4, AESGCM),
        Suite12(
            CipherSuite12.ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "ecdsa",
            "sha256",
            32,
            12,
            ChaCha20Poly1305,
        ),
        Suite12(
            CipherSuite12.ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            "rsa",
            "sha256",
            32,
            12,
            ChaCha20Poly1305,
        ),
    )
}


def prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """P_hash of RFC 5246 5 with the suite's hash."""
    seed = label + seed
    out = b""
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, hash_name)
        out += hmac.digest(secret, a + seed, hash_name)
    return out[:length]


def master_secret(
    suite: Suite12,
    premaster: bytes,
    client_random: bytes,
    server_random: bytes,
    session_hash: bytes | None,
) -> bytes:
    """RFC 7627 extended master secret when `session_hash` is given, else RFC 5246 8.1."""
    if session_hash is not None:
        return prf(suite.hash_name, premaster, b"extended master secret", session_hash, 48)
    return prf(suite.hash_name, premaster, b"master secret", client_random + server_random, 48)


def key_block(
    suite: Suite12, master: bytes, client_random: bytes, server_random: bytes
) -> tuple[bytes, bytes, bytes, bytes]:
    """(client key, server key, client IV, server IV)."""
    k, i = suite.key_length, suite.iv_length
    block = prf(
        suite.hash_name, master, b"key expansion", server_random + client_random, 2 * (k + i)
    )
    return block[:k], block[k : 2 * k], block[2 * k : 2 * k + i], block[2 * k + i :]


def finished_verify_data(
    suite: Suite12, master: bytes, server: bool, transcript_hash: bytes
) -> bytes:
    label = b"server finished" if server else b"client finished"
    return prf(suite.hash_name, master, label, transcript_hash, VERIFY_DATA_LENGTH)


def check_finished(
    suite: Suite12, master: bytes, from_server: bool, transcript_hash: bytes, body: bytes
) -> None:
    """Verify the peer's Finished (12 bytes of PRF output), in constant time."""
    r = Reader(body)
    received = r.fixed(VERIFY_DATA_LENGTH)
    r.expect_end("Finished")
    expected = finished_verify_data(suite, master, from_server, transcript_hash)
    if not hmac.compare_digest(received, expected):
        side = "server" if from_server else "client"
        raise TLSError(AlertDescription.DECRYPT_ERROR, f"{side} Finished does not verify")


def traffic_ciphers(
    suite: Suite12, master: bytes, client_random: bytes, server_random: bytes
) -> tuple[Tls12RecordCipher, Tls12RecordCipher]:
    """(client-to-server, server-to-client) record protection from the key block."""
    client_key, server_key, client_iv, server_iv = key_block(
        suite, master, client_random, server_random
    )
    return (
        Tls12RecordCipher(suite, client_key, client_iv),
        Tls12RecordCipher(suite, server_key, server_iv),
    )


class Tls12RecordCipher:
    """AEAD protection of one direction of a TLS 1.2 connection. Same interface as the TLS
    1.3 `RecordCipher`: `seal(type, data)` makes a whole record; `open(header, body)` returns
    (content type, plaintext), the type being the record's own."""

    __slots__ = ("_aead", "_iv", "_seq", "_gcm")

    def __init__(self, suite: Suite12, key: bytes, iv: bytes) -> None:
        self._aead = suite.aead(key)
        self._iv = iv
        self._seq = 0
        self._gcm = suite.aead is AESGCM

    def _take_sequence(self) -> int:
        seq = self._seq
        if seq >= _MAX_SEQUENCE:
            raise TLSError(AlertDescription.INTERNAL_ERROR, "sequence number exhausted")
        self._seq = seq + 1
        return seq

    def _nonce(self, seq_bytes: bytes) -> bytes:
        if self._gcm:
            return self._iv + seq_bytes
        return (int.from_bytes(self._iv, "big") ^ int.from_bytes(seq_bytes, "big")).to_bytes(
            12, "big"
        )

    def seal(self, content_type: int, data: bytes | bytearray | memoryview) -> bytes:
        seq_bytes = self._take_sequence().to_bytes(8, "big")
        aad = seq_bytes + bytes((content_type, 3, 3)) + len(data).to_bytes(2, "big")
        sealed = self._aead.encrypt(self._nonce(seq_bytes), bytes(data), aad)
        if self._gcm:
            sealed = seq_bytes + sealed  # the explicit nonce is the sequence number
        return bytes((content_type, 3, 3)) + len(sealed).to_bytes(2, "big") + sealed

    def seal_stream(self, content_type: int, data: bytes | bytearray) -> list[bytes]:
        view = memoryview(data)
        return [
            self.seal(content_type, view[i : i + MAX_PLAINTEXT])
            for i in range(0, len(data), MAX_PLAINTEXT)
        ]

    def sealed_size(self, size: int) -> int:
        explicit = EXPLICIT_NONCE if self._gcm else 0
        return size + -(-size // MAX_PLAINTEXT) * (5 + explicit + AEAD_TAG)

    def seal_into(self, content_type: int, source: memoryview, out: bytearray) -> int:
        """As the TLS 1.3 `RecordCipher.seal_into`: records of `source[:-1]` sealed into `out`
        without a copy (TLS 1.2 has no inner type byte: the spare last byte is not touched)."""
        size = len(source) - 1
        out_view = memoryview(out)
        explicit = EXPLICIT_NONCE if self._gcm else 0
        pos = 0
        for start in range(0, size, MAX_PLAINTEXT):
            end = min(start + MAX_PLAINTEXT, size)
            length = end - start
            seq_bytes = self._take_sequence().to_bytes(8, "big")
            prefix = bytes((content_type, 3, 3))
            aad = seq_bytes + prefix + length.to_bytes(2, "big")
            body = pos + 5 + explicit
            out_view[pos:body] = (
                prefix + (explicit + length + AEAD_TAG).to_bytes(2, "big") + seq_bytes[:explicit]
            )
            pos = body + length + AEAD_TAG
            self._aead.encrypt_into(
                self._nonce(seq_bytes), source[start:end], aad, out_view[body:pos]
            )
        return pos

    def open(self, header: bytes, body: bytes | memoryview) -> tuple[int, bytes]:
        content_type = header[0]
        overhead = AEAD_TAG + (EXPLICIT_NONCE if self._gcm else 0)
        if len(body) < overhead:
            raise TLSError(AlertDescription.BAD_RECORD_MAC, "record too short to be protected")
        length = len(body) - overhead
        if length > MAX_PLAINTEXT:
            raise TLSError(AlertDescription.RECORD_OVERFLOW, "TLS 1.2 plaintext over 2^14")
        seq_bytes = self._take_sequence().to_bytes(8, "big")
        aad = seq_bytes + bytes((content_type, 3, 3)) + length.to_bytes(2, "big")
        if self._gcm:
            nonce = self._iv + bytes(body[:EXPLICIT_NONCE])
            body = body[EXPLICIT_NONCE:]
        else:
            nonce = self._nonce(seq_bytes)
        try:
            return content_type, self._aead.decrypt(nonce, body, aad)
        except InvalidTag as exc:
            raise TLSError(AlertDescription.BAD_RECORD_MAC, "record authentication failed") from exc

    def rewind(self) -> None:
        self._seq -= 1
