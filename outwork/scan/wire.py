"""Sans-I/O pieces of the backend scanner: ClientHellos it crafts, and bounded readers for what
comes back (records, handshake messages, ServerHello, ServerKeyExchange, alerts, heartbeats).

outwork's own engine refuses TLS 1.0/1.1, CBC and compression on purpose, so the scanner
writes its hellos by hand. Every parse goes through `outwork.tls.codec.Reader`; every buffer
has a named cap. A heartbeat record is never kept: the reader keeps its 3-byte header and the
count of the bytes after it, and drops the rest as it arrives (those bytes may be someone
else's memory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from outwork.tls.alerts import TLSError
from outwork.tls.codec import Reader, Writer
from outwork.tls.enums import ContentType, ExtensionType, HandshakeType, NamedGroup
from outwork.tls.groups import KeyShare

# A record's length field may say up to 2^14 + 2048 (RFC 5246 6.2.3, the largest ciphertext).
MAX_RECORD_LENGTH = 2**14 + 2048
# Handshake bytes buffered per connection: a long certificate chain fits, a flood does not.
MAX_HANDSHAKE_BUFFER = 256 * 1024
RECORD_HEADER = 5

TLS10, TLS11, TLS12, TLS13 = 0x0301, 0x0302, 0x0303, 0x0304
VERSION_NAMES = {TLS10: "1.0", TLS11: "1.1", TLS12: "1.2", TLS13: "1.3"}

HEARTBEAT_REQUEST = 1
HEARTBEAT_RESPONSE = 2
HEARTBEAT_HEADER = 3  # type (1) and payload_length (2)

ALERT_UNEXPECTED_MESSAGE = 10
ALERT_BAD_RECORD_MAC = 20
ALERT_DECRYPTION_FAILED = 21

COMPRESSION_NULL = 0
COMPRESSION_DEFLATE = 1

# Cipher suites offered to TLS 1.0-1.2 servers: what servers in the wild still accept,
# including the weak ones, so the scan can say they are there.
SUITES_TLS12: dict[int, str] = {
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0x009E: "DHE-RSA-AES128-GCM-SHA256",
    0x009F: "DHE-RSA-AES256-GCM-SHA384",
    0xCCAA: "DHE-RSA-CHACHA20-POLY1305",
    0xC023: "ECDHE-ECDSA-AES128-SHA256",
    0xC024: "ECDHE-ECDSA-AES256-SHA384",
    0xC027: "ECDHE-RSA-AES128-SHA256",
    0xC028: "ECDHE-RSA-AES256-SHA384",
    0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC00A: "ECDHE-ECDSA-AES256-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA",
    0xC014: "ECDHE-RSA-AES256-SHA",
    0x0067: "DHE-RSA-AES128-SHA256",
    0x006B: "DHE-RSA-AES256-SHA256",
    0x0033: "DHE-RSA-AES128-SHA",
    0x0039: "DHE-RSA-AES256-SHA",
    0x009C: "AES128-GCM-SHA256",
    0x009D: "AES256-GCM-SHA384",
    0x003C: "AES128-SHA256",
    0x003D: "AES256-SHA256",
    0x002F: "AES128-SHA",
    0x0035: "AES256-SHA",
    0x0041: "CAMELLIA128-SHA",
    0x0084: "CAMELLIA256-SHA",
    0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0x0016: "EDH-RSA-DES-CBC3-SHA",
    0x000A: "DES-CBC3-SHA",
    0xC011: "ECDHE-RSA-RC4-SHA",
    0x0005: "RC4-SHA",
    0x0004: "RC4-MD5",
    0x0009: "DES-CBC-SHA",
    0x0003: "EXP-RC4-MD5",
    0x0008: "EXP-DES-CBC-SHA",
    0x0001: "NULL-MD5",
    0x0002: "NULL-SHA",
    0x003B: "NULL-SHA256",
}
ECDHE_SUITES = tuple(s for s, name in SUITES_TLS12.items() if name.startswith("ECDHE-"))
# Names that make a suite weak: no forward secrecy is tolerated, these are not.
WEAK_SUITE_MARKS = ("RC4", "DES-CBC", "EXP-", "NULL")

SUITES_TLS13: dict[int, str] = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
}

GROUPS: dict[int, str] = {
    0x001D: "x25519",
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001E: "x448",
    0x11EC: "X25519MLKEM768",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x0102: "ffdhe4096",
    0x0103: "ffdhe6144",
    0x0104: "ffdhe8192",
}
X25519 = 0x001D
# An ECDSA certificate's curve (as `result.certificate_info` names the key) as a group.
CURVE_GROUPS = {"EC secp256r1": 0x0017, "EC secp384r1": 0x0018, "EC secp521r1": 0x0019}
X25519_SHARE_LENGTH = 32
# Groups whose key shares the engine can make; for the others the probe asks for an HRR.
SHAREABLE_GROUPS = frozenset(int(g) for g in NamedGroup)

SIGNATURE_SCHEMES = (
    0x0403,
    0x0503,
    0x0603,
    0x0807,
    0x0808,
    0x0804,
    0x0805,
    0x0806,
    0x0401,
    0x0501,
    0x0601,
    0x0203,
    0x0201,
)

HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


@dataclass(frozen=True)
class HelloSpec:
    """What a crafted ClientHello offers."""

    version: int  # legacy_version; TLS13 means legacy 1.2 plus supported_versions [1.3]
    suites: tuple[int, ...]
    groups: tuple[int, ...] = tuple(GROUPS)
    server_name: str | None = None
    heartbeat: bool = True  # the heartbeat extension, mode peer_allowed_to_send
    renegotiation_info: bool = True  # the empty RFC 5746 extension of an initial handshake
    compression: tuple[int, ...] = (COMPRESSION_NULL,)
    # TLS 1.3: the group of the one key share sent; None sends an empty list, which asks for
    # a HelloRetryRequest naming the server's choice (RFC 8446 4.2.8).
    share_group: int | None = 0x001D


def key_share(group: int) -> bytes:
    """A valid public key share for `group` (the engine's key generation; the private half
    is dropped: the scanner never completes these handshakes)."""
    if group == X25519:
        return os.urandom(X25519_SHARE_LENGTH)  # any 32 bytes are an X25519 public value
    return KeyShare(NamedGroup(group)).share


def _ext(w: Writer, ext_type: int, body: bytes) -> None:
    w.uint16(ext_type)
    w.opaque(2, body)


def _u16_list(values: tuple[int, ...], width: int = 2) -> bytes:
    w = Writer()
    with w.block(width):
        for v in values:
            w.uint16(v)
    return w.getvalue()


def client_hello(spec: HelloSpec) -> bytes:
    """The ClientHello handshake message (type, length, body) for `spec`."""
    legacy = TLS12 if spec.version == TLS13 else spec.version
    ext = Writer()
    if spec.server_name:
        name = Writer()
        with name.block(2):
            name.uint8(0)
            name.opaque(2, spec.server_name.encode("idna"))
        _ext(ext, ExtensionType.SERVER_NAME, name.getvalue())
    _ext(ext, ExtensionType.SUPPORTED_GROUPS, _u16_list(spec.groups))
    _ext(ext, ExtensionType.EC_POINT_FORMATS, b"\x01\x00")
    _ext(ext, ExtensionType.SIGNATURE_ALGORITHMS, _u16_list(SIGNATURE_SCHEMES))
    _ext(ext, ExtensionType.EXTENDED_MASTER_SECRET, b"")
    _ext(ext, ExtensionType.SESSION_TICKET, b"")
    if spec.heartbeat:
        _ext(ext, ExtensionType.HEARTBEAT, b"\x01")
    if spec.renegotiation_info:
        _ext(ext, ExtensionType.RENEGOTIATION_INFO, b"\x00")
    if spec.version == TLS13:
        _ext(ext, ExtensionType.SUPPORTED_VERSIONS, b"\x02\x03\x04")
        _ext(ext, ExtensionType.PSK_KEY_EXCHANGE_MODES, b"\x01\x01")
        shares = Writer()
        with shares.block(2):
            if spec.share_group is not None:
                shares.uint16(spec.share_group)
                shares.opaque(2, key_share(spec.share_group))
        _ext(ext, ExtensionType.KEY_SHARE, shares.getvalue())
    body = Writer()
    body.uint16(legacy)
    body.raw(os.urandom(32))
    body.opaque(1, os.urandom(32) if spec.version == TLS13 else b"")
    body.raw(_u16_list(spec.suites))
    body.opaque(1, bytes(spec.compression))
    body.opaque(2, ext.getvalue())
    message = Writer()
    message.uint8(HandshakeType.CLIENT_HELLO)
    message.opaque(3, body.getvalue())
    return message.getvalue()


def record(content_type: int, payload: bytes, version: int = TLS10) -> bytes:
    """One plaintext record (the first flight says 1.0 on the record layer, as browsers do)."""
    w = Writer()
    w.uint8(content_type)
    w.uint16(min(version, TLS12))
    w.opaque(2, payload)
    return w.getvalue()


def heartbeat_request(claimed: int, payload: bytes) -> bytes:
    """A HeartbeatMessage request whose payload_length claims `claimed` bytes; it carries only
    `payload` and no padding (a lie when claimed > len(payload): the Heartbleed probe)."""
    w = Writer()
    w.uint8(HEARTBEAT_REQUEST)
    w.uint16(claimed)
    w.raw(payload)
    return w.getvalue()


def leaked_in_response(header: bytes, carried: int, size: int) -> int:
    """Bytes a heartbeat response returned beyond what the request carried.

    `header` is the response's first 3 bytes, `size` the length of the whole message; the
    response's payload is min(payload_length, what follows) bytes, of which `carried` were ours.
    Not a response (or too short to be one): 0.
    """
    if len(header) < HEARTBEAT_HEADER or header[0] != HEARTBEAT_RESPONSE:
        return 0
    claimed = (header[1] << 8) | header[2]
    payload = min(claimed, max(size - HEARTBEAT_HEADER, 0))
    return max(payload - carried, 0)


# ----- reading what the server sends --------------------------------------------------------


class ScanProtocolError(Exception):
    """The peer's bytes are not TLS as the scanner expects it (or exceed a cap)."""


