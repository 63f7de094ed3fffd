"""Property tests (hypothesis) for the bounded reader, every parser, and the connections.

Three kinds of property, as DESIGN.md "Checks that count" asks:
- round trips: `pull(push(m)) == m` for messages generated within their RFC bounds;
- robustness: random bytes, and valid encodings with a few bytes broken, make a parser
  return a value or raise `TLSError` (`HeartbeatLie` for heartbeats), never anything else;
- connections: `receive_data` never raises, returns events, gives the same events whether a
  whole-record input arrives at once or byte by byte, and a failed connection stays failed.
"""

from __future__ import annotations

import datetime
import inspect
import typing
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.keys.file_signer import FileSigner
from outwork.tls import events as ev
from outwork.tls import extensions as ext
from outwork.tls import messages as msg
from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.base import TLSConnection
from outwork.tls.clientauth import ClientAuth
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import CertifiedKey, ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection, ServerState
from outwork.tls.enums import (
    ContentType,
    ExtensionType,
    HandshakeType,
    HeartbeatMode,
    ProtocolVersion,
)
from outwork.tls.groups import CLIENT_SHARE_SIZE, check_share_encoding
from outwork.tls.records import MAX_PLAINTEXT

# Budgets: the whole file must stay well under a minute (it runs in `make test`).
PARSER = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CONNECTION = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

EVENT_TYPES = typing.get_args(ev.Event)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u24 = st.integers(0, 0xFFFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
UINT = {1: u8, 2: u16, 3: u24, 4: u32}


def uint_write(w: Writer, width: int, value: int) -> None:
    {1: w.uint8, 2: w.uint16, 3: w.uint24, 4: w.uint32}[width](value)


def uint_read(r: Reader, width: int) -> int:
    return {1: r.uint8, 2: r.uint16, 3: r.uint24, 4: r.uint32}[width]()


def expect_decode_error(call: Callable[[], object]) -> None:
    with pytest.raises(TLSError) as caught:
        call()
    assert caught.value.alert is AlertDescription.DECODE_ERROR


# ----- the bounded reader -----------------------------------------------------------------


@PARSER
@given(st.sampled_from([1, 2, 3, 4]).flatmap(lambda w: st.tuples(st.just(w), UINT[w])))
def test_each_uint_width_round_trips(width_value: tuple[int, int]) -> None:
    width, value = width_value
    w = Writer()
    uint_write(w, width, value)
    data = w.getvalue()
    assert len(data) == width
    r = Reader(data)
    assert uint_read(r, width) == value
    assert r.at_end()


@PARSER
@given(st.sampled_from([1, 2, 3, 4]), st.binary(max_size=3))
def test_uint_reads_past_the_end_are_decode_errors(width: int, data: bytes) -> None:
    if len(data) < width:
        expect_decode_error(lambda: uint_read(Reader(data), width))


@PARSER
@given(st.sampled_from([1, 2, 3]), st.binary(max_size=300), st.binary(max_size=20))
def test_opaque_round_trips_and_leaves_the_rest(width: int, body: bytes, tail: bytes) -> None:
    body = body[: (1 << (8 * width)) - 1]
    w = Writer()
    w.opaque(width, body)
    w.raw(tail)
    r = Reader(w.getvalue())
    assert r.opaque(width) == body
    assert r.remaining() == len(tail)
    assert r.fixed(len(tail)) == tail
    assert r.at_end()


@PARSER
@given(
    st.sampled_from([1, 2, 3]),
    st.binary(max_size=200),
    st.binary(min_size=1, max_size=20),
    st.integers(1, 50),
)
def test_sub_reader_never_reads_past_its_block(
    width: int, body: bytes, tail: bytes, overshoot: int
) -> None:
    w = Writer()
    w.opaque(width, body)
    w.raw(tail)
    r = Reader(w.getvalue())
    with pytest.raises(TLSError) as caught:
        with r.block(width) as sub:
            assert sub.remaining() == len(body)
            sub.fixed(len(body) + overshoot)  # the tail is right there; it must stay out of reach
    assert caught.value.alert is AlertDescription.DECODE_ERROR
    # Each uint width, read at the very end of a block, stops at the block too.
    for read_width in (1, 2, 3, 4):
        r = Reader(w.getvalue())
        with pytest.raises(TLSError):
            with r.block(width) as sub:
                sub.fixed(max(len(body) - read_width + 1, 0))
                uint_read(sub, read_width)


@PARSER
@given(st.sampled_from([1, 2, 3]), st.binary(min_size=1, max_size=200), st.data())
def test_leftover_bytes_in_a_block_are_decode_errors(
    width: int, body: bytes, data: st.DataObject
) -> None:
    consumed = data.draw(st.integers(0, len(body) - 1))
    w = Writer()
    w.opaque(width, body)
    r = Reader(w.getvalue())

    def read_part() -> None:
        with r.block(width) as sub:
            sub.fixed(consumed)

    expect_decode_error(read_part)
    expect_decode_error(lambda: Reader(body).expect_end("test"))


@PARSER
@given(st.binary(max_size=100), st.binary(max_size=100), st.binary(max_size=100), st.data())
def test_a_window_reader_only_sees_its_window(
    before: bytes, window: bytes, after: bytes, data: st.DataObject
) -> None:
    buf = before + window + after
    start, end = len(before), len(before) + len(window)
    r = Reader(buf, start, end)
    assert r.remaining() == len(window)
    expect_decode_error(lambda: Reader(buf, start, end).fixed(len(window) + 1))
    split = data.draw(st.integers(0, len(window)))
    assert r.fixed(split) + r.fixed(len(window) - split) == window
    assert r.at_end()
    expect_decode_error(r.uint8)


@PARSER
@given(st.sampled_from([1, 2, 3]), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_block_bounds_are_enforced(width: int, length: int, minimum: int, maximum: int) -> None:
    length = min(length, (1 << (8 * width)) - 1)
    w = Writer()
    w.opaque(width, bytes(length))
    r = Reader(w.getvalue())
    if minimum <= length <= maximum:
        assert r.opaque(width, minimum, maximum) == bytes(length)
    else:
        expect_decode_error(lambda: r.opaque(width, minimum, maximum))


READER_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("uint"), st.sampled_from([1, 2, 3, 4])),
        st.tuples(st.just("fixed"), st.integers(0, 40)),
        st.tuples(st.just("opaque"), st.sampled_from([1, 2, 3])),
        st.tuples(st.just("vector"), st.sampled_from([1, 2, 3])),
        st.tuples(st.just("block"), st.sampled_from([1, 2, 3])),
    ),
    max_size=12,
)


