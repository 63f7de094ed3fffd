"""A raw HTTP/2 client for the tests: Python `ssl` with ALPN h2, `h2` for well-formed traffic
and `hyperframe`/`hpack` for frames a well-behaved client would never send."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from hpack import Encoder
from hyperframe.frame import Frame, GoAwayFrame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def open_tls(
    port: int, ca: Path, alpn: tuple[str, ...] = ("h2",), receive_buffer: int = 0
) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(list(alpn))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:  # before connect: it bounds the window the client advertises
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    raw.settimeout(15)
    raw.connect(("127.0.0.1", port))
    return ctx.wrap_socket(raw, server_hostname="localhost")


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[bytes, bytes] = {}
        self.body = bytearray()
        self.ended = False
        self.reset: int | None = None


class H2Client:
    """A well-behaved client: requests, flow control, responses by stream."""

    def __init__(self, port: int, ca: Path) -> None:
        self.sock = open_tls(port, ca)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.responses: dict[int, Response] = {}
        self.goaway: ConnectionTerminated | None = None
        self.closed = False
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def start(
        self,
        path: str,
        method: str = "GET",
        headers: list[tuple[str, str]] | None = None,
        end: bool = True,
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        request = [
            (":method", method),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path),
            *(headers or []),
        ]
        self.conn.send_headers(sid, request, end_stream=end)
        self.responses[sid] = Response()
        self.flush()
        return sid

    def send_body(self, sid: int, data: bytes, end: bool = True) -> None:
        at = 0
        while at < len(data):
            window = self.conn.local_flow_control_window(sid)
            window = min(window, self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump()
                continue
            chunk = data[at : at + window]
            self.conn.send_data(sid, chunk)
            at += len(chunk)
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    def pump(self, timeout: float = 15.0) -> None:
        """Read once and handle what came."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise ConnectionError("closed by the gateway")
        for event in self.conn.receive_data(data):
            sid = getattr(event, "stream_id", None)
            response = self.responses.get(sid) if sid else None
            if isinstance(event, ResponseReceived) and response is not None:
                headers = dict(event.headers)  # type: ignore[arg-type]
                response.status = int(headers[b":status"])
                response.headers = headers
            elif isinstance(event, DataReceived) and response is not None:
                response.body += event.data or b""
                self.conn.acknowledge_received_data(event.flow_controlled_length or 0, sid or 0)
            elif isinstance(event, StreamEnded) and response is not None:
                response.ended = True
            elif isinstance(event, StreamReset) and response is not None:
                response.reset = int(event.error_code or 0)
                response.ended = True
            elif isinstance(event, ConnectionTerminated):
                self.goaway = event
        self.flush()

    def wait(self, *sids: int) -> list[Response]:
        while not all(self.responses[s].ended for s in sids):
            self.pump()
        return [self.responses[s] for s in sids]

    def get(self, path: str) -> Response:
        return self.wait(self.start(path))[0]

    def close(self) -> None:
        self.sock.close()


class RawClient:
    """An attacker: frames as bytes, HPACK by hand, and a reader that only looks for GOAWAY."""

    def __init__(self, port: int, ca: Path, receive_buffer: int = 0) -> None:
        self.sock = open_tls(port, ca, receive_buffer=receive_buffer)
        assert self.sock.selected_alpn_protocol() == "h2"
        self.encoder = Encoder()
        self.sock.sendall(PREFACE + frame(4, 0, 0, b""))
        self._buffer = b""
        self.eof = False  # the gateway closed the connection

    def headers_block(self, path: str = "/", method: str = "GET") -> bytes:
        return self.encoder.encode(
            [
                (":method", method),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", path),
            ]
        )

    def send(self, data: bytes) -> bool:
        """Send; False once the gateway has closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def until(self, done: Callable[[list[Frame]], bool], timeout: float = 30.0) -> list[Frame]:
        """Read frames until `done(frames so far)` holds, the connection closes, or `timeout`
        (a generous bound for a hung gateway, not a timing assertion)."""
        found: list[Frame] = []
        deadline = time.monotonic() + timeout
        while not done(found) and not self.eof and time.monotonic() < deadline:
            found += self.frames(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        return found

    def frames(self, timeout: float = 15.0) -> list[Frame]:
        """Read frames until the gateway closes the connection (or `timeout`)."""
        found: list[Frame] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except (ssl.SSLError, OSError):
                self.eof = True
                break
            if not data:
                self.eof = True
                break
            self._buffer += data
            while len(self._buffer) >= 9:
                parsed, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
                if len(self._buffer) < 9 + length:
                    break
                parsed.parse_body(memoryview(self._buffer[9 : 9 + length]))
                self._buffer = self._buffer[9 + length :]
                found.append(parsed)
        return found

    def goaway(self, timeout: float = 15.0) -> GoAwayFrame | None:
        for f in self.frames(timeout):
            if isinstance(f, GoAwayFrame):
                return f
        return None

    def close(self) -> None:
        self.sock.close()


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    head = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream_id.to_bytes(4, "big")
    return head + payload
