"""One `rejects_*` test per malformed field or broken record rule, each with its alert."""

from __future__ import annotations

import dataclasses
import time

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import ClientConfig, Limits, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import ExtensionType, NamedGroup, ProtocolVersion
from outwork.tls.messages import ClientHello, pull_client_hello, push_client_hello
from tests.tls.pki import Leaf

A = AlertDescription


def record(content_type: int, body: bytes, version: bytes = b"\x03\x03") -> bytes:
    return bytes((content_type,)) + version + len(body).to_bytes(2, "big") + body


def client_hello(**config: object) -> ClientHello:
    client = ClientConnection(ClientConfig(**config), server_name="localhost")  # type: ignore[arg-type]
    client.start_handshake()
    data = client.data_to_send()
    return pull_client_hello(Reader(data[9:]))


def encode(hello: ClientHello) -> bytes:
    w = Writer()
    push_client_hello(w, hello)
    body = w.getvalue()
    return b"\x01" + len(body).to_bytes(3, "big") + body


def with_extensions(hello: ClientHello, change: dict[int, bytes | None]) -> ClientHello:
    extensions = [(t, change.get(t, b)) for t, b in hello.extensions]
    kept = tuple((t, b) for t, b in extensions if b is not None)
    return dataclasses.replace(hello, extensions=kept)  # type: ignore[arg-type]


def outcome(leaf: Leaf, data: bytes, **server: object) -> tuple[list[ev.Event], bytes]:
    conn = ServerConnection(ServerConfig(certificates=(leaf.certified(),), **server))  # type: ignore[arg-type]
    events = conn.receive_data(data, time.time())
    return events, conn.data_to_send()


def alert_of(leaf: Leaf, data: bytes, **server: object) -> AlertDescription | None:
    events, out = outcome(leaf, data, **server)
    failed = [e for e in events if isinstance(e, ev.ConnectionFailed)]
    if not failed:
        return None
    # The alert is the last thing written (in plaintext unless keys were already in use).
    if out[-7:-4] == b"\x15\x03\x03":
        assert out.endswith(bytes((2, failed[0].alert)))
    else:
        assert out[-24:-21] == b"\x17\x03\x03"  # one protected record: 2 + 1 + 16 bytes
    return failed[0].alert


@pytest.fixture
def leaf(leaves: dict[str, Leaf]) -> Leaf:
    return leaves["ecdsa-p256"]


def test_well_formed_client_hello_gets_a_server_hello(leaf: Leaf) -> None:
    events, out = outcome(leaf, record(22, encode(client_hello())))
    assert not events and out[0] == 22 and out[5] == 2  # ServerHello, then the encrypted flight


def test_client_hello_split_across_records_and_fed_byte_by_byte(leaf: Leaf) -> None:
    message = encode(client_hello())
    data = b"".join(record(22, message[i : i + 100]) for i in range(0, len(message), 100))
    conn = ServerConnection(ServerConfig(certificates=(leaf.certified(),)))
    for i in range(len(data)):
        assert conn.receive_data(data[i : i + 1], time.time()) == []
    assert conn.data_to_send()[5] == 2


