"""The engine end to end in memory: both roles, every key type, group and suite; HRR; key
updates; alerts. Byte-level rejects live in test_rejects.py, heartbeat in test_heartbeat.py."""

from __future__ import annotations

import dataclasses
import time

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.config import ALL_GROUPS, ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import CipherSuite, NamedGroup
from tests.tls.inmemory import connected_pair, pump
from tests.tls.pki import KEY_TYPES, CertAuthority, Leaf


def server_config(leaf: Leaf, **kwargs: object) -> ServerConfig:
    return ServerConfig(certificates=(leaf.certified(),), **kwargs)  # type: ignore[arg-type]


def failures(events: list[ev.Event]) -> list[ev.ConnectionFailed]:
    return [e for e in events if isinstance(e, ev.ConnectionFailed)]


@pytest.mark.parametrize("kind", KEY_TYPES)
@pytest.mark.parametrize("group", ALL_GROUPS, ids=lambda g: g.name)
def test_handshake_every_key_type_and_group(
    kind: str, group: NamedGroup, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, client_events, server_events = connected_pair(
        server_config(leaves[kind], groups=ALL_GROUPS),
        ClientConfig(trust_roots=(ca.cert,), key_share_groups=(group,), groups=(group,)),
    )
    assert client.is_established and server.is_established, (client_events, server_events)
    assert client.negotiated is not None and client.negotiated.group == group
    assert server.negotiated is not None
    assert dataclasses.replace(server.negotiated, ja4=None) == client.negotiated
    # The named members, not bare ints (compiled code turns an enum held in an int variable
    # into an int): what the engine API documents, and what a repr in a log shows.
    assert type(server.negotiated.group) is NamedGroup
    assert type(server.negotiated.cipher_suite) is CipherSuite
    client.send_data(b"ping")
    server_got = pump(client, server)[1]
    assert [e for e in server_got if isinstance(e, ev.ApplicationData)] == [
        ev.ApplicationData(b"ping")
    ]


@pytest.mark.parametrize("suite", list(CipherSuite)[:3], ids=lambda s: s.name)
def test_each_suite_moves_large_data_both_ways(
    suite: CipherSuite, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]),
        ClientConfig(trust_roots=(ca.cert,), cipher_suites=(suite,)),
    )
    assert server.negotiated is not None and server.negotiated.cipher_suite == suite
    payload = bytes(range(256)) * 300  # several records
    server.send_data(payload)
    client_events, _ = pump(client, server)
    assert b"".join(e.data for e in client_events if isinstance(e, ev.ApplicationData)) == payload
    client.send_data(payload)
    _, server_events = pump(client, server)
    assert b"".join(e.data for e in server_events if isinstance(e, ev.ApplicationData)) == payload


def test_bulk_data_goes_out_in_full_records(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    """Data over 2^14 bytes is sealed as full 2^14-byte records, the last one shorter, in
    order, and opens to the same bytes on the other side."""
    client, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]), ClientConfig(trust_roots=(ca.cert,))
    )
    payload = bytes(range(251)) * 131 + b"tail"  # 2 full records and 1 of 2,409 bytes
    server.send_data(payload)
    wire = server.data_to_send()
    lengths = []
    at = 0
    while at < len(wire):
        assert wire[at : at + 3] == b"\x17\x03\x03"
        length = int.from_bytes(wire[at + 3 : at + 5], "big")
        lengths.append(length)
        at += 5 + length
    assert at == len(wire)
    overhead = 1 + 16  # the inner content type and the AEAD tag
    assert lengths == [16384 + overhead, 16384 + overhead, len(payload) - 32768 + overhead]
    events = client.receive_data(wire)
    assert b"".join(e.data for e in events if isinstance(e, ev.ApplicationData)) == payload


