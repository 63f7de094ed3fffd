"""Read-only engine configuration, built once per listener (or upstream) at config load."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cryptography import x509

from outwork.tls.clientauth import ClientAuth
from outwork.tls.enums import (
    CipherSuite,
    CipherSuite12,
    NamedGroup,
    ProtocolVersion,
    SignatureScheme,
)
from outwork.tls.signing import Signer
from outwork.tls.tickets import RotatingTicketKeys, TicketKeySource

# Named caps on everything a peer can grow (DESIGN.md). Each has a test that hits it.
MAX_HANDSHAKE_MESSAGE = 64 * 1024  # any single handshake message
MAX_CLIENT_HELLO = 64 * 1024  # the ClientHello in particular
MAX_CERTIFICATE_CHAIN = 64 * 1024  # total encoded chain received (client role)
MAX_CHAIN_LENGTH = 10  # certificates in a received chain
MAX_BUFFERED_HANDSHAKE = 128 * 1024  # handshake bytes held while waiting for a full message
MAX_KEY_UPDATES_PER_FLIGHT = 32  # KeyUpdates processed from one receive_data call
MAX_EMPTY_RECORDS = 32  # consecutive zero-length records tolerated before a DoS verdict
# Counts in a hello, far above what real clients send (Chrome and Firefox: 16-20 extensions,
# about 16 suites, 4-10 groups, 8-16 signature schemes, 2-3 key shares). Without them a 64 KiB
# ClientHello of 15,000 empty extensions costs 160 times a normal one; with them the worst
# hello costs a small multiple of a normal one, however it is crafted.
MAX_EXTENSIONS = 64  # extensions in one message
# Entries of cipher_suites: browsers send ~16, `openssl s_client -cipher ALL:COMPLEMENTOFALL`
# 158 (scanners split theirs at 128).
MAX_CIPHER_SUITES = 256
MAX_LIST_ENTRIES = 128  # groups, signature schemes, ALPN names, server names
MAX_KEY_SHARES = 16  # key_share entries in a ClientHello
# Records one handshake message may be split over. Each record costs the same whatever it
# carries, so a 60 KiB ClientHello in one-byte records cost 250 times a normal hello. RFC 8446
# 5.1 allows any split, and conformance suites send a hello in one-byte records: a hello of up
# to 2 KiB (Chrome's with ML-KEM is 1.8 KiB) still may be.
MAX_HANDSHAKE_FRAGMENTS = 2048
# Bytes of answers to the peer's own requests (heartbeat responses, KeyUpdate replies) queued
# and not yet taken by `data_to_send`: above it the engine stops processing input
# (`reading_paused`) until the caller has taken its output, so a peer that never reads cannot
# grow our output without bound.
MAX_PENDING_OUTPUT = 64 * 1024

DEFAULT_CIPHER_SUITES = (
    CipherSuite.TLS_AES_128_GCM_SHA256,
    CipherSuite.TLS_AES_256_GCM_SHA384,
    CipherSuite.TLS_CHACHA20_POLY1305_SHA256,
)

# Every group the engine implements, in order of preference: post-quantum hybrid first.
ALL_GROUPS = (
    NamedGroup.X25519MLKEM768,
    NamedGroup.X25519,
    NamedGroup.SECP256R1,
    NamedGroup.SECP384R1,
    NamedGroup.X448,
    NamedGroup.SECP521R1,
)

# What a listener offers unless configured otherwise: Mozilla's "intermediate" set plus the
# hybrid. x448 and secp521r1 are there for whoever asks for them (`tls.groups`).
DEFAULT_GROUPS = ALL_GROUPS[:4]

# TLS 1.2, server preference: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305; ECDSA before RSA.
DEFAULT_CIPHER_SUITES_TLS12 = (
    CipherSuite12.ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    CipherSuite12.ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    CipherSuite12.ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    CipherSuite12.ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    CipherSuite12.ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    CipherSuite12.ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
)

# TLS 1.2 uses the classic ECDHE groups only.
GROUPS_TLS12 = (NamedGroup.X25519, NamedGroup.SECP256R1, NamedGroup.SECP384R1)


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate chain (leaf first) and the signer for the leaf's key."""

    chain: tuple[x509.Certificate, ...]
    signer: Signer
    # Every handshake looks its certificate up in caches keyed by it; a certificate's hash
    # is computed over its DER each time (5 us for a chain of two), so it is taken once.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.chain, self.signer)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True)
