#!/usr/bin/env python3
"""A small HTTP/1.1 backend for the demo and the tests (stdlib only, keep-alive).

    GET  /               a short text
    POST /echo           echoes the request body, streamed back chunk by chunk
    GET  /bytes?n=N      N bytes (x), with Content-Length; &chunked=1 for chunked
    GET  /slow?s=SEC     answers after SEC seconds
    GET  /close          a close-delimited body (no length, then the connection closes)
    GET  /status?code=C  an empty response with that status (204, 304, ...)
    GET  /garbage        answers with bytes that are not HTTP
    GET  /reset          closes the connection without answering
    GET  /stats          JSON: connections accepted and open, requests served so far
    GET  /page?name=P    a canned page (PAGES: an SQL error, PHP source, a directory listing,
                         a benign page), `&type=MIME` (default text/html; `none`: no
                         Content-Type at all), `&pad=N` bytes of filler before it,
                         `&after=N` after it, `&chunked=1` for chunked,
                         `&cut=1`: half the body, then the connection reset; `&close=1`: no
                         length, the body ends when the connection closes
    POST /reflect        the response the JSON body describes, as CRS's test backend (albedo)
                         makes it: {"status": 200, "headers": {...}, "body": "...",
                         "encodedBody": BASE64}; the type sniffed when no header gives it
    anything else        "<METHOD> <path>" as text, with the request headers as x-seen-*

Every response carries `x-backend: NAME` (--name, default "demo").
Usage: backend.py [--host 127.0.0.1] [--port 9000] [--name demo]
Prints "backend listening on HOST:PORT" once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
from urllib.parse import parse_qs, urlsplit

STATS = {"connections": 0, "open": 0, "requests": 0}
CHUNK = 64 * 1024
NAME = "demo"
REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found"}
PAGES = {
    "sql": b"<html><body><h1>Error</h1><p>You have an error in your SQL syntax; check the "
    b"manual that corresponds to your MySQL server version for the right syntax to use near "
    b"''1'' at line 1</p></body></html>\n",
    "php": b"<?php\n$db = mysqli_connect('localhost', 'app', 'secret');\necho 'hello';\n?>\n",
    "listing": b"<html><head><title>Index of /backup</title></head><body><h1>Index of /backup"
    b'</h1><ul><li><a href="db.sql">db.sql</a></li></ul></body></html>\n',
    "benign": b"<html><head><title>Orders</title></head><body><p>Your order 42 ships "
    b"tomorrow.</p></body></html>\n",
}
# What Go's http.DetectContentType (albedo's) says for the bodies CRS's tests reflect.
HTML_PREFIXES = tuple(
    p.encode()
    for p in "<!doctype html|<html|<head|<script|<iframe|<h1|<div|<font|<table|<a|<style|"
    "<title|<b|<body|<br|<p|<!--".split("|")
)


def sniff(body: bytes) -> str:
    start = body.lstrip(b"\t\n\x0c\r ").lower()
    if any(
        start.startswith(p) and start[len(p) : len(p) + 1] in (b" ", b">") for p in HTML_PREFIXES
    ):
        return "text/html; charset=utf-8"
    if start.startswith(b"<?xml"):
        return "text/xml; charset=utf-8"
    if any(b < 0x20 and b not in b"\t\n\x0c\r\x1b" for b in body[:512]):
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def reflect(spec: bytes) -> tuple[int, dict[str, str], bytes]:
    try:
        described = json.loads(spec or b"{}")
    except ValueError:
        return 400, {"content-type": "text/plain; charset=utf-8"}, b"invalid JSON\n"
    body = described.get("body", "").encode("utf-8", "surrogateescape")
    if described.get("encodedBody"):
        body = base64.b64decode(described["encodedBody"])
    headers = {str(k).lower(): str(v) for k, v in (described.get("headers") or {}).items()}
    headers.setdefault("content-type", sniff(body))
    headers["content-length"] = str(len(body))
    return int(described.get("status") or 200), headers, body


async def read_body(reader: asyncio.StreamReader, headers: dict[str, str]):
    """Yield the request body in pieces (Content-Length or chunked)."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b""):
                    pass
                return
            remaining = size
            while remaining:
                piece = await reader.read(min(remaining, CHUNK))
                if not piece:
                    raise ConnectionError("truncated body")
                remaining -= len(piece)
                yield piece
            await reader.readexactly(2)
    else:
        remaining = int(headers.get("content-length", "0"))
        while remaining:
            piece = await reader.read(min(remaining, CHUNK))
            if not piece:
                raise ConnectionError("truncated body")
            remaining -= len(piece)
            yield piece


