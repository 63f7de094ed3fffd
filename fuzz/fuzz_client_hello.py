"""Fuzz target: bytes as a ClientHello body, parsed directly, fed to a fresh server, and fed
as the second ClientHello to a server that has just sent a HelloRetryRequest.

    .venv/bin/python fuzz/fuzz_client_hello.py /tmp/fuzz-ch fuzz/corpus/client_hello

(add -dict=fuzz/tls.dict; new inputs go to the first directory, fuzz/README.md says how to
keep them).

`TestOneInput` is importable without atheris (the corpus replay in `make test` uses it);
atheris is imported only when this file runs as a script.
"""

from __future__ import annotations

from engine_fixtures import (
    EXPECTED_PARSE_ERRORS,
    check_events,
    retry_server,
    run_atheris,
    server_config,
)

from outwork.tls.codec import Reader
from outwork.tls.connection import ServerConnection
from outwork.tls.enums import ContentType, HandshakeType
from outwork.tls.extensions import parse_client_hello_extensions
from outwork.tls.messages import handshake_message, pull_client_hello
from outwork.tls.records import frame_plaintext

# Inputs up to this size are also replayed byte by byte and must give the same events.
BYTEWISE_LIMIT = 2048


def parse(data: bytes) -> None:
    try:
        hello = pull_client_hello(Reader(data))
        parse_client_hello_extensions(hello.extensions)
    except EXPECTED_PARSE_ERRORS:
        pass


def serve(data: bytes) -> None:
    """The same bytes as the body of a ClientHello, framed into handshake record(s)."""
    records = frame_plaintext(
        ContentType.HANDSHAKE, handshake_message(HandshakeType.CLIENT_HELLO, data)
    )
    at_once = ServerConnection(server_config()).receive_data(records)
    check_events(at_once)
    if len(records) <= BYTEWISE_LIMIT:
        server = ServerConnection(server_config())
        bytewise = []
        for i in range(len(records)):
            bytewise += server.receive_data(records[i : i + 1])
        check_events(bytewise)
        if bytewise != at_once:
            raise AssertionError(f"byte by byte gave {bytewise!r}, at once {at_once!r}")


def retry(data: bytes) -> None:
    """The same bytes as the second ClientHello, after a HelloRetryRequest."""
    server, _ = retry_server()
    records = frame_plaintext(
        ContentType.HANDSHAKE, handshake_message(HandshakeType.CLIENT_HELLO, data)
    )
    check_events(server.receive_data(records))


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer expect
    parse(data)
    serve(data)
    retry(data)


if __name__ == "__main__":
    run_atheris(TestOneInput, __file__)
