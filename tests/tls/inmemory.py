"""Drive a client and a server engine against each other with no sockets."""

from __future__ import annotations

import time

from outwork.tls import events as ev
from outwork.tls.base import TLSConnection
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.tickets import ClientSession


def pump(
    a: TLSConnection, b: TLSConnection, rounds: int = 6, now: float | None = None
) -> tuple[list[ev.Event], list[ev.Event]]:
    """Move bytes both ways until quiet; returns (events at a, events at b)."""
    a_events: list[ev.Event] = []
    b_events: list[ev.Event] = []
    now = time.time() if now is None else now
    for _ in range(rounds):
        moved = False
        data = a.data_to_send()
        if data:
            b_events += b.receive_data(data, now)
            moved = True
        data = b.data_to_send()
        if data:
            a_events += a.receive_data(data, now)
            moved = True
        if not moved:
            break
    return a_events, b_events


def connected_pair(
    server_config: ServerConfig,
    client_config: ClientConfig,
    server_name: str = "localhost",
    session: ClientSession | None = None,
    now: float | None = None,
) -> tuple[ClientConnection, ServerConnection, list[ev.Event], list[ev.Event]]:
    now = time.time() if now is None else now
    client = ClientConnection(client_config, server_name=server_name, session=session)
    server = ServerConnection(server_config)
    client.start_handshake(now)
    client_events, server_events = pump(client, server, now=now)
    return client, server, client_events, server_events
