"""HTTP/2 hardening: per-route body limits and a real 413, the HPACK encoder's table clamped,
one header field capped (HTTP/1.1 too), x-request-id on responses, and streams that stall their
upstream connections (window updates of a byte) released and capped."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from h2.exceptions import StreamClosedError
from h2.settings import SettingCodes
from hpack import Decoder
from hyperframe.frame import HeadersFrame, RstStreamFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.front.h2 import _ClampedEncoder
from tests.proxy import test_listener_tls
from tests.proxy.h2_client import H2Client, RawClient, frame
from tests.proxy.test_h2 import (
    END_HEADERS,
    END_STREAM,
    HEADERS,
    curl_h2,
    events,
    port_of,
    refused,
)
from tests.proxy.test_h2_limits import status_of
from tests.proxy.test_listener_tls import tls_config

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared


def test_a_route_body_limit_above_the_global_one_holds_over_http2_and_413_is_a_response(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"max_request_body": 1000}
    config["http2"] = {"max_discarded_body": "300KB"}
    config["routes"] = [
        {"match": {"path_prefix": "/big"}, "upstream": "backend", "max_body_size": 100_000},
        {"match": {"path_prefix": "/"}, "upstream": "backend"},
    ]
    gw = make_gateway(config)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(b"x" * 50_000)  # above limits.max_request_body, within the route's
    got = curl_h2(
        gw,
        pki,
        "/big/echo",
        "--data-binary",
        f"@{upload}",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"2 200"
    upload.write_bytes(b"x" * 200_000)  # above the route's: a 413 curl can print
    got = curl_h2(
        gw,
        pki,
        "/big/echo",
        "--data-binary",
        f"@{upload}",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    )
    assert got.stdout == b"2 413", got.stderr
    got = curl_h2(
        gw,
        pki,
        "/echo",
        "--data-binary",
        f"@{upload}",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
    )
    assert got.stdout == b"2 413", got.stderr
    assert refused(gw, "413") == 2
    # A client that goes on sending after the answer: dropped up to http2.max_discarded_body,
    # then RST_STREAM NO_ERROR (RFC 9113 8.1); the connection and its other streams go on.
    client = H2Client(port_of(gw), pki.ca)
    sid = client.start("/echo", "POST", [("content-length", "200000")], end=False)
    (answer,) = client.wait(sid)
    assert answer.status == 413 and answer.reset is None
    sent = 0
    while answer.reset is None and sent < 1_000_000:
        try:
            window = client.conn.local_flow_control_window(sid)
            if window < 16384:
                client.pump()  # the gateway's WINDOW_UPDATEs, then its reset
                continue
            client.conn.send_data(sid, b"x" * 16384)
            client.flush()
            sent += 16384
        except StreamClosedError:
            client.pump()  # closed by the reset, which the next read brings
    assert 300_000 <= sent < 1_000_000
    assert answer.reset == 0  # NO_ERROR
    assert client.get("/hello").status == 200
    client.close()


def test_http2_responses_carry_x_request_id(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    gw = make_gateway(tls_config(backend, pki, tmp_path))
    client = H2Client(port_of(gw), pki.ca)
    sid = client.start("/hello", headers=[("x-request-id", "abc-123")])
    (mine,) = client.wait(sid)
    assert mine.status == 200 and mine.headers[b"x-request-id"] == b"abc-123"
    made = client.get("/hello")
    assert made.status == 200 and len(made.headers[b"x-request-id"]) > 8
    client.close()
    got = curl_h2(gw, pki, "/hello", "-D", "-", "-o", "/dev/null")
    lines = [x for x in got.stdout.split(b"\r\n") if x.startswith(b"x-request-id:")]
    assert len(lines) == 1  # one, the gateway's (the upstream's own is replaced)


def test_the_response_header_table_stays_within_4_KiB_whatever_the_client_allows(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    gw = make_gateway(tls_config(backend, pki, tmp_path))
    client = H2Client(port_of(gw), pki.ca)
    client.conn.update_settings({SettingCodes.HEADER_TABLE_SIZE: 2**31 - 1})
    client.flush()
    for n in range(12):
        # The backend returns each request header as x-seen-*: 3000 new bytes per response
        # the gateway's encoder could index.
        sid = client.start("/hello", headers=[("x-pad", f"{n:04d}" + "p" * 3000)])
        (response,) = client.wait(sid)
        assert response.status == 200 and len(response.headers[b"x-seen-x-pad"]) == 3004
    # The client's decoder mirrors the gateway's encoder table.
    assert client.conn.decoder.header_table._current_size <= 4096
    client.close()


def test_one_header_field_is_capped_after_hpack_and_on_http1(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    config["limits"] = {"max_header_field": 1024}
    gw = make_gateway(config)
    # A few bytes on the wire: the same 300-byte cookie crumb, indexed once, then referenced;
    # joined into one cookie line upstream it is far above the cap.
    raw = RawClient(port_of(gw), pki.ca)
    crumb = ("cookie", "c" * 300)
    block = raw.encoder.encode(
        [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")]
        + [crumb] * 20
    )
    assert len(block) < 400
    raw.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
    got = raw.until(lambda fs: any(isinstance(f, HeadersFrame) for f in fs))
    head = next(f for f in got if isinstance(f, HeadersFrame))
    assert dict(Decoder().decode(head.data, raw=True))[b":status"] == b"431"
    raw.close()
    client = H2Client(port_of(gw), pki.ca)
    big = client.wait(client.start("/", headers=[("x-big", "v" * 1100)]))[0]
    fits = client.wait(client.start("/", headers=[("x-big", "v" * 1000)]))[0]
    assert (big.status, fits.status) == (431, 200)
    client.close()
    # HTTP/1.1: the same cap, the same answer.
    plain = urlsplit(gw.urls["plain"])
    for size, status in ((1100, b"431"), (1000, b"200")):
        with socket.create_connection((plain.hostname, plain.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * size + b"\r\n\r\n")
            assert sock.recv(100).split(b" ")[1] == status
    assert refused(gw, "431") == 3


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=5),
    st.lists(
        st.tuples(st.sampled_from(["x-a", "x-b", "set-cookie"]), st.text(max_size=3000)),
        max_size=10,
    ),
)
def test_the_clamped_encoder_never_grows_past_its_cap_and_decodes(
    sizes: list[int], headers: list[tuple[str, str]]
) -> None:
    encoder = _ClampedEncoder(4096)
    decoder = Decoder(max_header_list_size=2**31)
    for size in sizes:  # SETTINGS_HEADER_TABLE_SIZE from the client, any number of times
        encoder.header_table_size = size
        decoder.max_allowed_table_size = max(size, 4096)
        block = encoder.encode([(":status", "200"), *headers])
        assert decoder.decode(block) == [(":status", "200"), *headers]
        assert encoder.header_table_size <= 4096
        assert encoder.header_table._current_size <= 4096


WINDOW_UPDATE = 0x8
ENHANCE_YOUR_CALM = 0xB


def open_big_streams(client: RawClient, count: int, resets: dict[Any, int]) -> list[int]:
    """Streams for responses far larger than any window: the gateway holds what the windows
    do not let out, and pauses each stream's upstream connection."""
    sids = [1 + 2 * n for n in range(count)]
    for sid in sids:
        block = client.headers_block("/bytes?n=50000000")
        client.send(frame(HEADERS, END_HEADERS | END_STREAM, sid, block))
    heads: set[int] = set()

    def all_answered(frames: list[Any]) -> bool:
        heads.update(f.stream_id for f in frames if isinstance(f, HeadersFrame))
        return heads >= set(sids)

    note_resets(client, client.until(all_answered), resets)
    return sids


