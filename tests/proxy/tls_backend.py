"""A real TLS backend for the upstream-TLS tests: Python's `ssl` (OpenSSL) around a threaded
HTTP/1.1 server, so the gateway's client role meets an independent TLS implementation.

Run as a script: `python tls_backend.py --cert C --key K [--client-ca CA] [--max-version 1.2]`.
It binds 127.0.0.1 on a free port, prints `READY <port>`, and answers every GET (keep-alive,
Content-Length) with what it saw of the connection, as JSON:

    {"conn": 3, "version": "TLSv1.3", "resumed": false, "sni": "localhost",
     "client": "CN=e2e-client-good,...", "client_serial": "5A0F...", "alpn": "http/1.1",
     "path": "/x"}

`conn` numbers the TCP connections accepted (keep-alive reuse shows as a repeated number).

`GET /bytes/N` answers N bytes (a repeated pattern), `POST /sha256` the SHA-256 of the body
it got (hex): large bodies both ways, through the gateway's flow control.

`GET /close-notify` and `GET /close-truncated` answer a body delimited by the end of the
connection (no Content-Length): the first ends TLS with close_notify, the second with a bare
TCP FIN, as a truncation attack would (nothing authenticates where the body ends).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATTERN = bytes(range(256))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--client-ca", help="require a client certificate from this CA")
    parser.add_argument("--max-version", choices=("1.2", "1.3"), default="1.3")
    args = parser.parse_args()

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["http/1.1"])
    if args.max_version == "1.2":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if args.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(args.client_ca)

    def remember_sni(sock: Any, name: str | None, _context: ssl.SSLContext) -> None:
        sock.outwork_sni = name

    context.sni_callback = remember_sni
    counter = itertools.count(1)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            with lock:
                self.conn_number = next(counter)
            super().setup()

        def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
            if self.path.startswith("/bytes/"):
                self.pattern(int(self.path.removeprefix("/bytes/")))
                return
            if self.path in ("/close-notify", "/close-truncated"):
                self.close_delimited(notify=self.path == "/close-notify")
                return
            sock = self.request
            peer = sock.getpeercert()
            client = None
            if peer:
                client = ",".join(f"{k}={v}" for rdn in peer["subject"] for k, v in rdn)
            payload = json.dumps(
                {
                    "conn": self.conn_number,
                    "version": sock.version(),
                    "resumed": sock.session_reused,
                    "sni": getattr(sock, "outwork_sni", None),
                    "client": client,
                    "client_serial": peer.get("serialNumber") if peer else None,
                    "alpn": sock.selected_alpn_protocol(),
                    "path": self.path,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def pattern(self, size: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = PATTERN * (65536 // len(PATTERN))
            while size > 0:
                piece = block[: min(size, len(block))]
                self.wfile.write(piece)
                size -= len(piece)

        def do_POST(self) -> None:  # noqa: N802 (stdlib naming)
            remaining = int(self.headers["Content-Length"])
            digest = hashlib.sha256()
            while remaining > 0:
                data = self.rfile.read(min(remaining, 65536))
                if not data:
                    return
                digest.update(data)
                remaining -= len(data)
            payload = digest.hexdigest().encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def close_delimited(self, notify: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"all of the body\n")
            self.wfile.flush()
            self.close_connection = True
            if notify:
                self.request.unwrap()  # close_notify; waits for the gateway's
            # Otherwise the server's shutdown_request sends a FIN without close_notify.

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # failed handshakes are what some tests are about

    server = Server(("127.0.0.1", 0), Handler)
    # The handshake runs in the connection's thread, on its first read, not in accept().
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
