"""Fuzz target: bytes into the HTTP/1.1 request reader, routed as the gateway routes them.

    .venv/bin/python fuzz/fuzz_http_request.py /tmp/fuzz-http fuzz/corpus/http_request

Byte 0 picks where the rest is cut into two reads (its value modulo the length), so heads,
bodies, chunk sizes and the restart after an upgrade request are also split across reads.
Every head is routed by a Router with host, wildcard, method and default routes (the route's
body limit goes back to the reader, as in the gateway). A crash is any exception other than
HTTPError, a difference between the events of one read and of two, or a target that is
not in normal form (outwork/http/path.py).

`TestOneInput` is importable without atheris; atheris is imported only when run as a script.
"""

from __future__ import annotations

from outwork.config.config import RouteConfig
from outwork.http.errors import HTTPError
from outwork.http.messages import RequestHead
from outwork.http.path import normalise_target
from outwork.http.reader import RequestReader
from outwork.proxy.forwarding import Forwarding, sane_request_id
from outwork.proxy.router import Router

ROUTER = Router(
    (
        RouteConfig("u", path_prefix="/", name="root", max_body_size=64),
        RouteConfig("u", path="/x", name="x", methods=frozenset({"POST"}), max_body_size=8),
        RouteConfig("u", host="a.example", path_prefix="/a", name="a", max_body_size=1000),
        RouteConfig("u", host="*.example", name="wild", max_body_size=16),
        RouteConfig("u", name="default", default=True),
    )
)


class Sink:
    def __init__(self) -> None:
        self.events: list[object] = []
        self.forwarding = Forwarding(b"192.0.2.1", b'"192.0.2.1:1"', b"http", trusted=True)

    def body_limit(self, head: RequestHead) -> int:
        scan = head.scan
        host = scan.host if scan is not None and head.has_host else b""
        route = ROUTER.match(host, head.method, head.path)
        if route is None:
            ROUTER.allowed(host, head.path)
            return 32
        return route.max_body_size

    def on_request_head(self, head: RequestHead) -> None:
        scan = head.scan
        lines = self.forwarding.lines(scan, head.has_host)
        assert b"\r\n\r\n" not in lines and lines.endswith(b"\r\n")
        sane_request_id(scan.request_id if scan is not None else None)
        if head.target[:1] == b"/":  # routed and forwarded in normal form, which is a fixpoint
            assert normalise_target(head.target) == head.target
            assert b"//" not in head.path and b"\\" not in head.path
        self.events.append((head.method, head.target, head.version, head.block, lines))

    def on_request_body(self, data: bytes) -> None:
        self.events.append(data)

    def on_request_end(self) -> None:
        self.events.append(None)


def join_bodies(events: list[object]) -> list[object]:
    """The events with each run of body pieces joined: bodies may arrive in other pieces
    when the input is cut elsewhere, and are compared whole."""
    joined: list[object] = []
    for event in events:
        if isinstance(event, bytes) and joined and isinstance(joined[-1], bytes):
            joined[-1] += event
        else:
            joined.append(event)
    return joined


def read(data: bytes, cut: int) -> tuple[list[object], int]:
    sink = Sink()
    reader = RequestReader(sink, 4096, 50, 32, max_line=512, body_limit=sink.body_limit)
    status = 0
    try:
        for piece in (data[:cut], data[cut:]):
            if piece:
                reader.feed(piece)
    except HTTPError as exc:
        status = exc.status
    joined = join_bodies(sink.events)
    return joined, status


def TestOneInput(data: bytes) -> None:  # noqa: N802 (libFuzzer's name)
    if not data:
        return
    body = data[1:]
    whole = read(body, len(body))
    split = read(body, data[0] % (len(body) + 1))
    if whole[1] == 0 and split[1] == 0:
        assert whole == split, (whole, split)
    elif whole[1] == split[1] and whole[1] not in (431, 414):
        # Refused both ways: what was read before the refusal is the same.
        assert whole[0] == split[0], (whole, split)


if __name__ == "__main__":
    import sys

    from engine_fixtures import run_atheris

    run_atheris(TestOneInput, sys.argv[0])
