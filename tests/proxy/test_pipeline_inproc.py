"""The request pipeline in-process (tests/inproc.py): a gateway state in the test's loop, clients
on a fake transport, a real upstream on loopback. The same request filters as
test_request_filters.py (which runs them through a gateway process), here where a test needs
to see inside: what the upstream read, reading paused while a filter waits, a resume that comes
after the client left, the exchange's state while parked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from outwork.filters import REGISTRY
from outwork.observe.refusals import Refusal
from outwork.proxy import response_filters
from outwork.proxy.exchange_state import State
from tests.cycles import cycles_left
from tests.inproc import InProcGateway, Upstream, until
from tests.proxy import wire_filters

POLICY = {
    "guard": {
        "test_wire_deny": {},
        "test_wire_park": {"delay": 0.05},
        "test_wire_body": {"marker": "EVIL"},
        "test_wire_raise": {},
        "test_wire_response": {"marker": "LEAK"},
    }
}


@pytest.fixture(autouse=True)
def registered_filters() -> Iterator[None]:
    wire_filters.register()
    yield
    wire_filters.unregister()
    assert not any(name.startswith("test_wire_") for name in REGISTRY)


def config(upstream: str, read_timeout: str = "30s") -> dict[str, Any]:
    return {
        "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
        "routes": [{"name": "guarded", "match": {"path_prefix": "/"}, "upstream": "backend"}],
        "upstreams": {"backend": {"targets": [upstream], "read_timeout": read_timeout}},
        "policies": POLICY,
        "default_policies": ["guard"],
        "logging": {"security_events": "events.jsonl", "access_log": "access.jsonl"},
    }


Scenario = Callable[[InProcGateway, Upstream], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, read_timeout: str = "30s") -> None:
    async def main() -> None:
        async with Upstream() as upstream:
            async with InProcGateway(config(upstream.url, read_timeout), tmp_path) as gw:
                await scenario(gw, upstream)

    asyncio.run(main())


def run_recording(tmp_path: Path, scenario: Scenario) -> None:
    """`scenario` with one body filter on every route: test_wire_record, which records the
    body calls it sees (wire_filters.BODY_CALLS)."""

    async def main() -> None:
        conf = {
            "listeners": [{"name": "public", "bind": "127.0.0.1:0"}],
            "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend"}],
            "policies": {"record": {"test_wire_record": {}}},
            "default_policies": ["record"],
        }
        async with Upstream() as upstream:
            conf["upstreams"] = {"backend": {"targets": [upstream.url]}}
            async with InProcGateway(conf, tmp_path) as gw:
                await scenario(gw, upstream)

    asyncio.run(main())


def get(path: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> bytes:
    lines = [f"{'GET' if body is None else 'POST'} {path} HTTP/1.1", "Host: localhost"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def test_refusals_are_answered_counted_and_evented_on_both_protocols(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/a", {"X-Deny": "1"}))
        (h1,) = await client.responses(1)
        h2 = gw.connect_h2(peer_port=40001)
        answer = await h2.response(h2.request("/b", {"x-deny": "1"}))
        for response in (h1, answer):
            assert response.status == 403
            assert response.headers["x-denied-by"] == "test"
            assert response.body == b'{"denied":true}\n'
        metrics = gw.gateway.metrics
        assert metrics.policy_refused[("guarded", Refusal.FORBIDDEN)] == 2
        assert metrics.refused[Refusal.FORBIDDEN] == 2
        assert [(e["event"], e["detail"]["path"]) for e in gw.events()] == [
            ("policy.forbidden", "/a"),
            ("policy.forbidden", "/b"),
        ]
        assert upstream.heads == 0

    run(tmp_path, scenario)


def test_a_response_head_refusal_is_answered_counted_and_evented(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/a", {"X-Deny-Response": "1"}) + get("/b"))
        refused, after = await client.responses(2)
        h2 = gw.connect_h2(peer_port=40001)
        answer = await h2.response(h2.request("/c", {"x-deny-response": "1"}))
        for response in (refused, answer):
            assert response.status == 403
            assert response.headers["x-denied-by"] == "response"
        assert after.body == b"GET /b\n"  # the connection goes on
        assert [seen.path for seen in upstream.seen] == ["/a", "/b", "/c"]
        assert gw.gateway.metrics.policy_refused[("guarded", Refusal.FORBIDDEN)] == 2
        assert [e["detail"]["path"] for e in gw.events()] == ["/a", "/c"]

    run(tmp_path, scenario)


def test_a_waiting_filter_parks_the_exchange_with_reading_paused(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/echo", {"X-Park": "yes"}, body=b"held"))
        (ex,) = client.protocol._queue
        assert ex.state.request is State.FILTERING_REQUEST_HEAD
        assert not client.transport.reading
        (answer,) = await client.responses(1)
        assert (answer.status, answer.body) == (200, b"held")
        assert client.transport.reading
        assert [seen.body for seen in upstream.seen] == [b"held"]

    run(tmp_path, scenario)


def test_pipelined_requests_keep_their_order_behind_a_waiting_filter(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(
            get("/1", {"X-Park": "yes"})
            + get("/echo", body=b"two")
            + get("/3", {"X-Park": "deny"})
            + get("/4")
        )
        got = await client.responses(4)
        assert [(r.status, r.body) for r in got] == [
            (200, b"GET /1\n"),
            (200, b"two"),
            (429, b"429 Too Many Requests\n"),
            (200, b"GET /4\n"),
        ]
        assert [seen.path for seen in upstream.seen] == ["/1", "/echo", "/4"]

    run(tmp_path, scenario)


def test_a_refused_request_whose_body_waited_in_line_is_read_and_dropped(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        # The second request's body starts while the first one waits: it queues, unread.
        client.send(
            get("/1", {"X-Park": "yes"})
            + b"POST /2 HTTP/1.1\r\nHost: a\r\nX-Deny: 1\r\nContent-Length: 10\r\n\r\nhalf "
        )
        first, second = await client.responses(2)
        assert (first.status, second.status) == (200, 403)
        client.send(b"done" + b"!" + get("/3"))  # the rest of its body, then one more request
        (third,) = await client.responses(1)
        assert third.body == b"GET /3\n"
        assert [seen.path for seen in upstream.seen] == ["/1", "/3"]

    run(tmp_path, scenario)


def test_a_resume_after_the_client_left_does_nothing(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/gone", {"X-Park": "yes"}))
        (ex,) = client.protocol._queue
        client.gone()
        h2 = gw.connect_h2(peer_port=40001)
        sid = h2.request("/gone-too", {"x-park": "yes"})
        (stream,) = h2.session.streams.values()
        h2_ex = stream.exchange
        h2.reset(sid)
        assert ex.cancelled and h2_ex is not None and h2_ex.cancelled
        await asyncio.sleep(0.2)  # past the filter's resume (0.05 s)
        assert ex.waiting is None and h2_ex.waiting is None
        assert upstream.heads == 0
        after = gw.connect(peer_port=40002)
        after.send(get("/after"))
        (answer,) = await after.responses(1)
        assert answer.body == b"GET /after\n"

    run(tmp_path, scenario)


def test_a_filter_that_never_resumes_is_a_504_at_the_read_timeout(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/hang", {"X-Hang": "1"}))
        h2 = gw.connect_h2(peer_port=40001)
        sid = h2.request("/hang", {"x-hang": "1"})
        (h1,) = await client.responses(1)
        answer = await h2.response(sid)
        assert (h1.status, answer.status) == (504, 504)
        assert gw.gateway.metrics.policy_refused[("guarded", Refusal.FILTER_ERROR)] == 2
        assert upstream.heads == 0

    run(tmp_path, scenario, read_timeout="0.2s")


def test_a_body_filter_that_never_resumes_is_a_504_and_nothing_went_upstream(
    tmp_path: Path,
) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/echo", {"X-Body-Hang": "1"}, body=b"small"))
        h2 = gw.connect_h2(peer_port=40001)
        sid = h2.request("/echo", {"x-body-hang": "1"}, body=b"small")
        (h1,) = await client.responses(1)
        answer = await h2.response(sid)
        assert (h1.status, answer.status) == (504, 504)
        assert gw.gateway.metrics.policy_refused[("guarded", Refusal.FILTER_ERROR)] == 2
        assert [e["detail"]["filter"] for e in gw.events()] == ["RefuseMarkedBody"] * 2
        assert upstream.heads == 0
        client.send(get("/next"))  # the connection goes on
        (after,) = await client.responses(1)
        assert after.body == b"GET /next\n"

    run(tmp_path, scenario, read_timeout="0.2s")


@pytest.mark.parametrize("protocol", ["http/1.1", "h2"])
def test_a_small_refused_body_never_reaches_the_upstream(tmp_path: Path, protocol: str) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        body = b"a" * 3000 + b"EVIL"
        if protocol == "h2":
            h2 = gw.connect_h2()
            answer = await h2.response(h2.request("/echo", body=body))
        else:
            client = gw.connect()
            client.send(get("/echo", body=body))
            (answer,) = await client.responses(1)
        assert answer.status == 400
        assert gw.gateway.metrics.policy_refused[("guarded", Refusal.THREAT_JSON)] == 1
        assert upstream.heads == 0

    run(tmp_path, scenario)


def test_a_body_refused_after_upstream_bytes_drops_that_connection(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/warm"))
        await client.responses(1)
        big = b"z" * (100 * 1024)
        client.send(get("/upload", body=big + b"EVIL"))
        (answer,) = await client.responses(1)
        assert answer.status == 400
        await until(lambda: upstream.heads == 2, "the upload's head upstream")
        client.send(get("/again"))
        (again,) = await client.responses(1)
        assert again.body == b"GET /again\n"
        assert upstream.connections == 2  # the upload's connection was not pooled again
        assert [seen.path for seen in upstream.seen] == ["/warm", "/again"]

    run(tmp_path, scenario)


def test_the_access_log_has_the_identity(tmp_path: Path) -> None:
    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        client = gw.connect()
        client.send(get("/a", {"X-User": "k9"}) + get("/b"))
        await client.responses(2)
        assert gw.gateway.access_log is not None
        gw.gateway.access_log.flush()
        lines = (tmp_path / "access.jsonl").read_text().splitlines()
        assert [json.loads(line)["identity"] for line in lines] == ["api_key:k9", None]

    run(tmp_path, scenario)


@pytest.mark.parametrize("protocol", ["http/1.1", "h2"])
def test_a_body_with_a_length_reaches_the_body_filters_with_its_end(
    tmp_path: Path, protocol: str
) -> None:
    """A Content-Length body read whole is one `on_request_body` call with `end=True`; a
    chunked one (a body of unknown length, over HTTP/2) ends in its own call."""

    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        calls = wire_filters.BODY_CALLS
        calls.clear()
        body = b'{"a": 1}'
        if protocol == "h2":
            h2 = gw.connect_h2()
            answer = await h2.response(
                h2.request("/echo", {"content-length": str(len(body))}, body=body)
            )
            assert calls == [(len(body), True)]
            calls.clear()
            answer = await h2.response(h2.request("/echo", body=body))  # no length
            assert calls == [(len(body), False), (0, True)]
        else:
            client = gw.connect()
            client.send(get("/echo", body=body))
            (answer,) = await client.responses(1)
            assert calls == [(len(body), True)]
            calls.clear()
            client.send(
                b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"8\r\n" + body + b"\r\n0\r\n\r\n"
            )
            (answer,) = await client.responses(1)
            assert calls == [(len(body), False), (0, True)]
        assert answer.body == body
        assert [seen.body for seen in upstream.seen] == [body, body]

    run_recording(tmp_path, scenario)


def test_finished_exchanges_leave_no_reference_cycle(
    tmp_path: Path,
) -> None:
    """An exchange held its body filter, which held the exchange: every request with a body on
    a route with body filters left a cycle for the garbage collector (16 objects, about 9,000
    instructions a request in its collections). Once the request's end has passed the filters
    the exchange lets go of them, over HTTP/1.1 and HTTP/2, with a length or without; and a
    finished HTTP/2 stream lets go of its exchange (they held each other, body or not)."""

    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        body = b'{"a": 1}'
        client = gw.connect()
        h2 = gw.connect_h2()
        with cycles_left() as left:
            for _ in range(5):
                client.send(get("/echo", body=body))
                client.send(
                    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"8\r\n" + body + b"\r\n0\r\n\r\n"
                )
                answers = await client.responses(2)
                length = {"content-length": str(len(body))}
                answers += [await h2.response(h2.request("/echo", length, body=body))]
                answers += [await h2.response(h2.request("/echo", body=body))]
                answers += [await h2.response(h2.request("/plain"))]
                assert [a.body for a in answers] == [body] * 4 + [b"GET /plain\n"]
        assert "Exchange" not in left and "RequestBodyFilter" not in left, left

    run_recording(tmp_path, scenario)


def test_a_response_body_filter_holds_then_answers_or_releases(tmp_path: Path) -> None:
    """A response held for a body filter (proxy/response_filters.py), on both protocols: a
    marked body within the limit gets the filter's 403 and none of it goes out, and the
    connection goes on; a clean one passes byte for byte; past the limit the rest streams."""

    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        limit = {"x-response-limit": "64"}
        leak = b"x" * 40 + b"LEAK" + b"y" * 5000
        clean = b"z" * 5000
        late = b"x" * 100 + b"LEAK"
        client = gw.connect()
        client.send(
            get("/echo", limit, leak) + get("/echo", limit, clean) + get("/echo", limit, late)
        )
        refused, passed, streamed = await client.responses(3)
        assert refused.status == 403 and b"LEAK" not in refused.body
        assert (passed.status, passed.body) == (200, clean)
        assert (streamed.status, streamed.body) == (200, late)
        h2 = gw.connect_h2(peer_port=40001)
        answer = await h2.response(h2.request("/echo", limit, leak))
        assert answer.status == 403 and b"LEAK" not in answer.body
        ok = await h2.response(h2.request("/echo", limit, clean))
        assert (ok.status, ok.body) == (200, clean)
        unheld = await client_without_limit(gw)
        assert (unheld.status, unheld.body) == (200, leak)
        assert gw.gateway.metrics.policy_refused[("guarded", Refusal.FORBIDDEN)] == 2
        assert response_filters.BUDGET.used == 0  # every held byte accounted back

    async def client_without_limit(gw: InProcGateway) -> Any:
        client = gw.connect(peer_port=40002)
        client.send(get("/echo", body=b"x" * 40 + b"LEAK" + b"y" * 5000))
        (answer,) = await client.responses(1)
        return answer

    run(tmp_path, scenario)


def test_a_held_response_that_stalls_is_a_504_and_one_whose_client_left_is_dropped(
    tmp_path: Path,
) -> None:
    """An upstream that sends the head and part of a held body, then nothing: nothing reaches
    the client, and the route's read_timeout answers 504 (the response had not started). A
    client that goes away while its response is held: the upstream connection is closed."""

    async def main() -> None:
        upstream_closed: list[bytes] = []

        async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n" + b"x" * 100)
            await writer.drain()
            upstream_closed.append(await reader.read())  # b"": the gateway closed it

        server = await asyncio.start_server(stall, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with InProcGateway(config(f"http://127.0.0.1:{port}", "0.3s"), tmp_path) as gw:
            limit = {"x-response-limit": "500"}
            left = gw.connect(peer_port=40001)
            left.send(get("/left", limit))
            stalled = gw.connect()
            stalled.send(get("/stalled", limit))
            await asyncio.sleep(0.1)
            assert left.transport.written == stalled.transport.written == b""  # held
            left.gone()
            await until(lambda: len(upstream_closed) == 1, "the left client's upstream closed")
            await asyncio.sleep(0.3)
            gw.tick()
            (answer,) = await stalled.responses(1)
            assert answer.status == 504 and b"x" not in answer.body
            await until(lambda: len(upstream_closed) == 2, "the stalled upstream closed")
            assert response_filters.BUDGET.used == 0
        server.close()

    asyncio.run(main())


def test_responses_held_past_the_process_budget_are_refused_not_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All held responses together are capped (`MAX_HELD_BYTES`, 3 KiB here): one that would
    pass it is answered 502 `response_too_large` (never sent on uninspected); within it, the
    same response passes."""
    monkeypatch.setattr(response_filters, "MAX_HELD_BYTES", 3 * 1024)

    async def scenario(gw: InProcGateway, upstream: Upstream) -> None:
        limit = {"x-response-limit": "8192"}
        client = gw.connect()
        client.send(get("/echo", limit, b"z" * 5000) + get("/echo", limit, b"z" * 2000))
        over, within = await client.responses(2)
        assert over.status == 502 and b"z" not in over.body
        assert (within.status, within.body) == (200, b"z" * 2000)
        metrics = gw.gateway.metrics
        assert metrics.policy_refused[("guarded", Refusal.RESPONSE_TOO_LARGE)] == 1
        assert response_filters.BUDGET.used == 0

    run(tmp_path, scenario)