def test_server_prefers_post_quantum_hybrid_when_offered(
    ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]),
        ClientConfig(
            trust_roots=(ca.cert,),
            key_share_groups=(NamedGroup.X25519, NamedGroup.X25519MLKEM768),
        ),
    )
    assert server.negotiated is not None
    assert server.negotiated.group == NamedGroup.X25519MLKEM768


def test_hello_retry_request_when_no_usable_share(
    ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, client_events, _ = connected_pair(
        server_config(leaves["ecdsa-p256"], groups=(NamedGroup.X25519,)),
        ClientConfig(
            trust_roots=(ca.cert,),
            key_share_groups=(NamedGroup.SECP256R1,),
            groups=(NamedGroup.SECP256R1, NamedGroup.X25519),
        ),
    )
    assert client.is_established, client_events
    assert client.negotiated is not None and client.negotiated.group == NamedGroup.X25519


def test_no_common_group_is_handshake_failure(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    _, server, client_events, server_events = connected_pair(
        server_config(leaves["ecdsa-p256"], groups=(NamedGroup.X25519,)),
        ClientConfig(
            trust_roots=(ca.cert,),
            key_share_groups=(NamedGroup.SECP256R1,),
            groups=(NamedGroup.SECP256R1,),
        ),
    )
    assert failures(server_events)[0].alert == AlertDescription.HANDSHAKE_FAILURE
    assert any(
        isinstance(e, ev.AlertReceived) and e.description == AlertDescription.HANDSHAKE_FAILURE
        for e in client_events
    )


def test_alpn_server_preference_and_mismatch(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, _, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"], alpn_protocols=("h2", "http/1.1")),
        ClientConfig(trust_roots=(ca.cert,), alpn_protocols=("http/1.1", "h2")),
    )
    assert client.negotiated is not None and client.negotiated.alpn_protocol == "h2"
    _, _, _, server_events = connected_pair(
        server_config(leaves["ecdsa-p256"], alpn_protocols=("h2",)),
        ClientConfig(trust_roots=(ca.cert,), alpn_protocols=("http/1.1",)),
    )
    assert failures(server_events)[0].alert == AlertDescription.NO_APPLICATION_PROTOCOL


def test_server_name_is_reported(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    _, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]), ClientConfig(trust_roots=(ca.cert,)), "LocalHost"
    )
    assert server.negotiated is not None and server.negotiated.server_name == "localhost"


@pytest.mark.parametrize(
    ("trust", "name", "alert"),
    [
        ("other-ca", "localhost", AlertDescription.UNKNOWN_CA),
        ("ca", "wrong.example", AlertDescription.BAD_CERTIFICATE),
        ("none", "localhost", AlertDescription.UNKNOWN_CA),
    ],
)
def test_client_rejects_unverifiable_server(
    trust: str, name: str, alert: AlertDescription, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    roots = {"ca": (ca.cert,), "other-ca": (CertAuthority().cert,), "none": ()}[trust]
    client, _, client_events, server_events = connected_pair(
        server_config(leaves["ecdsa-p256"]), ClientConfig(trust_roots=roots), name
    )
    assert failures(client_events)[0].alert == alert
    assert not client.is_established
    assert any(isinstance(e, ev.AlertReceived) and e.description == alert for e in server_events)


def test_client_rejects_expired_server_certificate(ca: CertAuthority) -> None:
    expired = ca.issue("ecdsa-p256", expired=True)
    _, _, client_events, _ = connected_pair(
        server_config(expired), ClientConfig(trust_roots=(ca.cert,))
    )
    assert failures(client_events)[0].alert == AlertDescription.CERTIFICATE_EXPIRED


def test_key_update_both_ways(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        server_config(leaves["ed25519"]), ClientConfig(trust_roots=(ca.cert,))
    )
    for _ in range(3):
        client.update_write_key(request_peer_update=True)
        client.send_data(b"after update")
        client_events, server_events = pump(client, server)
        assert ev.ApplicationData(b"after update") in server_events
        server.send_data(b"server after update")
        client_events, _ = pump(client, server)
        assert ev.ApplicationData(b"server after update") in client_events
        assert not failures(client_events + server_events)


def test_key_update_flood_is_refused(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]), ClientConfig(trust_roots=(ca.cert,))
    )
    for _ in range(40):
        client.update_write_key(request_peer_update=False)
    events = server.receive_data(client.data_to_send(), time.time())
    assert failures(events)[0].alert == AlertDescription.UNEXPECTED_MESSAGE


