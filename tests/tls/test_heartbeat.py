"""Heartbeat (RFC 6520) and Heartbleed probes, before, during and after the handshake."""

from __future__ import annotations

import time

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import ContentType
from outwork.tls.messages import HeartbeatLie, pull_heartbeat
from tests.tls.inmemory import connected_pair, pump
from tests.tls.pki import CertAuthority, Leaf

# type=request, payload_length=16384, then 3 bytes of payload and no padding: the attack.
LYING_HEARTBEAT = b"\x01\x40\x00abc"
HONEST_HEARTBEAT = b"\x01\x00\x03abc" + bytes(16)


def plaintext_heartbeat(body: bytes) -> bytes:
    return b"\x18\x03\x03" + len(body).to_bytes(2, "big") + body


def server_for(leaf: Leaf, heartbeat: bool) -> ServerConnection:
    return ServerConnection(ServerConfig(certificates=(leaf.certified(),), heartbeat=heartbeat))


def probes(events: list[ev.Event]) -> list[ev.HeartbleedProbe]:
    return [e for e in events if isinstance(e, ev.HeartbleedProbe)]


def failure(events: list[ev.Event]) -> AlertDescription | None:
    failed = [e for e in events if isinstance(e, ev.ConnectionFailed)]
    return failed[0].alert if failed else None


def test_pull_heartbeat_detects_the_lie() -> None:
    with pytest.raises(HeartbeatLie) as info:
        pull_heartbeat(LYING_HEARTBEAT)
    assert (info.value.claimed, info.value.actual) == (16384, 3)
    # Honest length but padding shorter than 16 bytes is also a lie about what it carries.
    with pytest.raises(HeartbeatLie):
        pull_heartbeat(b"\x01\x00\x03abc" + bytes(15))
    assert pull_heartbeat(HONEST_HEARTBEAT).payload == b"abc"


@pytest.mark.parametrize("heartbeat", [False, True], ids=["off", "on"])
def test_probe_before_client_hello(heartbeat: bool, leaves: dict[str, Leaf]) -> None:
    server = server_for(leaves["ecdsa-p256"], heartbeat)
    events = server.receive_data(plaintext_heartbeat(LYING_HEARTBEAT), time.time())
    out = server.data_to_send()
    assert probes(events) == [ev.HeartbleedProbe(16384, 3, False, heartbeat)]
    if heartbeat:
        assert out == b"" and failure(events) is None  # discarded silently
    else:
        assert out == b"\x15\x03\x03\x00\x02\x02\x0a"  # unexpected_message, nothing else
        assert failure(events) == AlertDescription.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("heartbeat", [False, True], ids=["off", "on"])
def test_plaintext_probe_right_after_server_hello(
    heartbeat: bool, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client = ClientConnection(ClientConfig(trust_roots=(ca.cert,), heartbeat=True), "localhost")
    server = server_for(leaves["ecdsa-p256"], heartbeat)
    client.start_handshake()
    server.receive_data(client.data_to_send(), time.time())
    flight = server.data_to_send()
    events = server.receive_data(plaintext_heartbeat(LYING_HEARTBEAT), time.time())
    out = server.data_to_send()
    assert probes(events) == [ev.HeartbleedProbe(16384, 3, False, heartbeat)]
    if heartbeat:
        assert out == b""
        # The probe was dropped, and the honest handshake still completes.
        client.receive_data(flight, time.time())
        assert not failure(server.receive_data(client.data_to_send(), time.time()))
        assert server.is_established
    else:
        assert len(out) == 5 + 2 + 1 + 16  # one protected alert record, nothing echoed
        assert failure(events) == AlertDescription.UNEXPECTED_MESSAGE


@pytest.mark.parametrize("heartbeat", [False, True], ids=["off", "on"])
def test_probe_inside_the_session(
    heartbeat: bool, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), heartbeat=heartbeat),
        ClientConfig(trust_roots=(ca.cert,), heartbeat=True),
    )
    client.send_raw_record(ContentType.HEARTBEAT, LYING_HEARTBEAT)
    events = server.receive_data(client.data_to_send(), time.time())
    out = server.data_to_send()
    assert probes(events) == [ev.HeartbleedProbe(16384, 3, True, heartbeat)]
    if heartbeat:
        assert out == b"" and server.is_established
        client.send_data(b"still here")
        assert ev.ApplicationData(b"still here") in pump(client, server)[1]
    else:
        assert len(out) == 5 + 2 + 1 + 16
        assert failure(events) == AlertDescription.UNEXPECTED_MESSAGE


def test_honest_heartbeat_is_answered_with_exactly_its_payload(
    ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), heartbeat=True),
        ClientConfig(trust_roots=(ca.cert,), heartbeat=True),
    )
    assert server.heartbeat_negotiated and client.heartbeat_negotiated
    client.send_heartbeat_request(b"abc")
    events = server.receive_data(client.data_to_send(), time.time())
    assert events == [ev.HeartbeatAnswered(3)]
    out = server.data_to_send()
    # type(1) + length(2) + payload(3) + padding(16), + inner type(1) + tag(16) + header(5)
    assert len(out) == 3 + 3 + 16 + 1 + 16 + 5
    assert client.receive_data(out, time.time()) == []  # a response is consumed silently


def test_honest_heartbeat_refused_when_off(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)),
        ClientConfig(trust_roots=(ca.cert,), heartbeat=True),
    )
    assert not server.heartbeat_negotiated
    client.send_raw_record(ContentType.HEARTBEAT, HONEST_HEARTBEAT)
    events = server.receive_data(client.data_to_send(), time.time())
    assert failure(events) == AlertDescription.UNEXPECTED_MESSAGE and not probes(events)


def test_heartbeat_not_negotiated_is_refused_even_when_on(
    ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), heartbeat=True),
        ClientConfig(trust_roots=(ca.cert,), heartbeat=False),
    )
    client.send_raw_record(ContentType.HEARTBEAT, HONEST_HEARTBEAT)
    events = server.receive_data(client.data_to_send(), time.time())
    assert failure(events) == AlertDescription.UNEXPECTED_MESSAGE
