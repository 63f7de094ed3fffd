"""Every peer-growable buffer or count has a named cap; each test here hits one."""

from __future__ import annotations

import time

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription, TLSError
from outwork.tls.client import MAX_TICKETS
from outwork.tls.config import MAX_EMPTY_RECORDS, CertifiedKey, ClientConfig, Limits, ServerConfig
from outwork.tls.enums import ContentType
from outwork.tls.extensions import (
    MAX_PSK_IDENTITIES,
    pull_pre_shared_key_client,
    push_pre_shared_key_client,
)
from tests.tls.inmemory import connected_pair
from tests.tls.pki import CertAuthority, Leaf


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


def test_new_session_ticket_flood(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)),
        ClientConfig(trust_roots=(ca.cert,)),
    )
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
