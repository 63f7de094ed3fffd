"""Fuzz target: bytes from an HTTP/2 client into the gateway's server-side session (sans-I/O).

    .venv/bin/python fuzz/fuzz_h2.py /tmp/fuzz-h2 fuzz/corpus/h2

What is fuzzed is what `outwork.front.h2` runs before any I/O: the frame guard
(`h2_guard.FrameGuard`), `h2` with the gateway's settings (`h2.new_connection`), and every
request header list it decodes through `h2head.build_request_head`.

Byte 0 picks how the rest is delivered: bit 0 set, after the client preface (so the input is
frames); the other bits (modulo 8, plus 1) the size of the pieces it is fed in, so frame
headers and payloads split across reads are exercised too.

Allowed outcomes: a `Flood` (the connection gets GOAWAY), h2's `ProtocolError` (its GOAWAY),
an `HTTPError` from the head builder (a 4xx/5xx for that stream). Anything else is a crash.
"""

from __future__ import annotations

import os
import shlex
import sys

from h2.events import RequestReceived
from h2.exceptions import ProtocolError

from outwork.config.config import Http2Config
from outwork.front.h2 import new_connection, receive
from outwork.front.h2_guard import PREFACE_LENGTH, Flood, FrameGuard
from outwork.http.errors import HTTPError
from outwork.http.h2head import build_request_head

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
assert len(PREFACE) == PREFACE_LENGTH
CONFIG = Http2Config(max_resets=50, max_settings=20, max_pings=20, max_empty_frames=50)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    if not data:
        return
    mode = data[0]
    body = data[1:]
    if mode & 1:
        body = PREFACE + body
    piece = ((mode >> 1) % 8) * 7 + 1
    conn = new_connection(CONFIG)
    guard = FrameGuard(CONFIG)
    now = 0.0
    try:
        for at in range(0, len(body), piece):
            now += 0.001
            for event in receive(conn, guard, body[at : at + piece], now):
                if isinstance(event, RequestReceived):
                    try:
                        build_request_head(
                            event.headers or [],  # type: ignore[arg-type]
                            event.stream_ended is not None,
                            scheme=b"https",
                            max_headers=100,
                            max_body=1 << 20,
                            max_list_size=CONFIG.max_header_list_size,
                        )
                    except HTTPError as exc:
                        assert 400 <= exc.status < 600
            conn.data_to_send()
    except (Flood, ProtocolError):
        return


if __name__ == "__main__":
    import atheris  # type: ignore[import-untyped]

    atheris.instrument_all()
    self_command = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))}"
    atheris.Setup([self_command, *sys.argv[1:]], TestOneInput)
    atheris.Fuzz()
