"""TLS 1.2 in memory, both roles: every suite and key type, EMS, downgrade protection,
renegotiation refused, heartbeat and Heartbleed probes."""

from __future__ import annotations

import dataclasses
import time

import pytest

from outwork.tls import events as ev
from outwork.tls.alerts import AlertDescription
from outwork.tls.codec import Reader, Writer
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import CipherSuite12, ContentType, ExtensionType, ProtocolVersion
from outwork.tls.messages import pull_client_hello, push_client_hello
from tests.tls.inmemory import connected_pair, pump
from tests.tls.pki import CertAuthority, Leaf

TLS12_ONLY = {"max_version": ProtocolVersion.TLS12}
LYING_HEARTBEAT = b"\x01\x40\x00abc"


def failures(events: list[ev.Event]) -> list[AlertDescription]:
    return [e.alert for e in events if isinstance(e, ev.ConnectionFailed)]


ECDSA_SUITES = [s for s in CipherSuite12 if "ECDSA" in s.name]
RSA_SUITES = [s for s in CipherSuite12 if "ECDSA" not in s.name]


@pytest.mark.parametrize(
    ("kind", "suite"),
    [(k, s) for k in ("ecdsa-p256", "ecdsa-p384", "ed25519") for s in ECDSA_SUITES]
    + [("rsa-2048", s) for s in RSA_SUITES],
    ids=lambda v: v if isinstance(v, str) else v.name,
)
def test_tls12_handshake_and_data(
    kind: str, suite: CipherSuite12, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, client_events, server_events = connected_pair(
        ServerConfig(certificates=(leaves[kind].certified(),), alpn_protocols=("http/1.1",)),
        ClientConfig(
            trust_roots=(ca.cert,),
            cipher_suites_tls12=(suite,),
            alpn_protocols=("http/1.1",),
            **TLS12_ONLY,  # type: ignore[arg-type]
        ),
    )
    assert client.negotiated is not None, client_events + server_events
    assert client.negotiated.version == ProtocolVersion.TLS12
    assert client.negotiated.cipher_suite == suite
    assert client.negotiated.alpn_protocol == "http/1.1"
    payload = bytes(range(256)) * 200
    client.send_data(payload)
    server.send_data(payload[::-1])
    client_events, server_events = pump(client, server)
    assert b"".join(e.data for e in server_events if isinstance(e, ev.ApplicationData)) == payload
    got = b"".join(e.data for e in client_events if isinstance(e, ev.ApplicationData))
    assert got == payload[::-1]


def test_tls13_preferred_when_both_offered(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, _, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)),
        ClientConfig(trust_roots=(ca.cert,)),
    )
    assert client.negotiated is not None and client.negotiated.version == ProtocolVersion.TLS13


def test_client_detects_downgrade_sentinel(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client = ClientConnection(ClientConfig(trust_roots=(ca.cert,)), "localhost")
    server = ServerConnection(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    client.start_handshake()
    data = client.data_to_send()
    # A man in the middle strips TLS 1.3 from the offer...
    hello = pull_client_hello(Reader(data[9:]))
    extensions = tuple(
        (t, b"\x02\x03\x03" if t == ExtensionType.SUPPORTED_VERSIONS else b)
        for t, b in hello.extensions
    )
    w = Writer()
    push_client_hello(w, dataclasses.replace(hello, extensions=extensions))
    body = w.getvalue()
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    server.receive_data(b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message, time.time())
    # ...and the ServerHello's random tells the client.
    events = client.receive_data(server.data_to_send(), time.time())
    assert failures(events) == [AlertDescription.ILLEGAL_PARAMETER]


def hello_without(extension: int, **config: object) -> bytes:
    """A TLS 1.2-only ClientHello record from the engine's client, less one extension."""
    client = ClientConnection(ClientConfig(**TLS12_ONLY, **config), "localhost")  # type: ignore[arg-type]
    client.start_handshake()
    hello = pull_client_hello(Reader(client.data_to_send()[9:]))
    extensions = tuple((t, b) for t, b in hello.extensions if t != extension)
    w = Writer()
    push_client_hello(w, dataclasses.replace(hello, extensions=extensions))
    body = w.getvalue()
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message


@pytest.mark.parametrize("require_ems", [True, False])
def test_server_ems_policy(require_ems: bool, leaves: dict[str, Leaf]) -> None:
    server = ServerConnection(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), require_ems=require_ems)
    )
    events = server.receive_data(hello_without(ExtensionType.EXTENDED_MASTER_SECRET), time.time())
    if require_ems:
        assert failures(events) == [AlertDescription.HANDSHAKE_FAILURE]
    else:
        assert not failures(events) and server.data_to_send()[5] == 2  # a ServerHello


