"""What the fuzz harnesses (and the corpus replay in `make test`) share: an in-memory
certificate and server config, the engine's own ClientHello, and an established pair.

Nothing here imports atheris, so the replay tests (`tests/fuzz_replay.py`)
can load the harnesses.
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys
import typing
from collections.abc import Callable
from dataclasses import replace
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.x509.oid import NameOID

from outwork.keys.file_signer import FileSigner
from outwork.tls import events as ev
from outwork.tls.alerts import TLSError
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import CertifiedKey, ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import (
    ContentType,
    ExtensionType,
    HandshakeType,
    NamedGroup,
    ProtocolVersion,
    SignatureScheme,
)
from outwork.tls.extensions import push_key_share_client, push_server_name
from outwork.tls.messages import (
    ClientHello,
    Extension,
    HeartbeatLie,
    handshake_message,
    pull_server_hello,
    push_client_hello,
    push_uint16_list,
)
from outwork.tls.records import frame_plaintext

# What a parser may raise for bad input; anything else escaping a target is a crash.
EXPECTED_PARSE_ERRORS: tuple[type[Exception], ...] = (TLSError, HeartbeatLie)

_EVENT_TYPES = typing.get_args(ev.Event)

HANDSHAKE_ROUNDS = 10  # more flights than any good handshake needs; stops a ping-pong loop


def self_signed_ecdsa(name: str = "fuzz.outwork.test") -> CertifiedKey:
    """An ECDSA P-256 key and a self-signed certificate for it, made in memory."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(chain=(cert,), signer=FileSigner(key))


class FixedTicketKeys:
    """Session-ticket keys that are the same in every process, so a resumption ClientHello
    (its ticket and PSK binder) kept in the corpus still resumes when it is replayed."""

    NAME = b"outwork-fuzzing!"
    KEY = bytes(range(32))

    def encryption_key(self, now: float) -> tuple[bytes, bytes]:
        return self.NAME, self.KEY

    def decryption_key(self, key_name: bytes, now: float) -> bytes | None:
        return self.KEY if key_name == self.NAME else None

    def drop_before(self, not_before: float, now: float) -> None:
        """Never rotated: the kept corpus must stay replayable."""


@cache
def server_config(heartbeat: bool = False) -> ServerConfig:
    """One certificate per process: key generation is the slow part, not the engine."""
    return ServerConfig(
        certificates=(_certified_key(),),
        alpn_protocols=("h2", "http/1.1"),
        heartbeat=heartbeat,
        ticket_keys=FixedTicketKeys(),
    )


@cache
def _certified_key() -> CertifiedKey:
    return self_signed_ecdsa()


def client_config(
    groups: tuple[NamedGroup, ...] | None = None,
    key_share_groups: tuple[NamedGroup, ...] = (NamedGroup.X25519,),
    alpn: tuple[str, ...] = ("http/1.1",),
    heartbeat: bool = False,
    max_version: ProtocolVersion = ProtocolVersion.TLS13,
) -> ClientConfig:
    # The chain is self-signed and the point is the record layer, not PKI: no verification.
    config = ClientConfig(
        verify=False,
        alpn_protocols=alpn,
        key_share_groups=key_share_groups,
        heartbeat=heartbeat,
        max_version=max_version,
    )
    return config if groups is None else replace(config, groups=groups)


def engine_client_hello(
    server_name: str | None = "fuzz.outwork.test", config: ClientConfig | None = None
) -> bytes:
    """The record(s) the engine's client sends first: a ClientHello in a handshake record."""
    client = ClientConnection(config or client_config(), server_name=server_name)
    client.start_handshake()
    return client.data_to_send()


def handshake(
    client: ClientConnection, server: ServerConnection
) -> tuple[list[ev.Event], list[ev.Event]]:
    """Shuttle bytes between the two roles in memory until neither has anything to say."""
    client_events: list[ev.Event] = []
    server_events: list[ev.Event] = []
    client.start_handshake()
    for _ in range(HANDSHAKE_ROUNDS):
        to_server = client.data_to_send()
        if to_server:
            server_events += server.receive_data(to_server)
        to_client = server.data_to_send()
        if to_client:
            client_events += client.receive_data(to_client)
        if not to_server and not to_client:
            break
    return client_events, server_events


# A server that only takes x25519 and a fixed first ClientHello that offers only a P-256
# share: the server answers with a HelloRetryRequest, and what the fuzzer sends next is the
# second ClientHello (cookie, same random and suites, the requested share). The cookie key is
# fixed so that a valid second ClientHello can sit in the corpus.
RETRY_COOKIE_KEY = bytes(32)
RETRY_RANDOM = bytes(range(32))
RETRY_SESSION_ID = bytes(range(32, 64))
RETRY_SUITES = (0x1301, 0x1302, 0x1303)


@cache
def retry_server_config() -> ServerConfig:
    return replace(server_config(), groups=(NamedGroup.X25519,), cookie_key=RETRY_COOKIE_KEY)


