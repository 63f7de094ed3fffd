"""`send_data_into`: bulk application data sealed straight from the caller's buffer into the
caller's output buffer (the gateway's download path). The peer must read exactly what was
sent, in order with `send_data`'s records, and the source buffer must come back unchanged (its
spare byte is borrowed for each record's content type)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outwork.tls import events as ev
from outwork.tls.base import TLSConnection
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.enums import CipherSuite, CipherSuite12, ProtocolVersion
from outwork.tls.keyschedule import SUITES as SUITE_PARAMS
from outwork.tls.records import MAX_PLAINTEXT, RecordCipher
from tests.tls.inmemory import connected_pair
from tests.tls.pki import CertAuthority, Leaf

SUITES: list[tuple[str, dict[str, object]]] = [
    ("tls13-aes128", {"cipher_suites": (CipherSuite.TLS_AES_128_GCM_SHA256,)}),
    ("tls13-chacha", {"cipher_suites": (CipherSuite.TLS_CHACHA20_POLY1305_SHA256,)}),
    (
        "tls12-aes256",
        {
            "max_version": ProtocolVersion.TLS12,
            "cipher_suites_tls12": (CipherSuite12.ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,),
        },
    ),
    (
        "tls12-chacha",
        {
            "max_version": ProtocolVersion.TLS12,
            "cipher_suites_tls12": (CipherSuite12.ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,),
        },
    ),
]

# Each step: ("bulk", size) through send_data_into, ("plain", size) through send_data, or
# ("pieces", size) through send_pieces (the content in three pieces of three kinds).
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["bulk", "bulk", "plain", "pieces"]),
        st.one_of(
            st.integers(1, 40),
            st.sampled_from([MAX_PLAINTEXT - 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1]),
            st.integers(1, 5 * MAX_PLAINTEXT + 3),
        ),
    ),
    min_size=1,
    max_size=6,
)


def pair(
    ca: CertAuthority, leaf: Leaf, options: dict[str, object]
) -> tuple[TLSConnection, TLSConnection]:
    client, server, client_events, server_events = connected_pair(
        ServerConfig(certificates=(leaf.certified(),)),
        ClientConfig(trust_roots=(ca.cert,), **options),  # type: ignore[arg-type]
    )
    assert server.is_established, client_events + server_events
    return client, server


def received(client: TLSConnection, wire: bytes) -> bytes:
    events = client.receive_data(wire, 0.0)
    assert not [e for e in events if isinstance(e, ev.ConnectionFailed)], events
    return b"".join(e.data for e in events if isinstance(e, ev.ApplicationData))


@pytest.mark.parametrize(("name", "options"), SUITES, ids=[name for name, _ in SUITES])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=STEPS, seed=st.integers(0, 255))
def test_bulk_records_reach_the_peer_in_order_and_the_source_is_given_back(
    ca: CertAuthority,
    leaves: dict[str, Leaf],
    name: str,
    options: dict[str, object],
    steps: list[tuple[str, int]],
    seed: int,
) -> None:
    client, server = pair(ca, leaves["ecdsa-p256"], options)
    sent = bytearray()
    wire = bytearray()
    for kind, size in steps:
        data = bytes((seed + i) % 251 for i in range(size))
        sent += data
        if kind == "plain":
            server.send_data(data)
            wire += server.data_to_send()
            continue
        if kind == "pieces":
            third = size // 3
            server.send_pieces(
                [data[:third], bytearray(data[third : 2 * third]), memoryview(data)[2 * third :]]
            )
            wire += server.data_to_send()
            continue
        source = bytearray(data + b"\xa5")  # the content, then the spare byte
        out = bytearray(server.sealed_size(size) + 7)
        written = server.send_data_into(memoryview(source), out)
        assert source == data + b"\xa5"
        assert written <= server.sealed_size(size)
        wire += out[:written]
    assert received(client, bytes(wire)) == sent


@pytest.mark.parametrize(("name", "options"), SUITES, ids=[name for name, _ in SUITES])
def test_bulk_records_follow_records_already_queued_only_once_taken(
    ca: CertAuthority, leaves: dict[str, Leaf], name: str, options: dict[str, object]
) -> None:
    client, server = pair(ca, leaves["ecdsa-p256"], options)
    server.send_data(b"head ")
    out = bytearray(server.sealed_size(4))
    with pytest.raises(RuntimeError):
        server.send_data_into(memoryview(bytearray(b"body!")), out)  # queued records first
    wire = server.data_to_send()
    written = server.send_data_into(memoryview(bytearray(b"body!")), out)
    assert received(client, wire + out[:written]) == b"head body"


def test_bulk_output_needs_an_established_connection(leaves: dict[str, Leaf]) -> None:
    from outwork.tls.connection import ServerConnection

    server = ServerConnection(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    with pytest.raises(RuntimeError):
        server.send_data_into(memoryview(bytearray(b"xy")), bytearray(64))


@settings(max_examples=200, deadline=None)
@given(
    suite=st.sampled_from(sorted(SUITE_PARAMS)),
    secret=st.binary(min_size=48, max_size=48),
    records=st.lists(
        st.lists(st.binary(max_size=MAX_PLAINTEXT // 3), min_size=1, max_size=3),
        min_size=1,
        max_size=4,
    ),
)
def test_a_record_sealed_from_pieces_is_the_record_of_them_joined(
    suite: int, secret: bytes, records: list[list[bytes]]
) -> None:
    params = SUITE_PARAMS[suite]
    secret = secret[: params.hash_length]
    joined, pieces = RecordCipher(params, secret), RecordCipher(params, secret)
    for content in records:
        expected = joined.seal(23, b"".join(content))
        assert pieces.seal_joined(23, [bytearray(c) for c in content]) == expected
        assert expected[:5] == b"\x17\x03\x03" + (len(expected) - 5).to_bytes(2, "big")
