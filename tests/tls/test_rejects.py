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
from outwork.tls.messages import (
    ClientHello,
    ServerHello,
    pull_client_hello,
    pull_server_hello,
    push_client_hello,
)
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


# ----- RFC 8446 on the receiving side: each MUST with the alert it names ----------------------


def pull_first_server_hello(out: bytes) -> ServerHello:
    assert out[0] == 22 and out[5] == 2
    return pull_server_hello(Reader(out[9 : 9 + int.from_bytes(out[6:9], "big")]))


def test_each_handshake_answers_with_a_fresh_key_share(leaf: Leaf) -> None:
    # Forward secrecy: the same ClientHello, replayed, never meets the same server key (nor
    # the same random).
    data = record(22, encode(client_hello()))
    hellos = [pull_first_server_hello(outcome(leaf, data)[1]) for _ in range(3)]
    shares = {dict(h.extensions)[ExtensionType.KEY_SHARE] for h in hellos}
    assert len(shares) == 3
    assert len({h.random for h in hellos}) == 3


def test_rejects_empty_alert_record(leaf: Leaf) -> None:
    # RFC 8446 5.1: no zero-length alert fragments; a wrong record, not a malformed alert.
    assert alert_of(leaf, record(21, b"")) == A.UNEXPECTED_MESSAGE


def test_rejects_empty_protected_alert_record(leaf: Leaf, ca: object) -> None:
    from tests.tls.inmemory import connected_pair

    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaf.certified(),)), ClientConfig(verify=False)
    )
    client.send_raw_record(21, b"")
    events = server.receive_data(client.data_to_send(), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.UNEXPECTED_MESSAGE]


@pytest.mark.parametrize("legacy_version", [0x0300, 0x0301, 0x0302], ids=hex)
def test_rejects_legacy_version_below_tls12(legacy_version: int, leaf: Leaf) -> None:
    # supported_versions still offers TLS 1.3: legacy_version alone disqualifies the hello.
    hello = dataclasses.replace(client_hello(), legacy_version=legacy_version)
    assert alert_of(leaf, record(22, encode(hello))) == A.PROTOCOL_VERSION


def test_empty_key_share_gets_a_hello_retry_request(leaf: Leaf) -> None:
    # RFC 8446 4.2.8: an empty client_shares is allowed; the answer is a HelloRetryRequest.
    hello = with_extensions(client_hello(), {ExtensionType.KEY_SHARE: b"\x00\x00"})
    events, out = outcome(leaf, record(22, encode(hello)))
    assert not events
    assert pull_first_server_hello(out).is_hello_retry_request


def test_empty_key_share_completes_after_the_retry(leaf: Leaf) -> None:
    from tests.tls.inmemory import connected_pair

    client, server, client_events, _ = connected_pair(
        ServerConfig(certificates=(leaf.certified(),)),
        ClientConfig(verify=False, key_share_groups=()),
    )
    assert client.is_established and server.is_established, client_events


@pytest.mark.parametrize(
    ("group", "share"),
    [
        (NamedGroup.SECP256R1, b"\x04" + bytes(64)),  # the all-zero point, not on the curve
        (NamedGroup.SECP256R1, b"\x04" + b"\x01" * 64),  # not on the curve
        (NamedGroup.SECP256R1, b"\x02" + bytes(32) + bytes(32)),  # compressed form, padded
        (NamedGroup.SECP384R1, b"\x04" + bytes(95)),  # a byte short
        (NamedGroup.X448, bytes(56)),
        (NamedGroup.X25519MLKEM768, bytes(1184) + bytes(32)),
    ],
    ids=["p256-zero", "p256-off-curve", "p256-compressed", "p384-short", "x448-zero", "hybrid"],
)
def test_rejects_invalid_key_share_even_when_another_is_chosen(
    group: NamedGroup, share: bytes, leaf: Leaf
) -> None:
    # The server prefers X25519 and the hello carries a good X25519 share: the invalid share
    # of the other group is still refused (RFC 8446 4.2.8.2), whichever one is used.
    from outwork.tls.extensions import push_key_share_client
    from outwork.tls.groups import KeyShare
    from outwork.tls.messages import push_uint16_list

    good = KeyShare(NamedGroup.X25519).share
    w = Writer()
    push_uint16_list(w, (NamedGroup.X25519, group))
    hello = with_extensions(
        client_hello(),
        {
            ExtensionType.SUPPORTED_GROUPS: w.getvalue(),
            ExtensionType.KEY_SHARE: push_key_share_client(
                ((group, share), (NamedGroup.X25519, good))
            ),
        },
    )
    data = record(22, encode(hello))
    assert alert_of(leaf, data, groups=(NamedGroup.X25519, group)) == A.ILLEGAL_PARAMETER


