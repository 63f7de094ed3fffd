"""Real sockets around the sans-I/O engine, for tests against real TLS peers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from outwork.tls import events as ev
from outwork.tls.config import ClientConfig, ServerConfig
from outwork.tls.connection import ClientConnection, ServerConnection
from outwork.tls.tickets import ClientSession

HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


class EngineServer:
    """A threaded loopback server: one ServerConnection per client, answers HTTP_OK to the
    first application data, records every event it sees."""

    def __init__(self, config: ServerConfig, reply: bytes = HTTP_OK) -> None:
        self.config = config
        self.reply = reply
        self.events: list[ev.Event] = []
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        conn = ServerConnection(self.config)
        client.settimeout(10)
        try:
            while not conn.peer_closed:
                data = client.recv(65536)
                if not data:
                    break
                for event in conn.receive_data(data, time.time()):
                    with self._lock:
                        self.events.append(event)
                    if isinstance(event, ev.ApplicationData) and conn.is_established:
                        conn.send_data(self.reply)
                        conn.close()
                client.sendall(conn.data_to_send())
        except OSError:
            pass
        finally:
            client.close()

    def wait_for(self, kind: type, timeout: float = 5.0) -> list[ev.Event]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                found = [e for e in self.events if isinstance(e, kind)]
            if found:
                return found
            time.sleep(0.02)
        return []

    def close(self) -> None:
        self._sock.close()


def client_exchange(
    port: int,
    config: ClientConfig,
    server_name: str | None,
    request: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    after_handshake: Callable[[ClientConnection], None] | None = None,
    session: ClientSession | None = None,
) -> tuple[ClientConnection, list[ev.Event], bytes]:
    """Run the engine's client role against a real server; returns (conn, events, body)."""
    conn = ClientConnection(config, server_name=server_name, session=session)
    conn.start_handshake(time.time())
    events: list[ev.Event] = []
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        while not conn.peer_closed:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data, time.time()):
                events.append(event)
                if isinstance(event, ev.HandshakeComplete):
                    if after_handshake is not None:
                        after_handshake(conn)
                    conn.send_data(request)
                elif isinstance(event, ev.ApplicationData):
                    received += event.data
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
    return conn, events, bytes(received)