def head(status: int, headers: dict[str, str]) -> bytes:
    headers = {"x-backend": NAME, **headers}
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Other')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    STATS["connections"] += 1
    STATS["open"] += 1
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            STATS["requests"] += 1
            request_line, *header_lines = raw.decode("latin-1").split("\r\n")
            method, target, _version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            url = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            path = url.path
            if path == "/echo":
                writer.write(head(200, {"transfer-encoding": "chunked"}))
                async for piece in read_body(reader, headers):
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                continue
            if path == "/reflect":
                spec = b"".join([piece async for piece in read_body(reader, headers)])
                status, described, body = reflect(spec)
                writer.write(head(status, described) + (b"" if method == "HEAD" else body))
                await writer.drain()
                continue
            async for _ in read_body(reader, headers):
                pass
            if path == "/page":
                page = PAGES[query.get("name", "benign")]
                body = (
                    b"x" * int(query.get("pad", "0")) + page + b"x" * int(query.get("after", "0"))
                )
                kind = query.get("type", "text/html")
                typed = {} if kind == "none" else {"content-type": kind}
                if query.get("close") == "1":
                    writer.write(head(200, {**typed, "connection": "close"}) + body)
                    await writer.drain()
                    writer.close()
                    return
                if query.get("chunked") == "1":
                    half = len(body) // 2
                    pieces = [body[:half], body[half:]]
                    data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
                    framing = {"transfer-encoding": "chunked"}
                    data += b"0\r\n\r\n"
                else:
                    framing = {"content-length": str(len(body))}
                    data = body
                writer.write(head(200, {**typed, **framing}))
                if query.get("cut") == "1":
                    writer.write(data[: len(data) // 2])
                    await writer.drain()
                    writer.transport.abort()
                    return
                if method != "HEAD":
                    writer.write(data)
                await writer.drain()
                continue
            if path == "/reset":
                writer.transport.abort()
                return
            if path == "/garbage":
                writer.write(b"this is not http\r\n\r\n")
                await writer.drain()
                writer.close()
                return
            if path == "/slow":
                await asyncio.sleep(float(query.get("s", "1")))
            if path == "/close":
                writer.write(head(200, {"connection": "close"}) + b"close-delimited body\n")
                await writer.drain()
                writer.close()
                return
            if path == "/status":
                code = int(query.get("code", "204"))
                writer.write(head(code, {} if code in (204, 304) else {"content-length": "0"}))
                continue
            if path == "/bytes":
                n = int(query.get("n", "0"))
                chunked = query.get("chunked") == "1"
                framing = (
                    {"transfer-encoding": "chunked"} if chunked else {"content-length": str(n)}
                )
                writer.write(head(200, {"content-type": "application/octet-stream", **framing}))
                if method != "HEAD":
                    block = b"x" * CHUNK
                    while n:
                        piece = block[: min(n, CHUNK)]
                        n -= len(piece)
                        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                        await writer.drain()
                    if chunked:
                        writer.write(b"0\r\n\r\n")
                await writer.drain()
                continue
            if path == "/stats":
                body = json.dumps(STATS).encode()
            elif path == "/":
                body = b"hello from the outwork demo backend\n"
            else:
                body = f"{method} {path}\n".encode()
            seen = {f"x-seen-{k}": v for k, v in headers.items() if k != "content-length"}
            response_headers = {"content-type": "text/plain", "content-length": str(len(body))}
            writer.write(head(200, {**response_headers, **seen}))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        STATS["open"] -= 1
        writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--name", default="demo")
    args = parser.parse_args()
    global NAME
    NAME = args.name
    server = await asyncio.start_server(handle, args.host, args.port, reuse_address=True)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"backend listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