@PARSER
@given(st.binary(max_size=200), READER_OPS)
def test_any_sequence_of_reads_on_random_bytes_stays_in_bounds(
    data: bytes, ops: list[tuple[str, int]]
) -> None:
    """Whatever a parser asks of the reader, on whatever input: a value or a decode_error,
    and the bytes handed out never exceed the input."""
    r = Reader(data)
    handed_out = 0
    try:
        for op, arg in ops:
            before = r.remaining()
            if op == "uint":
                uint_read(r, arg)
            elif op == "fixed":
                handed_out += len(r.fixed(arg))
            elif op == "opaque":
                handed_out += len(r.opaque(arg))
            elif op == "vector":
                items = r.vector(arg, lambda sub: sub.uint16())
                handed_out += 2 * len(items)
            else:
                with r.block(arg) as sub:
                    handed_out += len(sub.fixed(sub.remaining()))
            assert 0 <= r.remaining() <= before
    except TLSError as exc:
        assert exc.alert is AlertDescription.DECODE_ERROR
    assert 0 <= r.remaining() <= len(data)
    assert handed_out <= len(data)


# ----- strategies for valid messages, within their RFC bounds -------------------------------


def unique_by_first(
    elements: st.SearchStrategy[tuple[int, bytes]], max_size: int, min_size: int = 0
) -> st.SearchStrategy[tuple[tuple[int, bytes], ...]]:
    return st.lists(elements, min_size=min_size, max_size=max_size, unique_by=lambda e: e[0]).map(
        tuple
    )


# Extension extensions<0..2^16-1>, no type twice (kept small so a message stays small).
extension_lists = unique_by_first(st.tuples(u16, st.binary(max_size=40)), max_size=8)

client_hellos = st.builds(
    msg.ClientHello,
    legacy_version=u16,
    random=st.binary(min_size=32, max_size=32),
    legacy_session_id=st.binary(max_size=32),
    cipher_suites=st.lists(u16, min_size=1, max_size=30).map(tuple),
    legacy_compression_methods=st.binary(min_size=1, max_size=10),
    extensions=extension_lists,
)

server_hellos = st.builds(
    msg.ServerHello,
    legacy_version=u16,
    random=st.binary(min_size=32, max_size=32),
    legacy_session_id_echo=st.binary(max_size=32),
    cipher_suite=u16,
    legacy_compression_method=u8,
    # extensions<6..2^16-1>
    extensions=extension_lists.filter(lambda es: sum(4 + len(b) for _, b in es) >= 6),
)

encrypted_extensions = st.builds(msg.EncryptedExtensions, extension_lists)

certificate_entries = st.builds(
    msg.CertificateEntry,
    cert_data=st.binary(min_size=1, max_size=120),
    extensions=unique_by_first(st.tuples(u16, st.binary(max_size=10)), max_size=2),
)
certificates = st.builds(
    msg.Certificate,
    request_context=st.binary(max_size=20),
    entries=st.lists(certificate_entries, max_size=5).map(tuple),
)

certificate_verifies = st.builds(
    msg.CertificateVerify, algorithm=u16, signature=st.binary(min_size=1, max_size=300)
)

new_session_tickets = st.builds(
    msg.NewSessionTicket,
    lifetime=u32,
    age_add=u32,
    nonce=st.binary(max_size=255),
    ticket=st.binary(min_size=1, max_size=200),
    extensions=extension_lists,
)

key_updates = st.builds(msg.KeyUpdate, st.sampled_from([0, 1]))

# TLS 1.2 (RFC 5246, RFC 8422, RFC 5077)
server_key_exchanges = st.builds(
    msg.ServerKeyExchangeECDHE,
    group=u16,
    public=st.binary(min_size=1, max_size=255),
    algorithm=u16,
    signature=st.binary(min_size=1, max_size=300),
)
client_key_exchanges = st.binary(min_size=1, max_size=255)
new_session_tickets12 = st.builds(
    msg.NewSessionTicket12, lifetime_hint=u32, ticket=st.binary(max_size=300)
)
certificates12 = st.lists(st.binary(min_size=1, max_size=120), max_size=5).map(tuple)

certificate_requests = st.builds(
    msg.CertificateRequest,
    request_context=st.binary(max_size=20),
    extensions=extension_lists.filter(bool),  # extensions<2..2^16-1>
)
certificate_requests12 = st.builds(
    msg.CertificateRequest12,
    certificate_types=st.binary(min_size=1, max_size=10),
    signature_algorithms=st.lists(u16, min_size=1, max_size=20).map(tuple),
    authorities=st.lists(st.binary(min_size=1, max_size=60), max_size=4).map(tuple),
)

heartbeats = st.builds(msg.HeartbeatMessage, type=u8, payload=st.binary(max_size=300))
heartbeat_paddings = st.binary(min_size=16, max_size=40)

HOST_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
labels = st.text(HOST_CHARS, min_size=1, max_size=20)
host_names = (
    st.lists(labels, min_size=1, max_size=8)
    .map(".".join)
    .filter(lambda h: len(h) <= ext.MAX_HOST_NAME)
)

alpn_names = st.text(
    st.characters(min_codepoint=0, max_codepoint=255), min_size=1, max_size=ext.MAX_ALPN_NAME
)
alpn_lists = st.lists(alpn_names, min_size=1, max_size=5).map(tuple)

uint16_lists = st.lists(u16, min_size=1, max_size=40).map(tuple)

# RFC 8446 4.2.11: PskIdentity identities<7..2^16-1> (identity<1..2^16-1>, uint32 age),
# PskBinderEntry binders<33..2^16-1> (each <32..255>), as many binders as identities.
offered_psks = st.integers(1, ext.MAX_PSK_IDENTITIES).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(st.binary(min_size=1, max_size=60), u32), min_size=n, max_size=n).map(
            tuple
        ),
        st.lists(st.binary(min_size=32, max_size=64), min_size=n, max_size=n).map(tuple),
    )
)


def expected_psks(psks: tuple[tuple[tuple[bytes, int], ...], tuple[bytes, ...]]) -> Any:
    identities, binders = psks
    return ext.OfferedPsks(identities, binders, 2 + sum(1 + len(b) for b in binders))


def push_offered_psks(psks: tuple[tuple[tuple[bytes, int], ...], tuple[bytes, ...]]) -> bytes:
    return ext.push_pre_shared_key_client(*psks)


key_share_lists = unique_by_first(st.tuples(u16, st.binary(min_size=1, max_size=100)), max_size=4)


def encode(push: Callable[[Writer, Any], None], m: object) -> bytes:
    w = Writer()
    push(w, m)
    return w.getvalue()


def push_supported_versions(versions: tuple[int, ...]) -> bytes:
    w = Writer()
    with w.block(1):
        for v in versions:
            w.uint16(v)
    return w.getvalue()


def push_uint16_list_body(values: tuple[int, ...]) -> bytes:
    w = Writer()
    msg.push_uint16_list(w, values)
    return w.getvalue()


def push_psk_modes(modes: bytes) -> bytes:
    w = Writer()
    w.opaque(1, modes)
    return w.getvalue()


# ----- round trips --------------------------------------------------------------------------

