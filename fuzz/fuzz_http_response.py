"""Fuzz target: an upstream's bytes into the HTTP/1.1 response reader.

    .venv/bin/python fuzz/fuzz_http_response.py /tmp/fuzz-response fuzz/corpus/http_response

A backend is a peer too: what it answers is parsed by `ResponseReader` and its header lines are
forwarded nearly as they came (`checks.scan_response_head`). Byte 0 sets how the response is
read: bit 0 the request was HEAD, bit 1 it was a WebSocket upgrade, bit 2 the upstream closes
after the bytes; byte 1 picks where the rest is cut into two reads (its value modulo the
length). A crash is any exception other than UpstreamProtocolError, a difference between the
events of one read and of two, or a forwarded head that still carries a hop-by-hop line, holds
an empty line or does not end its lines with CRLF.

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

import re

from fuzz_http_request import join_bodies

from outwork.http.checks import HOP_BY_HOP
from outwork.http.errors import UpstreamProtocolError
from outwork.http.messages import ResponseHead
from outwork.http.reader import ResponseReader

MAX_HEAD = 2048
# What the gateway never forwards from an upstream's head: the hop-by-hop headers (it writes
# its own framing) and x-request-id (it writes the id it sent).
DROPPED = re.compile(
    rb"(?:^|\r\n)(?:" + b"|".join(sorted(HOP_BY_HOP | {b"x-request-id"})) + rb")[ \t]*:",
    re.IGNORECASE,
)


class Sink:
    def __init__(self) -> None:
        self.events: list[object] = []

    def on_response_head(self, head: ResponseHead) -> None:
        block = head.block
        if head.status != 101:  # a 101's head gets the gateway's own Upgrade lines back
            assert DROPPED.search(block) is None, block
        assert block == b"" or block.endswith(b"\r\n"), block
        assert b"\r\n\r\n" not in block and not block.startswith(b"\r\n"), block
        self.events.append((head.status, head.reason, block, head.framing, head.content_length))

    def on_response_body(self, data: bytes) -> None:
        self.events.append(data)

    def on_response_end(self, reusable: bool) -> None:
        self.events.append(("end", reusable))


def read(data: bytes, cut: int, flags: int) -> tuple[list[object], str]:
    sink = Sink()
    reader = ResponseReader(sink, head_request=bool(flags & 1), max_head=MAX_HEAD)
    reader.expect_upgrade = bool(flags & 2)
    error = ""
    try:
        for piece in (data[:cut], data[cut:]):
            if piece and not reader.upgraded:
                reader.feed(piece)
        if flags & 4 and not reader.upgraded:
            reader.feed_eof()
    except UpstreamProtocolError as exc:
        error = str(exc)
    joined = join_bodies(sink.events)
    return joined, error


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if len(data) < 2:
        return
    flags, body = data[0], data[2:]
    whole = read(body, len(body), flags)
    split = read(body, data[1] % (len(body) + 1), flags)
    if not whole[1] and not split[1]:
        assert whole == split, (whole, split)
    elif whole[1] and split[1] and "too large" not in whole[1] + split[1]:
        # Refused both ways: what was read before the refusal is the same.
        assert whole[0] == split[0], (whole, split)


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
