"""Session tickets: what a ticket carries, sealed so that only this node's servers can read it.

A ticket is `key_name(16) || nonce(12) || AES-256-GCM(state, aad=key_name)`. Keys come from a
`TicketKeySource`: the engine asks it for the key to seal with now, and for the key that a
key name refers to; rotation and sharing between workers are the source's business (see
`outwork/keys/ticket_keys.py` for the file shared by the workers of a node).

Opening never raises for what a peer sent: a ticket that is unknown, tampered with, expired
or malformed is simply not accepted, and the handshake falls back to a full one.

A resumed handshake issues a fresh ticket, so a session could be resumed for ever. RFC 8446
4.6.1 recommends limiting the total lifetime of the keying material by the time since the
peer was authenticated and the peer certificate's lifetime: a ticket carries the time of the
full handshake and the client certificate's notAfter (in its identity), is resumed only while
both hold, and is bound to the listener's client trust settings (`trust_binding`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from outwork.tls.alerts import TLSError
from outwork.tls.clientauth import ClientIdentity
from outwork.tls.codec import Reader, Writer
from outwork.tls.frozen import frozen

KEY_NAME_LENGTH = 16
NONCE_LENGTH = 12
TICKET_FORMAT = 2  # 2: authentication time, trust binding, length-prefixed identity
MAX_TICKET = 4096  # a ticket outwork issues is ~150 bytes, ~1 KiB with a client identity


class TicketKeySource(Protocol):
    def encryption_key(self, now: float) -> tuple[bytes, bytes]:
        """(key name, 32-byte key) to seal new tickets with at time `now`."""
        ...

    def decryption_key(self, key_name: bytes, now: float) -> bytes | None:
        """The key for `key_name` if it is still accepted at `now`, else None."""
        ...

    def drop_before(self, not_before: float, now: float) -> None:
        """Forget every key made before `not_before` (an incident: tickets sealed before it
        must not resume any more) and seal new tickets with a key made since."""
        ...


class RotatingTicketKeys:
    """In-process keys, new every `period` seconds, the previous one still accepted for one
    more period. Enough for a single worker; several workers share a key file instead."""

    def __init__(self, period: float = 12 * 3600) -> None:
        self._period = period
        self._keys: dict[int, tuple[bytes, bytes]] = {}
        self._made: dict[int, float] = {}  # when each key was made (wall clock)

    def _key_for(self, index: int, now: float) -> tuple[bytes, bytes]:
        if index not in self._keys:
            self._keys[index] = (os.urandom(KEY_NAME_LENGTH), os.urandom(32))
            self._made[index] = now
            for old in [i for i in self._keys if i < index - 1]:
                del self._keys[old]  # forward secrecy: old keys are forgotten
                self._made.pop(old, None)
        return self._keys[index]

    def drop_before(self, not_before: float, now: float) -> None:
        for old in [i for i, made in self._made.items() if made < not_before]:
            del self._keys[old]
            del self._made[old]
        self._key_for(int(now // self._period), now)

    def encryption_key(self, now: float) -> tuple[bytes, bytes]:
        return self._key_for(int(now // self._period), now)

    def decryption_key(self, key_name: bytes, now: float) -> bytes | None:
        index = int(now // self._period)
        for i in (index, index - 1):
            entry = self._keys.get(i)
            if entry is not None and entry[0] == key_name:
                return entry[1]
        return None


@frozen
class SessionState:
    """What resumption needs. `secret` is the TLS 1.3 resumption PSK or the TLS 1.2 master
    secret; times are in milliseconds since the epoch (TLS 1.3 ticket ages are in ms)."""

    version: int
    cipher_suite: int
    secret: bytes
    issued_at_ms: int
    lifetime_s: int
    age_add: int
    extended_master_secret: bool
    alpn: str
    server_name: str
    client_identity: ClientIdentity | None = None  # of a verified client certificate
    authenticated_at_ms: int = 0  # the full handshake this session comes from
    trust_binding: bytes = b""  # `clientauth.trust_binding` of the listener that issued it


def _encode_state(state: SessionState) -> bytes:
    w = Writer()
    w.uint8(TICKET_FORMAT)
    w.uint16(state.version)
    w.uint16(state.cipher_suite)
    w.opaque(1, state.secret)
    w.raw(state.issued_at_ms.to_bytes(8, "big"))
    w.uint32(state.lifetime_s)
    w.uint32(state.age_add)
    w.uint8(int(state.extended_master_secret))
    w.opaque(1, state.alpn.encode("latin-1"))
    w.opaque(1, state.server_name.encode("ascii"))
    w.opaque(2, state.client_identity.encode() if state.client_identity else b"")
    w.raw(state.authenticated_at_ms.to_bytes(8, "big"))
    w.opaque(1, state.trust_binding)
    return w.getvalue()


def _decode_state(data: bytes) -> SessionState:
    r = Reader(data)
    if r.uint8() != TICKET_FORMAT:
        raise ValueError("unknown ticket format")
    version = r.uint16()
    suite = r.uint16()
    secret = r.opaque(1, 32, 64)
    issued = int.from_bytes(r.fixed(8), "big")
    lifetime = r.uint32()
    age_add = r.uint32()
    ems = r.uint8() == 1
    alpn = r.opaque(1).decode("latin-1")
    server_name = r.opaque(1).decode("ascii")
    encoded_identity = r.opaque(2)
    identity = ClientIdentity.decode(encoded_identity) if encoded_identity else None
    authenticated = int.from_bytes(r.fixed(8), "big")
    binding = r.opaque(1)
    r.expect_end("ticket")
    return SessionState(
        version,
        suite,
        secret,
        issued,
        lifetime,
        age_add,
        ems,
        alpn,
        server_name,
        identity,
        authenticated,
        binding,
    )


def seal_ticket(
    keys: TicketKeySource, state: SessionState, now: float, nonce: bytes | None = None
) -> bytes:
    """`nonce`: NONCE_LENGTH fresh random bytes the caller drew with others (one system call
    per handshake instead of several); drawn here when not given."""
    name, key = keys.encryption_key(now)
    if nonce is None or len(nonce) != NONCE_LENGTH:
        nonce = os.urandom(NONCE_LENGTH)
    return name + nonce + AESGCM(key).encrypt(nonce, _encode_state(state), name)


def ticket_for(
    keys: TicketKeySource, state: SessionState, now: float, nonce: bytes | None = None
) -> bytes | None:
    """The sealed ticket, or None when `state` makes no ticket `open_ticket` would accept: a
    client certificate's names can make the identity longer than a ticket, or than a 2-byte
    length prefix (int.to_bytes refuses with OverflowError, Writer.block with ValueError). No
    ticket then: the client does full handshakes."""
    try:
        ticket = seal_ticket(keys, state, now, nonce)
    except (OverflowError, ValueError):
        return None
    return ticket if len(ticket) <= MAX_TICKET else None


def open_ticket(keys: TicketKeySource, ticket: bytes, now: float) -> SessionState | None:
    """The state in `ticket` if it is ours, intact and within its lifetime; else None."""
    if not KEY_NAME_LENGTH + NONCE_LENGTH + 16 < len(ticket) <= MAX_TICKET:
        return None
    name = ticket[:KEY_NAME_LENGTH]
    key = keys.decryption_key(name, now)
    if key is None:
        return None
    nonce = ticket[KEY_NAME_LENGTH : KEY_NAME_LENGTH + NONCE_LENGTH]
    try:
        state = _decode_state(
            AESGCM(key).decrypt(nonce, ticket[KEY_NAME_LENGTH + NONCE_LENGTH :], name)
        )
    except (InvalidTag, TLSError, ValueError, UnicodeDecodeError):
        return None
    age_ms = int(now * 1000) - state.issued_at_ms
    if age_ms < -1000 or age_ms > state.lifetime_s * 1000:
        return None
    return state


def session_lifetime_left(
    authenticated_at_ms: int, identity: ClientIdentity | None, lifetime_s: int, now: float
) -> int:
    """Whole seconds a session from a full handshake at `authenticated_at_ms` may still be
    resumed: `lifetime_s` counts from that handshake, not from the latest ticket, and never
    past the client certificate's notAfter. 0 or less: not any more."""
    now_ms = int(now * 1000)
    left = (authenticated_at_ms + lifetime_s * 1000 - now_ms) // 1000
    if identity is not None:
        left = min(left, (identity.not_after * 1000 - now_ms) // 1000)
    return min(left, lifetime_s)


def still_authenticated(
    state: SessionState, trust_binding: bytes, lifetime_s: int, now: float
) -> bool:
    """Whether the session's authentication still counts on a listener whose client trust
    settings give `trust_binding` and whose ticket lifetime is `lifetime_s`."""
    if state.trust_binding != trust_binding:
        return False  # client_auth or client_ca changed: the identity must be proved again
    if state.authenticated_at_ms > int(now * 1000) + 1000:
        return False  # from the future: not ours to trust
    return (
        session_lifetime_left(state.authenticated_at_ms, state.client_identity, lifetime_s, now) > 0
    )


@dataclass(frozen=True, slots=True)
class ClientSession:
    """A ticket a server gave the client role, with what resuming it needs."""

    version: int
    cipher_suite: int
    secret: bytes  # TLS 1.3 resumption PSK, or TLS 1.2 master secret
    ticket: bytes
    received_at: float  # seconds since the epoch
    lifetime_s: int
    age_add: int
    extended_master_secret: bool
    server_name: str
    max_early_data: int = 0  # from the ticket's early_data extension (TLS 1.3)

    def usable(self, now: float, server_name: str | None) -> bool:
        return (
            self.server_name == (server_name or "")
            and 0 <= now - self.received_at < self.lifetime_s
        )

    def obfuscated_age(self, now: float) -> int:
        return (int((now - self.received_at) * 1000) + self.age_add) % (1 << 32)
