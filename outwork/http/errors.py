"""HTTP errors that carry the status to answer (like h11's RemoteProtocolError)."""

from __future__ import annotations

REASONS = {
    100: "Continue",
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


class HTTPError(Exception):
    """A request the gateway refuses. `status` is the answer; the connection closes after it
    (a peer that broke framing cannot be trusted to be in sync any more)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class UpstreamProtocolError(Exception):
    """The upstream sent something that is not valid HTTP/1.1 (answered 502)."""