def test_rejects_pre_shared_key_without_psk_key_exchange_modes(leaf: Leaf) -> None:
    from outwork.tls.extensions import push_pre_shared_key_client

    psk = push_pre_shared_key_client(((b"unknown ticket", 0),), (bytes(32),))
    hello = with_extensions(client_hello(), {ExtensionType.PSK_KEY_EXCHANGE_MODES: None})
    hello = dataclasses.replace(
        hello, extensions=hello.extensions + ((int(ExtensionType.PRE_SHARED_KEY), psk),)
    )
    assert alert_of(leaf, record(22, encode(hello))) == A.MISSING_EXTENSION


def test_rejects_early_data_in_the_second_client_hello(leaf: Leaf) -> None:
    groups = {"groups": (NamedGroup.SECP256R1, NamedGroup.X25519)}
    hello = client_hello(key_share_groups=(NamedGroup.SECP256R1,), **groups)
    conn = ServerConnection(
        ServerConfig(certificates=(leaf.certified(),), groups=(NamedGroup.X25519,))
    )
    conn.receive_data(record(22, encode(hello)), time.time())
    retry_request = pull_first_server_hello(conn.data_to_send())
    cookie = dict(retry_request.extensions)[ExtensionType.COOKIE]
    retry = client_hello(key_share_groups=(NamedGroup.X25519,), **groups)
    retry = dataclasses.replace(
        retry,
        random=hello.random,
        legacy_session_id=hello.legacy_session_id,
        extensions=retry.extensions
        + ((int(ExtensionType.COOKIE), cookie), (int(ExtensionType.EARLY_DATA), b"")),
    )
    events = conn.receive_data(record(22, encode(retry)), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.ILLEGAL_PARAMETER]


def test_rejects_alert_between_handshake_fragments(leaf: Leaf) -> None:
    # RFC 8446 5.1: nothing between the records of one handshake message, not even a
    # warning alert the connection would otherwise go on after.
    message = encode(client_hello())
    user_canceled = record(21, b"\x01\x5a")
    data = record(22, message[:50]) + user_canceled + record(22, message[50:])
    assert alert_of(leaf, data) == A.UNEXPECTED_MESSAGE


def test_rejects_application_data_between_handshake_fragments(leaf: Leaf) -> None:
    # After the handshake: a KeyUpdate split over two records with application data between.
    from tests.tls.inmemory import connected_pair

    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaf.certified(),)), ClientConfig(verify=False)
    )
    key_update = b"\x18\x00\x00\x01\x00"
    client.send_raw_record(22, key_update[:2])
    client.send_raw_record(23, b"between the fragments")
    client.send_raw_record(22, key_update[2:])
    events = server.receive_data(client.data_to_send(), time.time())
    assert not [e for e in events if isinstance(e, ev.ApplicationData)]
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.UNEXPECTED_MESSAGE]


@pytest.mark.parametrize("version", [ProtocolVersion.TLS13, ProtocolVersion.TLS12])
@pytest.mark.parametrize("receiver", ["client", "server"])
def test_rejects_plaintext_close_notify_after_the_handshake(
    version: ProtocolVersion, receiver: str, leaf: Leaf
) -> None:
    # A close_notify injected on the path, in the clear: it must not end the peer's data as
    # if it were complete (RFC 8446 5, 6: once keys are in use only protected alerts count).
    from tests.tls.inmemory import connected_pair

    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaf.certified(),)),
        ClientConfig(verify=False, max_version=version),
    )
    sender, target = (server, client) if receiver == "client" else (client, server)
    sender.send_data(b"the first half of a close-delimited body")
    data = sender.data_to_send() + record(21, b"\x01\x00")
    events = target.receive_data(data, time.time())
    assert events[0] == ev.ApplicationData(b"the first half of a close-delimited body")
    assert ev.ConnectionClosed() not in events
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [
        A.UNEXPECTED_MESSAGE if version == ProtocolVersion.TLS13 else A.BAD_RECORD_MAC
    ]


