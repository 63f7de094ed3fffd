"""Every peer-growable buffer or count has a named cap; each test here hits one."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.client import MAX_TICKETS
from outwork.tls.codec import Writer
from outwork.tls.config import (
    MAX_CIPHER_SUITES,
    MAX_EMPTY_RECORDS,
    MAX_EXTENSIONS,
    MAX_HANDSHAKE_FRAGMENTS,
    MAX_KEY_SHARES,
    MAX_KEY_UPDATES_PER_FLIGHT,
    MAX_LIST_ENTRIES,
    MAX_PENDING_OUTPUT,
    CertifiedKey,
    ClientConfig,
    Limits,
    ServerConfig,
)
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import ContentType, ExtensionType
from outwork.tls.extensions import (
    MAX_PSK_IDENTITIES,
    pull_pre_shared_key_client,
    push_alpn,
    push_pre_shared_key_client,
)
from outwork.tls.messages import ClientHello, push_uint16_list
from tests.tls.inmemory import connected_pair, pump
from tests.tls.pki import CertAuthority, Leaf
from tests.tls.test_rejects import alert_of, client_hello, encode, record, with_extensions


def failures(events: list[ev.Event]) -> list[AlertDescription]:
    return [e.alert for e in events if isinstance(e, ev.ConnectionFailed)]


def test_empty_record_flood(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)),
        ClientConfig(trust_roots=(ca.cert,)),
    )
    for _ in range(MAX_EMPTY_RECORDS):
        client.send_raw_record(ContentType.APPLICATION_DATA, b"")
    assert failures(server.receive_data(client.data_to_send(), time.time())) == []
    client.send_raw_record(ContentType.APPLICATION_DATA, b"")
    events = server.receive_data(client.data_to_send(), time.time())
    assert failures(events) == [AlertDescription.UNEXPECTED_MESSAGE]


@pytest.mark.parametrize(
    "limits",
    [Limits(max_chain_length=3), Limits(max_certificate_chain=1000)],
    ids=["chain-length", "chain-bytes"],
)
def test_received_certificate_chain_caps(
    limits: Limits, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    leaf = leaves["ecdsa-p256"]
    long_chain = CertifiedKey(chain=(leaf.cert,) + (ca.cert,) * 3, signer=leaf.certified().signer)
    _, _, client_events, _ = connected_pair(
        ServerConfig(certificates=(long_chain,)),
        ClientConfig(trust_roots=(ca.cert,), limits=limits),
    )
    assert failures(client_events) == [AlertDescription.DECODE_ERROR]


class TicketFloodServer(ServerConnection):
    """A server gone rogue: it keeps its key schedule after the handshake (outwork's drops
    it) to mint ticket after ticket."""

    def _release_handshake_state(self) -> None:
        schedule = self._schedule  # noqa: SLF001
        super()._release_handshake_state()
        self._schedule = schedule


def test_new_session_ticket_flood(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client = ClientConnection(ClientConfig(trust_roots=(ca.cert,)), server_name="localhost")
    server = TicketFloodServer(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    client.start_handshake(time.time())
    pump(client, server)
    assert client.is_established
    tickets_so_far = len(client.sessions)
    for _ in range(MAX_TICKETS - tickets_so_far + 1):
        server._send_ticket(time.time(), b"\x00" * 32)  # noqa: SLF001 - a server gone rogue
    events = client.receive_data(server.data_to_send(), time.time())
    assert failures(events) == [AlertDescription.UNEXPECTED_MESSAGE]
    assert len(client.sessions) == MAX_TICKETS


def test_psk_identity_count_cap() -> None:
    identities = tuple((bytes([i]) * 8, i) for i in range(MAX_PSK_IDENTITIES + 1))
    body = push_pre_shared_key_client(identities, (bytes(32),) * len(identities))
    with pytest.raises(TLSError) as info:
        pull_pre_shared_key_client(body)
    assert info.value.alert == AlertDescription.ILLEGAL_PARAMETER


# ----- what a hello may count: far above real clients, refused from the length prefix ---------


def hello_with(leaf: Leaf, **limits: int) -> Callable[[ClientHello], AlertDescription | None]:
    def answer(hello: ClientHello) -> AlertDescription | None:
        return alert_of(leaf, record(22, encode(hello)), limits=Limits(**limits))

    return answer


def test_extension_count_cap(leaves: dict[str, Leaf]) -> None:
    answer = hello_with(leaves["ecdsa-p256"])
    hello = client_hello()
    room = MAX_EXTENSIONS - len(hello.extensions)
    unknown = tuple((0x7000 + i, b"") for i in range(room))
    assert answer(dataclasses.replace(hello, extensions=unknown + hello.extensions)) is None
    over = unknown + ((0x6FFF, b""),) + hello.extensions
    assert answer(dataclasses.replace(hello, extensions=over)) == AlertDescription.DECODE_ERROR
    # The cap is a setting: a listener may hold clients to fewer.
    fewer = hello_with(leaves["ecdsa-p256"], max_extensions=len(hello.extensions) - 1)
    assert fewer(hello) == AlertDescription.DECODE_ERROR


def test_cipher_suite_count_cap(leaves: dict[str, Leaf]) -> None:
    answer = hello_with(leaves["ecdsa-p256"])
    hello = client_hello()
    room = MAX_CIPHER_SUITES - len(hello.cipher_suites)
    unknown = tuple(range(0x2000, 0x2000 + room))
    assert answer(dataclasses.replace(hello, cipher_suites=unknown + hello.cipher_suites)) is None
    over = (0x1FFF,) + unknown + hello.cipher_suites
    assert answer(dataclasses.replace(hello, cipher_suites=over)) == AlertDescription.DECODE_ERROR


def _uint16_body(values: tuple[int, ...]) -> bytes:
    w = Writer()
    push_uint16_list(w, values)
    return w.getvalue()


@pytest.mark.parametrize(
    "ext_type",
    [
        ExtensionType.SUPPORTED_GROUPS,
        ExtensionType.SIGNATURE_ALGORITHMS,
        ExtensionType.SIGNATURE_ALGORITHMS_CERT,
        ExtensionType.ALPN,
        ExtensionType.SERVER_NAME,
    ],
    ids=lambda t: t.name.lower(),
)
def test_list_entry_cap(ext_type: ExtensionType, leaves: dict[str, Leaf]) -> None:
    answer = hello_with(leaves["ecdsa-p256"])

    def body(count: int) -> bytes:
        if ext_type == ExtensionType.ALPN:
            return push_alpn(tuple(f"x{i}" for i in range(count - 1)) + ("http/1.1",))
        if ext_type == ExtensionType.SERVER_NAME:
            w = Writer()
            with w.block(2):
                for i in range(count - 1):
                    w.uint8(7)  # an unknown name type: skipped, but walked
                    w.opaque(2, b"n%d" % i)
                w.uint8(0)
                w.opaque(2, b"localhost")
            return w.getvalue()
        real = (0x001D, 0x0017, 0x0403, 0x0804)
        return _uint16_body(tuple(range(0x3000, 0x3000 + count - len(real))) + real)

    base = client_hello()
    present = {t for t, _ in base.extensions}
    for count, alert in ((MAX_LIST_ENTRIES, None), (MAX_LIST_ENTRIES + 1, "decode_error")):
        extensions = tuple((t, body(count) if t == ext_type else b) for t, b in base.extensions)
        if ext_type not in present:
            extensions = ((int(ext_type), body(count)),) + extensions
        got = answer(dataclasses.replace(base, extensions=extensions))
        assert (got.name.lower() if got else None) == alert


def test_key_share_count_cap(leaves: dict[str, Leaf]) -> None:
    answer = hello_with(leaves["ecdsa-p256"])
    base = client_hello()
    real = dict(base.extensions)[ExtensionType.KEY_SHARE]
    x25519 = real[2:]  # the one entry: group, length, key

    def with_shares(count: int) -> ClientHello:
        unknown = b"".join(
            (0x3000 + i).to_bytes(2, "big") + b"\x00\x01\x00" for i in range(count - 1)
        )
        entries = unknown + x25519
        body = len(entries).to_bytes(2, "big") + entries
        groups = _uint16_body(tuple(range(0x3000, 0x3000 + count - 1)) + (0x001D,))
        return with_extensions(
            base, {ExtensionType.KEY_SHARE: body, ExtensionType.SUPPORTED_GROUPS: groups}
        )

    assert answer(with_shares(MAX_KEY_SHARES)) is None
    assert answer(with_shares(MAX_KEY_SHARES + 1)) == AlertDescription.DECODE_ERROR


def test_handshake_fragment_cap(leaves: dict[str, Leaf]) -> None:
    # One message over many records costs per record: 60 KiB in one-byte records is ~250
    # times a normal hello. A usual hello in one-byte records stays within the cap
    # (tests/e2e/test_interop.py); this one is padded past it.
    answer_of = leaves["ecdsa-p256"]
    hello = client_hello()
    padded = dataclasses.replace(hello, extensions=((21, bytes(3000)),) + hello.extensions)
    message = encode(padded)
    size = -(-len(message) // MAX_HANDSHAKE_FRAGMENTS)  # the smallest that fits the cap

    def split(step: int) -> bytes:
        return b"".join(record(22, message[i : i + step]) for i in range(0, len(message), step))

    assert alert_of(answer_of, split(size)) is None
    assert alert_of(answer_of, split(size - 1)) == AlertDescription.UNEXPECTED_MESSAGE
    assert alert_of(answer_of, split(1), limits=Limits(max_handshake_fragments=64)) == (
        AlertDescription.UNEXPECTED_MESSAGE
    )
    assert alert_of(answer_of, b"".join(record(22, bytes([b])) for b in encode(hello))) is None


# ----- output a peer makes us write: bounded while it does not read ---------------------------


def test_key_update_requests_get_one_pending_reply(
    ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)),
        ClientConfig(trust_roots=(ca.cert,)),
    )
    for _ in range(MAX_KEY_UPDATES_PER_FLIGHT):
        client.update_write_key(request_peer_update=True)
    client.send_data(b"after the updates")
    events = server.receive_data(client.data_to_send(), time.time())
    assert events == [ev.ApplicationData(b"after the updates")]
    reply = server.data_to_send()
    assert len(reply) == 5 + 4 + 1 + 1 + 16  # one KeyUpdate record, not 32
    server.send_data(b"under the next key")
    events = client.receive_data(reply + server.data_to_send(), time.time())
    assert events == [ev.ApplicationData(b"under the next key")]
    # Taken by the caller: the next request gets its own reply.
    client.update_write_key(request_peer_update=True)
    server.receive_data(client.data_to_send(), time.time())
    assert len(server.data_to_send()) == 5 + 4 + 1 + 1 + 16


def test_pending_output_cap_pauses_reading(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), heartbeat=True),
        ClientConfig(trust_roots=(ca.cert,), heartbeat=True),
    )
    payload = bytes(16_000)
    requests = MAX_PENDING_OUTPUT // len(payload) + 3
    for _ in range(requests):
        client.send_heartbeat_request(payload)
    client.send_data(b"after the heartbeats")
    events = server.receive_data(client.data_to_send(), time.time())
    answered = [e for e in events if isinstance(e, ev.HeartbeatAnswered)]
    assert server.reading_paused and len(answered) < requests
    assert not [e for e in events if isinstance(e, ev.ApplicationData)]
    assert server.receive_data(b"more, while paused", time.time()) == []  # held, not read
    out = server.data_to_send()
    assert MAX_PENDING_OUTPUT <= len(out) < MAX_PENDING_OUTPUT + len(payload) + 64
    # Output taken: the held records are processed, in order, with what came meanwhile.
    rest: list[ev.Event] = []
    while server.reading_paused or not rest:
        rest += server.receive_data(b"", time.time())
        server.data_to_send()
    answered += [e for e in rest if isinstance(e, ev.HeartbeatAnswered)]
    assert len(answered) == requests
    # "more, while paused" is not TLS: refused, but only after everything held before it.
    assert failures(rest) == [AlertDescription.UNEXPECTED_MESSAGE]
    assert ev.ApplicationData(b"after the heartbeats") in rest


def test_tls12_certificate_request_list_caps() -> None:
    # What a TLS 1.2 server's CertificateRequest may make the client walk.
    from outwork.tls.codec import Reader
    from outwork.tls.messages import (
        CertificateRequest12,
        pull_certificate_request12,
        push_certificate_request12,
    )

    def pull(schemes: int, authorities: int) -> AlertDescription | None:
        request = CertificateRequest12(
            b"\x40", tuple(range(0x0900, 0x0900 + schemes)), (b"CA",) * authorities
        )
        w = Writer()
        push_certificate_request12(w, request)
        try:
            pull_certificate_request12(Reader(w.getvalue()))
        except TLSError as error:
            return error.alert
        return None

    assert pull(MAX_LIST_ENTRIES, MAX_LIST_ENTRIES) is None
    assert pull(MAX_LIST_ENTRIES + 1, 1) == AlertDescription.DECODE_ERROR
    assert pull(1, MAX_LIST_ENTRIES + 1) == AlertDescription.DECODE_ERROR
