"""Fuzz target: the HTTP/1.1 readers around upgrade requests and the 101 that opens a tunnel.

    .venv/bin/python fuzz/fuzz_http_upgrade.py /tmp/fuzz-up fuzz/corpus/http_upgrade

Byte 0 picks the mode (bit 0) and, for requests, where to split the input (the rest of the
byte, times the input length / 128):

  even  the rest is a client's byte stream into a RequestReader, fed whole and in two pieces
        the way ClientProtocol does (bytes after a WebSocket upgrade go to the tunnel, not the
        reader); both must give the same requests, bodies, and tunnel bytes
  odd   the rest is an upstream's answer to a WebSocket upgrade request (bit 1: or to a plain
        request) into a ResponseReader

Only the readers' own errors (HTTPError, UpstreamProtocolError) may come out.
`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from typing import Any

from outwork.http.errors import HTTPError, UpstreamProtocolError
from outwork.http.messages import RequestHead, ResponseHead
from outwork.http.reader import RequestReader, ResponseReader


class _Requests:
    def __init__(self) -> None:
        self.heads: list[tuple[bytes, bytes, bool, bytes]] = []
        self.body = bytearray()
        self.ends = 0

    def on_request_head(self, head: RequestHead) -> None:
        self.heads.append((head.method, head.target, head.upgrade, head.block))

    def on_request_body(self, data: bytes) -> None:
        self.body += data

    def on_request_end(self) -> None:
        self.ends += 1


class _Responses:
    def on_response_head(self, head: ResponseHead) -> None:
        pass

    def on_response_body(self, data: bytes) -> None:
        pass

    def on_response_end(self, reusable: bool) -> None:
        pass


def _read(pieces: list[bytes]) -> tuple[Any, ...] | None:
    sink = _Requests()
    reader = RequestReader(sink, max_head=4096, max_headers=20, max_body=1 << 20)
    tunnel = b""
    try:
        for piece in pieces:
            if reader.upgraded:
                tunnel += piece  # ClientProtocol sends these to the tunnel, not the reader
            else:
                reader.feed(piece)
    except HTTPError as exc:
        assert 400 <= exc.status < 600
        return None
    if reader.upgraded:
        assert sink.heads and sink.heads[-1][2]
        tunnel = reader.upgrade_data + tunnel
    return (sink.heads, bytes(sink.body), sink.ends, reader.upgraded, tunnel)


def TestOneInput(data: bytes) -> None:  # noqa: N802 (the name atheris and libFuzzer use)
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode & 1 == 0:
        whole = _read([rest])
        cut = (mode >> 1) * len(rest) // 128
        split = _read([rest[:cut], rest[cut:]])
        if whole is not None and split is not None:
            assert whole == split, (whole, split)
        return
    reader = ResponseReader(_Responses(), False)
    reader.expect_upgrade = not mode & 2
    try:
        reader.feed(rest)
    except UpstreamProtocolError:
        return
    if reader.upgraded:
        assert reader.expect_upgrade


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
