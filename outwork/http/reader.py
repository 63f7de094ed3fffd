"""Incremental HTTP/1.1 readers on llhttp (httptools), with the caps and checks of checks.py.

`RequestReader` turns a client's byte stream into head / body / end calls on a sink, for as
many pipelined requests as arrive. `ResponseReader` reads one upstream response.
Both are sans-I/O: the proxy feeds bytes and acts on the calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import httptools

from outwork.http import checks
from outwork.http.ascii import HASH
from outwork.http.errors import HTTPError, UpstreamProtocolError
from outwork.http.messages import Framing, Headers, RequestHead, ResponseHead
from outwork.http.path import STRICT, PathRules, normalise_target

# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_FRAMING_CHUNKED: Final = Framing.CHUNKED
_FRAMING_CLOSE: Final = Framing.CLOSE
_FRAMING_NONE: Final = Framing.NONE


class RequestSink(Protocol):
    def on_request_head(self, head: RequestHead) -> None: ...
    def on_request_body(self, data: bytes) -> None: ...
    def on_request_end(self) -> None: ...


def _request_parser(reader: RequestReader) -> httptools.HttpRequestParser:
    parser = httptools.HttpRequestParser(reader)
    # llhttp accepts only the versions it knows (0.9, 1.0, 1.1, 2.0). With this leniency it
    # reads any HTTP/d.d, and request_framing decides: HTTP/1.2-1.9 is read as HTTP/1.1, as RFC
    # 9110 2.5 asks of a recipient (a higher minor version of a major version it implements);
    # anything else is 505. The framing rules are the same for every HTTP/1.x.
    parser.set_dangerous_leniencies(lenient_version=True)
    return parser


class RequestReader:
    """Reads requests until an error; after an HTTPError the reader is dead (`failed`).

    `max_body` is the body size limit; `body_limit`, when given, is asked for each request's
    own limit once its head is read (the route's `max_body_size`), before the sink sees it.
    """

    __slots__ = (
        "_sink",
        "_parser",
        "_max_head",
        "_max_headers",
        "_max_line",
        "_max_field",
        "_default_max_body",
        "_body_limit",
        "_max_body",
        "_url",
        "_headers",
        "_head_size",
        "_raw_head",
        "_in_head",
        "_body_size",
        "_chunked",
        "_error",
        "_websocket",
        "_path_rules",
        "failed",
        "upgraded",
        "upgrade_data",
    )

    def __init__(
        self,
        sink: RequestSink,
        max_head: int,
        max_headers: int,
        max_body: int,
        max_line: int = 8 * 1024,
        max_field: int = 8 * 1024,
        body_limit: Callable[[RequestHead], int] | None = None,
        path_rules: PathRules = STRICT,
    ):
        self._sink = sink
        self._parser = _request_parser(self)
        self._max_head = max_head
        self._max_headers = max_headers
        self._max_line = max_line
        self._max_field = max_field
        self._default_max_body = max_body
        self._body_limit = body_limit
        self._max_body = max_body
        self._path_rules = path_rules
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0
        self._raw_head = 0
        self._in_head = False
        self._body_size = 0
        self._chunked = False
        self._error: HTTPError | None = None
        self._websocket = False  # the current request is a WebSocket upgrade to pass through
        self.failed = False
        # Set after a passed-through WebSocket request: the connection is a tunnel from here on
        # and the reader takes no more bytes. `upgrade_data`: what followed the head in the
        # same read (the client's first frames), for the tunnel.
        self.upgraded = False
        self.upgrade_data = b""

    @property
    def in_head(self) -> bool:
        """A request head has started but is not complete."""
        return self._in_head

    def feed(self, data: bytes) -> None:
        """Parse bytes; calls the sink. Raises HTTPError (then the reader is dead)."""
        while not self.failed and not self.upgraded:
            was_in_head = self._in_head
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserUpgrade as exc:
                # llhttp stops after a request that asks for an upgrade (`Connection: upgrade`
                # and `Upgrade`), taking what follows as the new protocol. A WebSocket request
                # passed through ends the reader: what follows is the tunnel's (`upgrade_data`:
                # the client's first frames, if they came in the same read). Any other upgrade
                # is not done (Upgrade is not forwarded) and answered as plain HTTP (one with a
                # body is refused in on_headers_complete): the bytes after it are the next
                # request, for a fresh parser.
                if self._error is not None:
                    self._fail(self._error)
                offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
                if self._websocket:
                    self.upgraded = True
                    self.upgrade_data = data[offset:]
                    return
                self._parser = _request_parser(self)
                data = data[offset:]
                if data:
                    continue
                return
            except httptools.HttpParserError as exc:
                if self._error is not None:
                    self._fail(self._error)
                self._fail(HTTPError(400, f"malformed request: {exc}"))
            if was_in_head and self._in_head:
                # llhttp hands a header to the callbacks only once it is complete (and skips
                # some whitespace): also bound the raw bytes of a head that spans reads. Only
                # reads that began inside the head are counted, so the bytes of a previous body
                # never are.
                self._raw_head += len(data)
                if self._raw_head > self._max_head:
                    self._fail(HTTPError(431, "request head too large"))
            return

    def _fail(self, error: HTTPError) -> None:
        self.failed = True
        raise error

    def _raise(self, error: HTTPError) -> None:
        # Raised inside an llhttp callback: kept so feed() re-raises it, not llhttp's wrapper.
        self._error = error
        raise error

    # llhttp callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._raw_head = 0
        self._in_head = True
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if len(self._url) > self._max_line:
            self._raise(HTTPError(414, "request target too long"))
        if self._head_size > self._max_head:
            self._raise(HTTPError(431, "request head too large"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self._max_head:
            self._raise(HTTPError(431, "request head too large"))
        if len(name) + 2 + len(value) > self._max_field:
            self._raise(HTTPError(431, "header field too large"))  # checks.oversized_field

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        method = parser.get_method()
        version = parser.get_http_version()
        if version[:2] == "1." and version != "1.1" and version != "1.0":
            version = "1.1"  # HTTP/1.2-1.9 (RFC 9110 2.5), see _request_parser
        headers = self._headers
        url = self._url
        if HASH in url:  # an int needle: one memchr (ascii.py); find parses its arguments
            # A fragment is not part of a request-target (RFC 9112 3.2); routing and the
            # backend both see the target without it.
            url = url[: url.find(b"#")]
        try:
            # Counted here, not per header: the head size cap already bounds the list.
            if len(headers) > self._max_headers:
                raise HTTPError(431, "too many header fields")
            scan = checks.scan_headers(headers)
            framing, length, expect = checks.request_framing(method, url, version, scan)
            if url[:1] == b"/":
                # What routes match, the access log shows and the upstream receives.
                url = normalise_target(url, self._path_rules)
            if framing is not _FRAMING_NONE and parser.should_upgrade():
                # llhttp would take the body for the new protocol's bytes, and the gateway's
                # reading of where this request ends would differ from the client's.
                raise HTTPError(400, "a request body together with a protocol upgrade")
            websocket = parser.should_upgrade() and checks.websocket_request(
                method, version, framing, scan
            )
        except HTTPError as exc:
            self._raise(exc)
            return
        self._websocket = websocket
        block = scan.block + checks.WEBSOCKET_UPGRADE_LINES if websocket else scan.block
        self._chunked = framing is _FRAMING_CHUNKED
        head = RequestHead(
            method=method,
            target=url,
            version=version,
            headers=headers,
            block=block,
            framing=framing,
            content_length=length,
            keep_alive=parser.should_keep_alive(),
            expect_continue=expect,
            has_host=scan.hosts != 0,
            codings=scan.forwarded_codings,
            scan=scan,
            upgrade=websocket,
        )
        max_body = self._default_max_body
        if self._body_limit is not None:
            max_body = self._body_limit(head)
        if length > max_body:
            self._raise(HTTPError(413, f"body of {length} bytes exceeds {max_body}"))
        self._max_body = max_body
        self._sink.on_request_head(head)

    def on_body(self, body: bytes) -> None:
        if self._chunked:
            self._body_size += len(body)
            if self._body_size > self._max_body:
                self._raise(HTTPError(413, f"body exceeds {self._max_body} bytes"))
        self._sink.on_request_body(body)

    def on_message_complete(self) -> None:
        self._sink.on_request_end()


class ResponseSink(Protocol):
    def on_response_head(self, head: ResponseHead) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_end(self, reusable: bool) -> None: ...


_EMPTY_LINE_BYTES: Final = b"\r\n"


class ResponseReader:
    """Reads the responses of one upstream connection, one at a time (1xx interim responses are
    skipped). Raises UpstreamProtocolError.

    llhttp validates the syntax; the head's header lines are then taken from the raw bytes and
    forwarded as they came, minus the hop-by-hop ones (checks.scan_response_head): no Python
    call per header on this path, which every proxied response takes.
    """

    __slots__ = (
        "_sink",
        "_parser",
        "_head_request",
        "_raw",
        "_raw_start",
        "_in_head",
        "_max_head",
        "_interim",
        "_done",
        "_reusable_parser",
        "framing",
        "started",
        "expect_upgrade",
        "upgraded",
        "upgrade_data",
    )

    def __init__(self, sink: ResponseSink, head_request: bool, max_head: int = 64 * 1024):
        self._sink = sink
        self._parser = httptools.HttpResponseParser(self)
        self._max_head = max_head
        self._reusable_parser = True
        self.reset(head_request)

    def reset(self, head_request: bool) -> bool:
        """Prepare for the next response on the same connection. False: make a new reader
        (llhttp was left expecting a body that a HEAD response does not have)."""
        if not self._reusable_parser:
            return False
        self._head_request = head_request
        self._raw = b""
        self._raw_start = 0
        self._in_head = True
        self._interim = False
        self._done = False
        self.framing: Framing | None = None  # set once the (final) head is read
        self.started = False  # any byte received
        # The request was a WebSocket upgrade: a 101 that switches to websocket is accepted
        # (set by the caller after reset); the connection is not reused whatever the answer.
        self.expect_upgrade = False
        # After that 101: the rest is the tunnel's (`upgrade_data`: what followed the head in
        # the same read), and the reader takes no more bytes.
        self.upgraded = False
        self.upgrade_data = b""
        return True

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, data: bytes) -> None:
        self.started = True
        if self._done:
            self._reusable_parser = False
            raise UpstreamProtocolError("data after the end of the response")
        if self._in_head:
            self._raw += data
            if len(self._raw) - self._raw_start > self._max_head and (
                self._raw.find(b"\r\n\r\n", self._raw_start) < 0
            ):
                self._reusable_parser = False
                raise UpstreamProtocolError("response head too large")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._reusable_parser = False
            if self.upgraded:
                self.upgrade_data = data[exc.args[0] :]
                return
            raise UpstreamProtocolError("unexpected protocol upgrade") from None
        except httptools.HttpParserError as exc:
            self._reusable_parser = False
            context = exc.__context__
            if isinstance(context, UpstreamProtocolError):
                raise context from None
            raise UpstreamProtocolError(f"malformed response: {exc}") from None

    def feed_eof(self) -> None:
        """The upstream closed. Ends a close-delimited body; anything else was cut short."""
        self._reusable_parser = False
        if self._done:
            return
        if self.framing is _FRAMING_CLOSE:
            self._done = True
            self._sink.on_response_end(False)
            return
        raise UpstreamProtocolError("upstream closed the connection mid-response")

    def end_counted_body(self) -> None:
        """The caller took the rest of a Content-Length body itself, counting it instead of
        feeding it (the bulk path: no per-read parse and no copy). Ends the response as the
        parser would have; that parser, left expecting the body, is not used again."""
        self._reusable_parser = False
        if self._done:
            return
        self._done = True
        self._sink.on_response_end(self._parser.should_keep_alive() and not self.expect_upgrade)

    # llhttp callbacks

    def on_message_begin(self) -> None:
        if self._done:
            raise UpstreamProtocolError("more than one response")
        self._in_head = True

    def on_headers_complete(self) -> None:
        raw = self._raw
        start = self._raw_start
        # llhttp skips CR and LF bytes before a status line (empty lines an upstream left after
        # its previous response): the head begins after them, or its status line would be read
        # as a header line, and an empty line as the head's end.
        while raw[start] in _EMPTY_LINE_BYTES:
            start += 1
        end = raw.find(b"\r\n\r\n", start)  # llhttp accepted the head: it ends with CRLFCRLF
        line_end = raw.find(b"\r\n", start)
        if end < 0 or line_end < 0:
            raise UpstreamProtocolError("response head not found")
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            if status == 101:
                self._switching_protocols(raw[start + 13 : line_end], raw[line_end + 2 : end + 2])
                return
            self._interim = True  # 1xx: not forwarded; the final response follows
            self._raw_start = end + 4
            return
        self._in_head = False
        self._raw = b""
        # llhttp checked the status line: "HTTP/1.x SSS" then, optionally, " reason".
        reason = raw[start + 13 : line_end]
        scan = checks.scan_response_head(raw[line_end + 2 : end + 2])
        framing, length = checks.response_framing(status, scan, self._head_request)
        self.framing = framing
        head = ResponseHead(
            status=status,
            reason=reason,
            block=scan.block,
            framing=framing,
            content_length=length,
        )
        self._sink.on_response_head(head)
        if self._head_request:
            # llhttp cannot be told that the request was HEAD: the response ends here, and this
            # parser, still waiting for a body, is not used again.
            self._reusable_parser = False
            self._done = True
            self._sink.on_response_end(parser.should_keep_alive())

    def _switching_protocols(self, reason: bytes, lines: bytes) -> None:
        """A 101: accepted only as the answer to a WebSocket upgrade request, switching to
        websocket. llhttp then stops (HttpParserUpgrade in feed) and the rest is the tunnel's."""
        if not self.expect_upgrade:
            raise UpstreamProtocolError("unexpected 101 Switching Protocols")
        scan = checks.scan_response_head(lines)
        if not checks.websocket_accepted(scan):
            raise UpstreamProtocolError("101 Switching Protocols to something but websocket")
        self._in_head = False
        self._raw = b""
        self.upgraded = True
        self.framing = _FRAMING_NONE
        head = ResponseHead(
            status=101,
            reason=reason,
            block=scan.block + checks.WEBSOCKET_UPGRADE_LINES,
            framing=_FRAMING_NONE,
            content_length=-1,
        )
        self._sink.on_response_head(head)

    def on_body(self, body: bytes) -> None:
        if not self._done:
            self._sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if self.upgraded:
            return  # the 101: the tunnel follows
        if self._interim:
            self._interim = False
            return
        if self._done:
            return
        self._done = True
        reusable = (
            self._parser.should_keep_alive()
            and self.framing is not _FRAMING_CLOSE
            and not self.expect_upgrade  # the upstream may have been sent the client's frames
        )
        if not reusable:
            self._reusable_parser = False
        self._sink.on_response_end(reusable)
