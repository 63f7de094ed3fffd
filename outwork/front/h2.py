"""HTTP/2 on a client connection whose TLS handshake chose ALPN `h2`.

The `ClientProtocol` keeps the socket and the TLS engine; once ALPN says h2 it hands the
decrypted bytes to an `H2Session` instead of the HTTP/1.1 reader, and the session writes its
frames back through the connection's output batch.

Each stream becomes an `Exchange` sent upstream as HTTP/1.1 through the same pools, routes,
limits, metrics and access log as HTTP/1.1; its `H2Stream` is the exchange's client side.

Flow control carries backpressure both ways:
- request DATA is acknowledged (WINDOW_UPDATE) only once the upstream connection took it, so
  a slow upstream stalls that stream's sender; the connection window (1 MiB) bounds the
  request bytes held per connection, as `MAX_BUFFERED_REQUEST_BYTES` does for HTTP/1.1;
- response bodies are sent within the client's windows; beyond a small per-stream buffer the
  upstream connection stops being read until the client opens its window again.

Frame floods and oversized header blocks are cut by `h2_guard.FrameGuard` before `h2` parses
the bytes; the output the peer does not read is bounded by pausing input while the
transport's write buffer is full (h2 queues ACKs for PING and SETTINGS into its output).
"""

from __future__ import annotations

import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import FrameTooLargeError, H2Error, ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Encoder
from hyperframe.frame import DataFrame, Frame

from outwork.config.config import Http2Config
from outwork.front.h2_guard import Flood, FrameGuard
from outwork.front.paused import OVER_CAP_GRACE, paused_by_address
from outwork.http.checks import oversized_field
from outwork.http.errors import HTTPError
from outwork.http.h2head import build_request_head
from outwork.http.messages import Framing, RequestHead, ResponseHead
from outwork.observe.refusals import Refusal, for_flood, for_status
from outwork.proxy import pipeline
from outwork.proxy.exchange import BODY_BEFORE_UPSTREAM, Exchange
from outwork.proxy.local_reply import LocalReply, exchange_done, local_reply

if TYPE_CHECKING:
    from outwork.proxy.downstream import Downstream, DownstreamConnection
    from outwork.upstream.pool import UpstreamConnection

# The connection-level receive window: request bytes a client may have in flight (not yet
# taken by an upstream) over all its streams.
CONNECTION_WINDOW = 1024 * 1024
# Response bytes held per stream beyond what the client's window lets us send; the upstream
# connection stops being read above it.
STREAM_OUTPUT_CAP = 64 * 1024
# The same over all streams of a connection: above it every stream's upstream stops being
# read (a client that opens the streams it may and never opens a window holds at most this,
# plus one upstream read).
SESSION_OUTPUT_CAP = 1024 * 1024


def _no_content_length(headers: object) -> None:
    return None


