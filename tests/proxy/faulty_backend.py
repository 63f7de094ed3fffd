"""Backends that misbehave on purpose, for the upstream tests (stdlib only).

    faulty_backend.py MODE [--name NAME]

Modes, for every request on every connection:
    reset    reads the request head, then resets the connection (RST) without answering
    garbage  reads the request head, answers bytes that are not HTTP, closes
    hang     reads the request head and never answers (the connection stays open)
    noread   accepts connections and never reads from them
    gate     holds each request (prints `held` on stdout) until a line arrives on stdin; from
             then on answers 200 at once, the held ones included

Prints "listening on HOST:PORT" once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys

NAME = "faulty"


def ok_response() -> bytes:
    body = f"answered by {NAME}\n".encode()
    return (
        f"HTTP/1.1 200 OK\r\nx-backend: {NAME}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["reset", "garbage", "hang", "noread", "gate"])
    parser.add_argument("--name", default="faulty")
    args = parser.parse_args()
    global NAME
    NAME = args.name
    mode = args.mode
    released = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if mode == "noread":
                await asyncio.Event().wait()
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                if mode == "reset":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                    return
                if mode == "garbage":
                    writer.write(b"this is not http\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    return
                if mode == "hang":
                    await asyncio.Event().wait()
                if mode == "gate" and not released.is_set():
                    held.append(writer)
                    print("held", flush=True)
                    await released.wait()
                writer.write(ok_response())
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    loop = asyncio.get_running_loop()
    if mode == "gate":
        await loop.run_in_executor(None, sys.stdin.readline)
        released.set()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
