"""Resumption with session tickets: TLS 1.3 PSK (psk_dhe_ke) and TLS 1.2 RFC 5077, both
roles; ticket age, lifetime, key rotation, binder and server-name binding enforced."""

from __future__ import annotations

import dataclasses
import time

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.enums import ProtocolVersion
from outwork.tls.tickets import RotatingTicketKeys
from tests.tls.inmemory import connected_pair, pump
from tests.tls.pki import CertAuthority, Leaf

VERSIONS = [ProtocolVersion.TLS13, ProtocolVersion.TLS12]


def configs(
    leaves: dict[str, Leaf], ca: CertAuthority, version: ProtocolVersion, **server: object
) -> tuple[ServerConfig, ClientConfig]:
    server_config = ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), **server)  # type: ignore[arg-type]
    return server_config, ClientConfig(trust_roots=(ca.cert,), max_version=version)


def first_session(server_config: ServerConfig, client_config: ClientConfig, now: float):  # type: ignore[no-untyped-def]
    client, _, _, _ = connected_pair(server_config, client_config, now=now)
    assert client.negotiated is not None and not client.negotiated.resumed
    assert client.sessions, "the server issued no ticket"
    return client.sessions[-1]


def failures(events: list[ev.Event]) -> list[AlertDescription]:
    return [e.alert for e in events if isinstance(e, ev.ConnectionFailed)]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_resumes_with_the_ticket(
    version: ProtocolVersion, leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    server_config, client_config = configs(leaves, ca, version)
    now = time.time()
    session = first_session(server_config, client_config, now)
    assert session.version == version
    client, server, _, _ = connected_pair(
        server_config, client_config, session=session, now=now + 5
    )
    assert client.negotiated is not None and client.negotiated.resumed
    assert server.negotiated is not None and server.negotiated.resumed
    assert client.negotiated.version == version
    client.send_data(b"resumed")
    assert ev.ApplicationData(b"resumed") in pump(client, server, now=now + 5)[1]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_ticket_of_another_server_gives_a_full_handshake(
    version: ProtocolVersion, leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    server_config, client_config = configs(leaves, ca, version)
    now = time.time()
    session = first_session(server_config, client_config, now)
    other = dataclasses.replace(server_config, ticket_keys=RotatingTicketKeys())
    client, _, _, _ = connected_pair(other, client_config, session=session, now=now)
    assert client.negotiated is not None and not client.negotiated.resumed


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_ticket_past_its_lifetime_gives_a_full_handshake(
    version: ProtocolVersion, leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    server_config, client_config = configs(leaves, ca, version, ticket_lifetime=60)
    now = time.time()
    session = first_session(server_config, client_config, now)
    for age, resumes in ((50, True), (61, False)):
        # The client is made to believe the ticket is fresh; the server knows its true age.
        later = now + age
        aged = dataclasses.replace(
            session, received_at=later - 1, age_add=session.age_add + (age - 1) * 1000
        )
        client, _, _, _ = connected_pair(server_config, client_config, session=aged, now=later)
        assert client.negotiated is not None and client.negotiated.resumed == resumes, age


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_previous_ticket_key_accepted_for_one_period_only(
    version: ProtocolVersion, leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    keys = RotatingTicketKeys(period=100)
    server_config, client_config = configs(
        leaves, ca, version, ticket_keys=keys, ticket_lifetime=1000
    )
    start = (time.time() // 100) * 100 + 10  # early in a period
    session = first_session(server_config, client_config, start)
    for delay, resumes in ((150, True), (250, False)):
        moved = dataclasses.replace(
            session, received_at=start + delay - 1, age_add=session.age_add + (delay - 1) * 1000
        )
        client, _, _, _ = connected_pair(
            server_config, client_config, session=moved, now=start + delay
        )
        assert client.negotiated is not None and client.negotiated.resumed == resumes, delay


def test_tls13_ticket_age_must_be_plausible(leaves: dict[str, Leaf], ca: CertAuthority) -> None:
    server_config, client_config = configs(leaves, ca, ProtocolVersion.TLS13)
    now = time.time()
    session = first_session(server_config, client_config, now)
    lying = dataclasses.replace(session, age_add=session.age_add + 60_000)  # a minute off
    client, _, _, _ = connected_pair(server_config, client_config, session=lying, now=now + 1)
    assert client.negotiated is not None and not client.negotiated.resumed


def test_tls13_wrong_binder_is_decrypt_error(leaves: dict[str, Leaf], ca: CertAuthority) -> None:
    server_config, client_config = configs(leaves, ca, ProtocolVersion.TLS13)
    now = time.time()
    session = first_session(server_config, client_config, now)
    forged = dataclasses.replace(session, secret=bytes(len(session.secret)))
    _, _, _, server_events = connected_pair(server_config, client_config, session=forged, now=now)
    assert failures(server_events) == [AlertDescription.DECRYPT_ERROR]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls13", "tls12"])
def test_ticket_is_bound_to_its_server_name(
    version: ProtocolVersion, leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    server_config, client_config = configs(leaves, ca, version)
    now = time.time()
    session = first_session(server_config, client_config, now)
    elsewhere = dataclasses.replace(session, server_name="127.0.0.1")
    client, _, _, _ = connected_pair(
        server_config,
        dataclasses.replace(client_config, verify=False),
        "127.0.0.1",
        session=elsewhere,
        now=now,
    )
    assert client.negotiated is not None and not client.negotiated.resumed


def test_tickets_off(leaves: dict[str, Leaf], ca: CertAuthority) -> None:
    server_config, client_config = configs(leaves, ca, ProtocolVersion.TLS13, ticket_keys=None)
    client, _, _, _ = connected_pair(server_config, client_config)
    assert client.is_established and client.sessions == []


def test_early_data_is_never_accepted_and_the_handshake_completes(
    leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    server_config, client_config = configs(leaves, ca, ProtocolVersion.TLS13)
    now = time.time()
    session = first_session(server_config, client_config, now)
    assert session.max_early_data == 0  # outwork never offers 0-RTT in its tickets
    # A client that sends 0-RTT anyway (as if the ticket allowed it).
    eager = dataclasses.replace(session, max_early_data=16384)
    replay = b"POST /transfer HTTP/1.1\r\nHost: bank\r\nContent-Length: 0\r\n\r\n"
    client, server, client_events, server_events = connected_pair(
        server_config,
        dataclasses.replace(client_config, early_data=replay),
        session=eager,
        now=now + 1,
    )
    assert server.negotiated is not None and server.negotiated.resumed, server_events
    assert client.early_data_accepted is False
    assert not [e for e in server_events if isinstance(e, ev.ApplicationData)]
    client.send_data(b"after")
    assert pump(client, server, now=now + 1)[1] == [ev.ApplicationData(b"after")]


def test_early_data_skipping_is_bounded(leaves: dict[str, Leaf], ca: CertAuthority) -> None:
    server_config, client_config = configs(leaves, ca, ProtocolVersion.TLS13)
    now = time.time()
    session = dataclasses.replace(
        first_session(server_config, client_config, now), max_early_data=1 << 20
    )
    flood = bytes(20_000)  # more than the 16 KiB of undecryptable records a server skips
    _, _, _, server_events = connected_pair(
        server_config,
        dataclasses.replace(client_config, early_data=flood),
        session=session,
        now=now + 1,
    )
    assert failures(server_events) == [AlertDescription.BAD_RECORD_MAC]


def test_early_data_with_a_hello_retry_request_is_skipped(
    leaves: dict[str, Leaf], ca: CertAuthority
) -> None:
    # RFC 8446 4.2.10: a server that answers with a HelloRetryRequest skips the 0-RTT records
    # (they come in the clear state, before the second hello) and the handshake completes.
    from outwork.tls.enums import NamedGroup

    server_config, client_config = configs(leaves, ca, ProtocolVersion.TLS13)
    server_config = dataclasses.replace(server_config, groups=(NamedGroup.X25519,))
    client_config = dataclasses.replace(
        client_config,
        groups=(NamedGroup.SECP256R1, NamedGroup.X25519),
        key_share_groups=(NamedGroup.SECP256R1,),
    )
    now = time.time()
    session = dataclasses.replace(
        first_session(server_config, client_config, now), max_early_data=16384
    )
    replay = b"POST /transfer HTTP/1.1\r\nHost: bank\r\nContent-Length: 0\r\n\r\n"
    client, server, client_events, server_events = connected_pair(
        server_config,
        dataclasses.replace(client_config, early_data=replay),
        session=session,
        now=now + 1,
    )
    assert failures(client_events + server_events) == []
    assert server.negotiated is not None and server.negotiated.resumed
    assert client.early_data_accepted is False
    assert not [e for e in server_events if isinstance(e, ev.ApplicationData)]
    client.send_data(b"after")
    assert pump(client, server, now=now + 1)[1] == [ev.ApplicationData(b"after")]