class _ClampedEncoder(Encoder):
    """The HPACK encoder for responses: the table the client allows (its
    SETTINGS_HEADER_TABLE_SIZE) is used up to `cap` only. RFC 7541 4.2 lets an encoder use less
    than the decoder's maximum; a client asking for 2 GiB would make each connection keep
    every response header it was sent."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        Encoder.header_table_size.fset(self, min(4096, cap))  # type: ignore[attr-defined]

    @property
    def header_table_size(self) -> int:
        return int(self.header_table.maxsize)

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        Encoder.header_table_size.fset(self, min(value, self.cap))  # type: ignore[attr-defined]


# A frame header: 24-bit length (as 16 + 8 bits), type, flags, stream id (RFC 9113 4.1).
_FRAME_HEADER = struct.Struct(">HBBBL")


class _ServerConnection(H2Connection):
    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        # h2 checks DATA against content-length itself and makes a mismatch a connection
        # error; the session checks it (before a byte goes upstream, where extra bytes would
        # be a smuggled request) and makes it a stream error, as RFC 9113 8.1.1 says.
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream._initialize_content_length = _no_content_length  # type: ignore[method-assign]
        return stream

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        # Frames queued since the output was last taken, as pieces: h2 appends each frame to
        # one bytearray, whose growth copied a download about seven times over; and it
        # serializes a DATA frame by copying its payload four times. Here a DATA frame is its
        # header and its payload as given (the stream's queued bytes, not copied), joined once
        # when the connection writes its output. (h2 itself writes only its preamble into
        # `_data_to_send`, at initiate_connection: that goes first.)
        self._pieces: list[bytes | bytearray | memoryview] = []

    def _prepare_for_sending(self, frames: list[Frame]) -> None:
        pieces = self._pieces
        for frame in frames:
            data = frame.data if type(frame) is DataFrame and not frame.pad_length else None
            if data is None:
                pieces.append(frame.serialize())
                continue
            size = len(data)
            if size > self.max_outbound_frame_size:
                raise FrameTooLargeError(f"DATA frame of {size} bytes")
            flags = 0x1 if "END_STREAM" in frame.flags else 0
            pieces.append(_FRAME_HEADER.pack(size >> 8, size & 0xFF, 0, flags, frame.stream_id))
            pieces.append(data)

    def take_output(self) -> list[bytes | bytearray | memoryview]:
        """What `data_to_send()` would return, as pieces to write in order (now the
        caller's): no join, no copy."""
        pieces = self._pieces
        self._pieces = []
        if self._data_to_send:
            pieces.insert(0, self._data_to_send)
            self._data_to_send = bytearray()
        return pieces

    def data_to_send(self, amount: int | None = None) -> bytes:
        self._data_to_send += b"".join(self.take_output())
        return super().data_to_send(amount)

    def clear_outbound_data_buffer(self) -> None:
        self._pieces = []
        super().clear_outbound_data_buffer()

    @property
    def open_inbound_streams(self) -> int:
        # h2 makes a stream beyond MAX_CONCURRENT_STREAMS a connection error; the session
        # refuses that one stream with REFUSED_STREAM instead (RFC 9113 5.1.2), so h2's own
        # check must not fire. Counting still purges closed streams, as h2 relies on.
        super().open_inbound_streams  # noqa: B018
        return 0


def new_connection(config: Http2Config) -> _ServerConnection:
    """A server-side h2 connection with the gateway's settings, its SETTINGS queued."""
    conn = _ServerConnection(
        H2Configuration(
            client_side=False,
            header_encoding=None,
            # Checked by build_request_head, which makes a malformed request a stream error
            # (h2 would close the whole connection) and knows the HTTP/1.1 side's rules.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
    )
    conn.local_settings = Settings(
        client=False,
        initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: config.max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: config.max_header_list_size,
            SettingCodes.INITIAL_WINDOW_SIZE: config.initial_window_size,
            SettingCodes.MAX_FRAME_SIZE: config.max_frame_size,
            SettingCodes.ENABLE_PUSH: 0,
        },
    )
    conn.max_inbound_frame_size = config.max_frame_size
    conn.encoder = _ClampedEncoder(config.max_encoder_table_size)
    conn.decoder.max_header_list_size = config.max_header_list_size
    conn.initiate_connection()
    conn.increment_flow_control_window(CONNECTION_WINDOW - 65535)
    return conn


def receive(conn: H2Connection, guard: FrameGuard, data: bytes, now: float) -> list[Event]:
    """The sans-I/O step: the guard accounts for the bytes, then h2 parses them.
    Raises `Flood` (nothing was parsed) or h2's `ProtocolError` (its GOAWAY is queued)."""
    guard.feed(data, now)
    return conn.receive_data(data)


class H2Session:
    """One client connection speaking HTTP/2."""

    def __init__(self, client: DownstreamConnection) -> None:
        self.client = client
        self.state = state = client.state
        self.config = config = state.config.http2
        self.conn = new_connection(config)
        self.guard = FrameGuard(config)
        self.streams: dict[int, H2Stream] = {}
        self.goaway_sent = False  # a graceful GOAWAY (drain): no new streams
        self.closed = False
        self.peer_goaway = False
        self.out_bytes = 0  # response bytes held, over all streams
        self.over_cap = False  # out_bytes went above SESSION_OUTPUT_CAP: all upstreams paused
        self.idle_since = state.clock.now  # when the last stream ended (or the session began)
        self.header_deadline = 0.0  # set while a header block is pending
        # Since when held response bytes wait for the client (its window, or its reading): the
        # last time output moved. A client that moves nothing for limits.idle_timeout is cut.
        self.out_since = state.clock.now
        limits = state.config.limits
        self.max_body = limits.max_request_body
        # A declared content-length is checked against the matched route's max_body_size once
        # routed (`_route`); before that only against the largest any route allows.
        self.max_declared_body = max(
            [limits.max_request_body, *(r.max_body_size for r in state.config.routes)]
        )
        self.max_headers = limits.max_headers
        self.max_field = limits.max_header_field
        # Streams opened: after limits.max_requests_per_connection of them the session drains
        # (GOAWAY), as an HTTP/1.1 connection closes after its last request.
        self.opened = 0
        self.max_streams = limits.max_requests_per_connection
        # Small request bodies are received whole before an upstream connection is taken, as
        # on HTTP/1.1.
        self.body_before_upstream = min(BODY_BEFORE_UPSTREAM, config.initial_window_size)
        self.body_first_bytes = 0  # held for those streams, not yet acknowledged
        self.paused_upstreams = 0  # upstream connections paused for this connection's streams
        # Streams answered before their request ended (413, 404, ...): the rest of the body is
        # taken and dropped, up to http2.max_discarded_body bytes each, before RST_STREAM
        # (NO_ERROR). A client still sending (curl 7.x fails its upload on a reset stream)
        # then reads the answer. Stream id -> bytes it may still send.
        self.discarding: dict[int, int] = {}
        self.send()
        self.update_deadline()
        if state.draining:
            # Accepted by a state that drains now (its TLS handshake was still running when the
            # reload or stop began, so drain() found no session): no stream is taken.
            self.drain()

    # input

    def receive(self, data: bytes) -> None:
        if self.closed:
            return
        state = self.state
        try:
            events = receive(self.conn, self.guard, data, state.clock.now)
        except Flood as flood:
            self._flood(flood)
            return
        except ProtocolError as exc:
            state.metrics.refused[Refusal.H2_PROTOCOL_ERROR] += 1
            state.security_log.emit(
                "h2.protocol_error",
                self.client.peer,
                self.client.listener.name,
                {"reason": str(exc)[:200], "error_code": int(exc.error_code)},
            )
            self._shut()
            return
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                assert isinstance(event, DataReceived)
                stream = self.streams.get(event.stream_id or 0)
                if stream is not None:
                    stream.request_data(event.data or b"", event.flow_controlled_length or 0)
                else:
                    self.ack(event.flow_controlled_length or 0, event.stream_id or 0)
                    self._discarded(event.stream_id or 0, event.flow_controlled_length or 0)
            elif kind is RequestReceived:
                assert isinstance(event, RequestReceived)
                try:
                    self._open(event)
                except Flood as flood:
                    self._flood(flood)
                    return
            elif kind is StreamEnded:
                sid = getattr(event, "stream_id", 0) or 0
                self.discarding.pop(sid, None)
                stream = self.streams.get(sid)
                if stream is not None:
                    stream.request_end()
            elif kind is StreamReset:
                assert isinstance(event, StreamReset)
                self.discarding.pop(event.stream_id or 0, None)
                stream = self.streams.get(event.stream_id or 0)
                if stream is not None:
                    stream.cancel()
            elif kind is WindowUpdated:
                assert isinstance(event, WindowUpdated)
                if event.stream_id:
                    stream = self.streams.get(event.stream_id)
                    if stream is not None:
                        stream.pump()
                else:
                    self.pump_all()
            elif kind is RemoteSettingsChanged:
                self.pump_all()  # INITIAL_WINDOW_SIZE may have grown every stream's window
            elif kind is ConnectionTerminated:
                self.peer_goaway = True
            if self.closed:
                return
        self.send()
        self.update_deadline()
        if self.peer_goaway and not self.streams:
            self.close()

    def _open(self, event: RequestReceived) -> None:
        sid = event.stream_id or 0
        state = self.state
        if self.goaway_sent or len(self.streams) >= self.config.max_concurrent_streams:
            self.conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            state.metrics.refused[Refusal.H2_REFUSED_STREAM] += 1
            self.guard.stream_refused(state.clock.now)
            return
        stream = H2Stream(self, sid)
        self.streams[sid] = stream
        self.opened += 1
        ended = event.stream_ended is not None
        stream.request_open = not ended
        try:
            head = build_request_head(
                event.headers or [],  # type: ignore[arg-type]  # bytes: header_encoding=None
                ended,
                scheme=self.client.scheme,
                max_headers=self.max_headers,
                max_body=self.max_declared_body,
                max_list_size=self.config.max_header_list_size,
                path_rules=state.config.paths,
                max_line=state.config.limits.max_request_line,
            )
            if oversized_field(head.headers, self.max_field) is not None:
                raise HTTPError(431, "header field too large")
        except HTTPError as exc:
            refusal: Refusal | None = for_status(exc.status)
            if exc.status == 400:
                stream.reset_code = ErrorCodes.PROTOCOL_ERROR  # malformed: RFC 9113 8.1.1
            ex = Exchange(stream, None, None, exc.status, body_follows=not ended)
            ex.request_id = state.request_ids.next()
        else:
            ex = self._route(stream, head)
            status = ex.error_status
            # No route (404, 405) is an answer, not a refusal.
            refusal = for_status(status) if status and status != 404 and status != 405 else None
        stream.exchange = ex
        stream.start(refusal, ended)
        if self.opened >= self.max_streams and not self.closed:
            # The connection's last request: GOAWAY (NO_ERROR, this stream the last taken); the
            # streams in flight are answered, later ones refused; the client opens a new one.
            self.drain(sid)

    def _route(self, stream: H2Stream, head: RequestHead) -> Exchange:
        """Route a checked head and finish it as `ClientProtocol.on_request_head` does: the
        route's body limit, the forwarding lines and the request id."""
        state = self.state
        route = state.router.match_head(head)
        ex = pipeline.routed(stream, head, route, state, self.client.forwarding)
        if route is not None:
            stream.max_body = route.max_body_size
            if head.content_length > route.max_body_size:
                ex.error_status = 413
        if len(head.target) > state.config.limits.max_request_line:
            ex.error_status = 414
        return ex

    def discard_rest(self, stream_id: int) -> bool:
        """Take and drop the rest of an answered stream's request body; False when this
        connection already drops as many bodies as it may have streams (reset it instead)."""
        room = self.config.max_discarded_body
        if len(self.discarding) >= self.config.max_concurrent_streams or not room:
            return False
        self.discarding[stream_id] = room
        return True

    def _discarded(self, stream_id: int, size: int) -> None:
        left = self.discarding.get(stream_id)
        if left is None:
            return
        left -= size
        if left >= 0:
            self.discarding[stream_id] = left
            return
        del self.discarding[stream_id]
        try:
            self.conn.reset_stream(stream_id, ErrorCodes.NO_ERROR)
        except H2Error:
            pass  # closed meanwhile

    def _flood(self, flood: Flood) -> None:
        state = self.state
        state.metrics.refused[for_flood(flood.attack)] += 1
        state.security_log.emit(
            "h2." + flood.attack, self.client.peer, self.client.listener.name, flood.detail
        )
        try:
            self.conn.close_connection(error_code=flood.error_code)
        except H2Error:
            pass  # already closed: the transport is closed below anyway
        self._shut()

    # output

    def send(self) -> None:
        """Move h2's pending frames into the connection's output batch."""
        pieces = self.conn.take_output()
        if pieces:
            self.client.write_pieces(pieces)

    def ack(self, size: int, stream_id: int) -> None:
        if size and not self.closed:
            try:
                self.conn.acknowledge_received_data(size, stream_id)
            except H2Error:
                pass  # the connection is closing: there is no window left to open

    def pump_all(self) -> None:
        for stream in list(self.streams.values()):
            stream.pump()

    def pause_writing(self) -> None:
        # The client does not read what we write: stop reading what it sends (each PING and
        # SETTINGS would queue an ACK) and stop reading the upstreams feeding it.
        self.client.pause_reading("h2_output")
        for stream in self.streams.values():
            stream.upstream_pause()
        if not self.out_bytes:
            self.out_since = self.state.clock.now  # output stalls from now on
        if not self.closed:
            self.update_deadline()

    def resume_writing(self) -> None:
        self.out_since = self.state.clock.now  # the client read what was written
        self.client.resume_reading("h2_output")
        for stream in list(self.streams.values()):
            stream.pump()

    # lifetime

    def stream_done(self, stream: H2Stream) -> None:
        stream.unpaused()  # whichever way it ended, it holds no paused upstream any more
        self.streams.pop(stream.stream_id, None)
        self.idle_since = self.state.clock.now
        if not self.streams:
            self.client.output_idle()
        if not self.streams and (self.goaway_sent or self.peer_goaway or self.client.read_eof):
            self.send()
            self.close()
        else:
            self.update_deadline()

    def update_deadline(self) -> None:
        client = self.client
        now = self.state.clock.now
        limits = self.state.config.limits
        if self.guard.header_block_pending:
            # From the block's first frame: trickling CONTINUATIONs does not extend it.
            if not self.header_deadline:
                self.header_deadline = now + limits.header_timeout
            client.deadline = self.header_deadline
            return
        self.header_deadline = 0.0
        if not self.streams:
            # Idle since the last stream ended: PINGs and SETTINGS do not keep it open.
            client.deadline = self.idle_since + limits.idle_timeout
            return
        # Otherwise only the upstreams' timeouts apply, except for what waits on the client:
        # response bytes it does not take (its window, or its reading), and request bodies
        # (from each stream's last DATA frame; other frames do not extend it).
        deadline = self.out_since + limits.idle_timeout if self.output_waits() else 0.0
        for stream in self.streams.values():
            body = stream.body_deadline
            if body and stream.request_open and not stream.upstream_full:
                if not deadline or body < deadline:
                    deadline = body
            stall = stream.stall_deadline
            if stall and (not deadline or stall < deadline):
                deadline = stall
        client.deadline = deadline

    def timed_out(self) -> None:
        """The connection's deadline passed: cut what waited too long on the client (a header
        block, a stalled response, an idle connection: GOAWAY and close; a stalled request
        body: that stream only), then set the next deadline."""
        state = self.state
        now = state.clock.now
        limits = state.config.limits
        if self.guard.header_block_pending:
            if self.header_deadline and now > self.header_deadline:
                state.metrics.refused[Refusal.TIMEOUT] += 1
                self._cut()
                return
        elif not self.streams:
            if now > self.idle_since + limits.idle_timeout:
                self._cut()
                return
        else:
            for stream in list(self.streams.values()):
                body = stream.body_deadline
                if body and stream.request_open and not stream.upstream_full and now > body:
                    stream.body_timed_out()
                stall = stream.stall_deadline
                if stall and now >= stall and not self.closed:
                    try:
                        stream.stalled()
                    except Flood as flood:
                        self._flood(flood)
            if self.closed:
                return  # its last stream ended (draining), or it reset too many
            if self.output_waits() and now > self.out_since + limits.idle_timeout:
                # Its responses wait for a window it never opens, or it does not read.
                state.metrics.refused[Refusal.TIMEOUT] += 1
                self._cut()
                return
        if not self.closed:
            self.send()
            self.update_deadline()

    def output_waits(self) -> bool:
        """Response bytes wait for the client: held for its window, or unread in the transport's
        write buffer (it does not read)."""
        return self.out_bytes > 0 or self.client.write_paused

    def _cut(self) -> None:
        """GOAWAY and close; a client that does not read what is written is aborted, so that
        its socket and connection slot are freed now (a close would wait for it forever)."""
        try:
            self.conn.close_connection()
        except H2Error:
            pass
        self._shut()
        transport = self.client.transport
        if transport is not None and transport.get_write_buffer_size():
            self.client.abort()

    def drain(self, last_stream_id: int = -1) -> None:
        """Graceful stop: GOAWAY (NO_ERROR, the last stream taken: by default the highest
        received), answer the streams in flight, then close. h2's own close_connection would
        stop every stream."""
        if self.goaway_sent or self.closed:
            return
        self.goaway_sent = True
        from hyperframe.frame import GoAwayFrame

        frame = GoAwayFrame(0)
        if last_stream_id < 0:
            last_stream_id = self.conn.highest_inbound_stream_id
        frame.last_stream_id = last_stream_id
        frame.error_code = 0
        self.send()
        self.client.write(frame.serialize())
        if not self.streams:
            self.close()
        else:
            self.client.flush()

    def _shut(self) -> None:
        """Send what h2 queued (a GOAWAY), then close the connection."""
        self.send()
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.cancel_all()
        self.client.close()

    def cancel_all(self) -> None:
        for stream in list(self.streams.values()):
            stream.cancel()
        self.streams.clear()


class H2Stream:
    """One stream: the client side of its exchange (a `Downstream`, as an HTTP/1.1 connection
    is), speaking HTTP/2 frames."""

    __slots__ = (
        "session",
        "stream_id",
        "peer_host",
        "forwarded",
        "exchange",
        "request_open",
        "reset_code",
        "received",
        "max_body",
        "unacked",
        "_paused",
        "_out",
        "_out_size",
        "_ending",
        "_upstream_paused",
        "_paused_conn",
        "stall_deadline",
        "_stall_reason",
        "_done",
        "_body_first",
        "body_deadline",
    )

    def __init__(self, session: H2Session, stream_id: int) -> None:
        self.session = session
        self.stream_id = stream_id
        client = session.client
        self.peer_host = client.peer_host
        self.forwarded = client.forwarded
        self.exchange: Exchange | None = None
        self.request_open = True  # the client has not ended its side
        self.reset_code = ErrorCodes.NO_ERROR  # sent if the response ends before the request
        self.received = 0  # request body bytes
        self.max_body = session.max_body  # the route's max_body_size once routed
        self.unacked = 0  # flow-controlled bytes received, not yet acknowledged
        self._paused: set[str] = set()
        # Response bytes waiting for the client's window; what is left of a chunk sent in part
        # is a view of it (a bytes slice per frame copied the rest of the chunk each time).
        self._out: deque[bytes | memoryview] = deque()
        self._out_size = 0
        self._ending = False
        self._upstream_paused = False
        # The upstream connection this stream paused: resumed when the stream lets it go, so
        # that a connection whose response completed while paused is not pooled unread.
        self._paused_conn: UpstreamConnection | None = None
        # While this stream has an upstream connection paused: when it is reset for holding
        # it (only draining its output resumes the upstream and clears it; a window update that
        # lets out a byte does not), and why ("timeout", or a cap it went over).
        self.stall_deadline = 0.0
        self._stall_reason = ""
        self._done = False
        self._body_first = False  # a small body, received whole before an upstream is taken
        self.body_deadline = 0.0  # while the request body comes: its last DATA + body_timeout

    @property
    def write_paused(self) -> bool:
        """Read by an upstream connection as it attaches: True and it pauses its reading, so
        this stream takes note and resumes it in `pump` once output can flow again."""
        session = self.session
        paused = (
            session.client.write_paused
            or self._out_size > STREAM_OUTPUT_CAP
            or session.out_bytes > SESSION_OUTPUT_CAP
        )
        if paused:
            self._upstream_paused = True
            ex = self.exchange
            if ex is not None:
                self._paused_conn = ex.upstream
            self._note_paused()
        return paused

    @property
    def connection(self) -> DownstreamConnection:
        return self.session.client

    @property
    def upstream_full(self) -> bool:
        """The upstream does not take this stream's body now (the client waits on us)."""
        return bool(self._paused)

    # the request

    def start(self, refusal: Refusal | None = None, ended: bool = False) -> None:
        """Answer a refused or unrouted request (counting `refusal`), else hand it to the
        pipeline (its filters, then upstream). `ended`: the HEADERS frame ended the stream."""
        ex = self.exchange
        assert ex is not None
        if ex.error_status:
            if ended:
                ex.request_done = True
            self._answer(ex, ex.error_status, refusal)
            return
        session = self.session
        if self.request_open:
            self.body_deadline = session.state.clock.now + session.state.config.limits.body_timeout
        pipeline.begin(ex, ended)

    # the pipeline's requests (pipeline.py)

    @property
    def body_before_upstream(self) -> int:
        # Within the stream's initial window: a held body needs no WINDOW_UPDATE.
        return self.session.body_before_upstream

    def send_continue(self, ex: Exchange) -> None:
        self.session.conn.send_headers(self.stream_id, [(b":status", b"100")])

    def hold_body(self, ex: Exchange) -> None:
        # Taken in deliver_end: a client trickling a small body holds no upstream connection.
        self._body_first = True
        self.session.body_first_bytes += self.unacked  # what came before the filters passed

    def request_data(self, data: bytes, flow_length: int) -> None:
        ex = self.exchange
        session = self.session
        if ex is None or self._done or ex.discard_body or ex.error_status:
            session.ack(flow_length, self.stream_id)  # read and dropped
            return
        self.received += len(data)
        if self.request_open:
            self.body_deadline = session.state.clock.now + session.state.config.limits.body_timeout
        head = ex.head
        if head is not None and head.framing is not Framing.CHUNKED:
            if self.received > max(head.content_length, 0):
                self._malformed(ex, flow_length)  # more DATA than content-length says
                return
        if self.received > self.max_body:
            ex.discard_body = True
            if ex.upstream is not None:
                ex.upstream.abort()
            session.ack(flow_length, self.stream_id)
            if ex.response_started:
                session.state.metrics.refused[Refusal.CONTENT_TOO_LARGE] += 1
                self._reset(ErrorCodes.CANCEL)
            else:
                self._answer(ex, 413, Refusal.CONTENT_TOO_LARGE)
            return
        self.unacked += flow_length
        if self._body_first:
            session.body_first_bytes += flow_length
        if ex.body_filter is not None:
            if data:
                ex.body_filter.feed(data)  # delivered once the body filters let it pass
        else:
            self.deliver_body(ex, data)
        if self._body_first and ex.upstream is None:
            if session.body_first_bytes > CONNECTION_WINDOW // 2:
                # Many small bodies at once would use up the connection window while they
                # wait to be whole (no stream could finish): this one streams instead.
                self._take_upstream(ex)
            elif head is not None and head.content_length < 0 and self.unacked >= self.max_held():
                # A body of unknown length, held for the body filters, filled the stream's
                # window: it streams from here (the client could send no more otherwise).
                self._take_upstream(ex)

    def max_held(self) -> int:
        return self.session.body_before_upstream

    def deliver_body(self, ex: Exchange, data: bytes) -> None:
        if ex.upstream is not None:
            if data:
                ex.upstream.send_body(data)
            if not self._paused:
                self._ack()
        elif data:
            ex.pending.append(data)
            ex.pending_size += len(data)

    def _take_upstream(self, ex: Exchange) -> None:
        """A small-body stream takes its upstream connection (its body is in, or see above)."""
        self._forget_body_first()
        assert ex.pool is not None
        ex.pool.acquire(ex)

    def _forget_body_first(self) -> None:
        if self._body_first:
            self._body_first = False
            self.session.body_first_bytes -= self.unacked

    def request_end(self) -> None:
        self.request_open = False
        self.body_deadline = 0.0
        ex = self.exchange
        if ex is None or self._done:
            return
        head = ex.head
        if head is not None and head.framing is Framing.LENGTH:
            if self.received != head.content_length:
                self._malformed(ex, 0)  # less DATA than content-length says
                return
        if ex.body_filter is not None and not (ex.discard_body or ex.error_status):
            ex.body_filter.end()  # deliver_end once the body filters let it pass
            return
        self.deliver_end(ex)

    def deliver_end(self, ex: Exchange) -> None:
        ex.request_done = True
        if ex.upstream is not None:
            ex.upstream.end_body()
        elif self._body_first:
            self._take_upstream(ex)

    def body_timed_out(self) -> None:
        """No DATA for limits.body_timeout while the request body was due: 408 on this stream
        (reset after it), or a reset if the response already started; its upstream request,
        if any, is abandoned. The connection and its other streams go on."""
        ex = self.exchange
        self.body_deadline = 0.0
        if ex is None or self._done:
            return
        ex.discard_body = True
        if ex.upstream is not None:
            ex.upstream.abort()
        if ex.response_started:
            self.session.state.metrics.refused[Refusal.TIMEOUT] += 1
            self._reset(ErrorCodes.CANCEL)
        else:
            self._answer(ex, 408, Refusal.TIMEOUT)

    def _malformed(self, ex: Exchange, flow_length: int) -> None:
        """DATA not matching content-length (RFC 9113 8.1.1): a stream error. Nothing of it
        goes upstream; that upstream request is abandoned."""
        session = self.session
        session.ack(flow_length, self.stream_id)
        ex.discard_body = True
        if ex.upstream is not None:
            ex.upstream.abort()
        if ex.response_started:
            session.state.metrics.refused[Refusal.BAD_REQUEST] += 1
            self._reset(ErrorCodes.PROTOCOL_ERROR)
        else:
            self.reset_code = ErrorCodes.PROTOCOL_ERROR
            self._answer(ex, 400, Refusal.BAD_REQUEST)

    def _ack(self) -> None:
        if self.unacked:
            self.session.ack(self.unacked, self.stream_id)
            self.unacked = 0

    # the client side of the exchange, called by the upstream connection

    def release_buffered(self, ex: Exchange) -> None:
        ex.pending = []
        ex.pending_size = 0
        if not self._paused:
            self._ack()
            # A new upstream connection takes the held body outside any read of this client:
            # the WINDOW_UPDATE must go now, or a client that filled its window waits forever.
            self.session.send()

    def pause_reading(self, reason: str) -> None:
        self._paused.add(reason)  # the upstream is full: stop opening this stream's window

    def resume_reading(self, reason: str) -> None:
        self._paused.discard(reason)
        if not self._paused and not self._done:
            ex = self.exchange
            if reason != "upstream" and ex is not None and ex.upstream is None:
                # What came is held (for the filters, or for an upstream to take it): it is
                # acknowledged once an upstream takes it (release_buffered).
                return
            self._ack()
            self.session.send()

    def begin(self) -> None:
        self.session.client.begin()

    def end(self) -> None:
        self.session.send()
        self.session.client.end()

    def response_head(self, ex: Exchange, head: ResponseHead) -> None:
        if self._done:
            return
        headers = [(b":status", b"%d" % head.status)]
        size = 0
        for name, value in head.headers:
            headers.append((name.lower(), value))
            size += len(name) + len(value) + 4
        if head.content_length >= 0 and (
            head.framing is Framing.LENGTH
            or (head.framing is Framing.NONE and head.status not in (204, 304))
        ):
            headers.append((b"content-length", b"%d" % head.content_length))
        if ex.request_id:
            headers.append((b"x-request-id", ex.request_id))  # the upstream's own was dropped
            size += len(ex.request_id) + 16
        ex.status = head.status
        ex.response_started = True
        ex.bytes_sent += size + 12
        try:
            self.session.conn.send_headers(self.stream_id, headers)
        except H2Error:
            # A header h2 will not send (the upstream's llhttp accepted it): a bad gateway.
            upstream = ex.pool.config.name if ex.pool is not None else "?"
            self.session.state.metrics.upstream_errors[f"{upstream}/response_head"] += 1
            ex.response_started = False
            if ex.upstream is not None:
                ex.upstream.abort()
            self._answer(ex, 502)
            return
        self.session.send()

    def response_body(self, ex: Exchange, data: bytes) -> None:
        if self._done or not data:
            return
        self._out.append(data)
        self._queued(len(data))

    def response_body_borrowed(self, ex: Exchange, data: memoryview) -> None:
        # Queued until the client's windows let it go: kept, so copied, as bytes of one DATA
        # frame each (h2 copies a memoryview or a slice it is given to bytes: a whole bytes
        # object is framed as it is).
        if self._done or len(data) <= 1:
            return
        body = data[:-1]
        frame = self.session.conn.max_outbound_frame_size
        out = self._out
        for at in range(0, len(body), frame):
            out.append(body[at : at + frame].tobytes())
        self._queued(len(body))

    def _queued(self, size: int) -> None:
        """`size` more response bytes in `_out`: sent as the windows allow; beyond the caps,
        the upstream feeding it (or every stream's) stops being read."""
        self._out_size += size
        session = self.session
        if not session.out_bytes:
            session.out_since = session.state.clock.now  # held output: its deadline starts
        session.out_bytes += size
        self.pump()
        if session.out_bytes and not session.client.deadline:
            session.update_deadline()
        if self._out_size > STREAM_OUTPUT_CAP:
            self.upstream_pause()
        if session.out_bytes > SESSION_OUTPUT_CAP and not session.over_cap:
            session.over_cap = True
            for stream in session.streams.values():
                stream.upstream_pause()

    def response_end(self, ex: Exchange) -> None:
        # The upstream connection has let the exchange go (pooled, or closed): one this stream
        # paused must read again, whatever becomes of the stream.
        self._resume_released_upstream()
        if ex.cancelled or self._done:
            return
        self._ending = True
        self.pump()

    def _resume_released_upstream(self) -> None:
        conn = self._paused_conn
        self._paused_conn = None
        self._upstream_paused = False
        self.unpaused()
        if conn is not None and conn.exchange is None and not conn.closed:
            conn.resume_reading()  # idle in the pool: reading shows the upstream's close

    def upstream_failed(self, ex: Exchange, status: int) -> None:
        if ex.cancelled or self._done:
            return
        if ex.response_started:
            self.abort()
            return
        self._answer(ex, status)

    def abort(self) -> None:
        """The status is already out: a reset is the only signal left, for this stream only."""
        self._reset(ErrorCodes.INTERNAL_ERROR)

    # output

    def pump(self) -> None:
        """Send queued response bytes within the client's windows; finish when all is sent."""
        if self._done:
            return
        session = self.session
        conn = session.conn
        sid = self.stream_id
        out = self._out
        ex = self.exchange
        if out and not session.client.write_paused:
            try:
                window = conn.local_flow_control_window(sid)
            except H2Error:
                return
            frame = conn.max_outbound_frame_size
            while out and window > 0:
                chunk = out[0]
                size = min(len(chunk), window, frame)
                try:
                    conn.send_data(sid, memoryview(chunk)[:size] if size < len(chunk) else chunk)
                except H2Error:
                    self.cancel()  # closed under us (the client reset it, or a GOAWAY)
                    return
                if size == len(chunk):
                    out.popleft()
                else:
                    out[0] = memoryview(chunk)[size:]
                window -= size
                self._out_size -= size
                session.out_bytes -= size
                session.out_since = session.state.clock.now  # the client takes output
                if ex is not None:
                    ex.bytes_sent += size + 9
        if not out and self._ending:
            try:
                conn.end_stream(sid)
            except H2Error:
                self.cancel()
                return
            session.send()
            self._finish()
            return
        session.send()
        if session.over_cap and session.out_bytes <= SESSION_OUTPUT_CAP // 2:
            session.over_cap = False
            session.pump_all()  # every stream's upstream may read again
        if (
            self._upstream_paused
            and self._out_size <= STREAM_OUTPUT_CAP // 2
            and not session.over_cap
            and not session.client.write_paused
        ):
            self._upstream_paused = False
            self._paused_conn = None
            self.unpaused()
            if ex is not None and ex.upstream is not None:
                ex.upstream.resume_reading()

    def upstream_pause(self) -> None:
        ex = self.exchange
        if ex is not None and ex.upstream is not None and not self._upstream_paused:
            self._upstream_paused = True
            self._paused_conn = ex.upstream
            self._note_paused()
            ex.upstream.pause_reading()

    # upstream connections held paused (stall defence)

    def _note_paused(self) -> None:
        """This stream's upstream connection stops being read: it counts against the caps on
        paused upstreams, and its stall deadline starts."""
        if self.stall_deadline:
            return  # counted already (another upstream, after a retry)
        session = self.session
        config = session.config
        now = session.state.clock.now
        session.paused_upstreams += 1
        by_address = paused_by_address.add(self.peer_host)
        if session.paused_upstreams > config.max_paused_upstreams:
            self._stall_reason = "connection_cap"
            self.stall_deadline = now + OVER_CAP_GRACE
        elif by_address > session.state.config.limits.max_paused_upstreams_per_address:
            self._stall_reason = "address_cap"
            self.stall_deadline = now + OVER_CAP_GRACE
        else:
            self._stall_reason = "timeout"
            self.stall_deadline = now + config.stall_timeout
        client = session.client
        if not session.closed and (not client.deadline or self.stall_deadline < client.deadline):
            client.deadline = self.stall_deadline

    def unpaused(self) -> None:
        """Its upstream reads again, or is let go: no longer counted, no stall deadline."""
        if not self.stall_deadline:
            return
        self.stall_deadline = 0.0
        self.session.paused_upstreams -= 1
        paused_by_address.remove(self.peer_host)

    def stalled(self) -> None:
        """Its upstream connection stayed paused past the stall deadline (or over a cap): reset
        the stream (ENHANCE_YOUR_CALM) and close that connection, which frees its pool slot.
        Counted like a reset from the client: a connection that keeps stalling streams gets
        GOAWAY (raises `Flood`)."""
        session = self.session
        state = session.state
        state.metrics.refused[Refusal.H2_STALLED_STREAM] += 1
        detail = {
            "reason": self._stall_reason,
            "stream_id": self.stream_id,
            "held_bytes": self._out_size,
            "paused_upstreams": session.paused_upstreams,
        }
        client = session.client
        state.security_log.emit("h2.stalled_stream", client.peer, client.listener.name, detail)
        self._reset(ErrorCodes.ENHANCE_YOUR_CALM)
        session.guard.stream_refused(state.clock.now)

    def _answer(self, ex: Exchange, status: int, refusal: Refusal | None = None) -> None:
        """A response made by the gateway itself (400, 404, 413, 502, 504, ...)."""
        state = self.session.state
        self.send_local_reply(ex, local_reply(ex, status, state.metrics, state.router, refusal))

    def send_local_reply(self, ex: Exchange, reply: LocalReply) -> None:
        ex.response_started = True
        # The exchange is answered, though the answer may wait for the client's window: a
        # connect or a queue entry still pending for it must not send it upstream after all.
        ex.cancelled = True
        if ex.upstream is not None:
            ex.upstream.abort()
        self._forget_body_first()
        ex.bytes_sent += 64
        try:
            self.session.conn.send_headers(self.stream_id, reply.h2_headers())
        except H2Error:
            self.cancel()
            return
        self._drop_output()
        if not reply.head_only:
            body = reply.body
            self._out.append(body)
            self._out_size = len(body)
            self.session.out_bytes += len(body)
        self._ending = True
        self.pump()

    def _drop_output(self) -> None:
        self.session.out_bytes -= self._out_size
        self._out.clear()
        self._out_size = 0

    def _finish(self) -> None:
        """The response is complete: count it, log it, let the stream go."""
        self._done = True
        self._forget_body_first()
        ex = self.exchange
        session = self.session
        if ex is not None:
            state = session.state
            exchange_done(ex, state.metrics, state.access_log, session.client)
            if self.request_open:
                ex.discard_body = True
        if self.request_open:
            # Answered before the request ended: the rest of it is not wanted (RFC 9113 8.1).
            # Taken and dropped for a while first, unless malformed (see `discard_rest`).
            if self.reset_code != ErrorCodes.NO_ERROR or not session.discard_rest(self.stream_id):
                self._reset(self.reset_code)
            else:
                self._ack()  # what it received counts no more against the connection window
        session.stream_done(self)
        # The exchange holds this stream as its client: without this, each pair is a reference
        # cycle left to the garbage collector, one per HTTP/2 request.
        self.exchange = None

    def _reset(self, code: ErrorCodes) -> None:
        self._done = True
        session = self.session
        try:
            session.conn.reset_stream(self.stream_id, code)
        except H2Error:
            pass  # already closed on the client's side
        self._ack()
        session.send()
        self.cancel()

    def cancel(self) -> None:
        """The stream is gone (reset by either side, or the connection closed): stop its
        upstream work, started or not."""
        self._done = True
        self._drop_output()
        self._forget_body_first()
        self._ack()  # what it received and held counts no more against the connection window
        ex = self.exchange
        if ex is not None and not ex.response_done:
            ex.cancelled = True
            if ex.upstream is not None:
                ex.upstream.abort()
        self._resume_released_upstream()
        self.session.stream_done(self)


if TYPE_CHECKING:

    def _stream_is_downstream(stream: H2Stream) -> Downstream:
        """mypy proves here that an HTTP/2 stream is an exchange's client side."""
        return stream
