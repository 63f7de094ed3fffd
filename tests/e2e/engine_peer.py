"""outwork's own TLS client (`outwork.tls.connection.ClientConnection`) over a blocking socket.

Used where no external tool can go: crafted records inside the encrypted session, and the
groups no local client offers (X25519MLKEM768).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import tls_raw
from .clients import GET_KEEPALIVE


class EngineClient:
    """outwork's ClientConnection driven over a blocking socket."""

    def __init__(
        self, address: tuple[str, int], ca_file: Path, heartbeat: bool, **config: Any
    ) -> None:
        from cryptography import x509

        from outwork.tls import events as ev
        from outwork.tls.config import ClientConfig
        from outwork.tls.connection import ClientConnection

        self.ev = ev
        ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
        self.conn = ClientConnection(
            ClientConfig(
                trust_roots=(ca,), heartbeat=heartbeat, alpn_protocols=("http/1.1",), **config
            ),
            server_name="localhost",
        )
        self.sock = tls_raw.connect(address)
        self.local_port = self.sock.getsockname()[1]
        self.events: list[object] = []

    def flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self, timeout: float, until: type | None = None) -> bytes:
        """Read and feed the engine for up to `timeout` s (or until an event of type `until`);
        returns the raw bytes the server sent meanwhile."""
        raw = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.conn.peer_closed:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not data:
                break
            raw += data
            new = self.conn.receive_data(data, now=time.time())  # wall clock: cert validity
            self.events.extend(new)
            self.flush()
            if until is not None and any(isinstance(e, until) for e in new):
                break
        return raw

    def handshake(self) -> None:
        self.conn.start_handshake(time.time())
        self.flush()
        self.pump(10.0, until=self.ev.HandshakeComplete)
        assert self.conn.is_established, f"engine client handshake failed: {self.events}"

    def app_data(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, self.ev.ApplicationData))

    def get(self, expect: bytes, timeout: float = 5.0) -> bytes:
        """Send a GET; read until `expect` is in the decrypted data (or timeout)."""
        start = len(self.app_data())
        self.conn.send_data(GET_KEEPALIVE)
        self.flush()
        deadline = time.monotonic() + timeout
        while expect not in self.app_data()[start:] and time.monotonic() < deadline:
            if self.conn.peer_closed:
                break
            self.pump(deadline - time.monotonic(), until=self.ev.ApplicationData)
        return self.app_data()[start:]

    def close(self) -> None:
        self.sock.close()
