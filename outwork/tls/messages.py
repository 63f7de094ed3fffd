"""TLS 1.3 handshake messages: one frozen dataclass each, with `pull_*` / `push_*` pairs.

Bounds come from the presentation language of RFC 8446 (e.g. `CipherSuite
cipher_suites<2..2^16-2>`). Extensions stay raw here (type, body); `extensions.py` parses the
bodies the engine uses, each with its own bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from outwork.tls.alerts import decode_error, illegal_parameter
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import MAX_CIPHER_SUITES, MAX_EXTENSIONS, MAX_LIST_ENTRIES
from outwork.tls.frozen import frozen

Extension = tuple[int, bytes]

# RFC 8446 4.1.2: "Random", 32 bytes; session ids up to 32 bytes.
RANDOM_LENGTH = 32
MAX_SESSION_ID = 32

# The ServerHello.random of a HelloRetryRequest (RFC 8446 4.1.3): SHA-256("HelloRetryRequest").
HELLO_RETRY_REQUEST_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)


def pull_extensions(
    r: Reader, minimum: int = 0, max_count: int = MAX_EXTENSIONS
) -> tuple[Extension, ...]:
    """Extension extensions<minimum..2^16-1>; a repeated type is illegal (RFC 8446 4.2).
    More than `max_count` is refused before it is parsed further: 16,000 empty extensions
    fit in 64 KiB, and every later step (JA4, the offer) would walk them all."""
    out = r.typed_opaques(2, minimum, max_count, "extensions")
    if len({ext_type for ext_type, _ in out}) != len(out):
        seen: set[int] = set()
        for ext_type, _ in out:
            if ext_type in seen:
                raise illegal_parameter(f"extension {ext_type} repeated")
            seen.add(ext_type)
    return tuple(out)


def push_extensions(w: Writer, extensions: tuple[Extension, ...]) -> None:
    with w.block(2):
        for ext_type, body in extensions:
            w.uint16(ext_type)
            w.opaque(2, body)


def pull_uint16_list(r: Reader, minimum: int, maximum: int) -> tuple[int, ...]:
    """A vector of uint16 with byte bounds (a cap on entries is `maximum` = 2 * entries);
    an odd length is a decode_error."""
    return r.uint16_tuple(2, minimum, maximum)


def push_uint16_list(w: Writer, values: tuple[int, ...]) -> None:
    w.uint16(2 * len(values))
    for v in values:
        w.uint16(v)


@frozen
class ClientHello:
    legacy_version: int
    random: bytes
    legacy_session_id: bytes
    cipher_suites: tuple[int, ...]
    legacy_compression_methods: bytes
    extensions: tuple[Extension, ...]


def pull_client_hello(
    r: Reader, max_suites: int = MAX_CIPHER_SUITES, max_extensions: int = MAX_EXTENSIONS
) -> ClientHello:
    """RFC 8446 allows 32,767 suites and 16,000 extensions; real clients send some 16 and 20,
    so the caps refuse the rest from the length prefix, before any of it is walked."""
    legacy_version = r.uint16()
    random = r.fixed(RANDOM_LENGTH)
    session_id = r.opaque(1, 0, MAX_SESSION_ID)
    suites = pull_uint16_list(r, 2, 2 * max_suites)
    compression = r.opaque(1, 1, 0xFF)
    # Extensions may be absent in a (pre-TLS 1.3) ClientHello; TLS 1.3 needs them anyway.
    extensions = pull_extensions(r, 0, max_extensions) if not r.at_end() else ()
    r.expect_end("ClientHello")
    return ClientHello(legacy_version, random, session_id, suites, compression, extensions)


def push_client_hello(w: Writer, m: ClientHello) -> None:
    w.uint16(m.legacy_version)
    w.raw(m.random)
    w.opaque(1, m.legacy_session_id)
    push_uint16_list(w, m.cipher_suites)
    w.opaque(1, m.legacy_compression_methods)
    push_extensions(w, m.extensions)


@frozen
class ServerHello:
    legacy_version: int
    random: bytes
    legacy_session_id_echo: bytes
    cipher_suite: int
    legacy_compression_method: int
    extensions: tuple[Extension, ...]

    @property
    def is_hello_retry_request(self) -> bool:
        return self.random == HELLO_RETRY_REQUEST_RANDOM


def pull_server_hello(r: Reader) -> ServerHello:
    legacy_version = r.uint16()
    random = r.fixed(RANDOM_LENGTH)
    session_id = r.opaque(1, 0, MAX_SESSION_ID)
    suite = r.uint16()
    compression = r.uint8()
    extensions = pull_extensions(r, minimum=6)
    r.expect_end("ServerHello")
    return ServerHello(legacy_version, random, session_id, suite, compression, extensions)


def push_server_hello(w: Writer, m: ServerHello) -> None:
    w.uint16(m.legacy_version)
    w.raw(m.random)
    w.opaque(1, m.legacy_session_id_echo)
    w.uint16(m.cipher_suite)
    w.uint8(m.legacy_compression_method)
    push_extensions(w, m.extensions)


@dataclass(frozen=True, slots=True)
class EncryptedExtensions:
    extensions: tuple[Extension, ...]


def pull_encrypted_extensions(r: Reader) -> EncryptedExtensions:
    extensions = pull_extensions(r)
    r.expect_end("EncryptedExtensions")
    return EncryptedExtensions(extensions)


def push_encrypted_extensions(w: Writer, m: EncryptedExtensions) -> None:
    push_extensions(w, m.extensions)


@dataclass(frozen=True, slots=True)
class CertificateEntry:
    cert_data: bytes
    extensions: tuple[Extension, ...]


@dataclass(frozen=True, slots=True)
class Certificate:
    request_context: bytes
    entries: tuple[CertificateEntry, ...]


def _pull_certificate_entry(r: Reader) -> CertificateEntry:
    cert_data = r.opaque(3, 1, 0xFFFFFF)
    return CertificateEntry(cert_data, pull_extensions(r))


def pull_certificate(r: Reader, max_chain_bytes: int, max_entries: int) -> Certificate:
    context = r.opaque(1, 0, 0xFF)
    entries = r.vector(3, _pull_certificate_entry, 0, max_chain_bytes)
    if len(entries) > max_entries:
        raise decode_error(f"certificate chain of {len(entries)} exceeds {max_entries}")
    r.expect_end("Certificate")
    return Certificate(context, tuple(entries))


def push_certificate(w: Writer, m: Certificate) -> None:
    w.opaque(1, m.request_context)
    with w.block(3):
        for entry in m.entries:
            w.opaque(3, entry.cert_data)
            push_extensions(w, entry.extensions)


@frozen
class CertificateVerify:
    algorithm: int
    signature: bytes


def pull_certificate_verify(r: Reader) -> CertificateVerify:
    algorithm = r.uint16()
    signature = r.opaque(2, 1, 0xFFFF)
    r.expect_end("CertificateVerify")
    return CertificateVerify(algorithm, signature)


def push_certificate_verify(w: Writer, m: CertificateVerify) -> None:
    w.uint16(m.algorithm)
    w.opaque(2, m.signature)


@frozen
class Finished:
    verify_data: bytes


def pull_finished(r: Reader, hash_length: int) -> Finished:
    verify_data = r.fixed(hash_length)
    r.expect_end("Finished")
    return Finished(verify_data)


def push_finished(w: Writer, m: Finished) -> None:
    w.raw(m.verify_data)


@frozen
class NewSessionTicket:
    lifetime: int
    age_add: int
    nonce: bytes
    ticket: bytes
    extensions: tuple[Extension, ...]


def pull_new_session_ticket(r: Reader) -> NewSessionTicket:
    lifetime = r.uint32()
    age_add = r.uint32()
    nonce = r.opaque(1, 0, 0xFF)
    ticket = r.opaque(2, 1, 0xFFFF)
    extensions = pull_extensions(r)
    r.expect_end("NewSessionTicket")
    return NewSessionTicket(lifetime, age_add, nonce, ticket, extensions)


def push_new_session_ticket(w: Writer, m: NewSessionTicket) -> None:
    w.uint32(m.lifetime)
    w.uint32(m.age_add)
    w.opaque(1, m.nonce)
    w.opaque(2, m.ticket)
    push_extensions(w, m.extensions)


@dataclass(frozen=True, slots=True)
class KeyUpdate:
    request_update: int


def pull_key_update(r: Reader) -> KeyUpdate:
    value = r.uint8()
    r.expect_end("KeyUpdate")
    if value not in (0, 1):
        raise illegal_parameter(f"KeyUpdate request_update {value}")
    return KeyUpdate(value)


def push_key_update(w: Writer, m: KeyUpdate) -> None:
    w.uint8(m.request_update)


def handshake_message(msg_type: int, body: bytes) -> bytes:
    """Frame a handshake message body: type(1) length(3) body; the type may be any byte (fuzzers
    frame unknown ones)."""
    return bytes((msg_type,)) + len(body).to_bytes(3, "big") + body


# RFC 6520: HeartbeatMessage {type; uint16 payload_length; payload; padding (>= 16 bytes)}
HEARTBEAT_MIN_PADDING = 16


@dataclass(frozen=True, slots=True)
class HeartbeatMessage:
    type: int
    payload: bytes


class HeartbeatLie(Exception):
    """payload_length claims more than the record carries: a Heartbleed probe."""

    def __init__(self, claimed: int, actual: int) -> None:
        super().__init__(f"heartbeat claims {claimed} payload bytes, carries {actual}")
        self.claimed = claimed
        self.actual = actual


def pull_heartbeat(data: bytes) -> HeartbeatMessage:
    """Parse a whole heartbeat record. Raises HeartbleedLie for a payload_length that exceeds
    what arrived (the message must then be discarded), decode_error for other malformation."""
    r = Reader(data)
    msg_type = r.uint8()
    claimed = r.uint16()
    actual_room = r.remaining() - HEARTBEAT_MIN_PADDING
    if claimed > actual_room:
        raise HeartbeatLie(claimed, max(r.remaining(), 0))
    payload = r.fixed(claimed)
    # The rest is padding (>= 16 bytes, checked above); its content is ignored per RFC 6520.
    return HeartbeatMessage(msg_type, payload)


def push_heartbeat(m: HeartbeatMessage, padding: bytes) -> bytes:
    if len(padding) < HEARTBEAT_MIN_PADDING:
        raise ValueError("heartbeat padding must be at least 16 bytes")
    w = Writer()
    w.uint8(m.type)
    w.opaque(2, m.payload)
    w.raw(padding)
    return w.getvalue()


# ----- TLS 1.2 (RFC 5246, RFC 8422, RFC 5077) -----------------------------------------------

NAMED_CURVE = 3  # ECCurveType named_curve


@dataclass(frozen=True, slots=True)
class ServerKeyExchangeECDHE:
    group: int
    public: bytes
    algorithm: int
    signature: bytes

    def params(self) -> bytes:
        """ServerECDHParams, the part covered by the signature (with both randoms)."""
        return (
            bytes((NAMED_CURVE,))
            + self.group.to_bytes(2, "big")
            + bytes((len(self.public),))
            + self.public
        )


def pull_server_key_exchange(r: Reader) -> ServerKeyExchangeECDHE:
    if r.uint8() != NAMED_CURVE:
        raise illegal_parameter("ServerKeyExchange is not for a named curve")
    group = r.uint16()
    public = r.opaque(1, 1, 0xFF)
    algorithm = r.uint16()
    signature = r.opaque(2, 1, 0xFFFF)
    r.expect_end("ServerKeyExchange")
    return ServerKeyExchangeECDHE(group, public, algorithm, signature)


def push_server_key_exchange(w: Writer, m: ServerKeyExchangeECDHE) -> None:
    w.raw(m.params())
    w.uint16(m.algorithm)
    w.opaque(2, m.signature)


def pull_client_key_exchange(r: Reader) -> bytes:
    """ClientECDiffieHellmanPublic: ECPoint ecdh_Yc<1..2^8-1> (explicit, never implicit)."""
    public = r.opaque(1, 1, 0xFF)
    r.expect_end("ClientKeyExchange")
    return public


def push_client_key_exchange(w: Writer, public: bytes) -> None:
    w.opaque(1, public)


@dataclass(frozen=True, slots=True)
class NewSessionTicket12:
    lifetime_hint: int
    ticket: bytes


def pull_new_session_ticket12(r: Reader) -> NewSessionTicket12:
    lifetime = r.uint32()
    ticket = r.opaque(2, 0, 0xFFFF)
    r.expect_end("NewSessionTicket")
    return NewSessionTicket12(lifetime, ticket)


def push_new_session_ticket12(w: Writer, m: NewSessionTicket12) -> None:
    w.uint32(m.lifetime_hint)
    w.opaque(2, m.ticket)


def pull_certificate12(r: Reader, max_chain_bytes: int, max_entries: int) -> tuple[bytes, ...]:
    """TLS 1.2 Certificate: ASN.1Cert certificate_list<0..2^24-1>, each <1..2^24-1>."""
    certs = r.vector(3, lambda sub: sub.opaque(3, 1, 0xFFFFFF), 0, max_chain_bytes)
    if len(certs) > max_entries:
        raise decode_error(f"certificate chain of {len(certs)} exceeds {max_entries}")
    r.expect_end("Certificate")
    return tuple(certs)


def push_certificate12(w: Writer, certs: tuple[bytes, ...]) -> None:
    with w.block(3):
        for cert in certs:
            w.opaque(3, cert)


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """TLS 1.3 (RFC 8446 4.3.2)."""

    request_context: bytes
    extensions: tuple[Extension, ...]


def pull_certificate_request(r: Reader) -> CertificateRequest:
    context = r.opaque(1, 0, 0xFF)
    extensions = pull_extensions(r, minimum=2)
    r.expect_end("CertificateRequest")
    return CertificateRequest(context, extensions)


def push_certificate_request(w: Writer, m: CertificateRequest) -> None:
    w.opaque(1, m.request_context)
    push_extensions(w, m.extensions)


@dataclass(frozen=True, slots=True)
class CertificateRequest12:
    """TLS 1.2 (RFC 5246 7.4.4): certificate types, signature algorithms, CA names."""

    certificate_types: bytes
    signature_algorithms: tuple[int, ...]
    authorities: tuple[bytes, ...]


def pull_certificate_request12(r: Reader) -> CertificateRequest12:
    """Lists capped like a hello's: a server cannot make the client walk 32,000 schemes or
    21,000 three-byte names."""
    types = r.opaque(1, 1, 0xFF)
    algorithms = pull_uint16_list(r, 2, 2 * MAX_LIST_ENTRIES)
    authorities: list[bytes] = []
    with r.block(2) as names:
        while not names.at_end():
            if len(authorities) == MAX_LIST_ENTRIES:
                raise decode_error(f"more than {MAX_LIST_ENTRIES} certificate authorities")
            authorities.append(names.opaque(2, 1, 0xFFFF))
    r.expect_end("CertificateRequest")
    return CertificateRequest12(types, algorithms, tuple(authorities))


def push_certificate_request12(w: Writer, m: CertificateRequest12) -> None:
    w.opaque(1, m.certificate_types)
    push_uint16_list(w, m.signature_algorithms)
    push_authorities(w, m.authorities)


def push_authorities(w: Writer, authorities: tuple[bytes, ...]) -> None:
    """DistinguishedName authorities<3..2^16-1> (also the certificate_authorities body)."""
    with w.block(2):
        for name in authorities:
            w.opaque(2, name)