def _hello_body(extensions: tuple[Extension, ...]) -> bytes:
    w = Writer()
    hello = ClientHello(0x0303, RETRY_RANDOM, RETRY_SESSION_ID, RETRY_SUITES, b"\x00", extensions)
    push_client_hello(w, hello)
    return w.getvalue()


def _common_extensions() -> list[Extension]:
    groups, schemes = Writer(), Writer()
    push_uint16_list(groups, (NamedGroup.SECP256R1, NamedGroup.X25519))
    push_uint16_list(schemes, (SignatureScheme.ECDSA_SECP256R1_SHA256,))
    return [
        (ExtensionType.SERVER_NAME, push_server_name("fuzz.outwork.test")),
        (ExtensionType.SUPPORTED_VERSIONS, b"\x02\x03\x04"),
        (ExtensionType.SUPPORTED_GROUPS, groups.getvalue()),
        (ExtensionType.SIGNATURE_ALGORITHMS, schemes.getvalue()),
    ]


def first_hello_for_retry() -> bytes:
    """Records of a first ClientHello that gets a HelloRetryRequest from the retry server."""
    p256_share = bytes((4,)) + bytes(64)  # never used: the server asks for x25519 instead
    share = push_key_share_client(((NamedGroup.SECP256R1, p256_share),))
    body = _hello_body((*_common_extensions(), (ExtensionType.KEY_SHARE, share)))
    return frame_plaintext(
        ContentType.HANDSHAKE, handshake_message(HandshakeType.CLIENT_HELLO, body)
    )


def retry_server() -> tuple[ServerConnection, bytes]:
    """A server that has just sent a HelloRetryRequest, and the records it sent."""
    server = ServerConnection(retry_server_config())
    check_events(server.receive_data(first_hello_for_retry()))
    return server, server.data_to_send()


@cache
def second_hello_for_retry() -> bytes:
    """A valid second ClientHello body for `retry_server` (echoes the fixed cookie)."""
    _, records = retry_server()
    reader = Reader(records)
    reader.fixed(5)  # the record header; the HelloRetryRequest fills the first record
    if reader.uint8() != HandshakeType.SERVER_HELLO:
        raise RuntimeError("the retry server did not answer with a HelloRetryRequest")
    with reader.block(3) as body:
        retry = pull_server_hello(body)
    cookie = dict(retry.extensions)[ExtensionType.COOKIE]
    x25519_share = x25519.X25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    share = push_key_share_client(((NamedGroup.X25519, x25519_share.public_bytes_raw()),))
    return _hello_body(
        (*_common_extensions(), (ExtensionType.KEY_SHARE, share), (ExtensionType.COOKIE, cookie))
    )


def established_pair(
    heartbeat: bool = False, tls12: bool = False
) -> tuple[ClientConnection, ServerConnection]:
    """A client and server that have completed a handshake with each other (TLS 1.3, or
    TLS 1.2 when `tls12`)."""
    version = ProtocolVersion.TLS12 if tls12 else ProtocolVersion.TLS13
    config = client_config(heartbeat=heartbeat, max_version=version)
    client = ClientConnection(config, server_name="fuzz.outwork.test")
    server = ServerConnection(server_config(heartbeat))
    handshake(client, server)
    if not (client.is_established and server.is_established):
        raise RuntimeError("the engine's own client and server did not complete a handshake")
    return client, server


def resumption_hello(tls12: bool = False) -> bytes:
    """Records of a ClientHello that resumes a session from `server_config()` (a TLS 1.3 PSK
    with its binder, or a TLS 1.2 session ticket)."""
    client, _ = established_pair(tls12=tls12)
    if not client.sessions:
        raise RuntimeError("the server issued no session ticket")
    version = ProtocolVersion.TLS12 if tls12 else ProtocolVersion.TLS13
    resuming = ClientConnection(
        client_config(max_version=version),
        server_name="fuzz.outwork.test",
        session=client.sessions[-1],
    )
    resuming.start_handshake()
    return resuming.data_to_send()


def check_events(events: object) -> None:
    """`receive_data` must return a list of events, whatever it was fed."""
    if not isinstance(events, list):
        raise AssertionError(f"receive_data returned {type(events).__name__}, not a list")
    for event in events:
        if not isinstance(event, _EVENT_TYPES):
            raise AssertionError(f"receive_data returned a non-event {event!r}")


def run_atheris(test_one_input: Callable[[bytes], None], script: str) -> None:
    """Fuzz `test_one_input` with atheris (imported here, so the harnesses stay importable
    without it). libFuzzer re-runs argv[0] through the shell for -merge, -fork and -jobs,
    so argv[0] becomes "python script" rather than a script that may not be executable."""
    import atheris  # type: ignore[import-untyped]

    from outwork import native

    if native.COMPILED:  # atheris sees coverage in Python bytecode only
        raise SystemExit("fuzz: run with OUTWORK_PURE=1 (the mypyc-compiled modules show none)")
    atheris.instrument_all()  # coverage feedback for the engine's (pure Python) code
    self_command = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(script))}"
    atheris.Setup([self_command, *sys.argv[1:]], test_one_input)
    atheris.Fuzz()