def test_renegotiation_is_refused(ca: CertAuthority, leaves: dict[str, Leaf]) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)),
        ClientConfig(trust_roots=(ca.cert,), **TLS12_ONLY),  # type: ignore[arg-type]
    )
    fresh = ClientConnection(ClientConfig(**TLS12_ONLY), "localhost")  # type: ignore[arg-type]
    fresh.start_handshake()
    hello_message = fresh.data_to_send()[5:]
    client.send_raw_record(ContentType.HANDSHAKE, hello_message)
    events = server.receive_data(client.data_to_send(), time.time())
    assert failures(events) == [AlertDescription.NO_RENEGOTIATION]


def test_server_refuses_non_empty_renegotiation_info(leaves: dict[str, Leaf]) -> None:
    client = ClientConnection(ClientConfig(**TLS12_ONLY), "localhost")  # type: ignore[arg-type]
    client.start_handshake()
    hello = pull_client_hello(Reader(client.data_to_send()[9:]))
    extensions = tuple(
        (t, b"\x0cfinishedhash" if t == ExtensionType.RENEGOTIATION_INFO else b)
        for t, b in hello.extensions
    )
    w = Writer()
    push_client_hello(w, dataclasses.replace(hello, extensions=extensions))
    body = w.getvalue()
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    server = ServerConnection(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    events = server.receive_data(
        b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message, time.time()
    )
    assert failures(events) == [AlertDescription.HANDSHAKE_FAILURE]


@pytest.mark.parametrize("heartbeat", [False, True], ids=["off", "on"])
def test_tls12_heartbleed_probe_after_server_hello(
    heartbeat: bool, leaves: dict[str, Leaf]
) -> None:
    client = ClientConnection(
        ClientConfig(verify=False, heartbeat=True, **TLS12_ONLY),  # type: ignore[arg-type]
        "localhost",
    )
    server = ServerConnection(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), heartbeat=heartbeat)
    )
    client.start_handshake()
    server.receive_data(client.data_to_send(), time.time())
    server.data_to_send()
    events = server.receive_data(
        b"\x18\x03\x03" + len(LYING_HEARTBEAT).to_bytes(2, "big") + LYING_HEARTBEAT, time.time()
    )
    out = server.data_to_send()
    assert [e for e in events if isinstance(e, ev.HeartbleedProbe)] == [
        ev.HeartbleedProbe(16384, 3, False, heartbeat)
    ]
    assert out == (b"" if heartbeat else b"\x15\x03\x03\x00\x02\x02\x0a")


@pytest.mark.parametrize("heartbeat", [False, True], ids=["off", "on"])
def test_tls12_heartbleed_probe_in_session(
    heartbeat: bool, ca: CertAuthority, leaves: dict[str, Leaf]
) -> None:
    client, server, _, _ = connected_pair(
        ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),), heartbeat=heartbeat),
        ClientConfig(trust_roots=(ca.cert,), heartbeat=True, **TLS12_ONLY),  # type: ignore[arg-type]
    )
    assert server.heartbeat_negotiated == heartbeat
    client.send_raw_record(ContentType.HEARTBEAT, LYING_HEARTBEAT)
    events = server.receive_data(client.data_to_send(), time.time())
    assert [e for e in events if isinstance(e, ev.HeartbleedProbe)] == [
        ev.HeartbleedProbe(16384, 3, True, heartbeat)
    ]
    out = server.data_to_send()
    if heartbeat:
        assert out == b""
        client.send_heartbeat_request(b"ping")
        assert server.receive_data(client.data_to_send(), time.time()) == [ev.HeartbeatAnswered(4)]
    else:
        assert failures(events) == [AlertDescription.UNEXPECTED_MESSAGE]
        assert len(out) == 5 + 8 + 2 + 16  # one protected alert: explicit nonce, alert, tag


@pytest.mark.parametrize(
    ("methods", "served"), [(b"\x01\x00", True), (b"\x00\x01", True), (b"\x01", False)]
)
def test_tls12_compression_offer_gets_null_or_refusal(
    methods: bytes, served: bool, leaves: dict[str, Leaf]
) -> None:
    client = ClientConnection(ClientConfig(verify=False, **TLS12_ONLY), "localhost")  # type: ignore[arg-type]
    client.start_handshake()
    hello = pull_client_hello(Reader(client.data_to_send()[9:]))
    w = Writer()
    push_client_hello(w, dataclasses.replace(hello, legacy_compression_methods=methods))
    body = w.getvalue()
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    server = ServerConnection(ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),)))
    events = server.receive_data(
        b"\x16\x03\x01" + len(message).to_bytes(2, "big") + message, time.time()
    )
    out = server.data_to_send()
    if served:
        assert not failures(events)
        # ServerHello: type, length, version, random, session id, suite, then the method: null.
        session_id_length = out[5 + 4 + 2 + 32]
        assert out[5 + 4 + 2 + 32 + 1 + session_id_length + 2] == 0
    else:
        assert failures(events) == [AlertDescription.ILLEGAL_PARAMETER]
