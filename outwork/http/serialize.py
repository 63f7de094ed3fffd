"""Writing message heads and bodies. Hop-by-hop headers are dropped (by the scan in
checks.py); framing is re-emitted from what the reader verified, never copied from the peer."""

from __future__ import annotations

from typing import Final

from outwork.http.errors import REASONS
from outwork.http.messages import Framing, RequestHead, ResponseHead

# Enum members as module constants on the per-request path: `Enum.X` goes through
# EnumType.__getattr__'s slot (about 10x a global's cost in Python 3.11).
# Each its own `Final` line: mypyc keeps a Final module name in a C static, but looks a name
# assigned by tuple unpacking up in the module's dict at every use (~130 instructions).
_FRAMING_CHUNKED: Final = Framing.CHUNKED
_FRAMING_LENGTH: Final = Framing.LENGTH
_FRAMING_NONE: Final = Framing.NONE

CHUNKED_END: Final = b"0\r\n\r\n"
CONTINUE_100: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CHUNKED: Final = b"transfer-encoding: chunked\r\n"
_CLOSE: Final = b"connection: close\r\n"

# Head lines by their number (a status code, a body length), made once: a dict lookup instead
# of a bytes format (~700 instructions each, twice per response). Numbers repeat (statuses are
# few, a resource keeps its length); each dict is bounded, and cleared when full.
MAX_CACHED_LINES: Final = 1024
_STATUS_LINES: Final[dict[int, bytes]] = {}
_LENGTH_LINES: Final[dict[int, bytes]] = {}


def status_line_start(status: int) -> bytes:
    """`HTTP/1.1 <status> ` (the reason follows)."""
    return _number_line(_STATUS_LINES, b"HTTP/1.1 %d ", status)


def content_length_line(length: int) -> bytes:
    """`content-length: <length>` and its CRLF."""
    return _number_line(_LENGTH_LINES, b"content-length: %d\r\n", length)


def _number_line(lines: dict[int, bytes], template: bytes, number: int) -> bytes:
    """`template % number`, kept in `lines` (cleared when full)."""
    line = lines.get(number)
    if line is None:
        if len(lines) >= MAX_CACHED_LINES:
            lines.clear()
        line = lines[number] = template % number
    return line


def forwarded_headers(client_ip: bytes, proto: bytes) -> bytes:
    """X-Forwarded-For/-Proto lines ending a head. The HTTP/1.1 front adds its lines per request
    (proxy/forwarding.py: also X-Forwarded-Host, Forwarded, X-Request-Id) and ends the head with
    a bare CRLF as its `forwarded`."""
    return b"x-forwarded-for: " + client_ip + b"\r\nx-forwarded-proto: " + proto + b"\r\n\r\n"


def request_head(head: RequestHead, forwarded: bytes) -> bytes:
    """The head sent upstream: always HTTP/1.1 and keep-alive, whatever the client asked."""
    framing = head.framing
    if framing is _FRAMING_NONE:
        length = b""
    elif framing is _FRAMING_LENGTH:
        length = content_length_line(head.content_length)
    elif head.codings:
        length = b"transfer-encoding: " + head.codings + b", chunked\r\n"
    else:
        length = _CHUNKED
    return b"".join(
        (
            head.method,
            b" ",
            head.target,
            b" HTTP/1.1\r\n",
            head.block,
            head.stamped,
            length,
            forwarded,
        )
    )


def response_head(
    head: ResponseHead, framing: Framing, keep_alive: bool, extra: bytes = b""
) -> bytes:
    """The head sent to the client. `framing` is what the gateway will write (it may differ
    from the upstream's: a close-delimited body is re-sent chunked to keep the client alive).
    `extra`: header lines the gateway adds (each ending in CRLF), e.g. x-request-id."""
    reason = head.reason or REASONS.get(head.status, "").encode()
    if framing is _FRAMING_CHUNKED:
        length = _CHUNKED
    elif head.content_length >= 0 and (framing is _FRAMING_LENGTH or head.status != 204):
        # Also for HEAD and 304: the length the body would have.
        length = content_length_line(head.content_length)
    else:
        length = b""
    return b"".join(
        (
            status_line_start(head.status),
            reason,
            b"\r\n",
            head.block,
            extra,
            length,
            b"" if keep_alive else _CLOSE,
            b"\r\n",
        )
    )


def chunk(data: bytes) -> list[bytes]:
    return [b"%x\r\n" % len(data), data, b"\r\n"]


def error_response(
    status: int, keep_alive: bool, head_only: bool = False, extra: bytes = b""
) -> bytes:
    """A short plain-text answer made by the gateway itself (no detail leaked to the peer).
    `extra`: header lines to add (each ending in CRLF), e.g. allow, x-request-id."""
    reason = REASONS.get(status, "Error")
    body = f"{status} {reason}\n".encode()
    head = (
        (
            f"HTTP/1.1 {status} {reason}\r\n"
            "content-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\n" + ("" if keep_alive else "connection: close\r\n")
        ).encode()
        + extra
        + b"\r\n"
    )
    return head if head_only else head + body


def switching_protocols(head: ResponseHead) -> bytes:
    """The 101 that opens a WebSocket tunnel; its upgrade lines are in `head.block` (set by the
    reader from what it verified)."""
    reason = head.reason or b"Switching Protocols"
    return b"HTTP/1.1 101 " + reason + b"\r\n" + head.block + b"\r\n"