@pytest.mark.parametrize(
    ("name", "change", "alert"),
    [
        (
            "rejects_odd_supported_versions",
            {ExtensionType.SUPPORTED_VERSIONS: b"\x03\x03\x04\x03"},
            A.DECODE_ERROR,
        ),
        ("rejects_missing_key_share", {ExtensionType.KEY_SHARE: None}, A.MISSING_EXTENSION),
        (
            "rejects_missing_supported_groups",
            {ExtensionType.SUPPORTED_GROUPS: None},
            A.MISSING_EXTENSION,
        ),
        (
            "rejects_missing_signature_algorithms",
            {ExtensionType.SIGNATURE_ALGORITHMS: None},
            A.MISSING_EXTENSION,
        ),
        (
            "rejects_only_unknown_signature_algorithms",
            {ExtensionType.SIGNATURE_ALGORITHMS: b"\x00\x02\x02\x01"},
            A.HANDSHAKE_FAILURE,
        ),
        (
            "rejects_key_share_wrong_size",
            {ExtensionType.KEY_SHARE: b"\x00\x06\x00\x1d\x00\x02ab"},
            A.ILLEGAL_PARAMETER,
        ),
        (
            "rejects_key_share_length_overrun",
            {ExtensionType.KEY_SHARE: b"\x00\x06\x00\x1d\x00\x20ab"},
            A.DECODE_ERROR,
        ),
        (
            "rejects_key_share_outside_supported_groups",
            {ExtensionType.KEY_SHARE: b"\x00\x24\x01\x00\x00\x20" + bytes(32)},
            A.ILLEGAL_PARAMETER,
        ),
        (
            "rejects_all_zero_x25519_share",
            {ExtensionType.KEY_SHARE: b"\x00\x24\x00\x1d\x00\x20" + bytes(32)},
            A.ILLEGAL_PARAMETER,
        ),
        (
            "rejects_server_name_list_empty",
            {ExtensionType.SERVER_NAME: b"\x00\x00"},
            A.DECODE_ERROR,
        ),
        (
            "rejects_server_name_not_dns",
            {ExtensionType.SERVER_NAME: b"\x00\x06\x00\x00\x03a/b"},
            A.ILLEGAL_PARAMETER,
        ),
        (
            "rejects_supported_groups_odd",
            {ExtensionType.SUPPORTED_GROUPS: b"\x00\x03\x00\x1d\x00"},
            A.DECODE_ERROR,
        ),
        (
            "rejects_signature_algorithms_trailing",
            {ExtensionType.SIGNATURE_ALGORITHMS: b"\x00\x02\x04\x03\x00"},
            A.DECODE_ERROR,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_rejects_malformed_extension(
    name: str, change: dict[int, bytes | None], alert: A, leaf: Leaf
) -> None:
    hello = with_extensions(client_hello(), change)
    assert alert_of(leaf, record(22, encode(hello))) == alert


@pytest.mark.parametrize("versions", [None, b"\x02\x03\x03"], ids=["absent", "tls12-only"])
def test_rejects_tls12_client_hello_when_listener_wants_tls13(
    versions: bytes | None, leaf: Leaf
) -> None:
    hello = with_extensions(client_hello(), {ExtensionType.SUPPORTED_VERSIONS: versions})
    assert (
        alert_of(leaf, record(22, encode(hello)), min_version=ProtocolVersion.TLS13)
        == A.PROTOCOL_VERSION
    )


def test_rejects_tls12_client_hello_without_extended_master_secret(leaf: Leaf) -> None:
    hello = with_extensions(
        client_hello(),
        {ExtensionType.SUPPORTED_VERSIONS: None, ExtensionType.EXTENDED_MASTER_SECRET: None},
    )
    assert alert_of(leaf, record(22, encode(hello))) == A.HANDSHAKE_FAILURE


def test_rejects_duplicate_extension(leaf: Leaf) -> None:
    hello = client_hello()
    hello = dataclasses.replace(hello, extensions=hello.extensions + (hello.extensions[0],))
    assert alert_of(leaf, record(22, encode(hello))) == A.ILLEGAL_PARAMETER


def test_rejects_pre_shared_key_not_last(leaf: Leaf) -> None:
    hello = client_hello()
    psk = (int(ExtensionType.PRE_SHARED_KEY), b"\x00")
    hello = dataclasses.replace(hello, extensions=(psk,) + hello.extensions)
    assert alert_of(leaf, record(22, encode(hello))) == A.ILLEGAL_PARAMETER


def test_rejects_non_null_compression(leaf: Leaf) -> None:
    hello = dataclasses.replace(client_hello(), legacy_compression_methods=b"\x01\x00")
    assert alert_of(leaf, record(22, encode(hello))) == A.ILLEGAL_PARAMETER


def test_rejects_no_common_cipher_suite(leaf: Leaf) -> None:
    hello = dataclasses.replace(client_hello(), cipher_suites=(0xC02F, 0x009C))
    assert alert_of(leaf, record(22, encode(hello))) == A.HANDSHAKE_FAILURE


def test_rejects_session_id_too_long(leaf: Leaf) -> None:
    message = bytearray(encode(client_hello()))
    message[4 + 2 + 32] = 33  # legacy_session_id length
    assert alert_of(leaf, record(22, bytes(message))) == A.DECODE_ERROR


def test_rejects_trailing_bytes_after_client_hello(leaf: Leaf) -> None:
    message = encode(client_hello())
    body = message[4:] + b"\x00"
    assert (
        alert_of(leaf, record(22, b"\x01" + len(body).to_bytes(3, "big") + body)) == A.DECODE_ERROR
    )


def test_rejects_truncated_client_hello(leaf: Leaf) -> None:
    message = encode(client_hello())
    body = message[4:-3]
    assert (
        alert_of(leaf, record(22, b"\x01" + len(body).to_bytes(3, "big") + body)) == A.DECODE_ERROR
    )


def test_rejects_handshake_message_over_cap(leaf: Leaf) -> None:
    header = b"\x01" + (70_000).to_bytes(3, "big")
    assert alert_of(leaf, record(22, header)) == A.ILLEGAL_PARAMETER


def test_client_hello_cap_is_configurable(leaf: Leaf) -> None:
    data = record(22, encode(client_hello()))
    assert alert_of(leaf, data, limits=Limits(max_client_hello=100)) == A.ILLEGAL_PARAMETER


def test_rejects_buffered_handshake_over_cap(leaf: Leaf) -> None:
    header = b"\x01" + (60_000).to_bytes(3, "big")
    data = record(22, header + bytes(16_000)) * 1
    assert alert_of(leaf, data, limits=Limits(max_buffered_handshake=8_000)) == A.UNEXPECTED_MESSAGE


def test_rejects_first_message_not_client_hello(leaf: Leaf) -> None:
    assert alert_of(leaf, record(22, b"\x02\x00\x00\x00")) == A.UNEXPECTED_MESSAGE


def test_rejects_zero_length_handshake_record(leaf: Leaf) -> None:
    assert alert_of(leaf, record(22, b"")) == A.UNEXPECTED_MESSAGE


def test_rejects_unknown_content_type(leaf: Leaf) -> None:
    assert alert_of(leaf, record(99, b"x")) == A.UNEXPECTED_MESSAGE


def test_rejects_bad_record_version(leaf: Leaf) -> None:
    assert alert_of(leaf, record(22, b"x", version=b"\x02\x00")) == A.DECODE_ERROR


def test_rejects_plaintext_record_over_2_14(leaf: Leaf) -> None:
    assert alert_of(leaf, record(22, bytes(16_385))) == A.RECORD_OVERFLOW


def test_rejects_record_length_over_ciphertext_limit_before_it_arrives(leaf: Leaf) -> None:
    # Only the header: the limit is enforced without waiting for (or buffering) the body.
    assert alert_of(leaf, b"\x17\x03\x03" + (16_384 + 257).to_bytes(2, "big")) == A.RECORD_OVERFLOW


def test_rejects_application_data_before_handshake(leaf: Leaf) -> None:
    assert alert_of(leaf, record(23, b"hello")) == A.UNEXPECTED_MESSAGE


def test_rejects_change_cipher_spec_before_client_hello(leaf: Leaf) -> None:
    assert alert_of(leaf, record(20, b"\x01")) == A.UNEXPECTED_MESSAGE


def test_rejects_malformed_alert_record(leaf: Leaf) -> None:
    assert alert_of(leaf, record(21, b"\x02")) == A.DECODE_ERROR


def test_rejects_handshake_message_spanning_key_change(leaf: Leaf) -> None:
    # ClientHello and the first bytes of a next message in one record: the next message
    # would straddle the switch to handshake keys.
    assert alert_of(leaf, record(22, encode(client_hello()) + b"\x14\x00")) == A.UNEXPECTED_MESSAGE


def test_http_request_on_tls_port_is_refused_cleanly(leaf: Leaf) -> None:
    assert alert_of(leaf, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == A.UNEXPECTED_MESSAGE


def test_change_cipher_spec_accepted_exactly_once(leaf: Leaf, ca: object) -> None:
    from tests.tls.inmemory import pump

    client = ClientConnection(ClientConfig(verify=False), server_name="localhost")
    server = ServerConnection(ServerConfig(certificates=(leaf.certified(),)))
    client.start_handshake()
    server.receive_data(client.data_to_send() + record(20, b"\x01"), time.time())
    events = server.receive_data(record(20, b"\x01"), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.UNEXPECTED_MESSAGE]
    del pump


def test_hello_retry_cookie_must_be_echoed(leaf: Leaf) -> None:
    hello = client_hello(
        key_share_groups=(NamedGroup.SECP256R1,), groups=(NamedGroup.SECP256R1, NamedGroup.X25519)
    )
    conn = ServerConnection(
        ServerConfig(certificates=(leaf.certified(),), groups=(NamedGroup.X25519,))
    )
    conn.receive_data(record(22, encode(hello)), time.time())
    out = conn.data_to_send()
    assert out[5] == 2  # a HelloRetryRequest
    # A second ClientHello with an X25519 share but no cookie.
    retry = client_hello(
        key_share_groups=(NamedGroup.X25519,), groups=(NamedGroup.SECP256R1, NamedGroup.X25519)
    )
    retry = dataclasses.replace(
        retry, random=hello.random, legacy_session_id=hello.legacy_session_id
    )
    events = conn.receive_data(record(22, encode(retry)), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.ILLEGAL_PARAMETER]