# (strategy, push, pull) for every message in messages.py; pull takes a Reader.
MESSAGE_ROUND_TRIPS: dict[
    str, tuple[st.SearchStrategy[Any], Callable[..., Any], Callable[..., Any]]
] = {
    "client_hello": (client_hellos, msg.push_client_hello, msg.pull_client_hello),
    "server_hello": (server_hellos, msg.push_server_hello, msg.pull_server_hello),
    "encrypted_extensions": (
        encrypted_extensions,
        msg.push_encrypted_extensions,
        msg.pull_encrypted_extensions,
    ),
    "certificate": (
        certificates,
        msg.push_certificate,
        lambda r: msg.pull_certificate(r, 0xFFFFFF, 100),
    ),
    "certificate_verify": (
        certificate_verifies,
        msg.push_certificate_verify,
        msg.pull_certificate_verify,
    ),
    "new_session_ticket": (
        new_session_tickets,
        msg.push_new_session_ticket,
        msg.pull_new_session_ticket,
    ),
    "key_update": (key_updates, msg.push_key_update, msg.pull_key_update),
    "server_key_exchange": (
        server_key_exchanges,
        msg.push_server_key_exchange,
        msg.pull_server_key_exchange,
    ),
    "client_key_exchange": (
        client_key_exchanges,
        msg.push_client_key_exchange,
        msg.pull_client_key_exchange,
    ),
    "new_session_ticket12": (
        new_session_tickets12,
        msg.push_new_session_ticket12,
        msg.pull_new_session_ticket12,
    ),
    "certificate_request": (
        certificate_requests,
        msg.push_certificate_request,
        msg.pull_certificate_request,
    ),
    "certificate_request12": (
        certificate_requests12,
        msg.push_certificate_request12,
        msg.pull_certificate_request12,
    ),
    "certificate12": (
        certificates12,
        msg.push_certificate12,
        lambda r: msg.pull_certificate12(r, 0xFFFFFF, 100),
    ),
}


@pytest.mark.parametrize("name", sorted(MESSAGE_ROUND_TRIPS))
def test_message_round_trips(name: str) -> None:
    strategy, push, pull = MESSAGE_ROUND_TRIPS[name]

    @PARSER
    @given(strategy)
    def round_trip(m: object) -> None:
        data = encode(push, m)
        assert pull(Reader(data)) == m
        # And the encoding is canonical: re-encoding the parsed message gives the same bytes.
        assert encode(push, pull(Reader(data))) == data

    round_trip()