def test_rejects_plaintext_heartbeat_after_the_handshake(leaf: Leaf) -> None:
    from tests.tls.inmemory import connected_pair

    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaf.certified(),), heartbeat=True),
        ClientConfig(verify=False, heartbeat=True),
    )
    assert server.heartbeat_negotiated
    events = server.receive_data(record(24, b"\x01\x00\x03abc" + bytes(16)), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.UNEXPECTED_MESSAGE]


class RogueServer(ServerConnection):
    """A server that answers with EncryptedExtensions the client never asked for."""

    extra: tuple[tuple[int, bytes], ...] = ()

    def _encrypted_extensions(self, offer, transcript, alpn):  # type: ignore[no-untyped-def]
        from outwork.tls.enums import HandshakeType
        from outwork.tls.messages import (
            EncryptedExtensions,
            handshake_message,
            push_encrypted_extensions,
        )

        w = Writer()
        push_encrypted_extensions(w, EncryptedExtensions(self.extra))
        message = handshake_message(HandshakeType.ENCRYPTED_EXTENSIONS, w.getvalue())
        transcript.update(message)
        return message


@pytest.mark.parametrize(
    ("extension", "alert"),
    [
        ((ExtensionType.ALPN, b"\x00\x03\x02h2"), A.UNSUPPORTED_EXTENSION),
        ((ExtensionType.EARLY_DATA, b""), A.UNSUPPORTED_EXTENSION),
        ((ExtensionType.HEARTBEAT, b"\x01"), A.UNSUPPORTED_EXTENSION),
        ((ExtensionType.MAX_FRAGMENT_LENGTH, b"\x01"), A.UNSUPPORTED_EXTENSION),
        ((ExtensionType.RECORD_SIZE_LIMIT, b"\x40\x00"), A.UNSUPPORTED_EXTENSION),
        ((0x7777, b""), A.UNSUPPORTED_EXTENSION),
        # Offered, but not an EncryptedExtensions extension (RFC 8446 4.2).
        ((ExtensionType.KEY_SHARE, b""), A.ILLEGAL_PARAMETER),
        ((ExtensionType.SIGNATURE_ALGORITHMS, b"\x00\x02\x04\x03"), A.ILLEGAL_PARAMETER),
    ],
    ids=[
        "alpn",
        "early_data",
        "heartbeat",
        "max_fragment_length",
        "record_size_limit",
        "unknown",
        "key_share",
        "signature_algorithms",
    ],
)
def test_client_rejects_encrypted_extensions_it_never_offered(
    extension: tuple[int, bytes], alert: A, leaf: Leaf
) -> None:
    from tests.tls.inmemory import pump

    server = RogueServer(ServerConfig(certificates=(leaf.certified(),)))
    server.extra = (extension,)
    client = ClientConnection(ClientConfig(verify=False), server_name="localhost")
    client.start_handshake()
    client_events, _ = pump(client, server)
    assert [e.alert for e in client_events if isinstance(e, ev.ConnectionFailed)] == [alert]


def _server_hello_with(server_out: bytes, change: dict[int, bytes | None]) -> bytes:
    """The first record of a server's output (its ServerHello) with extensions changed."""
    from outwork.tls.messages import push_server_hello

    hello = pull_first_server_hello(server_out)
    extensions = [(t, change.get(t, b)) for t, b in hello.extensions]
    extensions += [(t, b) for t, b in change.items() if t not in dict(hello.extensions)]
    kept = tuple((t, b) for t, b in extensions if b is not None)
    w = Writer()
    push_server_hello(w, dataclasses.replace(hello, extensions=kept))  # type: ignore[arg-type]
    message = b"\x02" + len(w.getvalue()).to_bytes(3, "big") + w.getvalue()
    return record(22, message)


