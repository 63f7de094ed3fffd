#!/usr/bin/env python3
"""A backend for streaming tests that never holds a body: it hashes what it receives and
generates what it sends (stdlib only; one thread per connection, blocking sockets).

    POST /sink          reads the body (Content-Length or chunked) and answers JSON
                        {"bytes": N, "sha256": HEX} of what it read; `?stall=S`: waits S
                        seconds before reading (a slow backend the gateway must not outrun)
    GET  /source?n=N    N bytes of `pattern(N)`, with Content-Length (`&chunked=1`: chunked,
                        one chunk per 1 MiB block)

Usage: stream_backend.py PORT (0: any). Prints "backend listening on HOST:PORT".
`pattern` and `pattern_digest` are imported by the tests, so both ends agree on the bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import socket
import socketserver
import sys
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

BLOCK = 1024 * 1024


@functools.cache
def _base_block() -> bytes:
    return random.Random(20261129).randbytes(BLOCK)


def pattern(n: int) -> Iterator[bytes]:
    """`n` pseudo-random bytes in 1 MiB blocks, each starting with its own index, so a block
    lost, repeated or reordered on the way changes the hash."""
    base = _base_block()
    index = 0
    while n > 0:
        block = index.to_bytes(8, "big") + base[8:]
        yield block[:n] if n < BLOCK else block
        n -= BLOCK
        index += 1


@functools.cache
def pattern_digest(n: int) -> str:
    digest = hashlib.sha256()
    for block in pattern(n):
        digest.update(block)
    return digest.hexdigest()


class Handler(socketserver.StreamRequestHandler):
    rbufsize = BLOCK

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            url = urlsplit(target)
            if method == "POST" and url.path == "/sink":
                time.sleep(float(parse_qs(url.query).get("stall", ["0"])[0]))
                count, digest = self.read_body(headers)
                self.answer(json.dumps({"bytes": count, "sha256": digest}).encode())
            elif method == "GET" and url.path == "/source":
                query = parse_qs(url.query)
                n = int(query["n"][0])
                if query.get("chunked"):
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    for block in pattern(n):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % n)
                    for block in pattern(n):
                        self.wfile.write(block)
                self.wfile.flush()
            else:
                self.answer(b"not found", 404)

    def read_body(self, headers: dict[str, str]) -> tuple[int, str]:
        digest = hashlib.sha256()
        count = 0
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)

        def take(remaining: int) -> None:
            nonlocal count
            while remaining:
                got = self.rfile.readinto(view[: min(remaining, BLOCK)])
                if not got:
                    raise ConnectionError("truncated body")
                digest.update(view[:got])
                count += got
                remaining -= got

        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline(1024).split(b";")[0], 16):
                take(size)
                self.rfile.readline(3)
            while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass
        else:
            take(int(headers.get("content-length", "0")))
        return count, digest.hexdigest()

    def answer(self, body: bytes, status: int = 200) -> None:
        reason = b"OK" if status == 200 else b"Not Found"
        self.wfile.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
            % (status, reason, len(body))
            + body
        )
        self.wfile.flush()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def main() -> None:
    server = Server(("127.0.0.1", int(sys.argv[1])), Handler)
    host, port = server.socket.getsockname()[:2]
    print(f"backend listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
