"""Record layer: framing limits and TLS 1.3 record protection (RFC 8446 5)."""

from __future__ import annotations

from typing import Final

from cryptography.exceptions import InvalidTag

from outwork.tls.alerts import AlertDescription, TLSError, unexpected_message
from outwork.tls.enums import ContentType
from outwork.tls.keyschedule import HmacKey, SuiteParams, traffic_key_and_iv

_TYPE_BYTE: Final = [bytes((i,)) for i in range(256)]

RECORD_HEADER: Final = 5
MAX_PLAINTEXT: Final = 1 << 14  # TLSPlaintext.length and TLSInnerPlaintext content
MAX_CIPHERTEXT: Final = MAX_PLAINTEXT + 256  # TLSCiphertext.length, TLS 1.3
AEAD_TAG: Final = 16
KNOWN_CONTENT_TYPES: Final = frozenset(int(t) for t in ContentType)
# The first byte of the largest sequence number we accept before refusing to go on.
MAX_SEQUENCE: Final = (1 << 64) - 1


def sealed_size(size: int) -> int:
    """Bytes of the records that carry `size` bytes of content (TLS 1.3: 2^14 per record)."""
    return size + -(-size // MAX_PLAINTEXT) * (RECORD_HEADER + 1 + AEAD_TAG)


# The header of a full record (2^14 bytes of content), the bulk path's usual one, made once.
_FULL_RECORD: Final = MAX_PLAINTEXT + 1 + AEAD_TAG
_HEADERS: Final = {_FULL_RECORD: b"\x17\x03\x03" + _FULL_RECORD.to_bytes(2, "big")}


# A protected record's header by its length (at most MAX_CIPHERTEXT), made on first use: a list
# index instead of a to_bytes and a concatenation per record (~500 instructions). Bounded by
# the lengths there are (one pointer each, 130 KiB, and the headers made).
_RECORD_HEADERS: Final[list[bytes | None]] = [None] * (MAX_CIPHERTEXT + 1)


def record_header(length: int) -> bytes:
    """The header of a protected record (TLS 1.3's outer type and version) of `length` bytes."""
    header = _RECORD_HEADERS[length]
    if header is None:
        header = _RECORD_HEADERS[length] = b"\x17\x03\x03" + length.to_bytes(2, "big")
    return header


def record_overflow(reason: str) -> TLSError:
    return TLSError(AlertDescription.RECORD_OVERFLOW, reason)


def frame_plaintext(content_type: int, data: bytes) -> bytes:
    """Plaintext records (ClientHello, ServerHello, CCS, early alerts), split at 2^14."""
    out = bytearray()
    for start in range(0, max(len(data), 1), MAX_PLAINTEXT):
        chunk = data[start : start + MAX_PLAINTEXT]
        out += bytes((content_type, 3, 3)) + len(chunk).to_bytes(2, "big") + chunk
    return bytes(out)


class RecordCipher:
    """One direction's AEAD state for one traffic secret. The AEAD object is made once per
    key; the nonce is the IV XOR the sequence number, computed on integers."""

    __slots__ = ("_aead", "_iv", "_seq", "secret")

    def __init__(self, params: SuiteParams, secret: bytes, prk: HmacKey | None = None) -> None:
        key, iv = traffic_key_and_iv(params, secret, prk)
        self._aead = params.aead(key)
        self._iv = int.from_bytes(iv, "big")
        self._seq = 0
        self.secret = secret

    def _next_nonce(self) -> bytes:
        seq = self._seq
        if seq >= MAX_SEQUENCE:
            raise TLSError(AlertDescription.INTERNAL_ERROR, "sequence number exhausted")
        self._seq = seq + 1
        return (self._iv ^ seq).to_bytes(12, "big")

    def seal(self, content_type: int, data: bytes | bytearray | memoryview) -> bytes:
        """One TLSCiphertext record; `data` must be at most 2^14 bytes."""
        # bytes(data) on bytes is a call through the type (~800 instructions): only the
        # other buffers are converted.
        if isinstance(data, bytes):
            inner = data + _TYPE_BYTE[content_type]
        else:
            inner = bytes(data) + _TYPE_BYTE[content_type]
        return self._seal_inner(inner)

    def seal_joined(self, content_type: int, pieces: list[bytes | bytearray | memoryview]) -> bytes:
        """`seal` of `pieces` joined (at most 2^14 bytes in all; a response head and its
        body): the inner plaintext is made by one join with the type byte, not by a join and
        then a copy with it. The type byte is appended to `pieces`."""
        pieces.append(_TYPE_BYTE[content_type])
        return self._seal_inner(b"".join(pieces))

    def _seal_inner(self, inner: bytes) -> bytes:
        """The record of one inner plaintext (content, then its type byte)."""
        header = record_header(len(inner) + AEAD_TAG)
        seq = self._seq
        if seq >= MAX_SEQUENCE:
            raise TLSError(AlertDescription.INTERNAL_ERROR, "sequence number exhausted")
        self._seq = seq + 1
        nonce = (self._iv ^ seq).to_bytes(12, "big")
        return header + self._aead.encrypt(nonce, inner, header)

    def sealed_size(self, size: int) -> int:
        return sealed_size(size)

    def rewind(self) -> None:
        """Give back the sequence number of a record that failed to open (skipped 0-RTT)."""
        self._seq -= 1

    def seal_stream(
        self, content_type: int, data: bytes | bytearray
    ) -> list[bytes] | list[bytearray]:
        if len(data) <= MAX_PLAINTEXT:
            return [self.seal(content_type, data)]
        return [self._seal_many(content_type, data)]

    def _seal_many(self, content_type: int, data: bytes | bytearray) -> bytearray:
        """Records of 2^14 bytes (the last one shorter) sealed into one buffer: each record's
        ciphertext is encrypted in place (`encrypt_into`), so the bulk path copies the data
        once (into the inner plaintext) instead of once per slice, concatenation and join."""
        size = len(data)
        records = -(-size // MAX_PLAINTEXT)
        out = bytearray(size + records * (RECORD_HEADER + 1 + AEAD_TAG))
        out_view = memoryview(out)
        source = memoryview(data)
        # The inner plaintext (content, then its type byte): one buffer, reused per record.
        inner = bytearray(MAX_PLAINTEXT + 1)
        inner_view = memoryview(inner)
        encrypt_into = self._aead.encrypt_into
        pos = 0
        for start in range(0, size, MAX_PLAINTEXT):
            chunk = source[start : start + MAX_PLAINTEXT]
            taken = len(chunk)
            length = taken + 1 + AEAD_TAG
            header = b"\x17\x03\x03" + length.to_bytes(2, "big")
            inner_view[:taken] = chunk
            inner[taken] = content_type
            seq = self._seq
            if seq >= MAX_SEQUENCE:
                raise TLSError(AlertDescription.INTERNAL_ERROR, "sequence number exhausted")
            self._seq = seq + 1
            body = pos + RECORD_HEADER
            out_view[pos:body] = header
            end = body + length
            encrypt_into(
                (self._iv ^ seq).to_bytes(12, "big"),
                inner_view[: taken + 1],
                header,
                out_view[body:end],
            )
            pos = end
        return out

    def seal_into(self, content_type: int, source: memoryview, out: bytearray) -> int:
        """Records of `source[:-1]` (2^14 bytes each, the last one shorter) sealed into `out`
        (at least `sealed_size(len(source) - 1)` bytes); returns the bytes written.

        No copy of the content: each record's inner plaintext (content, then its type byte) is
        encrypted straight from `source`, whose byte after each record's content is borrowed
        for the type byte and given back. So `source` must be writable, and its last byte is
        that spare byte after the content (given back too); nothing else may read `source`
        meanwhile (it runs to the end in one call)."""
        size = len(source) - 1
        out_view = memoryview(out)
        encrypt_into = self._aead.encrypt_into
        iv = self._iv
        pos = 0
        for start in range(0, size, MAX_PLAINTEXT):
            end = min(start + MAX_PLAINTEXT, size)
            length = end - start + 1 + AEAD_TAG
            header = _HEADERS.get(length) or b"\x17\x03\x03" + length.to_bytes(2, "big")
            seq = self._seq
            if seq >= MAX_SEQUENCE:
                raise TLSError(AlertDescription.INTERNAL_ERROR, "sequence number exhausted")
            self._seq = seq + 1
            body = pos + RECORD_HEADER
            out_view[pos:body] = header
            borrowed = source[end]
            source[end] = content_type
            try:
                encrypt_into(
                    (iv ^ seq).to_bytes(12, "big"),
                    source[start : end + 1],
                    header,
                    out_view[body : body + length],
                )
            finally:
                source[end] = borrowed
            pos = body + length
        return pos

    def open(self, header: bytes, ciphertext: bytes | memoryview) -> tuple[int, bytes]:
        """Decrypt one record; returns (inner content type, content)."""
        if len(ciphertext) < AEAD_TAG + 1:
            raise TLSError(AlertDescription.BAD_RECORD_MAC, "record too short to be protected")
        try:
            inner = self._aead.decrypt(self._next_nonce(), ciphertext, header)
        except InvalidTag as exc:
            raise TLSError(AlertDescription.BAD_RECORD_MAC, "record authentication failed") from exc
        if len(inner) > MAX_PLAINTEXT + 1:
            raise record_overflow("inner plaintext longer than 2^14 + 1")
        content_type = inner[-1]
        if content_type:
            return content_type, inner[:-1]
        # The content type is the last non-zero byte; zeros after it are padding.
        stripped = inner.rstrip(b"\x00")
        if not stripped:
            raise unexpected_message("protected record with no content type")
        return stripped[-1], stripped[:-1]