@PARSER
@given(st.sampled_from([32, 48]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
def test_finished_round_trips(verify_data: bytes) -> None:
    data = encode(msg.push_finished, msg.Finished(verify_data))
    assert msg.pull_finished(Reader(data), len(verify_data)) == msg.Finished(verify_data)
    expect_decode_error(lambda: msg.pull_finished(Reader(data + b"\x00"), len(verify_data)))
    expect_decode_error(lambda: msg.pull_finished(Reader(data[:-1]), len(verify_data)))


@PARSER
@given(extension_lists)
def test_extensions_round_trip(extensions: tuple[msg.Extension, ...]) -> None:
    w = Writer()
    msg.push_extensions(w, extensions)
    r = Reader(w.getvalue())
    assert msg.pull_extensions(r) == extensions
    assert r.at_end()


@PARSER
@given(st.lists(u16, min_size=1, max_size=100).map(tuple))
def test_uint16_list_round_trips(values: tuple[int, ...]) -> None:
    r = Reader(push_uint16_list_body(values))
    assert msg.pull_uint16_list(r, 2, 0xFFFE) == values
    assert r.at_end()


@PARSER
@given(heartbeats, heartbeat_paddings)
def test_heartbeat_round_trips(m: msg.HeartbeatMessage, padding: bytes) -> None:
    assert msg.pull_heartbeat(msg.push_heartbeat(m, padding)) == m


@PARSER
@given(u8, st.binary(max_size=60), st.integers(1, 0xFFFF))
def test_heartbeat_payload_length_beyond_the_record_is_a_lie(
    msg_type: int, rest: bytes, extra: int
) -> None:
    """Heartbleed: a payload_length the record cannot hold (with its 16 bytes of padding)
    is reported, never read."""
    claimed = min(max(len(rest) - msg.HEARTBEAT_MIN_PADDING, 0) + extra, 0xFFFF)
    if claimed + msg.HEARTBEAT_MIN_PADDING <= len(rest):
        return
    data = bytes((msg_type,)) + claimed.to_bytes(2, "big") + rest
    with pytest.raises(msg.HeartbeatLie) as caught:
        msg.pull_heartbeat(data)
    assert caught.value.claimed == claimed


@PARSER
@given(st.sampled_from([0, 1]))
def test_key_update_values_parse(value: int) -> None:
    assert msg.pull_key_update(Reader(bytes((value,)))) == msg.KeyUpdate(value)


@PARSER
@given(st.integers(2, 0xFF))
def test_key_update_other_values_are_illegal(value: int) -> None:
    with pytest.raises(TLSError) as caught:
        msg.pull_key_update(Reader(bytes((value,))))
    assert caught.value.alert is AlertDescription.ILLEGAL_PARAMETER


@PARSER
@given(st.lists(certificate_entries, min_size=2, max_size=6))
def test_certificate_chain_caps(entries: list[msg.CertificateEntry]) -> None:
    data = encode(msg.push_certificate, msg.Certificate(b"", tuple(entries)))
    expect_decode_error(lambda: msg.pull_certificate(Reader(data), 0xFFFFFF, len(entries) - 1))
    chain_bytes = len(data) - 1 - 3  # minus context and the chain's own length prefix
    expect_decode_error(lambda: msg.pull_certificate(Reader(data), chain_bytes - 1, 100))
    assert len(msg.pull_certificate(Reader(data), chain_bytes, len(entries)).entries) == len(
        entries
    )


@PARSER
@given(st.integers(0, 255), st.binary(max_size=100))
def test_handshake_message_framing(msg_type: int, body: bytes) -> None:
    framed = msg.handshake_message(msg_type, body)
    r = Reader(framed)
    assert r.uint8() == msg_type
    assert r.opaque(3) == body
    assert r.at_end()


# Extension bodies: (strategy, push, pull, expected) where pull takes the body bytes.
EXTENSION_ROUND_TRIPS: dict[
    str, tuple[st.SearchStrategy[Any], Callable[[Any], bytes], Callable[[bytes], Any]]
] = {
    "server_name": (host_names, ext.push_server_name, ext.pull_server_name),
    "supported_versions": (
        st.lists(u16, min_size=1, max_size=127).map(tuple),
        push_supported_versions,
        ext.pull_supported_versions_client,
    ),
    "uint16_list_ext": (
        uint16_lists,
        push_uint16_list_body,
        lambda body: ext.pull_uint16_list_ext(body, 2, "supported_groups"),
    ),
    "key_share_client": (key_share_lists, ext.push_key_share_client, ext.pull_key_share_client),
    "alpn": (alpn_lists, ext.push_alpn, ext.pull_alpn),
    "cookie": (st.binary(min_size=1, max_size=300), ext.push_cookie, ext.pull_cookie),
    "heartbeat_mode": (
        st.sampled_from(list(HeartbeatMode)),
        lambda mode: bytes((mode,)),
        ext.pull_heartbeat_mode,
    ),
    "psk_key_exchange_modes": (
        st.binary(min_size=1, max_size=255),
        push_psk_modes,
        ext.pull_psk_key_exchange_modes,
    ),
}


@PARSER
@given(offered_psks)
def test_pre_shared_key_round_trips(
    psks: tuple[tuple[tuple[bytes, int], ...], tuple[bytes, ...]],
) -> None:
    assert ext.pull_pre_shared_key_client(push_offered_psks(psks)) == expected_psks(psks)


@PARSER
@given(offered_psks, st.binary(min_size=32, max_size=40))
def test_pre_shared_key_needs_one_binder_per_identity(
    psks: tuple[tuple[tuple[bytes, int], ...], tuple[bytes, ...]], extra: bytes
) -> None:
    identities, binders = psks
    with pytest.raises(TLSError) as caught:
        ext.pull_pre_shared_key_client(
            ext.push_pre_shared_key_client(identities, (*binders, extra))
        )
    assert caught.value.alert is AlertDescription.ILLEGAL_PARAMETER


@pytest.mark.parametrize("name", sorted(EXTENSION_ROUND_TRIPS))
def test_extension_round_trips(name: str) -> None:
    strategy, push, pull = EXTENSION_ROUND_TRIPS[name]

    @PARSER
    @given(strategy)
    def round_trip(value: object) -> None:
        assert pull(push(value)) == value

    round_trip()


@PARSER
@given(host_names)
def test_server_name_is_case_insensitive(host: str) -> None:
    assert ext.pull_server_name(ext.push_server_name(host.upper())) == host


@PARSER
@given(u16, st.binary(min_size=1, max_size=100))
def test_key_share_entry_round_trips(group: int, key: bytes) -> None:
    entry = ext.push_key_share_entry(group, key)
    body = len(entry).to_bytes(2, "big") + entry
    assert ext.pull_key_share_client(body) == ((group, key),)


@st.composite
def client_hello_offers(draw: st.DrawFn) -> tuple[tuple[msg.Extension, ...], dict[str, Any]]:
    """A valid set of ClientHello extensions and the offer they should parse to."""
    expected: dict[str, Any] = {}
    extensions: list[msg.Extension] = []
    if draw(st.booleans()):
        host = draw(host_names)
        extensions.append((ExtensionType.SERVER_NAME, ext.push_server_name(host)))
        expected["server_name"] = host
    if draw(st.booleans()):
        versions = draw(st.lists(u16, min_size=1, max_size=5).map(tuple))
        extensions.append((ExtensionType.SUPPORTED_VERSIONS, push_supported_versions(versions)))
        expected["supported_versions"] = versions
    for name, ext_type in (
        ("supported_groups", ExtensionType.SUPPORTED_GROUPS),
        ("signature_algorithms", ExtensionType.SIGNATURE_ALGORITHMS),
        ("signature_algorithms_cert", ExtensionType.SIGNATURE_ALGORITHMS_CERT),
    ):
        if draw(st.booleans()):
            values = draw(uint16_lists)
            extensions.append((ext_type, push_uint16_list_body(values)))
            expected[name] = values
    if draw(st.booleans()):
        shares = draw(key_share_lists)
        extensions.append((ExtensionType.KEY_SHARE, ext.push_key_share_client(shares)))
        expected["key_shares"] = shares
        expected["has_key_share"] = True
    if draw(st.booleans()):
        names = draw(alpn_lists)
        extensions.append((ExtensionType.ALPN, ext.push_alpn(names)))
        expected["alpn"] = names
    if draw(st.booleans()):
        cookie = draw(st.binary(min_size=1, max_size=50))
        extensions.append((ExtensionType.COOKIE, ext.push_cookie(cookie)))
        expected["cookie"] = cookie
    if draw(st.booleans()):
        mode = draw(st.sampled_from(list(HeartbeatMode)))
        extensions.append((ExtensionType.HEARTBEAT, bytes((mode,))))
        expected["heartbeat_mode"] = mode
    if draw(st.booleans()):
        modes = draw(st.binary(min_size=1, max_size=4))
        extensions.append((ExtensionType.PSK_KEY_EXCHANGE_MODES, push_psk_modes(modes)))
        expected["psk_modes"] = modes
    if draw(st.booleans()):
        extensions.append((ExtensionType.EARLY_DATA, b""))
        expected["has_early_data"] = True
    known = {int(e) for e in ExtensionType}
    unknown = draw(
        st.lists(
            st.tuples(u16.filter(lambda t: t not in known), st.binary(max_size=20)),
            max_size=3,
            unique_by=lambda e: e[0],
        )
    )
    extensions += unknown
    if draw(st.booleans()):
        info = draw(st.binary(max_size=40))
        extensions.append((ExtensionType.RENEGOTIATION_INFO, bytes((len(info),)) + info))
        expected["renegotiation_info"] = info
    if draw(st.booleans()):
        extensions.append((ExtensionType.EXTENDED_MASTER_SECRET, b""))
        expected["extended_master_secret"] = True
    if draw(st.booleans()):
        formats = draw(st.binary(min_size=1, max_size=4))
        extensions.append((ExtensionType.EC_POINT_FORMATS, bytes((len(formats),)) + formats))
        expected["ec_point_formats"] = formats
    if draw(st.booleans()):
        ticket = draw(st.binary(max_size=60))
        extensions.append((ExtensionType.SESSION_TICKET, ticket))
        expected["session_ticket"] = ticket
    extensions = draw(st.permutations(extensions))
    if draw(st.booleans()):
        psks = draw(offered_psks)
        extensions.append((ExtensionType.PRE_SHARED_KEY, push_offered_psks(psks)))
        expected["has_pre_shared_key"] = True
        expected["pre_shared_key_last"] = True
        expected["pre_shared_key"] = expected_psks(psks)
    return tuple(extensions), expected


@PARSER
@given(client_hello_offers())
def test_client_hello_extensions_parse_to_the_offer(
    case: tuple[tuple[msg.Extension, ...], dict[str, Any]],
) -> None:
    extensions, expected = case
    offer = ext.parse_client_hello_extensions(extensions)
    defaults = ext.ClientHelloOffer(
        None, (), (), (), (), (), (), None, None, b"", False, False, False
    )
    for field in defaults.__slots__:  # type: ignore[attr-defined]
        want = expected.get(field, getattr(defaults, field))
        assert getattr(offer, field) == want, field


@PARSER
@given(client_hello_offers(), st.binary(max_size=20))
def test_pre_shared_key_not_last_is_illegal(
    case: tuple[tuple[msg.Extension, ...], dict[str, Any]], psk: bytes
) -> None:
    extensions, _ = case
    extensions = tuple(e for e in extensions if e[0] != ExtensionType.PRE_SHARED_KEY)
    if not extensions:
        return
    moved = ((ExtensionType.PRE_SHARED_KEY, psk), *extensions)
    with pytest.raises(TLSError) as caught:
        ext.parse_client_hello_extensions(moved)
    assert caught.value.alert is AlertDescription.ILLEGAL_PARAMETER


# ----- random and broken bytes: a value or the engine's own error, nothing else -------------


# Every parser with what it may raise for bad input. pull_* on a Reader are wrapped.
def _on_reader(pull: Callable[[Reader], object]) -> Callable[[bytes], object]:
    def parse(data: bytes) -> object:
        return pull(Reader(data))

    return parse


def _pull_extensions_whole(r: Reader) -> object:
    value = msg.pull_extensions(r)
    r.expect_end("extensions")
    return value


def _pull_uint16_list_whole(r: Reader) -> object:
    value = msg.pull_uint16_list(r, 2, 0xFFFE)
    r.expect_end("list")
    return value


PARSERS: dict[str, Callable[[bytes], object]] = {
    "pull_extensions": _on_reader(_pull_extensions_whole),
    "pull_uint16_list": _on_reader(_pull_uint16_list_whole),
    "pull_client_hello": _on_reader(msg.pull_client_hello),
    "pull_server_hello": _on_reader(msg.pull_server_hello),
    "pull_encrypted_extensions": _on_reader(msg.pull_encrypted_extensions),
    "pull_certificate": _on_reader(lambda r: msg.pull_certificate(r, 400, 3)),
    "pull_certificate_verify": _on_reader(msg.pull_certificate_verify),
    "pull_finished": _on_reader(lambda r: msg.pull_finished(r, 32)),
    "pull_new_session_ticket": _on_reader(msg.pull_new_session_ticket),
    "pull_key_update": _on_reader(msg.pull_key_update),
    "pull_heartbeat": msg.pull_heartbeat,
    "pull_server_key_exchange": _on_reader(msg.pull_server_key_exchange),
    "pull_client_key_exchange": _on_reader(msg.pull_client_key_exchange),
    "pull_new_session_ticket12": _on_reader(msg.pull_new_session_ticket12),
    "pull_certificate_request": _on_reader(msg.pull_certificate_request),
    "pull_certificate_request12": _on_reader(msg.pull_certificate_request12),
    "pull_certificate12": _on_reader(lambda r: msg.pull_certificate12(r, 400, 3)),
    "pull_server_name": ext.pull_server_name,
    "pull_supported_versions_client": ext.pull_supported_versions_client,
    "pull_uint16_list_ext": lambda body: ext.pull_uint16_list_ext(body, 2, "test"),
    "pull_key_share_client": ext.pull_key_share_client,
    "pull_alpn": ext.pull_alpn,
    "pull_cookie": ext.pull_cookie,
    "pull_heartbeat_mode": ext.pull_heartbeat_mode,
    "pull_psk_key_exchange_modes": ext.pull_psk_key_exchange_modes,
    "pull_pre_shared_key_client": ext.pull_pre_shared_key_client,
}

# Valid encodings to break, per parser (random bytes alone rarely get past the first length).
VALID_ENCODINGS: dict[str, st.SearchStrategy[bytes]] = {
    "pull_extensions": extension_lists.map(lambda es: encode(msg.push_extensions, es)),
    "pull_uint16_list": uint16_lists.map(push_uint16_list_body),
    "pull_client_hello": client_hellos.map(lambda m: encode(msg.push_client_hello, m)),
    "pull_server_hello": server_hellos.map(lambda m: encode(msg.push_server_hello, m)),
    "pull_encrypted_extensions": encrypted_extensions.map(
        lambda m: encode(msg.push_encrypted_extensions, m)
    ),
    "pull_certificate": certificates.map(lambda m: encode(msg.push_certificate, m)),
    "pull_certificate_verify": certificate_verifies.map(
        lambda m: encode(msg.push_certificate_verify, m)
    ),
    "pull_finished": st.binary(min_size=32, max_size=32),
    "pull_new_session_ticket": new_session_tickets.map(
        lambda m: encode(msg.push_new_session_ticket, m)
    ),
    "pull_key_update": key_updates.map(lambda m: encode(msg.push_key_update, m)),
    "pull_heartbeat": st.builds(msg.push_heartbeat, heartbeats, heartbeat_paddings),
    "pull_server_key_exchange": server_key_exchanges.map(
        lambda m: encode(msg.push_server_key_exchange, m)
    ),
    "pull_client_key_exchange": client_key_exchanges.map(
        lambda m: encode(msg.push_client_key_exchange, m)
    ),
    "pull_new_session_ticket12": new_session_tickets12.map(
        lambda m: encode(msg.push_new_session_ticket12, m)
    ),
    "pull_certificate_request": certificate_requests.map(
        lambda m: encode(msg.push_certificate_request, m)
    ),
    "pull_certificate_request12": certificate_requests12.map(
        lambda m: encode(msg.push_certificate_request12, m)
    ),
    "pull_certificate12": certificates12.map(lambda m: encode(msg.push_certificate12, m)),
    "pull_server_name": host_names.map(ext.push_server_name),
    "pull_supported_versions_client": st.lists(u16, min_size=1, max_size=10)
    .map(tuple)
    .map(push_supported_versions),
    "pull_uint16_list_ext": uint16_lists.map(push_uint16_list_body),
    "pull_key_share_client": key_share_lists.map(ext.push_key_share_client),
    "pull_alpn": alpn_lists.map(ext.push_alpn),
    "pull_cookie": st.binary(min_size=1, max_size=50).map(ext.push_cookie),
    "pull_heartbeat_mode": st.sampled_from([b"\x01", b"\x02"]),
    "pull_psk_key_exchange_modes": st.binary(min_size=1, max_size=5).map(push_psk_modes),
    "pull_pre_shared_key_client": offered_psks.map(push_offered_psks),
}


def allowed_errors(name: str) -> tuple[type[Exception], ...]:
    return (TLSError, msg.HeartbeatLie) if name == "pull_heartbeat" else (TLSError,)


@st.composite
def broken(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with one to three bytes changed, cut, inserted or removed."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "truncate", "insert", "delete", "length"]))
        at = draw(st.integers(0, len(data)))
        if kind == "set" and data:
            data[min(at, len(data) - 1)] = draw(u8)
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[min(at, len(data) - 1)]
        elif kind == "length" and data:
            # Length prefixes are where the bugs live: push one to an edge.
            data[min(at, len(data) - 1)] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
    return bytes(data)


def test_every_parser_is_covered() -> None:
    """A new pull_* in messages.py or extensions.py needs a line in PARSERS (and a round
    trip above): this test fails until it has one."""
    found = {
        name
        for module in (msg, ext)
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("pull_") and fn.__module__ == module.__name__
    }
    assert found <= set(PARSERS), f"parsers without a property test: {sorted(found - set(PARSERS))}"
    assert set(PARSERS) == set(VALID_ENCODINGS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_random_bytes_give_a_value_or_an_alert(name: str) -> None:
    parse, errors = PARSERS[name], allowed_errors(name)

    @PARSER
    @given(st.one_of(st.binary(max_size=300), broken(VALID_ENCODINGS[name])))
    def fuzz(data: bytes) -> None:
        try:
            parse(data)
        except errors:
            pass

    fuzz()


@PARSER
@given(st.binary(max_size=200))
def test_heartbeat_never_returns_more_than_it_was_sent(data: bytes) -> None:
    try:
        m = msg.pull_heartbeat(data)
    except (TLSError, msg.HeartbeatLie):
        return
    assert len(m.payload) + 3 + msg.HEARTBEAT_MIN_PADDING <= len(data)
    assert m.payload == data[3 : 3 + len(m.payload)]


KNOWN_EXTENSION_TYPES = st.sampled_from([int(e) for e in ExtensionType])


@PARSER
@given(
    st.lists(
        st.tuples(st.one_of(KNOWN_EXTENSION_TYPES, u16), st.binary(max_size=40)),
        max_size=8,
        unique_by=lambda e: e[0],
    ).map(tuple)
)
def test_random_client_hello_extensions_give_an_offer_or_an_alert(
    extensions: tuple[msg.Extension, ...],
) -> None:
    try:
        ext.parse_client_hello_extensions(extensions)
    except TLSError:
        pass


@PARSER
@given(client_hello_offers().flatmap(lambda case: st.tuples(st.just(case[0]), st.data())))
def test_broken_client_hello_extensions_give_an_offer_or_an_alert(
    case: tuple[tuple[msg.Extension, ...], st.DataObject],
) -> None:
    extensions, data = case
    if not extensions:
        return
    index = data.draw(st.integers(0, len(extensions) - 1))
    ext_type, body = extensions[index]
    bad_body = data.draw(broken(st.just(body)))
    mutated = (*extensions[:index], (ext_type, bad_body), *extensions[index + 1 :])
    try:
        ext.parse_client_hello_extensions(mutated)
    except TLSError:
        pass


# ----- connections ------------------------------------------------------------------------


@cache
def certified_key() -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "props.outwork.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("props.outwork.test")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(chain=(cert,), signer=FileSigner(key))


@cache
def server_config(heartbeat: bool = False) -> ServerConfig:
    return ServerConfig(
        certificates=(certified_key(),), alpn_protocols=("http/1.1",), heartbeat=heartbeat
    )


# The client's highest version: a TLS 1.3 client, or a TLS 1.2-only one (both are on by
# default in the server, so both handshakes are reachable by any peer).
VERSIONS = st.sampled_from([ProtocolVersion.TLS13, ProtocolVersion.TLS12])


def client_config(
    heartbeat: bool = False, version: ProtocolVersion = ProtocolVersion.TLS13
) -> ClientConfig:
    # A self-signed leaf: these tests are about the record layer, not about the PKI.
    return ClientConfig(
        verify=False, alpn_protocols=("http/1.1",), heartbeat=heartbeat, max_version=version
    )


def fresh_client(version: ProtocolVersion = ProtocolVersion.TLS13) -> ClientConnection:
    client = ClientConnection(client_config(version=version), server_name="props.outwork.test")
    client.start_handshake()
    client.data_to_send()
    return client


@cache
def real_client_hello(version: ProtocolVersion = ProtocolVersion.TLS13) -> bytes:
    client = ClientConnection(client_config(version=version), server_name="props.outwork.test")
    client.start_handshake()
    return client.data_to_send()


@cache
def resumption_hello(version: ProtocolVersion) -> bytes:
    """A ClientHello that resumes a session of `server_config()` (PSK or session ticket)."""
    first, _ = established_pair(version=version)
    assert first.sessions, "the server issued no session ticket"
    client = ClientConnection(
        client_config(version=version), server_name="props.outwork.test", session=first.sessions[-1]
    )
    client.start_handshake()
    return client.data_to_send()


def established_pair(
    heartbeat: bool = False, version: ProtocolVersion = ProtocolVersion.TLS13
) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(client_config(heartbeat, version), server_name="props.outwork.test")
    server = ServerConnection(server_config(heartbeat))
    client.start_handshake()
    for _ in range(10):
        to_server = client.data_to_send()
        if to_server:
            server.receive_data(to_server)
        to_client = server.data_to_send()
        if to_client:
            client.receive_data(to_client)
        if not to_server and not to_client:
            break
    assert client.is_established and server.is_established
    return client, server


def receive(conn: TLSConnection, data: bytes) -> list[ev.Event]:
    """Feed data; it must not raise, must return events, and a failure must be final."""
    events = conn.receive_data(data)
    assert isinstance(events, list)
    assert all(isinstance(e, EVENT_TYPES) for e in events), events
    assert isinstance(conn.data_to_send(), bytes)
    if any(isinstance(e, ev.ConnectionFailed) for e in events):
        assert conn.is_closed
        assert conn.receive_data(data) == []
    return events


def receive_bytewise(conn: TLSConnection, data: bytes) -> list[ev.Event]:
    events: list[ev.Event] = []
    for i in range(len(data)):
        events += conn.receive_data(data[i : i + 1])
    return events


CONTENT_TYPES = st.one_of(st.sampled_from([int(t) for t in ContentType]), u8)


@st.composite
def records(draw: st.DrawFn, max_records: int = 4) -> bytes:
    """Whole records: mostly known content types and version 3.x, random fragments; now and
    then an edge-case length (zero, oversized)."""
    out = bytearray()
    for _ in range(draw(st.integers(1, max_records))):
        content_type = draw(CONTENT_TYPES)
        minor = draw(st.one_of(st.just(3), st.just(1), u8))
        major = draw(st.one_of(st.just(3), u8))
        fragment = draw(st.binary(max_size=120))
        if content_type == ContentType.HANDSHAKE and draw(st.booleans()):
            # A handshake header in front, so reassembly sees plausible message lengths.
            msg_type = draw(st.sampled_from([int(t) for t in HandshakeType]))
            length = draw(st.one_of(st.integers(0, len(fragment)), u24))
            fragment = bytes((msg_type,)) + length.to_bytes(3, "big") + fragment
        length = len(fragment)
        if draw(st.integers(0, 9)) == 0:
            length = draw(st.sampled_from([MAX_PLAINTEXT + 1, MAX_PLAINTEXT + 257, 0xFFFF]))
            out += bytes((content_type, major, minor)) + length.to_bytes(2, "big")
            break  # a header that announces more than follows ends the input
        out += bytes((content_type, major, minor)) + length.to_bytes(2, "big") + fragment
    return bytes(out)


@CONNECTION
@given(st.one_of(st.binary(max_size=400), records()))
def test_server_takes_any_bytes(data: bytes) -> None:
    receive(ServerConnection(server_config()), data)


@CONNECTION
@given(st.one_of(st.binary(max_size=400), records()), VERSIONS)
def test_client_takes_any_bytes_after_its_hello(data: bytes, version: ProtocolVersion) -> None:
    receive(fresh_client(version), data)


@CONNECTION
@given(records())
def test_server_records_byte_by_byte_same_as_at_once(data: bytes) -> None:
    at_once = receive(ServerConnection(server_config()), data)
    assert receive_bytewise(ServerConnection(server_config()), data) == at_once


@CONNECTION
@given(records(), VERSIONS)
def test_client_records_byte_by_byte_same_as_at_once(data: bytes, version: ProtocolVersion) -> None:
    at_once = receive(fresh_client(version), data)
    assert receive_bytewise(fresh_client(version), data) == at_once


@st.composite
def client_hello_mutations(draw: st.DrawFn) -> bytes:
    """A real ClientHello record from the engine's client (TLS 1.3 or 1.2, new or resuming a
    session) with one byte changed, one removed, one added, or cut short."""
    version = draw(VERSIONS)
    resume = draw(st.booleans())
    hello = bytearray(resumption_hello(version) if resume else real_client_hello(version))
    kind = draw(st.sampled_from(["set", "truncate", "delete", "insert"]))
    at = draw(st.integers(0, len(hello) - 1))
    if kind == "set":
        hello[at] = draw(u8.filter(lambda b: b != hello[at]))
    elif kind == "truncate":
        del hello[at:]
    elif kind == "delete":
        del hello[at]
    else:
        hello[at:at] = bytes((draw(u8),))
    return bytes(hello)


@CONNECTION
@given(client_hello_mutations())
def test_mutated_client_hello_never_raises(data: bytes) -> None:
    at_once = receive(ServerConnection(server_config()), data)
    assert receive_bytewise(ServerConnection(server_config()), data) == at_once


@pytest.mark.parametrize("resume", [False, True], ids=["new", "resume"])
@pytest.mark.parametrize("version", [ProtocolVersion.TLS13, ProtocolVersion.TLS12])
def test_real_client_hello_is_accepted_whole_and_byte_by_byte(
    version: ProtocolVersion, resume: bool
) -> None:
    hello = resumption_hello(version) if resume else real_client_hello(version)
    for events in (
        receive(ServerConnection(server_config()), hello),
        receive_bytewise(ServerConnection(server_config()), hello),
    ):
        assert not any(isinstance(e, ev.ConnectionFailed) for e in events)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), records()), VERSIONS)
def test_established_server_takes_any_bytes(data: bytes, version: ProtocolVersion) -> None:
    _, server = established_pair(version=version)
    receive(server, data)


@st.composite
def sealed_contents(draw: st.DrawFn) -> list[tuple[int, bytes]]:
    """What goes inside protected records: inner content type and content."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        content_type = draw(CONTENT_TYPES)
        if content_type == ContentType.HANDSHAKE and draw(st.booleans()):
            msg_type = draw(st.sampled_from([int(t) for t in HandshakeType]))
            body = draw(st.binary(max_size=40))
            if msg_type == HandshakeType.KEY_UPDATE and draw(st.booleans()):
                body = bytes((draw(st.sampled_from([0, 1])),))
            content = msg.handshake_message(msg_type, body)
        elif content_type == ContentType.HEARTBEAT and draw(st.booleans()):
            claimed = draw(st.one_of(st.integers(0, 40), u16))
            content = bytes((1,)) + claimed.to_bytes(2, "big") + draw(st.binary(max_size=60))
        elif content_type == ContentType.ALERT and draw(st.booleans()):
            content = bytes((draw(st.sampled_from([1, 2])), draw(u8)))
        else:
            content = draw(st.binary(max_size=60))
        out.append((content_type, content))
    return out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sealed_contents(), st.booleans(), st.booleans(), VERSIONS)
def test_protected_records_of_any_content_never_raise(
    contents: list[tuple[int, bytes]], heartbeat: bool, to_client: bool, version: ProtocolVersion
) -> None:
    """Records sealed with the real traffic key, so what is inside them gets exercised:
    alerts, KeyUpdate, heartbeats, stray handshake messages, unknown inner types."""
    client, server = established_pair(heartbeat, version)
    sender, receiver = (server, client) if to_client else (client, server)
    for content_type, content in contents:
        sender.send_raw_record(content_type, content)
    sent = sender.data_to_send()
    receive(receiver, sent)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=100), st.integers(0, 0xFFFF), st.binary(min_size=0, max_size=40))
def test_heartbeat_answer_is_never_longer_than_the_request(
    payload: bytes, claimed: int, padding: bytes
) -> None:
    """Heartbleed, end to end: whatever payload_length claims, the answer holds only what
    arrived."""
    client, server = established_pair(heartbeat=True)
    request = bytes((1,)) + claimed.to_bytes(2, "big") + payload + padding
    client.send_raw_record(ContentType.HEARTBEAT, request)
    sent = client.data_to_send()
    events = receive(server, sent)
    answer = server.data_to_send()
    honest = claimed <= len(payload + padding) - msg.HEARTBEAT_MIN_PADDING
    if not honest:
        assert any(isinstance(e, ev.HeartbleedProbe) for e in events)
    answered = [e for e in events if isinstance(e, ev.HeartbeatAnswered)]
    if answered:
        assert answered[0].payload_length == claimed
    # A response is type + length + payload + 16 bytes of padding, sealed like the request.
    assert len(answer) <= len(sent)


# ----- a malicious server: what the client's parsers let through --------------------------


class RewritingServer(ServerConnection):
    """The engine's server with the handshake bytes it sends rewritten before they are
    sealed: a server that lies, under the real handshake keys. By default only its encrypted
    flight (EncryptedExtensions to Finished) is rewritten."""

    def __init__(
        self, config: ServerConfig, rewrite: Callable[[bytes], bytes], everything: bool = False
    ) -> None:
        super().__init__(config)
        self._rewrite = rewrite
        self._everything = everything

    def send_handshake_bytes(self, messages: bytes) -> None:
        encrypted_flight = self._write is not None and self.state is ServerState.WAIT_CLIENT_HELLO
        if self._everything or encrypted_flight:
            messages = self._rewrite(messages)
        super().send_handshake_bytes(messages)


class RewritingClient(ClientConnection):
    """The engine's client with every handshake byte it sends rewritten before sealing."""

    def __init__(self, config: ClientConfig, rewrite: Callable[[bytes], bytes]) -> None:
        super().__init__(config, server_name="props.outwork.test")
        self._rewrite = rewrite

    def send_handshake_bytes(self, messages: bytes) -> None:
        super().send_handshake_bytes(self._rewrite(messages))


def client_against(server: ServerConnection) -> list[ev.Event]:
    client = ClientConnection(client_config(), server_name="props.outwork.test")
    client.start_handshake()
    server.receive_data(client.data_to_send())
    return receive(client, server.data_to_send())


def run_handshake(client: ClientConnection, server: ServerConnection) -> list[ev.Event]:
    """Shuttle bytes until both sides are quiet; every receive_data is checked by `receive`.
    Returns all events, both sides."""
    now = datetime.datetime.now(datetime.UTC).timestamp()
    events: list[ev.Event] = []
    client.start_handshake(now)
    for _ in range(12):
        to_server = client.data_to_send()
        if to_server:
            events += server.receive_data(to_server, now)
        to_client = server.data_to_send()
        if to_client:
            events += client.receive_data(to_client, now)
        if not to_server and not to_client:
            break
    return events


ECDSA_PUBLIC_KEY_OID = bytes.fromhex("06072a8648ce3d0201")  # 1.2.840.10045.2.1
CERTIFICATE_BREAKAGES = ["unknown-key-algorithm", "point-not-on-curve", "x509-version-39"]


def mangled_certificate_der(certificate: x509.Certificate, kind: str) -> bytes:
    """An ECDSA certificate's DER broken in one byte (same length, signature left as is)."""
    der = bytearray(certificate.public_bytes(serialization.Encoding.DER))
    oid = der.index(ECDSA_PUBLIC_KEY_OID)
    if kind == "unknown-key-algorithm":
        der[oid + len(ECDSA_PUBLIC_KEY_OID) - 1] = 0x09  # 1.2.840.10045.2.9
    elif kind == "point-not-on-curve":
        point = der.index(bytes.fromhex("03420004"), oid) + 4
        der[point + 8] ^= 0xFF
    else:  # "x509-version-39": [0] EXPLICIT INTEGER 2 -> 39
        version = der.index(bytes.fromhex("a003020102"))
        der[version + 4] = 39
    return bytes(der)


def swap_certificate(certificate: x509.Certificate, kind: str) -> Callable[[bytes], bytes]:
    good = certificate.public_bytes(serialization.Encoding.DER)
    bad = mangled_certificate_der(certificate, kind)
    return lambda messages: messages.replace(good, bad)


CERTIFICATE_ERRORS = (ValueError, UnsupportedAlgorithm, x509.InvalidVersion)


@pytest.mark.parametrize("version", [ProtocolVersion.TLS13, ProtocolVersion.TLS12])
@pytest.mark.parametrize("kind", CERTIFICATE_BREAKAGES)
def test_client_survives_a_server_certificate_it_cannot_use(
    kind: str, version: ProtocolVersion
) -> None:
    server = RewritingServer(
        server_config(), swap_certificate(certified_key().chain[0], kind), everything=True
    )
    client = ClientConnection(
        replace(client_config(), max_version=version), server_name="props.outwork.test"
    )
    events = run_handshake(client, server)
    assert any(isinstance(e, ev.ConnectionFailed) for e in events)


def _client_auth_cases() -> list[Any]:
    return [
        pytest.param(version, auth, kind, id=f"{version.name}-{auth.name}-{kind}")
        for version in (ProtocolVersion.TLS13, ProtocolVersion.TLS12)
        for auth in (ClientAuth.OPTIONAL, ClientAuth.REQUIRED)
        for kind in CERTIFICATE_BREAKAGES
    ]


@pytest.mark.parametrize(("version", "auth", "kind"), _client_auth_cases())
def test_server_survives_a_client_certificate_it_cannot_use(
    version: ProtocolVersion, auth: ClientAuth, kind: str
) -> None:
    """mTLS: any client can send any certificate; the server must answer with an alert."""
    client_key = certified_key()
    server = ServerConnection(
        replace(server_config(), client_auth=auth, client_ca=client_key.chain)
    )
    config = replace(client_config(), max_version=version, client_certificate=client_key)
    client = RewritingClient(config, swap_certificate(client_key.chain[0], kind))
    run_handshake(client, server)
    assert not server.is_established or auth is ClientAuth.OPTIONAL


@st.composite
def flight_rewrites(draw: st.DrawFn) -> Callable[[bytes], bytes]:
    edits = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["set", "truncate", "delete", "insert"]), st.floats(0, 1), u8
            ),
            min_size=1,
            max_size=2,
        )
    )

    def rewrite(flight: bytes) -> bytes:
        data = bytearray(flight)
        for kind, where, value in edits:
            at = min(int(where * len(data)), max(len(data) - 1, 0))
            if kind == "set" and data:
                data[at] = value
            elif kind == "truncate":
                del data[at:]
            elif kind == "delete" and data:
                del data[at]
            elif kind == "insert":
                data[at:at] = bytes((value,))
        return bytes(data)

    return rewrite


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flight_rewrites())
def test_client_takes_any_server_flight(rewrite: Callable[[bytes], bytes]) -> None:
    """A server's encrypted flight with a byte or two changed, sealed with the real keys, so
    EncryptedExtensions, Certificate, CertificateVerify and Finished parsing is exercised."""
    client_against(RewritingServer(server_config(), rewrite))