@pytest.mark.parametrize(
    ("change", "alert"),
    [
        ({ExtensionType.ALPN: b"\x00\x09\x08http/1.1"}, A.ILLEGAL_PARAMETER),  # offered; not SH
        ({ExtensionType.HEARTBEAT: b"\x01"}, A.UNSUPPORTED_EXTENSION),  # never offered
        ({0x7777: b""}, A.UNSUPPORTED_EXTENSION),
    ],
    ids=["offered-not-server-hello", "never-offered", "unknown"],
)
def test_client_rejects_server_hello_extensions(
    change: dict[int, bytes | None], alert: A, leaf: Leaf
) -> None:
    client = ClientConnection(
        ClientConfig(verify=False, alpn_protocols=("http/1.1",)), server_name="localhost"
    )
    server = ServerConnection(ServerConfig(certificates=(leaf.certified(),)))
    client.start_handshake()
    server.receive_data(client.data_to_send(), time.time())
    events = client.receive_data(_server_hello_with(server.data_to_send(), change), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [alert]


def test_client_rejects_tls13_it_did_not_offer(leaf: Leaf) -> None:
    # A TLS 1.2-only client: a ServerHello that selects TLS 1.3 is illegal_parameter.
    from outwork.tls.extensions import push_key_share_client
    from outwork.tls.groups import KeyShare

    client = ClientConnection(
        ClientConfig(verify=False, max_version=ProtocolVersion.TLS12), server_name="localhost"
    )
    client.start_handshake()
    offered = pull_client_hello(Reader(client.data_to_send()[9:]))
    assert ExtensionType.KEY_SHARE not in dict(offered.extensions)
    share = push_key_share_client(((NamedGroup.X25519, KeyShare(NamedGroup.X25519).share),))
    tls13 = dataclasses.replace(
        offered,
        cipher_suites=(0x1301,) + offered.cipher_suites,
        extensions=offered.extensions
        + (
            (int(ExtensionType.KEY_SHARE), share),
            (int(ExtensionType.PSK_KEY_EXCHANGE_MODES), b"\x01\x01"),
        ),
    )
    tls13 = with_extensions(tls13, {ExtensionType.SUPPORTED_VERSIONS: b"\x04\x03\x04\x03\x03"})
    server = ServerConnection(ServerConfig(certificates=(leaf.certified(),)))
    server.receive_data(record(22, encode(tls13)), time.time())
    out = server.data_to_send()
    events = client.receive_data(out[: 9 + int.from_bytes(out[6:9], "big")], time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.ILLEGAL_PARAMETER]


def test_client_rejects_non_empty_server_name_in_encrypted_extensions(leaf: Leaf) -> None:
    from tests.tls.inmemory import pump

    server = RogueServer(ServerConfig(certificates=(leaf.certified(),)))
    server.extra = ((ExtensionType.SERVER_NAME, b"\x00\x00"),)
    client = ClientConnection(ClientConfig(verify=False), server_name="localhost")
    client.start_handshake()
    client_events, _ = pump(client, server)
    failed = [e.alert for e in client_events if isinstance(e, ev.ConnectionFailed)]
    assert failed == [A.DECODE_ERROR]


class CertificateExtensionServer(ServerConnection):
    """A server whose CertificateEntry carries an extension (a status_request answer) that
    the client never asked for."""

    def _certificate_flight(self, transcript, certified, scheme):  # type: ignore[no-untyped-def]
        from cryptography.hazmat.primitives.serialization import Encoding

        from outwork.tls.enums import HandshakeType
        from outwork.tls.messages import (
            Certificate,
            CertificateEntry,
            handshake_message,
            push_certificate,
        )

        entry = CertificateEntry(certified.chain[0].public_bytes(Encoding.DER), ((5, b"\x01"),))
        w = Writer()
        push_certificate(w, Certificate(b"", (entry,)))
        message = handshake_message(HandshakeType.CERTIFICATE, w.getvalue())
        transcript.update(message)
        return message


def test_client_rejects_certificate_entry_extensions_it_never_asked_for(leaf: Leaf) -> None:
    from tests.tls.inmemory import pump

    server = CertificateExtensionServer(ServerConfig(certificates=(leaf.certified(),)))
    client = ClientConnection(ClientConfig(verify=False), server_name="localhost")
    client.start_handshake()
    client_events, _ = pump(client, server)
    failed = [e.alert for e in client_events if isinstance(e, ev.ConnectionFailed)]
    assert failed == [A.UNSUPPORTED_EXTENSION]


class CertificateExtensionClient(ClientConnection):
    """A client whose CertificateEntry carries an extension the server's request did not
    ask for."""

    def _send_client_certificate(self, context, schemes):  # type: ignore[no-untyped-def]
        from cryptography.hazmat.primitives.serialization import Encoding

        from outwork.tls.enums import HandshakeType
        from outwork.tls.messages import Certificate, CertificateEntry, push_certificate

        certified = self._config.client_certificate
        assert certified is not None and self._transcript is not None
        entry = CertificateEntry(certified.chain[0].public_bytes(Encoding.DER), ((18, b""),))
        w = Writer()
        push_certificate(w, Certificate(context, (entry,)))
        self._transcript.update(self.send_handshake(HandshakeType.CERTIFICATE, w.getvalue()))


def test_server_rejects_client_certificate_entry_extensions(leaf: Leaf, ca: object) -> None:
    from outwork.tls.clientauth import ClientAuth
    from tests.tls.inmemory import pump
    from tests.tls.pki import CertAuthority

    assert isinstance(ca, CertAuthority)
    client_leaf = ca.issue("ecdsa-p256", ("client",))
    server = ServerConnection(
        ServerConfig(
            certificates=(leaf.certified(),), client_auth=ClientAuth.REQUIRED, client_ca=(ca.cert,)
        )
    )
    client = CertificateExtensionClient(
        ClientConfig(verify=False, client_certificate=client_leaf.certified()),
        server_name="localhost",
    )
    client.start_handshake()
    _, server_events = pump(client, server)
    failed = [e.alert for e in server_events if isinstance(e, ev.ConnectionFailed)]
    assert failed == [A.UNSUPPORTED_EXTENSION]


def test_rejects_plaintext_alert_once_the_peer_protects_its_records(leaf: Leaf) -> None:
    # Mid-handshake: the client has sent a protected record (a heartbeat, under its handshake
    # key), so it has our keys; a plaintext alert after that is not its own.
    from outwork.tls.records import RecordCipher

    client = ClientConnection(ClientConfig(verify=False, heartbeat=True), server_name="localhost")
    server = ServerConnection(ServerConfig(certificates=(leaf.certified(),), heartbeat=True))
    client.start_handshake()
    server.receive_data(client.data_to_send(), time.time())
    client_hs = server._client_hs_secret  # noqa: SLF001 - a client that uses it early
    assert server._suite is not None  # noqa: SLF001
    early = RecordCipher(server._suite, client_hs)  # noqa: SLF001
    heartbeat = early.seal(24, b"\x01\x00\x03abc" + bytes(16))
    assert server.receive_data(heartbeat, time.time()) == []  # during the handshake: ignored
    events = server.receive_data(record(21, b"\x02\x28"), time.time())
    assert [e.alert for e in events if isinstance(e, ev.ConnectionFailed)] == [A.UNEXPECTED_MESSAGE]
    assert not [e for e in events if isinstance(e, ev.AlertReceived)]


def test_plaintext_alert_of_a_peer_without_our_keys_is_still_read(leaf: Leaf) -> None:
    # The client rejected our ServerHello before it had keys: its alert comes in the clear,
    # and the reason is kept (the handshake fails with the client's alert, not ours).
    client = ClientConnection(ClientConfig(verify=False), server_name="localhost")
    server = ServerConnection(ServerConfig(certificates=(leaf.certified(),)))
    client.start_handshake()
    server.receive_data(client.data_to_send(), time.time())
    events = server.receive_data(record(21, b"\x02\x28"), time.time())
    assert ev.AlertReceived(A.HANDSHAKE_FAILURE, fatal=True) in events
