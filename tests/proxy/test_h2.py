"""HTTP/2 in front (ALPN h2): real clients (curl, h2load, a raw `h2` client) through a running
gateway, each limit and flood defence hit with raw frames, the answers a user sees checked."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from h2.settings import SettingCodes
from hpack import Decoder
from hyperframe.frame import DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.conftest import Backend, Gateway, require_tool
from tests.proxy import test_listener_tls
from tests.proxy.h2_client import H2Client, RawClient, frame
from tests.proxy.test_listener_tls import Pki, read_lines, tls_config

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared

ENHANCE_YOUR_CALM = 0xB
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
DATA, HEADERS, RST_STREAM, SETTINGS, PING, CONTINUATION = 0, 1, 3, 4, 6, 9


def port_of(gw: Gateway) -> int:
    port = urlsplit(gw.urls["public"]).port
    assert port is not None
    return port


def h2_gateway(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
    **http2: Any,
) -> tuple[Gateway, Backend]:
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    # The test clients keep one connection for thousands of requests (h2's client takes the
    # GOAWAY that limits.max_requests_per_connection brings as the connection's end).
    config["limits"] = {"max_requests_per_connection": 10_000_000}
    if http2:
        config["http2"] = http2
    return make_gateway(config), backend


def refused(gw: Gateway, reason: str) -> int:
    return int(gw.metric("outwork_requests_refused_total", reason=reason))


def events(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / "events.jsonl"
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        found = [e for e in lines if e["event"] == name]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_requests_over_one_connection(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = H2Client(port_of(gw), pki.ca)
    sids = [client.start(f"/item/{i}") for i in range(20)]
    for i, response in enumerate(client.wait(*sids)):
        assert response.status == 200
        assert bytes(response.body) == f"GET /item/{i}\n".encode()
    client.close()


class Bystander:
    """A well-behaved client on its own connection, requesting all through an attack."""

    def __init__(self, gw: Gateway, ca: Path) -> None:
        self.client = H2Client(port_of(gw), ca)
        self.statuses: list[int] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.statuses.append(self.client.get("/").status)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join(30)
        assert self.error is None, self.error
        self.statuses.append(self.client.get("/").status)  # and still served after it
        self.client.close()
        return self.statuses


def assert_cut(gw: Gateway, tmp_path: Path, attacker: RawClient, attack: str, code: int) -> None:
    goaway = attacker.goaway()
    assert isinstance(goaway, GoAwayFrame), "no GOAWAY"
    assert goaway.error_code == code
    if not attacker.eof:
        attacker.frames(timeout=10)
    assert attacker.eof, "the connection stayed open"
    assert events(tmp_path, f"h2.{attack}"), f"no h2.{attack} security event"
    assert refused(gw, f"h2_{attack}") == 1


def test_rapid_reset_gets_goaway(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path, max_resets=100)
    bystander = Bystander(gw, pki.ca)
    attacker = RawClient(port_of(gw), pki.ca)
    burst = b""
    for i in range(500):
        sid = 2 * i + 1
        burst += frame(HEADERS, END_HEADERS, sid, attacker.headers_block("/slow?s=5"))
        burst += frame(RST_STREAM, 0, sid, (8).to_bytes(4, "big"))  # CANCEL
    attacker.send(burst)
    assert_cut(gw, tmp_path, attacker, "rapid_reset", ENHANCE_YOUR_CALM)
    statuses = bystander.stop()
    assert statuses and set(statuses) == {200}


def test_reset_stream_cancels_its_upstream_request(make_backend, make_gateway, pki, tmp_path):
    gw, backend = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = H2Client(port_of(gw), pki.ca)
    sid = client.start("/echo", "POST", end=False)  # the backend waits for the body's end
    client.send_body(sid, b"part of a body", end=False)
    stats_url = backend.url + "/stats"

    def backend_open() -> int:
        with urllib.request.urlopen(stats_url, timeout=10) as response:
            return int(json.loads(response.read())["open"]) - 1  # minus this /stats request

    deadline = time.monotonic() + 10
    while backend_open() < 1:
        assert time.monotonic() < deadline, "the request never reached the backend"
        time.sleep(0.05)
    client.conn.reset_stream(sid, 8)
    client.flush()
    while backend_open() != 0:
        assert time.monotonic() < deadline + 10, "the upstream request was not cancelled"
        time.sleep(0.05)
    assert client.get("/").status == 200  # the connection itself goes on
    client.close()


def test_continuation_flood_is_cut_before_the_block_ends(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    bystander = Bystander(gw, pki.ca)
    attacker = RawClient(port_of(gw), pki.ca)
    attacker.send(frame(HEADERS, 0, 1, attacker.headers_block()))
    junk = b"\x40\x03abc\x03def" * 1500  # literal headers, 16 KiB per frame, never ending
    for _ in range(5):  # 80 KiB > max_header_list_size (64 KiB); END_HEADERS never comes
        if not attacker.send(frame(CONTINUATION, 0, 1, junk[:16384])):
            break
    assert_cut(gw, tmp_path, attacker, "continuation_flood", ENHANCE_YOUR_CALM)
    assert set(bystander.stop()) == {200}


def test_empty_continuation_frames_are_cut(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    attacker = RawClient(port_of(gw), pki.ca)
    attacker.send(
        frame(HEADERS, 0, 1, attacker.headers_block()) + frame(CONTINUATION, 0, 1, b"") * 1000
    )
    assert_cut(gw, tmp_path, attacker, "continuation_flood", ENHANCE_YOUR_CALM)


@pytest.mark.parametrize(
    ("attack", "flood"),
    [
        ("settings_flood", frame(SETTINGS, 0, 0, b"") * 2000),
        ("ping_flood", frame(PING, 0, 0, b"12345678") * 2000),
        ("empty_frames_flood", b"EMPTY"),
    ],
)
def test_control_frame_floods_get_goaway(make_backend, make_gateway, pki, tmp_path, attack, flood):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    bystander = Bystander(gw, pki.ca)
    attacker = RawClient(port_of(gw), pki.ca)
    if flood == b"EMPTY":  # empty DATA frames on an open request stream
        flood = frame(HEADERS, END_HEADERS, 1, attacker.headers_block("/echo", "POST"))
        flood += frame(DATA, 0, 1, b"") * 2000
    attacker.send(flood)
    assert_cut(gw, tmp_path, attacker, attack, ENHANCE_YOUR_CALM)
    assert set(bystander.stop()) == {200}


def test_streams_beyond_the_limit_are_refused(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path, max_concurrent_streams=10)
    attacker = RawClient(port_of(gw), pki.ca)
    burst = b"".join(
        frame(HEADERS, END_HEADERS, 2 * i + 1, attacker.headers_block("/echo", "POST"))
        for i in range(11)  # bodies never sent: all stay open
    )
    attacker.send(burst)
    got = attacker.until(lambda fs: any(isinstance(f, RstStreamFrame) for f in fs))
    resets = [(f.stream_id, f.error_code) for f in got if isinstance(f, RstStreamFrame)]
    assert resets == [(21, REFUSED_STREAM)]
    # The ten accepted streams are answered once their bodies end.
    attacker.send(b"".join(frame(DATA, END_STREAM, 2 * i + 1, b"hi") for i in range(10)))

    def echoed(fs: list[Frame]) -> set[int]:
        return {f.stream_id for f in fs if isinstance(f, DataFrame) and f.data == b"hi"}

    got = attacker.until(lambda fs: len(echoed(fs)) == 10)
    assert echoed(got) == {2 * i + 1 for i in range(10)}
    assert not any(isinstance(f, GoAwayFrame) for f in got)
    assert refused(gw, "h2_refused_stream") == 1


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Upper", "1")],  # upper-case name
        [("connection", "keep-alive")],  # connection-specific
        [("transfer-encoding", "chunked")],
        [("te", "gzip")],  # te other than trailers
        [("x-bad", "a\x00b")],  # NUL in a value
        [("host", "other.test")],  # Host differing from :authority
    ],
)
def test_malformed_request_is_a_stream_error(make_backend, make_gateway, pki, tmp_path, headers):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = H2Client(port_of(gw), pki.ca)
    client.conn.config.validate_outbound_headers = False
    client.conn.config.normalize_outbound_headers = False
    bad = client.start("/", headers=headers)
    (response,) = client.wait(bad)
    assert response.status == 400
    assert client.get("/").status == 200  # only that stream failed; the connection goes on
    client.close()


def test_missing_and_repeated_pseudo_headers_are_refused(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    attacker = RawClient(port_of(gw), pki.ca)
    no_path = attacker.encoder.encode(
        [(":method", "GET"), (":scheme", "https"), (":authority", "localhost")]
    )
    twice = attacker.encoder.encode(
        [(":method", "GET"), (":method", "GET"), (":scheme", "https"), (":path", "/")]
    )
    attacker.send(
        frame(HEADERS, END_HEADERS | END_STREAM, 1, no_path)
        + frame(HEADERS, END_HEADERS | END_STREAM, 3, twice)
    )

    def bodies(fs: list[Frame]) -> dict[int, bytes]:
        return {f.stream_id: f.data for f in fs if isinstance(f, DataFrame) and f.data}

    got = attacker.until(lambda fs: len(bodies(fs)) == 2)
    assert {f.stream_id for f in got if isinstance(f, HeadersFrame)} == {1, 3}
    assert bodies(got) == {1: b"400 Bad Request\n", 3: b"400 Bad Request\n"}
    assert not any(isinstance(f, GoAwayFrame) for f in got)  # stream errors only


@pytest.mark.parametrize("data", [b"toolong", b"no"])
def test_content_length_not_matching_the_data_is_a_stream_error(
    make_backend, make_gateway, pki, tmp_path, data
):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = H2Client(port_of(gw), pki.ca)
    sid = client.start("/echoes", "POST", [("content-length", "3")], end=False)
    # Past h2's own check (it would close the whole connection): the raw frame.
    client.sock.sendall(frame(DATA, END_STREAM, sid, data))
    (response,) = client.wait(sid)
    assert response.status == 400
    assert client.get("/").status == 200  # the connection goes on
    client.close()


def test_gateway_errors_are_http2_responses(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["routes"] = [
        {"match": {"path_prefix": prefix}, "upstream": "backend"}
        for prefix in ("/reset", "/garbage", "/echo")
    ]
    config["limits"] = {"max_request_body": 1000}
    gw = make_gateway(config)
    client = H2Client(port_of(gw), pki.ca)
    (missing,) = client.wait(client.start("/nowhere"))
    assert (missing.status, bytes(missing.body)) == (404, b"404 Not Found\n")
    (reset,) = client.wait(client.start("/reset"))
    assert reset.status == 502
    (garbage,) = client.wait(client.start("/garbage"))
    assert garbage.status == 502
    declared = client.start("/echo", "POST", [("content-length", "5000")], end=False)
    (too_big,) = client.wait(declared)
    assert too_big.status == 413
    # No length: counted as it comes (the backend answers /echoes after the whole body).
    streamed = client.start("/echoes", "POST", end=False)
    client.send_body(streamed, b"x" * 1500, end=False)
    (too_big,) = client.wait(streamed)
    assert too_big.status == 413
    small = client.start("/echo", "POST", end=False)
    client.send_body(small, b"fits")
    (echoed,) = client.wait(small)
    assert (echoed.status, bytes(echoed.body)) == (200, b"fits")
    client.close()


def test_a_request_body_streams_with_flow_control(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = H2Client(port_of(gw), pki.ca)
    body = bytes(range(256)) * 8192  # 2 MiB: more than every window, so WINDOW_UPDATEs must flow
    sid = client.start("/echo", "POST", end=False)
    client.send_body(sid, body)
    (response,) = client.wait(sid)
    assert response.status == 200 and bytes(response.body) == body
    client.close()


def curl_h2(gw: Gateway, pki: Pki, path: str, *extra: str) -> subprocess.CompletedProcess[bytes]:
    port = port_of(gw)
    return subprocess.run(
        ["curl", "-sS", "--http2", "--cacert", str(pki.ca)]
        + ["--resolve", f"localhost:{port}:127.0.0.1", *extra, f"https://localhost:{port}{path}"],
        capture_output=True,
        timeout=60,
    )


def test_curl_http2_get_post_and_big_download(make_backend, make_gateway, pki, tmp_path):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    got = curl_h2(gw, pki, "/hello", "-w", "\\n%{http_version} %{http_code}")
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"GET /hello\n\n2 200"
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    posted = curl_h2(gw, pki, "/echo", "--data-binary", f"@{upload}", "-o", str(tmp_path / "echo"))
    assert posted.returncode == 0, posted.stderr
    assert (tmp_path / "echo").read_bytes() == upload.read_bytes()
    size = 64 * 1024 * 1024
    big = curl_h2(gw, pki, f"/bytes?n={size}", "-o", "/dev/null", "-w", "%{size_download}")
    assert big.returncode == 0, big.stderr
    assert int(big.stdout) == size
    lines = read_lines(tmp_path / "access.jsonl", 3)
    assert [(x["proto"], x["tls"]["alpn"], x["status"]) for x in lines] == [("h2", "h2", 200)] * 3
    assert lines[2]["bytes_sent"] > size


def test_h2load_many_streams(make_backend, make_gateway, pki, tmp_path):
    h2load = require_tool("h2load")
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    run = subprocess.run(
        [h2load, "-n", "2000", "-c", "4", "-m", "50", f"https://127.0.0.1:{port_of(gw)}/"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Application protocol: h2" in run.stdout, run.stdout
    assert re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded", run.stdout)
    assert re.search(r"status codes: 2000 2xx", run.stdout), run.stdout


def test_plain_listener_stays_http11_and_ignores_h2c(make_backend, make_gateway, tmp_path):
    backend = make_backend()
    from tests.conftest import gateway_config

    gw = make_gateway(gateway_config(backend.url))
    run = subprocess.run(
        ["curl", "-sS", "--http2", "-w", "\\n%{http_version}", gw.url + "/seen"],
        capture_output=True,
        timeout=20,
    )
    assert run.returncode == 0, run.stderr
    body, _, version = run.stdout.rpartition(b"\n")
    assert version == b"1.1"  # curl asked for Upgrade: h2c; the gateway did not act on it
    assert b"upgrade" not in body.lower() and b"http2-settings" not in body.lower()


def test_reload_sends_goaway_and_answers_the_streams_in_flight(
    make_backend, make_gateway, pki, tmp_path
):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = RawClient(port_of(gw), pki.ca)
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, client.headers_block("/slow?s=2")))
    gw.proc.send_signal(signal.SIGHUP)
    got = client.until(lambda fs: False)  # everything, until the gateway closes
    assert client.eof
    goaways = [f for f in got if isinstance(f, GoAwayFrame)]
    assert [(f.error_code, f.last_stream_id) for f in goaways] == [(0, 1)]  # NO_ERROR
    (head,) = [f for f in got if isinstance(f, HeadersFrame)]
    assert dict(Decoder().decode(head.data, raw=True))[b":status"] == b"200"
    body = [f for f in got if isinstance(f, DataFrame) and f.stream_id == 1]
    assert b"".join(f.data for f in body) == b"GET /slow\n" and "END_STREAM" in body[-1].flags
    assert not [f for f in got if isinstance(f, RstStreamFrame)]
    assert "outwork: reloaded" in gw.stderr()
    fresh = H2Client(port_of(gw), pki.ca)
    assert fresh.get("/").status == 200
    fresh.close()


def test_a_client_that_does_not_read_cannot_make_the_gateway_queue_output(
    make_backend, make_gateway, pki, tmp_path
):
    # Every PING asks for an ACK. A client that sends PINGs and reads nothing would make the
    # gateway's output grow without bound if the gateway kept reading; it stops reading
    # instead (once the kernel's buffers, up to a few MiB, are full), so the client's sends
    # stall long before this (large) PING budget is reached.
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path, max_pings=2_000_000)
    bystander = Bystander(gw, pki.ca)
    attacker = RawClient(port_of(gw), pki.ca, receive_buffer=4096)
    pings = frame(PING, 0, 0, b"12345678") * 1024
    attacker.sock.settimeout(10)
    sent = 0
    with pytest.raises(TimeoutError):  # not a reset: the gateway paused, it did not cut
        while sent < 200 * 1024 * 1024:
            attacker.sock.sendall(pings)
            sent += len(pings)
    assert refused(gw, "h2_ping_flood") == 0  # what was read stayed within the budget
    assert not events(tmp_path, "h2.ping_flood")
    attacker.close()
    assert set(bystander.stop()) == {200}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_responses_wait_for_the_client_window_with_bounded_memory(
    make_backend, make_gateway, pki, tmp_path
):
    gw, backend = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = H2Client(port_of(gw), pki.ca)
    client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})  # no DATA may come yet
    client.flush()
    before = rss_kib(gw.proc.pid)
    size = 4 * 1024 * 1024
    sids = [client.start(f"/bytes?n={size}") for _ in range(20)]  # 80 MiB waiting upstream

    def backend_requests() -> int:
        with urllib.request.urlopen(backend.url + "/stats", timeout=10) as response:
            return int(json.loads(response.read())["requests"]) - 1  # minus this one

    deadline = time.monotonic() + 30
    while backend_requests() < 20:  # every request went upstream
        assert time.monotonic() < deadline, backend_requests()
        time.sleep(0.05)
    peak = before
    for _ in range(20):  # the upstreams are read only as far as the caps allow
        peak = max(peak, rss_kib(gw.proc.pid))
        time.sleep(0.1)
    assert peak - before < 40 * 1024, (before, peak)
    client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1024 * 1024})
    client.conn.increment_flow_control_window(64 * 1024 * 1024)
    client.flush()
    for response in client.wait(*sids):
        assert response.status == 200 and len(response.body) == size
    client.close()


def test_idle_and_stalled_connections_time_out(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"idle_timeout": 1, "header_timeout": 1}
    gw = make_gateway(config)
    idle = RawClient(port_of(gw), pki.ca)
    # A header block that never ends (slowloris over HTTP/2): header_timeout applies.
    stalled = RawClient(port_of(gw), pki.ca)
    stalled.send(frame(HEADERS, 0, 1, stalled.headers_block()))
    for client in (idle, stalled):
        goaway = client.until(lambda fs: any(isinstance(f, GoAwayFrame) for f in fs))
        (frame_,) = [f for f in goaway if isinstance(f, GoAwayFrame)]
        assert frame_.error_code == 0
        client.until(lambda fs: False)
        assert client.eof
    assert refused(gw, "timeout") == 1  # the stalled request; an idle connection is no refusal


def test_a_client_that_half_closes_still_gets_its_answers(
    make_backend, make_gateway, pki, tmp_path
):
    gw, _ = h2_gateway(make_backend, make_gateway, pki, tmp_path)
    client = RawClient(port_of(gw), pki.ca)
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, client.headers_block("/slow?s=1")))
    # A TCP half-close (FIN, no close_notify) once the request is sent. (SSLSocket.shutdown
    # would drop the TLS session on our side; the plain socket's is what a client does.)
    socket.socket.shutdown(client.sock, socket.SHUT_WR)
    got = client.until(lambda fs: False)
    assert client.eof
    body = b"".join(f.data for f in got if isinstance(f, DataFrame) and f.stream_id == 1)
    assert body == b"GET /slow\n"


def test_pings_do_not_keep_an_idle_connection_open(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"idle_timeout": 2}
    gw = make_gateway(config)
    client = RawClient(port_of(gw), pki.ca)
    got: list[Frame] = []
    for _ in range(60):  # a PING every half second (within the budget), for up to 30 s
        client.send(frame(PING, 0, 0, b"stayhere"))
        got = client.frames(timeout=0.5)
        if any(isinstance(f, GoAwayFrame) for f in got):
            break
    assert any(isinstance(f, GoAwayFrame) and f.error_code == 0 for f in got)


def test_forwarded_headers_request_id_and_routes(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["routes"] = [
        {"match": {"path_prefix": "/only-get", "methods": ["GET"]}, "upstream": "backend"},
        {"match": {"path_prefix": "/seen"}, "upstream": "backend"},
    ]
    gw = make_gateway(config)
    client = H2Client(port_of(gw), pki.ca)
    sid = client.start(
        "/seen",
        headers=[
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-forwarded-for", "6.6.6.6"),  # not a trusted proxy: replaced
            ("x-request-id", "given-id-1"),
        ],
    )
    (seen,) = client.wait(sid)
    assert seen.status == 200
    h = seen.headers
    assert h[b"x-seen-host"] == b"localhost"  # from :authority
    assert h[b"x-seen-cookie"] == b"a=1; b=2"
    assert h[b"x-seen-x-forwarded-for"] == b"127.0.0.1"
    assert h[b"x-seen-x-forwarded-proto"] == b"https"
    assert h[b"x-seen-x-request-id"] == b"given-id-1"
    (refused_method,) = client.wait(client.start("/only-get", "POST"))
    assert refused_method.status == 405
    assert refused_method.headers[b"allow"].startswith(b"GET")
    assert refused_method.headers[b"x-request-id"]
    client.close()