def test_close_notify_is_a_half_close_in_tls13(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]), ClientConfig(trust_roots=(ca.cert,))
    )
    client.send_data(b"last request")
    client._closed = False  # a peer that half-closes: keeps reading after its close_notify
    client.close()
    client._closed = False
    server_events = server.receive_data(client.data_to_send(), time.time())
    assert server_events[0] == ev.ApplicationData(b"last request")
    assert ev.ConnectionClosed() in server_events
    assert server.peer_closed and not server.is_closed
    server.send_data(b"the answer")  # RFC 8446 6.1: our side may still send
    server.close()
    assert server.is_closed
    client_events = client.receive_data(server.data_to_send(), time.time())
    assert client_events[0] == ev.ApplicationData(b"the answer")
    assert ev.ConnectionClosed() in client_events
    # Anything after the close_notify is ignored.
    assert server.receive_data(b"\x17\x03\x03\x00\x05hello", time.time()) == []


def test_close_notify_closes_both_ways_in_tls12(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    from outwork.tls.enums import ProtocolVersion

    client, server, _, _ = connected_pair(
        server_config(leaves["ecdsa-p256"]),
        ClientConfig(trust_roots=(ca.cert,), max_version=ProtocolVersion.TLS12),
    )
    client.close()
    server_events = server.receive_data(client.data_to_send(), time.time())
    assert ev.ConnectionClosed() in server_events and server.is_closed
    with pytest.raises(RuntimeError):
        server.send_data(b"late")


def test_failed_connection_stays_failed(leaves: dict[str, Leaf]) -> None:
    server = ServerConnection(server_config(leaves["ecdsa-p256"]))
    events = server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", time.time())
    assert failures(events)[0].alert == AlertDescription.UNEXPECTED_MESSAGE
    assert server.data_to_send() == b"\x15\x03\x03\x00\x02\x02\x0a"
    assert server.receive_data(b"\x16\x03\x01\x00\x05hello", time.time()) == []
    assert server.data_to_send() == b""


def test_send_before_handshake_is_a_caller_error(leaves: dict[str, Leaf]) -> None:
    with pytest.raises(RuntimeError):
        ServerConnection(server_config(leaves["ecdsa-p256"])).send_data(b"x")
    with pytest.raises(RuntimeError):
        ClientConnection(ClientConfig(verify=False)).send_data(b"x")


class BrokenSigner:
    """A signer whose HSM went away."""

    def __init__(self, leaf: Leaf) -> None:
        self._inner = leaf.certified().signer

    def public_key(self):  # type: ignore[no-untyped-def]
        return self._inner.public_key()

    def schemes(self):  # type: ignore[no-untyped-def]
        return self._inner.schemes()

    def sign(self, scheme: object, data: bytes) -> bytes:
        raise RuntimeError("token removed")


@pytest.mark.parametrize("version", [0x0304, 0x0303])
def test_failing_signer_fails_the_handshake_not_the_caller(
    version: int, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    from outwork.tls.config import CertifiedKey
    from outwork.tls.enums import ProtocolVersion

    leaf = leaves["ecdsa-p256"]
    certified = CertifiedKey(chain=(leaf.cert,), signer=BrokenSigner(leaf))
    _, server, _, server_events = connected_pair(
        ServerConfig(certificates=(certified,)),
        ClientConfig(trust_roots=(ca.cert,), max_version=ProtocolVersion(version)),
    )
    assert failures(server_events)[0].alert == AlertDescription.INTERNAL_ERROR
    assert server.is_closed
