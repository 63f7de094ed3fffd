"""A raw-socket TLS test client: hand-built records and ClientHellos, nothing hidden.

Independent of `outwork.tls` on purpose, so the engine's bugs cannot cancel out in the test.
Used to send what no well-behaved client sends: heartbeats claiming more than they carry,
truncated or oversized records, garbage.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# Content types (RFC 8446 5.1, RFC 6520 for heartbeat).
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24

# Handshake types.
CLIENT_HELLO = 1
SERVER_HELLO = 2

# Extensions.
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_SIGNATURE_ALGORITHMS = 13
EXT_HEARTBEAT = 15
EXT_SUPPORTED_VERSIONS = 43
EXT_PSK_KEY_EXCHANGE_MODES = 45
EXT_KEY_SHARE = 51

X25519_GROUP = 0x001D
SECP256R1_GROUP = 0x0017
SECP384R1_GROUP = 0x0018

TLS13_SUITES = (0x1301, 0x1302, 0x1303)
SIGNATURE_SCHEMES = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0807, 0x0401, 0x0501)

# A HelloRetryRequest is a ServerHello with this random (RFC 8446 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")

ALERT_NAMES = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    47: "illegal_parameter",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    80: "internal_error",
    109: "missing_extension",
    110: "unsupported_extension",
}


def u8(v: int) -> bytes:
    return struct.pack("!B", v)


def u16(v: int) -> bytes:
    return struct.pack("!H", v)


def u24(v: int) -> bytes:
    return struct.pack("!I", v)[1:]


def vec8(b: bytes) -> bytes:
    return u8(len(b)) + b


def vec16(b: bytes) -> bytes:
    return u16(len(b)) + b


def record(content_type: int, payload: bytes, version: int = 0x0303) -> bytes:
    return u8(content_type) + u16(version) + u16(len(payload)) + payload


def handshake(msg_type: int, body: bytes) -> bytes:
    return u8(msg_type) + u24(len(body)) + body


def extension(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + vec16(data)


@dataclass
class ClientHello:
    message: bytes  # the handshake message (type, length, body)
    private_key: x25519.X25519PrivateKey

    @property
    def record(self) -> bytes:
        return record(HANDSHAKE, self.message, version=0x0301)


def client_hello(
    server_name: str | None = "localhost",
    heartbeat_mode: int | None = 1,
    cipher_suites: tuple[int, ...] = TLS13_SUITES,
    extra_extensions: bytes = b"",
) -> ClientHello:
    """A TLS 1.3 ClientHello with an x25519 key share (so no HelloRetryRequest).

    `heartbeat_mode` 1 is peer_allowed_to_send (RFC 6520 2); None leaves the extension out.
    """
    key = x25519.X25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    exts = b""
    if server_name is not None:
        name = server_name.encode()
        exts += extension(EXT_SERVER_NAME, vec16(u8(0) + vec16(name)))
    exts += extension(
        EXT_SUPPORTED_GROUPS, vec16(b"".join(u16(g) for g in (X25519_GROUP, SECP256R1_GROUP)))
    )
    exts += extension(EXT_SIGNATURE_ALGORITHMS, vec16(b"".join(u16(s) for s in SIGNATURE_SCHEMES)))
    exts += extension(EXT_SUPPORTED_VERSIONS, vec8(u16(0x0304)))
    exts += extension(EXT_PSK_KEY_EXCHANGE_MODES, vec8(u8(1)))
    exts += extension(EXT_KEY_SHARE, vec16(u16(X25519_GROUP) + vec16(public)))
    if heartbeat_mode is not None:
        exts += extension(EXT_HEARTBEAT, u8(heartbeat_mode))
    exts += extra_extensions
    body = (
        u16(0x0303)
        + os.urandom(32)
        + vec8(os.urandom(32))  # legacy_session_id: middlebox compatibility mode
        + vec16(b"".join(u16(c) for c in cipher_suites))
        + vec8(b"\x00")
        + vec16(exts)
    )
    return ClientHello(handshake(CLIENT_HELLO, body), key)


def heartbeat_request(payload_length: int, payload: bytes, padding: int = 16) -> bytes:
    """A HeartbeatMessage (type 1 = request). Honest when payload_length == len(payload)."""
    return u8(1) + u16(payload_length) + payload + os.urandom(padding)


@dataclass(frozen=True)
class Record:
    content_type: int
    version: int
    payload: bytes

    def describe(self) -> str:
        if self.content_type == ALERT and len(self.payload) == 2:
            level, desc = self.payload
            return f"alert(level={level}, {ALERT_NAMES.get(desc, desc)})"
        return f"record(type={self.content_type}, len={len(self.payload)})"


@dataclass
class Received:
    data: bytes
    eof: bool  # the peer closed (FIN or RST) before the deadline

    def records(self) -> tuple[list[Record], bytes]:
        """Whole records, and any trailing bytes that are not a whole record."""
        out = []
        buf = self.data
        while len(buf) >= 5:
            ctype, version, length = struct.unpack("!BHH", buf[:5])
            if len(buf) < 5 + length:
                break
            out.append(Record(ctype, version, buf[5 : 5 + length]))
            buf = buf[5 + length :]
        return out, buf


def receive(
    sock: socket.socket, total_timeout: float = 5.0, idle_timeout: float | None = None
) -> Received:
    """Read until the peer closes, `total_timeout` passes, or nothing comes for `idle_timeout`."""
    deadline = time.monotonic() + total_timeout
    chunks = []
    eof = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock.settimeout(min(remaining, idle_timeout) if idle_timeout else remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except OSError:  # reset, or not connected any more: the peer is gone
            eof = True
            break
        if not chunk:
            eof = True
            break
        chunks.append(chunk)
    return Received(b"".join(chunks), eof)


def find_server_hello(records: list[Record]) -> bytes | None:
    """The ServerHello body from the first handshake records, if they hold one."""
    hs = b"".join(r.payload for r in records if r.content_type == HANDSHAKE)
    if len(hs) >= 4 and hs[0] == SERVER_HELLO:
        length = int.from_bytes(hs[1:4], "big")
        if len(hs) >= 4 + length:
            return hs[4 : 4 + length]
    return None


def connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