def note_resets(client: RawClient, frames: list[Any], resets: dict[Any, int]) -> None:
    for f in frames:
        if isinstance(f, RstStreamFrame):
            resets[(id(client), f.stream_id)] = f.error_code


def trickle(clients: list[tuple[RawClient, list[int]]], resets: dict[Any, int], want: int) -> None:
    """The attack: a 1-byte WINDOW_UPDATE for every stream (and connection) now and then,
    until `want` streams were reset by the gateway (or a bound for a hung gateway)."""
    deadline = time.monotonic() + 25
    one = (1).to_bytes(4, "big")
    while len(resets) < want and time.monotonic() < deadline:
        for client, sids in clients:
            for sid in sids:
                if (id(client), sid) not in resets:
                    client.send(frame(WINDOW_UPDATE, 0, sid, one))
            client.send(frame(WINDOW_UPDATE, 0, 0, one))
            note_resets(client, client.frames(timeout=0.2), resets)


def backend_open(backend: Any) -> int:
    with urllib.request.urlopen(backend.url + "/stats", timeout=10) as response:
        return int(json.loads(response.read())["open"]) - 1  # minus this one


def test_streams_that_stall_their_upstreams_are_reset_and_release_them(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    # A pool of 3, all taken by the attacker; another client's request waits for one.
    config["upstreams"]["backend"].update(max_connections=3, connect_timeout=30, retries=0)
    config["http2"] = {"stall_timeout": "1s"}
    gw = make_gateway(config)
    attacker = RawClient(port_of(gw), pki.ca)
    resets: dict[Any, int] = {}
    sids = open_big_streams(attacker, 3, resets)
    statuses: list[int] = []
    victim = threading.Thread(target=lambda: statuses.append(status_of(gw.urls["plain"] + "/")))
    victim.start()
    trickle([(attacker, sids)], resets, 3)
    victim.join(60)
    assert statuses == [200]
    assert sorted(resets.values()) == [ENHANCE_YOUR_CALM] * 3
    assert refused(gw, "h2_stalled_stream") == 3
    found = events(tmp_path, "h2.stalled_stream")
    assert [e["detail"]["reason"] for e in found] == ["timeout"] * 3
    # The three paused upstream connections were closed: the backend sees at most the
    # victim's, pooled.
    deadline = time.monotonic() + 20
    while backend_open(backend) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend_open(backend) <= 1
    attacker.close()


def test_paused_upstreams_are_capped_per_connection_and_per_address(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["http2"] = {"stall_timeout": "60s", "max_paused_upstreams": 2}
    config["limits"] = {"max_paused_upstreams_per_address": 3}
    gw = make_gateway(config)
    first = RawClient(port_of(gw), pki.ca)
    resets: dict[Any, int] = {}
    first_sids = open_big_streams(first, 3, resets)
    trickle([(first, first_sids)], resets, 1)  # the third paused one, over the connection cap
    second = RawClient(port_of(gw), pki.ca)
    second_sids = open_big_streams(second, 2, resets)
    trickle([(first, first_sids), (second, second_sids)], resets, 2)  # over the address cap
    assert list(resets.values()) == [ENHANCE_YOUR_CALM] * 2
    assert {id(first), id(second)} == {client for client, _ in resets}
    reasons = [e["detail"]["reason"] for e in events(tmp_path, "h2.stalled_stream")]
    assert reasons == ["connection_cap", "address_cap"]
    # The streams within the caps go on; the connections too.
    client = H2Client(port_of(gw), pki.ca)
    assert client.get("/").status == 200
    client.close()
    first.close()
    second.close()


def test_an_http1_client_reading_a_byte_at_a_time_releases_its_upstream(
    make_backend, make_gateway, pki, tmp_path
):
    # HTTP/1.1 holds one upstream connection per client connection; the same trickle (TCP
    # reads of a byte, the kernel's window updates) does not let writing resume, so the
    # client is cut after limits.idle_timeout and its upstream connection closed.
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    config["limits"] = {"idle_timeout": 2}
    config["upstreams"]["backend"].update(max_connections=1, connect_timeout=30, retries=0)
    gw = make_gateway(config)
    plain = urlsplit(gw.urls["plain"])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((plain.hostname, plain.port))
    sock.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    statuses: list[int] = []
    victim = threading.Thread(target=lambda: statuses.append(status_of(gw.urls["plain"] + "/")))
    victim.start()
    deadline = time.monotonic() + 30  # a bound for a hung gateway
    sock.settimeout(0.2)
    try:
        while victim.is_alive() and time.monotonic() < deadline:
            try:
                if not sock.recv(1):
                    break
            except TimeoutError:
                pass
            except OSError:
                break  # cut by the gateway
            time.sleep(0.1)
    finally:
        sock.close()
    victim.join(30)
    assert statuses == [200]


def test_http1_clients_leaving_upstreams_paused_are_capped_per_address(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    config["limits"] = {"max_paused_upstreams_per_address": 2}
    gw = make_gateway(config)
    plain = urlsplit(gw.urls["plain"])
    readers = []
    for n in range(3):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((plain.hostname, plain.port))
        sock.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")  # never read
        readers.append(sock)
        if n < 2:  # the first two pause their upstreams before the third comes
            deadline = time.monotonic() + 20
            while backend_open(backend) < n + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
    deadline = time.monotonic() + 30  # a bound for a hung gateway
    while refused(gw, "paused_upstreams_per_address") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused(gw, "paused_upstreams_per_address") == 1
    assert [e["detail"] for e in events(tmp_path, "conn.stalled_upstream")] == [{"limit": 2}]
    # The third was cut, its upstream connection closed; the first two stay.
    deadline = time.monotonic() + 20
    while backend_open(backend) > 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend_open(backend) == 2
    assert gw.metric("outwork_connections_active") == 2
    for sock in readers:
        sock.close()


def test_bodies_held_for_streams_answered_early_give_their_window_back(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"body_timeout": 1}
    gw = make_gateway(config)
    client = H2Client(port_of(gw), pki.ca)
    # Small bodies are held (unacknowledged) until whole; these never end: 408, and their
    # rest is dropped. Together more than the 1 MiB connection window.
    for _ in range(3):
        sids = []
        for _ in range(8):
            sid = client.start("/echo", "POST", [("content-length", "60000")], end=False)
            client.send_body(sid, b"x" * 50_000, end=False)
            sids.append(sid)
        assert [r.status for r in client.wait(*sids)] == [408] * 8
    body = b"y" * (2 * 1024 * 1024)
    sid = client.start("/echo", "POST", end=False)
    client.send_body(sid, body)
    (echoed,) = client.wait(sid)
    assert echoed.status == 200 and bytes(echoed.body) == body
    client.close()
