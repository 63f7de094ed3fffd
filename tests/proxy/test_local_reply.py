"""One gateway-made answer for HTTP/1.1 and HTTP/2 (`local_reply`), in-process: the same
status, body and headers for both, byte for byte what HTTP/1.1 sent before, the refusal counted
once, the connection closed after a status that leaves the request stream in doubt; and
`exchange_done`, where every exchange is counted and logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from outwork.config.config import RouteConfig
from outwork.http import serialize
from outwork.http.errors import REASONS
from outwork.http.messages import Framing, RequestHead
from outwork.observe.access_log import AccessLog
from outwork.observe.metrics import Metrics
from outwork.observe.refusals import Refusal
from outwork.proxy.downstream import Downstream, DownstreamConnection
from outwork.proxy.exchange import Exchange
from outwork.proxy.local_reply import FATAL_STATUSES, exchange_done, local_reply
from outwork.proxy.router import Router

ROUTER = Router(
    (RouteConfig(upstream="u", name="api", methods=frozenset({"GET", "POST"}), path_prefix="/api"),)
)
STATUSES = sorted(status for status in REASONS if status >= 400)
# Request ids as forwarding.py keeps or makes them: visible ASCII without `"` and `\`.
REQUEST_IDS = st.binary(max_size=40).map(
    lambda raw: bytes(b for b in raw if 0x21 <= b <= 0x7E and b not in b'"\\')
)


class _Connection:
    log_connection = b',"client":"127.0.0.1:1","listener":"public","proto":"h2","tls_ms":null'
    log_tls = b"null"


def request(method: bytes = b"GET", target: bytes = b"/api/x") -> RequestHead:
    return RequestHead(method, target, "1.1", [(b"host", b"a")], b"", Framing.NONE, -1, True, False)


def exchange(head: RequestHead | None, request_id: bytes = b"") -> Exchange:
    ex = Exchange(cast(Downstream, object()), head, None)
    ex.request_id = request_id
    return ex


@given(
    st.sampled_from(STATUSES),
    REQUEST_IDS,
    st.booleans(),
    st.sampled_from([b"GET", b"HEAD", b"POST"]),
    st.booleans(),
)
def test_http1_bytes_are_what_the_gateway_always_sent(
    status: int, request_id: bytes, keep_alive: bool, method: bytes, headless: bool
) -> None:
    head = None if headless else request(method, b"/api/x" if status != 405 else b"/api")
    ex = exchange(head, request_id)
    ex.keep_alive = keep_alive
    reply = local_reply(ex, status, Metrics(), ROUTER)
    extra = b"x-request-id: " + request_id + b"\r\n" if request_id else b""
    if status == 405 and head is not None:
        extra += b"allow: " + ROUTER.allowed(b"a", head.path) + b"\r\n"
    kept = keep_alive and status not in FATAL_STATUSES
    old = serialize.error_response(status, kept, method == b"HEAD" and not headless, extra)
    assert reply.http1(ex.keep_alive) == old
    assert ex.status == status and ex.keep_alive == kept


@given(st.sampled_from(STATUSES), REQUEST_IDS, st.sampled_from([b"GET", b"HEAD"]))
def test_http2_headers_say_the_same(status: int, request_id: bytes, method: bytes) -> None:
    ex = exchange(request(method, b"/api"), request_id)
    reply = local_reply(ex, status, Metrics(), ROUTER)
    headers = reply.h2_headers()
    assert headers[0] == (b":status", str(status).encode())
    fields = dict(headers[1:])
    assert len(fields) == len(headers) - 1  # each once
    assert fields[b"content-type"] == b"text/plain; charset=utf-8"
    assert fields[b"content-length"] == str(len(reply.body)).encode()
    assert reply.body == f"{status} {REASONS[status]}\n".encode()
    assert fields.get(b"x-request-id") == (request_id or None)
    assert (b"allow" in fields) == (status == 405)
    assert reply.head_only == (method == b"HEAD")
    assert all(name == name.lower() for name, _ in headers)


def test_405_names_the_methods_the_routes_take() -> None:
    reply = local_reply(exchange(request(b"DELETE", b"/api/x")), 405, Metrics(), ROUTER)
    assert dict(reply.h2_headers())[b"allow"] == b"GET, HEAD, POST"
    assert b"\r\nallow: GET, HEAD, POST\r\n" in reply.http1(True)


def test_the_refusal_it_answers_is_counted_once() -> None:
    metrics = Metrics()
    local_reply(exchange(None), 400, metrics, ROUTER, Refusal.BAD_REQUEST)
    local_reply(exchange(request()), 408, metrics, ROUTER, Refusal.TIMEOUT)
    local_reply(exchange(request()), 404, metrics, ROUTER)  # no route: an answer, no refusal
    local_reply(exchange(request()), 502, metrics, ROUTER)
    counted = {reason: n for reason, n in metrics.refused.items() if n}
    assert counted == {Refusal.BAD_REQUEST: 1, Refusal.TIMEOUT: 1}


def test_exchange_done_counts_and_logs_the_exchange(tmp_path: Path) -> None:
    metrics = Metrics()
    access = AccessLog(str(tmp_path / "access.log"), metrics.log_lines_lost)
    ex = exchange(request(), b"rid-1")
    ex.route = "api"
    local_reply(ex, 413, metrics, ROUTER, Refusal.CONTENT_TOO_LARGE)
    exchange_done(ex, metrics, access, cast(DownstreamConnection, _Connection()))
    access.flush()
    assert ex.response_done
    assert metrics.requests[("api", 413)] == 1
    assert metrics.refused[Refusal.CONTENT_TOO_LARGE] == 1
    line = json.loads((tmp_path / "access.log").read_text())
    assert line["status"] == 413 and line["request_id"] == "rid-1" and line["route"] == "api"
    assert line["proto"] == "h2" and line["listener"] == "public"
