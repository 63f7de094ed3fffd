"""A minimal TLS 1.3 client of the tests' own, to speak inside the encrypted session.

Independent of `outwork.tls`, so a key-schedule or record bug in the engine cannot hide behind
the same bug in its own client. One suite (TLS_AES_128_GCM_SHA256), one group (x25519), and it
checks the server's Finished (so the key schedule is right) but not its certificate: this is a
probe, not a client anyone should trust. What it is for: sending crafted records, heartbeats in
particular, under the handshake keys or the application keys, and reading the answers
decrypted.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
import time
from typing import NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from . import tls_raw

SUITE = 0x1301  # TLS_AES_128_GCM_SHA256
HASH_LEN = 32
KEY_LEN = 16

ENCRYPTED_EXTENSIONS = 8
CERTIFICATE = 11
CERTIFICATE_VERIFY = 15
FINISHED = 20
NEW_SESSION_TICKET = 4


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def hkdf_expand_label(secret: bytes, label: str, context: bytes, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def derive_secret(secret: bytes, label: str, transcript: bytes) -> bytes:
    return hkdf_expand_label(secret, label, hashlib.sha256(transcript).digest(), HASH_LEN)


class RecordKeys:
    def __init__(self, secret: bytes) -> None:
        self.aead = AESGCM(hkdf_expand_label(secret, "key", b"", KEY_LEN))
        self.iv = int.from_bytes(hkdf_expand_label(secret, "iv", b"", 12), "big")
        self.seq = 0

    def _nonce(self) -> bytes:
        nonce = (self.iv ^ self.seq).to_bytes(12, "big")
        self.seq += 1
        return nonce

    def seal(self, content_type: int, content: bytes) -> bytes:
        inner = content + bytes([content_type])
        header = struct.pack("!BHH", tls_raw.APPLICATION_DATA, 0x0303, len(inner) + 16)
        return header + self.aead.encrypt(self._nonce(), inner, header)

    def open(self, record: tls_raw.Record) -> tuple[int, bytes]:
        header = struct.pack("!BHH", record.content_type, record.version, len(record.payload))
        inner = self.aead.decrypt(self._nonce(), record.payload, header).rstrip(b"\0")
        return inner[-1], inner[:-1]


class Inner(NamedTuple):
    content_type: int
    content: bytes
    wire_length: int  # the record's size on the wire, header included


class HandshakeFailed(AssertionError):
    pass


class MiniTLS13Client:
    """Blocking, over a connected socket. `handshake(finish=False)` stops after the server's
    flight, with the client still holding its handshake keys (Finished not sent)."""

    def __init__(self, sock: socket.socket, server_name: str = "localhost") -> None:
        self.sock = sock
        self.server_name = server_name
        self._buffer = b""
        self.write: RecordKeys | None = None
        self.read: RecordKeys | None = None
        self.established = False
        self.received_after_handshake: list[tuple[int, bytes]] = []

    # --- records ---

    def _read_record(self, deadline: float) -> tls_raw.Record | None:
        while True:
            if len(self._buffer) >= 5:
                length = struct.unpack("!H", self._buffer[3:5])[0]
                if len(self._buffer) >= 5 + length:
                    ctype, version = self._buffer[0], struct.unpack("!H", self._buffer[1:3])[0]
                    payload = self._buffer[5 : 5 + length]
                    self._buffer = self._buffer[5 + length :]
                    return tls_raw.Record(ctype, version, payload)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            except OSError:
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk

    def send(self, content_type: int, content: bytes) -> bytes:
        """Protect `content` as `content_type` with the current write keys and send it."""
        assert self.write is not None
        record = self.write.seal(content_type, content)
        self.sock.sendall(record)
        return record

    def receive(self, timeout: float) -> tuple[list[Inner], bool]:
        """Records, decrypted when protected, until the peer closes or `timeout` passes; and
        whether it closed."""
        assert self.read is not None
        out: list[Inner] = []
        deadline = time.monotonic() + timeout
        while True:
            record = self._read_record(deadline)
            if record is None:
                return out, time.monotonic() < deadline
            wire = 5 + len(record.payload)
            if record.content_type == tls_raw.APPLICATION_DATA:
                out.append(Inner(*self.read.open(record), wire))
            else:
                out.append(Inner(record.content_type, record.payload, wire))

    # --- handshake ---

    def handshake(self, finish: bool = True, heartbeat_mode: int | None = 1) -> None:
        hello = tls_raw.client_hello(
            self.server_name, heartbeat_mode=heartbeat_mode, cipher_suites=(SUITE,)
        )
        self.sock.sendall(hello.record)
        transcript = hello.message
        deadline = time.monotonic() + 10

        hs = b""
        while True:  # the ServerHello, in plaintext
            record = self._read_record(deadline)
            if record is None:
                raise HandshakeFailed("no ServerHello")
            if record.content_type == tls_raw.ALERT:
                raise HandshakeFailed(f"server alert: {record.describe()}")
            if record.content_type == tls_raw.HANDSHAKE:
                hs += record.payload
                if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                    break
        length = int.from_bytes(hs[1:4], "big")
        server_hello, rest = hs[: 4 + length], hs[4 + length :]
        if rest:
            raise HandshakeFailed("data after the ServerHello in the same record")
        body = server_hello[4:]
        if body[2:34] == tls_raw.HRR_RANDOM:
            raise HandshakeFailed("HelloRetryRequest for an x25519 share")
        transcript += server_hello
        peer_share = self._x25519_share(body)
        shared = hello.private_key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_share))

        zeros = bytes(HASH_LEN)
        early = hkdf_extract(zeros, zeros)
        handshake_secret = hkdf_extract(derive_secret(early, "derived", b""), shared)
        c_hs = derive_secret(handshake_secret, "c hs traffic", transcript)
        s_hs = derive_secret(handshake_secret, "s hs traffic", transcript)
        master = hkdf_extract(derive_secret(handshake_secret, "derived", b""), zeros)
        self.read = RecordKeys(s_hs)
        self.write = RecordKeys(c_hs)

        hs = b""
        while True:  # EncryptedExtensions .. Finished, protected
            record = self._read_record(deadline)
            if record is None:
                raise HandshakeFailed("server flight incomplete")
            if record.content_type == tls_raw.CHANGE_CIPHER_SPEC:
                continue
            if record.content_type != tls_raw.APPLICATION_DATA:
                raise HandshakeFailed(f"unexpected {record.describe()}")
            ctype, content = self.read.open(record)
            if ctype != tls_raw.HANDSHAKE:
                raise HandshakeFailed(f"inner type {ctype} during the handshake: {content!r}")
            hs += content
            finished = False
            while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                n = 4 + int.from_bytes(hs[1:4], "big")
                msg, hs = hs[:n], hs[n:]
                if msg[0] == FINISHED:
                    key = hkdf_expand_label(s_hs, "finished", b"", HASH_LEN)
                    expected = hmac.new(key, hashlib.sha256(transcript).digest(), "sha256")
                    if not hmac.compare_digest(expected.digest(), msg[4:]):
                        raise HandshakeFailed("server Finished does not verify")
                    finished = True
                transcript += msg
            if finished:
                break

        self._client_finished_key = hkdf_expand_label(c_hs, "finished", b"", HASH_LEN)
        self._transcript = transcript
        self._c_ap = derive_secret(master, "c ap traffic", transcript)
        # The server writes with its application keys from its Finished on (RFC 8446 7.2);
        # our writes stay on the handshake keys until our own Finished.
        self.read = RecordKeys(derive_secret(master, "s ap traffic", transcript))
        if finish:
            self.finish()

    def finish(self) -> None:
        verify = hmac.new(
            self._client_finished_key, hashlib.sha256(self._transcript).digest(), "sha256"
        ).digest()
        self.sock.sendall(tls_raw.record(tls_raw.CHANGE_CIPHER_SPEC, b"\x01"))
        self.send(tls_raw.HANDSHAKE, tls_raw.handshake(FINISHED, verify))
        self.write = RecordKeys(self._c_ap)
        self.established = True

    @staticmethod
    def _x25519_share(server_hello: bytes) -> bytes:
        pos = 2 + 32
        pos += 1 + server_hello[pos]  # legacy_session_id_echo
        pos += 2 + 1  # cipher_suite, legacy_compression_method
        end = pos + 2 + int.from_bytes(server_hello[pos : pos + 2], "big")
        pos += 2
        while pos < end:
            ext_type = int.from_bytes(server_hello[pos : pos + 2], "big")
            ext_len = int.from_bytes(server_hello[pos + 2 : pos + 4], "big")
            data = server_hello[pos + 4 : pos + 4 + ext_len]
            if ext_type == tls_raw.EXT_KEY_SHARE:
                group = int.from_bytes(data[:2], "big")
                if group != tls_raw.X25519_GROUP:
                    raise HandshakeFailed(f"server chose group {group:#x}")
                return data[4 : 4 + int.from_bytes(data[2:4], "big")]
            pos += 4 + ext_len
        raise HandshakeFailed("no key_share in the ServerHello")
