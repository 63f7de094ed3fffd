"""What an established server connection still holds: no handshake or master secret (they
are turned into record keys and tickets by then), and no per-connection attribute dict."""

from __future__ import annotations

import gc
import time

import pytest

from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from tests.tls.inmemory import pump
from tests.tls.pki import CertAuthority, Leaf


def reachable_bytes(root: object) -> set[bytes]:
    """Every bytes object reachable from `root` through the objects it refers to, stopping at
    modules, classes and the shared configuration."""
    seen: set[int] = set()
    found: set[bytes] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type | ServerConfig):
            continue
        seen.add(id(obj))
        if isinstance(obj, bytes):
            found.add(obj)
            continue
        stack.extend(gc.get_referents(obj))
    return found


@pytest.mark.parametrize("tickets", [True, False])
def test_established_server_keeps_no_handshake_secret(
    ca: CertAuthority, leaves: dict[str, Leaf], tickets: bool
) -> None:
    config = ServerConfig(certificates=(leaves["ecdsa-p256"].certified(),))
    if not tickets:
        config = ServerConfig(certificates=config.certificates, ticket_keys=None)
    client = ClientConnection(ClientConfig(trust_roots=(ca.cert,)), server_name="localhost")
    server = ServerConnection(config)
    now = time.time()
    client.start_handshake(now)
    server.receive_data(client.data_to_send(), now)  # the server's flight is out
    schedule = server._schedule  # noqa: SLF001 - the secrets to look for afterwards
    assert schedule is not None
    secrets = {schedule.early_secret, schedule.handshake_secret, schedule.master_secret}
    pump(server, client, now=now)
    assert client.is_established and server.is_established

    assert not secrets & reachable_bytes(server)
    assert not hasattr(server, "__dict__")  # slots: thousands sit idle at once
    # Still a working connection.
    server.send_data(b"still here")
    events = client.receive_data(server.data_to_send(), now)
    assert [getattr(e, "data", None) for e in events] == [b"still here"]
