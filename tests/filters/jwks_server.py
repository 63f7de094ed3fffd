"""A JWKS served over HTTPS on loopback (stdlib `http.server` with `ssl`), whose keys a test
can replace (rotation), break, or grow; it counts the fetches it answered."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.e2e.pki import TestPKI


@dataclass
class JwksServer:
    url: str = ""
    ca: Path = Path()
    keys: list[dict[str, Any]] = field(default_factory=list)
    body: bytes | None = None  # served instead of the keys when set
    status: int = 200
    location: str = ""  # with a 3xx status
    fetches: int = 0

    def document(self) -> bytes:
        return self.body if self.body is not None else json.dumps({"keys": self.keys}).encode()


@contextmanager
def serve_jwks(pki: TestPKI, tls: bool = True) -> Iterator[JwksServer]:
    """The server, over HTTPS with the PKI's localhost certificate, or plain HTTP."""
    state = JwksServer(ca=pki.ca_cert)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            state.fetches += 1
            body = state.document()
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        leaf = pki.leaves["ecdsa-p256"]
        context.load_cert_chain(leaf.cert, leaf.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        state.url = f"https://localhost:{server.server_address[1]}/jwks.json"
    else:
        state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
