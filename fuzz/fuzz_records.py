"""Fuzz target: bytes into the record layer, before and after a completed handshake.

    .venv/bin/python fuzz/fuzz_records.py /tmp/fuzz-rec fuzz/corpus/records

(add -dict=fuzz/tls.dict; new inputs go to the first directory, fuzz/README.md says how to
keep them).

The first byte picks what the rest is fed to: its low six bits (modulo 5) the mode, bit 6 a
TLS 1.2 client (and so a TLS 1.2 pair) instead of TLS 1.3, bit 7 heartbeat on at both ends.

  0  raw bytes into a fresh ServerConnection (plaintext framing, ClientHello reassembly)
  1  raw bytes into a server that completed a handshake with the engine's own client
     (protected-record framing and length checks; decryption fails for random bytes)
  2  raw bytes into a ClientConnection waiting for the ServerHello
  3  chunks sealed with the client's real traffic key, then fed to the established server,
     so what is inside a protected record (alerts, KeyUpdate, heartbeat, post-handshake
     messages, padding) is what gets fuzzed
  4  the same, sealed by the server and fed to the established client

A sealed chunk is: content type (1 byte), length (2 bytes, cut to what is left), content.

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from engine_fixtures import (
    check_events,
    client_config,
    established_pair,
    run_atheris,
    server_config,
)

from outwork.tls.base import TLSConnection
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.enums import ProtocolVersion
from outwork.tls.records import MAX_PLAINTEXT

MODES = 5


def sealed_chunks(data: bytes) -> list[tuple[int, bytes]]:
    chunks = []
    pos = 0
    while pos < len(data):
        content_type = data[pos]
        length = int.from_bytes(data[pos + 1 : pos + 3], "big") if pos + 3 <= len(data) else 0
        pos += 3
        content = data[pos : pos + min(length, MAX_PLAINTEXT)]
        pos += len(content)
        chunks.append((content_type, content))
    return chunks


def feed(conn: TLSConnection, data: bytes) -> None:
    check_events(conn.receive_data(data))
    conn.data_to_send()
    # A failed or closed connection stays so: more input is ignored, never raises.
    if conn.is_closed and conn.receive_data(data):
        raise AssertionError("a closed connection still produced events")


def seal_and_feed(sender: TLSConnection, receiver: TLSConnection, data: bytes) -> None:
    for content_type, content in sealed_chunks(data):
        sender.send_raw_record(content_type, content)
    feed(receiver, sender.data_to_send())


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer expect
    if not data:
        return
    mode, tls12, heartbeat = (data[0] & 0x3F) % MODES, bool(data[0] & 0x40), bool(data[0] & 0x80)
    rest = data[1:]
    if mode == 0:
        feed(ServerConnection(server_config(heartbeat)), rest)
    elif mode == 2:
        version = ProtocolVersion.TLS12 if tls12 else ProtocolVersion.TLS13
        config = client_config(heartbeat=heartbeat, max_version=version)
        client = ClientConnection(config, server_name="fuzz.outwork.test")
        client.start_handshake()
        feed(client, rest)
    else:
        client, server = established_pair(heartbeat, tls12)
        if mode == 1:
            feed(server, rest)
        elif mode == 3:
            seal_and_feed(client, server, rest)
        else:
            seal_and_feed(server, client, rest)


if __name__ == "__main__":
    run_atheris(TestOneInput, __file__)
