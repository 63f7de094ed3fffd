"""Fuzz target: what a scanned server sends, into the scanner's readers (outwork/scan/wire.py).

    .venv/bin/python fuzz/fuzz_scan_wire.py /tmp/fuzz-scan fuzz/corpus/scan_wire

Byte 0 picks the mode (modulo 4), byte 1 a cut point or a count; the rest is the input:

  0  a byte stream into `RecordReader`, whole and cut in two at byte 1 (x 16), which must give
     the same records; every handshake record then into a `HandshakeReader`, and each message
     to its parser (ServerHello, Certificate, ServerKeyExchange); alerts to `parse_alert`
  1  a ServerHello body into `parse_server_hello`
  2  a Certificate body into `parse_certificate12`
  3  a heartbeat response: `leaked_in_response` must stay within what arrived

Only `ScanProtocolError` may come out. `TestOneInput` is importable without atheris.
"""

from __future__ import annotations

import sys

from outwork.scan import wire
from outwork.tls.enums import ContentType, HandshakeType

MODES = 4


def _records(data: bytes, cut: int) -> list[tuple[int, int, bytes]]:
    reader = wire.RecordReader()
    out = reader.feed(data[:cut]) + reader.feed(data[cut:])
    return [(r.content_type, r.length, r.fragment) for r in out]


def _stream(data: bytes, cut: int) -> None:
    try:
        whole = _records(data, len(data))
    except wire.ScanProtocolError:
        return
    assert _records(data, min(cut, len(data))) == whole, "chunking changed the records"
    handshake = wire.HandshakeReader()
    for content_type, length, fragment in whole:
        if content_type == ContentType.HEARTBEAT:
            assert len(fragment) <= wire.HEARTBEAT_HEADER, "heartbeat bytes kept"
            wire.leaked_in_response(fragment, 0, length)
        elif content_type == ContentType.ALERT:
            wire.parse_alert(fragment)
        elif content_type == ContentType.HANDSHAKE:
            for msg_type, body in handshake.feed(fragment):
                if msg_type == HandshakeType.SERVER_HELLO:
                    wire.parse_server_hello(body)
                elif msg_type == HandshakeType.CERTIFICATE:
                    wire.parse_certificate12(body)
                elif msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
                    wire.parse_ske_group(body)


def TestOneInput(data: bytes) -> None:  # the name atheris and libFuzzer expect
    if len(data) < 2:
        return
    mode, arg, rest = data[0] % MODES, data[1], data[2:]
    try:
        if mode == 0:
            _stream(rest, arg * 16)
        elif mode == 1:
            wire.parse_server_hello(rest)
        elif mode == 2:
            wire.parse_certificate12(rest)
        else:
            leaked = wire.leaked_in_response(rest[:3], arg, len(rest))
            assert 0 <= leaked <= max(len(rest) - 3, 0)
    except wire.ScanProtocolError:
        pass


if __name__ == "__main__":
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, __file__)