def test_verifying_client_without_a_server_name_is_refused_at_construction() -> None:
    config = ClientConfig(verify=True, trust_roots=certified_key().chain)
    with pytest.raises(ValueError, match="server name"):
        ClientConnection(config, server_name=None)


# ----- count caps: any count up to the cap parses, one more is a decode_error ----------------


def _decode_error_or(parse: Callable[[], object]) -> object:
    try:
        return parse()
    except TLSError as error:
        assert error.alert is AlertDescription.DECODE_ERROR, error
        return None


@PARSER
@given(st.integers(0, 40), st.integers(1, 30), st.data())
def test_list_caps_count_entries(count: int, cap: int, data: st.DataObject) -> None:
    groups = tuple(data.draw(st.lists(u16, min_size=count, max_size=count, unique=True)))
    names = tuple(f"p{i}" for i in range(count))
    extensions = tuple((t, b"") for t in groups)
    shares = tuple((g, b"k") for g in groups)
    within = count <= cap
    cases: list[tuple[Callable[[], object], object]] = [
        (lambda: ext.pull_uint16_list_ext(push_uint16_list_body(groups), 0, "t", cap), groups),
        (lambda: ext.pull_key_share_client(ext.push_key_share_client(shares), cap), shares),
        (
            lambda: msg.pull_extensions(Reader(encode(msg.push_extensions, extensions)), 0, cap),
            extensions,
        ),
    ]
    if count:
        cases.append((lambda: ext.pull_alpn(ext.push_alpn(names), cap), names))
    for parse, expected in cases:
        assert _decode_error_or(parse) == (expected if within else None)


@PARSER
@given(st.sampled_from(sorted(CLIENT_SHARE_SIZE)), st.data())
def test_share_check_refuses_with_illegal_parameter_or_accepts(
    group: int, data: st.DataObject
) -> None:
    size = CLIENT_SHARE_SIZE[group]
    share = data.draw(
        st.one_of(st.binary(max_size=size + 2), st.binary(min_size=size, max_size=size))
    )
    try:
        check_share_encoding(group, share)
    except TLSError as error:
        assert error.alert is AlertDescription.ILLEGAL_PARAMETER
    else:
        assert len(share) == size  # whatever passes has the group's exact size


@pytest.mark.parametrize("group", sorted(CLIENT_SHARE_SIZE), ids=hex)
def test_share_check_accepts_every_real_share(group: int) -> None:
    from outwork.tls.enums import NamedGroup
    from outwork.tls.groups import KeyShare

    for _ in range(5):
        check_share_encoding(group, KeyShare(NamedGroup(group)).share)