@dataclass
class Record:
    content_type: int
    version: int
    fragment: bytes  # for a heartbeat record: only its first 3 bytes
    length: int  # the record's length field


class RecordReader:
    """Splits a byte stream into plaintext-framed records, within `MAX_RECORD_LENGTH`."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = 0  # heartbeat bytes still to drop unread
        self._pending: Record | None = None

    def feed(self, data: bytes) -> list[Record]:
        out: list[Record] = []
        pos = 0
        if self._skipping:
            dropped = min(self._skipping, len(data))
            self._skipping -= dropped
            pos = dropped
            if not self._skipping and self._pending is not None:
                out.append(self._pending)
                self._pending = None
        self._buf += data[pos:]
        while not self._skipping and len(self._buf) >= RECORD_HEADER:
            r = Reader(bytes(self._buf[:RECORD_HEADER]))
            content_type, version, length = r.uint8(), r.uint16(), r.uint16()
            if content_type not in ContentType.__members__.values():
                raise ScanProtocolError(f"not a TLS record (content type {content_type})")
            if version >> 8 != 3:
                raise ScanProtocolError(f"not a TLS record (version {version:#06x})")
            if length > MAX_RECORD_LENGTH:
                raise ScanProtocolError(f"record of {length} bytes")
            if content_type == ContentType.HEARTBEAT:
                have = len(self._buf) - RECORD_HEADER
                if have < min(HEARTBEAT_HEADER, length):
                    break
                head = bytes(self._buf[RECORD_HEADER : RECORD_HEADER + HEARTBEAT_HEADER])
                rec = Record(content_type, version, head[:length], length)
                taken = min(have, length)
                del self._buf[: RECORD_HEADER + taken]
                if taken < length:  # the rest is dropped as it arrives
                    self._skipping = length - taken
                    self._pending = rec
                    break
                out.append(rec)
                continue
            if len(self._buf) < RECORD_HEADER + length:
                break
            fragment = bytes(self._buf[RECORD_HEADER : RECORD_HEADER + length])
            del self._buf[: RECORD_HEADER + length]
            out.append(Record(content_type, version, fragment, length))
        return out


@dataclass
class HandshakeReader:
    """Reassembles plaintext handshake messages from handshake records."""

    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, fragment: bytes) -> list[tuple[int, bytes]]:
        if len(self._buf) + len(fragment) > MAX_HANDSHAKE_BUFFER:
            raise ScanProtocolError("more handshake data than the scanner buffers")
        self._buf += fragment
        out = []
        while len(self._buf) >= 4:
            r = Reader(bytes(self._buf[:4]))
            msg_type, length = r.uint8(), r.uint24()
            if length > MAX_HANDSHAKE_BUFFER:
                raise ScanProtocolError(f"handshake message of {length} bytes")
            if len(self._buf) < 4 + length:
                break
            out.append((msg_type, bytes(self._buf[4 : 4 + length])))
            del self._buf[: 4 + length]
        return out


@dataclass(frozen=True)
class ServerHelloInfo:
    version: int  # the negotiated version (supported_versions when present)
    suite: int
    compression: int
    extensions: dict[int, bytes]
    retry_request: bool  # a TLS 1.3 HelloRetryRequest
    selected_group: int | None  # key_share of a HelloRetryRequest or ServerHello


def _wrap(error: TLSError) -> ScanProtocolError:
    return ScanProtocolError(f"malformed: {error.reason}")


def parse_server_hello(body: bytes) -> ServerHelloInfo:
    """A ServerHello of any version 1.0 to 1.3; extensions are optional before TLS 1.3."""
    try:
        r = Reader(body)
        legacy = r.uint16()
        random = r.fixed(32)
        r.opaque(1, 0, 32)
        suite = r.uint16()
        compression = r.uint8()
        extensions: dict[int, bytes] = {}
        if not r.at_end():
            with r.block(2) as sub:
                while not sub.at_end():
                    ext_type = sub.uint16()
                    if ext_type in extensions:
                        raise ScanProtocolError(f"extension {ext_type} repeated")
                    extensions[ext_type] = sub.opaque(2)
        r.expect_end("ServerHello")
        version = legacy
        selected: int | None = None
        if ExtensionType.SUPPORTED_VERSIONS in extensions:
            v = Reader(extensions[ExtensionType.SUPPORTED_VERSIONS])
            version = v.uint16()
            v.expect_end("supported_versions")
        if ExtensionType.KEY_SHARE in extensions:
            k = Reader(extensions[ExtensionType.KEY_SHARE])
            selected = k.uint16()
    except TLSError as exc:
        raise _wrap(exc) from None
    if version >> 8 != 3:
        raise ScanProtocolError(f"ServerHello version {version:#06x}")
    return ServerHelloInfo(version, suite, compression, extensions, random == HRR_RANDOM, selected)


def parse_certificate12(body: bytes) -> list[bytes]:
    """The DER certificates of a TLS 1.0-1.2 Certificate message, leaf first."""
    try:
        r = Reader(body)
        certs = r.vector(3, lambda sub: sub.opaque(3, 1))
        r.expect_end("Certificate")
    except TLSError as exc:
        raise _wrap(exc) from None
    return certs


def parse_ske_group(body: bytes) -> int | None:
    """The named group of an ECDHE ServerKeyExchange (None for DHE or others)."""
    try:
        r = Reader(body)
        if r.uint8() != 3:  # ECCurveType named_curve
            return None
        return r.uint16()
    except TLSError:
        return None


def parse_alert(fragment: bytes) -> int | None:
    """The description of a plaintext alert, None when it is not 2 bytes (e.g. protected)."""
    if len(fragment) != 2:
        return None
    return fragment[1]
