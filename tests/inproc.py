"""The proxy in-process, for tests that need no subprocess: a `GatewayState` built from a
config dict in the test's own event loop, client connections as `ClientProtocol`s on a fake
transport that records what the gateway writes, the gateway's own `Clock` (ticked by the test
through `tick`), and real upstreams: asyncio servers on loopback in the same loop.

    async def test_x(tmp_path):
        async with Upstream() as backend, InProcGateway(config(backend.url), tmp_path) as gw:
            client = gw.connect()
            client.send(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
            (response,) = await client.responses(1)

HTTP/2 runs on the same fake transport with prior knowledge (`connect(h2=True)`): the session
is the one ALPN `h2` starts, fed the client's frames as the TLS layer would feed them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset

from outwork.config.load import load_config
from outwork.front.h1 import ClientProtocol
from outwork.front.h2 import H2Session
from outwork.proxy.server import GatewayState

# How many loop turns a wait may take before the test fails: a hung gateway, not a timing bound.
MAX_TURNS = 20_000


class FakeTransport(asyncio.Transport):
    """What the gateway writes, kept; reading paused or not, closed or not."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 40000)) -> None:
        super().__init__()
        self.peer = peer
        self.written = bytearray()
        self.reading = True
        self.closed = False
        self.aborted = False
        self.unread = bytearray()  # client bytes the gateway has not read (reading paused)
        self.protocol: asyncio.Protocol | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self.peer
        if name == "sockname":
            return ("127.0.0.1", 8080)
        return default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:
            self.written += data

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True
        if self.unread:
            # As a socket's transport does: what waited in the kernel comes in a later turn.
            asyncio.get_running_loop().call_soon(self.deliver)

    def feed(self, protocol: asyncio.Protocol, data: bytes) -> None:
        """Client bytes: handed to the gateway now, or once it reads again."""
        self.protocol = protocol
        self.unread += data
        if self.reading:
            self.deliver()

    def deliver(self) -> None:
        if self.reading and self.unread and not self.closed and self.protocol is not None:
            data, self.unread = bytes(self.unread), bytearray()
            self.protocol.data_received(data)

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return 0


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loop run until `condition` holds (the gateway's callbacks, timers, upstreams)."""
    for _ in range(MAX_TURNS):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None  # HTTP/2: the stream was reset with this code


def parse_http1(buffer: bytes) -> tuple[Response | None, bytes]:
    """One HTTP/1.1 response off the front of `buffer` (None: not all of it is in yet)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None, buffer
    lines = buffer[:end].decode("latin-1").split("\r\n")
    response = Response(int(lines[0].split(" ")[1]))
    for line in lines[1:]:
        name, _, value = line.partition(":")
        response.headers[name.strip().lower()] = value.strip()
    rest = buffer[end + 4 :]
    if response.status == 100:
        return parse_http1(rest)
    if response.status in (204, 304):
        return response, rest
    if response.headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            line_end = rest.find(b"\r\n")
            if line_end < 0:
                return None, buffer
            size = int(rest[:line_end], 16)
            if len(rest) < line_end + 2 + size + 2:
                return None, buffer
            body += rest[line_end + 2 : line_end + 2 + size]
            rest = rest[line_end + 2 + size + 2 :]
            if size == 0:
                response.body = body
                return response, rest
    length = int(response.headers.get("content-length", "0"))
    if len(rest) < length:
        return None, buffer
    response.body = rest[:length]
    return response, rest[length:]


class Client:
    """An HTTP/1.1 client connection: what it sends goes straight into the gateway's
    `data_received`; what the gateway writes is parsed back into responses."""

    def __init__(self, protocol: ClientProtocol, transport: FakeTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self._read = 0

    def send(self, data: bytes) -> None:
        self.transport.feed(self.protocol, data)

    async def responses(self, count: int) -> list[Response]:
        found: list[Response] = []

        def more() -> bool:
            while len(found) < count:
                response, rest = parse_http1(bytes(self.transport.written[self._read :]))
                if response is None:
                    return self.transport.closed
                self._read = len(self.transport.written) - len(rest)
                found.append(response)
            return True

        await until(more, f"{count} responses")
        return found

    def gone(self) -> None:
        """The client vanished (a reset): the transport reports the connection lost."""
        self.transport.abort()
        self.protocol.connection_lost(ConnectionResetError())


class H2Client:
    """An HTTP/2 client (prior knowledge) on the same fake transport: `h2` frames both ways."""

    def __init__(self, protocol: ClientProtocol, transport: FakeTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.session = H2Session(protocol)
        protocol._h2 = self.session  # as the TLS handshake does when ALPN chose h2
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.responses: dict[int, Response] = {}
        self.ended: set[int] = set()
        self._read = 0
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.protocol.begin()
            try:
                self.session.receive(data)
            finally:
                self.protocol.end()

    def request(
        self, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> int:
        sid = self.conn.get_next_available_stream_id()
        fields = [
            (":method", "GET" if body is None else "POST"),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", path),
            *(headers or {}).items(),
        ]
        self.conn.send_headers(sid, fields, end_stream=body is None)
        self.responses[sid] = Response(0)
        if body is not None:
            self.conn.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def reset(self, sid: int) -> None:
        self.conn.reset_stream(sid)
        self.flush()

    def _receive(self) -> None:
        data = bytes(self.transport.written[self._read :])
        self._read = len(self.transport.written)
        if not data:
            return
        for event in self.conn.receive_data(data):
            response = self.responses.get(getattr(event, "stream_id", 0) or 0)
            if response is None:
                continue
            if isinstance(event, ResponseReceived):
                names = dict(event.headers or [])
                response.status = int(names[b":status"])
                response.headers = {
                    k.decode(): v.decode()  # type: ignore[union-attr]
                    for k, v in names.items()
                    if not k.startswith(b":")  # type: ignore[union-attr]
                }
            elif isinstance(event, DataReceived):
                response.body += event.data or b""
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id or 0
                )
            elif isinstance(event, StreamEnded):
                self.ended.add(event.stream_id or 0)
            elif isinstance(event, StreamReset):
                response.reset = int(event.error_code or 0)
                self.ended.add(event.stream_id or 0)
        self.flush()

    async def response(self, sid: int) -> Response:
        def done() -> bool:
            self._receive()
            return sid in self.ended

        await until(done, f"the response on stream {sid}")
        return self.responses[sid]


class InProcGateway:
    """A gateway state built from `config` (a dict, as YAML would give it) in this loop."""

    def __init__(self, config: dict[str, Any], tmp_path: Path) -> None:
        self.config_dict = config
        self.tmp_path = tmp_path
        self.state: GatewayState | None = None

    async def __aenter__(self) -> InProcGateway:
        path = self.tmp_path / "inproc.yaml"
        path.write_text(yaml.safe_dump(self.config_dict))
        self.state = GatewayState(load_config(path), asyncio.get_running_loop())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        state = self.gateway
        for client in list(state.clients):
            client.connection_lost(None)
        for pool in state.pools.values():
            pool.close()
        state.security_log.close()
        if state.access_log is not None:
            state.access_log.close()

    @property
    def gateway(self) -> GatewayState:
        assert self.state is not None, "use `async with`"
        return self.state

    def connect(self, listener: str | None = None, peer_port: int = 40000) -> Client:
        protocol, transport = self._open(listener, peer_port)
        return Client(protocol, transport)

    def connect_h2(self, listener: str | None = None, peer_port: int = 40000) -> H2Client:
        protocol, transport = self._open(listener, peer_port)
        return H2Client(protocol, transport)

    def _open(self, listener: str | None, peer_port: int) -> tuple[ClientProtocol, FakeTransport]:
        state = self.gateway
        config = next(
            item for item in state.config.listeners if listener is None or item.name == listener
        )
        protocol = ClientProtocol(state, config)
        transport = FakeTransport(("127.0.0.1", peer_port))
        protocol.connection_made(transport)
        return protocol, transport

    def tick(self) -> None:
        """What the gateway's ticker does four times a second: clock, timeouts, pools."""
        self.gateway.tick()

    def events(self) -> list[dict[str, Any]]:
        """The security events written so far (config `logging.security_events`)."""
        path = Path(self.gateway.config.security_events)
        if not path.is_absolute():
            path = self.tmp_path / path
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


class Upstream:
    """A real HTTP/1.1 backend in the test's loop (asyncio streams on loopback): it answers
    `200` with `METHOD PATH` (or the request body for `/echo`) and records every request it
    read whole (`seen`) and every connection it accepted (`connections`)."""

    def __init__(self, handler: Callable[[Seen], Awaitable[bytes]] | None = None) -> None:
        self.seen: list[Seen] = []
        self.connections = 0
        self.heads = 0  # request heads read (a body may still be missing)
        self._handler = handler
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                try:
                    raw = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads += 1
                line, *lines = raw.decode("latin-1").split("\r\n")
                method, target, _ = line.split(" ", 2)
                headers = {}
                for item in lines:
                    if item:
                        name, _, value = item.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = b""
                if headers.get("transfer-encoding") == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
                        body += (await reader.readexactly(size + 2))[:-2]
                        if size == 0:
                            break  # (no trailers: "0\r\n\r\n" is read whole)
                elif "content-length" in headers:
                    body = await reader.readexactly(int(headers["content-length"]))
                seen = Seen(method, target, body)
                self.seen.append(seen)
                if self._handler is not None:
                    answer = await self._handler(seen)
                else:
                    answer = body if target == "/echo" else f"{method} {target}\n".encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(answer))
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