class Limits:
    max_handshake_message: int = MAX_HANDSHAKE_MESSAGE
    max_client_hello: int = MAX_CLIENT_HELLO
    max_certificate_chain: int = MAX_CERTIFICATE_CHAIN
    max_chain_length: int = MAX_CHAIN_LENGTH
    max_buffered_handshake: int = MAX_BUFFERED_HANDSHAKE
    max_empty_records: int = MAX_EMPTY_RECORDS
    max_extensions: int = MAX_EXTENSIONS
    max_cipher_suites: int = MAX_CIPHER_SUITES
    max_list_entries: int = MAX_LIST_ENTRIES
    max_key_shares: int = MAX_KEY_SHARES
    max_handshake_fragments: int = MAX_HANDSHAKE_FRAGMENTS
    max_pending_output: int = MAX_PENDING_OUTPUT


@dataclass(frozen=True)
class ServerConfig:
    certificates: tuple[CertifiedKey, ...]
    alpn_protocols: tuple[str, ...] = ()
    heartbeat: bool = False
    cipher_suites: tuple[CipherSuite, ...] = DEFAULT_CIPHER_SUITES
    groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
    min_version: ProtocolVersion = ProtocolVersion.TLS12
    cipher_suites_tls12: tuple[CipherSuite12, ...] = DEFAULT_CIPHER_SUITES_TLS12
    require_ems: bool = True  # RFC 7627: refuse TLS 1.2 clients without extended master secret
    strict_sni: bool = False  # unknown server name: unrecognized_name instead of the default
    client_auth: ClientAuth = ClientAuth.NONE
    client_ca: tuple[x509.Certificate, ...] = ()  # trust anchors for client certificates
    # Session tickets (TLS 1.3 PSK and TLS 1.2 RFC 5077); None turns resumption off.
    ticket_keys: TicketKeySource | None = field(default_factory=RotatingTicketKeys)
    ticket_lifetime: int = 7200  # seconds; RFC 8446 caps it at 7 days
    limits: Limits = field(default_factory=Limits)
    # Key that authenticates the HelloRetryRequest cookie (stateless HRR). Per process.
    cookie_key: bytes = field(default_factory=lambda: os.urandom(32))


@dataclass(frozen=True)
class ClientConfig:
    """Client role. `trust_roots` empty with verify=True means: fail every handshake."""

    trust_roots: tuple[x509.Certificate, ...] = ()
    verify: bool = True
    alpn_protocols: tuple[str, ...] = ()
    cipher_suites: tuple[CipherSuite, ...] = DEFAULT_CIPHER_SUITES
    groups: tuple[NamedGroup, ...] = ALL_GROUPS
    # Groups for which a key share goes in the first ClientHello.
    key_share_groups: tuple[NamedGroup, ...] = (NamedGroup.X25519,)
    min_version: ProtocolVersion = ProtocolVersion.TLS12
    max_version: ProtocolVersion = ProtocolVersion.TLS13
    cipher_suites_tls12: tuple[CipherSuite12, ...] = DEFAULT_CIPHER_SUITES_TLS12
    require_ems: bool = True
    # Signature schemes to offer; None means all the engine can verify.
    signature_schemes: tuple[SignatureScheme, ...] | None = None
    client_certificate: CertifiedKey | None = None  # presented when a server asks (mTLS)
    # Sent as 0-RTT data when resuming a TLS 1.3 session (the scanner checks whether a
    # backend accepts replayable data with it); None sends none.
    early_data: bytes | None = None
    heartbeat: bool = False
    limits: Limits = field(default_factory=Limits)
