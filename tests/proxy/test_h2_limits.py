"""HTTP/2 limits and lifetimes the review found missing: upstream connections let go by a
stream read again, a client that never takes its responses is cut, small request bodies are
received whole before an upstream is taken and have a deadline, gateway answers waiting on
flow control send nothing upstream, a connection made while draining gets GOAWAY at once, and
limits.max_requests_per_connection counts streams."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from h2.settings import SettingCodes
from hpack import Decoder, Encoder
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.conftest import Backend
from tests.proxy import test_listener_tls
from tests.proxy.h2_client import H2Client, RawClient, frame
from tests.proxy.test_h2 import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PING,
    SETTINGS,
    port_of,
    refused,
)
from tests.proxy.test_listener_tls import Pki, tls_config

pki = test_listener_tls.pki  # the module-scoped certificate fixture, shared
REFUSED_STREAM = 0x7


def with_plain(backend: Backend, pki: Pki, tmp_path: Path) -> dict[str, Any]:
    """The TLS (h2) listener `public` and a plain HTTP/1.1 listener `plain` on one backend."""
    config = tls_config(backend, pki, tmp_path)
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    return config


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def backend_requests(backend: Backend) -> int:
    with urllib.request.urlopen(backend.url + "/stats", timeout=10) as response:
        return int(json.loads(response.read())["requests"]) - 1  # minus this one


def test_an_upstream_paused_for_a_stream_reads_again_once_pooled(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = with_plain(backend, pki, tmp_path)
    config["upstreams"]["backend"].update(read_timeout=3, retries=0, max_connections=1)
    gw = make_gateway(config)
    client = RawClient(port_of(gw), pki.ca)
    # 131072 bytes against a 65535-byte window: the gateway holds 65537 bytes, just past the
    # stream's 64 KiB cap, so the read that completes the response also pauses the upstream.
    client.send(
        frame(HEADERS, END_HEADERS | END_STREAM, 1, client.headers_block("/bytes?n=131072"))
    )
    got = 0

    def window_full(frames: list[Any]) -> bool:
        nonlocal got
        got += sum(len(f.data) for f in frames[-1:] if isinstance(f, DataFrame))
        return got >= 65535

    client.until(window_full)
    # The only upstream connection, pooled after that response: it must answer this one.
    assert status_of(gw.urls["plain"] + "/") == 200
    client.close()


def test_a_client_that_never_opens_its_window_is_cut(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"idle_timeout": 1}
    gw = make_gateway(config)
    client = RawClient(port_of(gw), pki.ca)
    window_zero = SettingCodes.INITIAL_WINDOW_SIZE.to_bytes(2, "big") + (0).to_bytes(4, "big")
    client.send(frame(SETTINGS, 0, 0, window_zero))
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, client.headers_block("/bytes?n=1000")))
    got = client.until(lambda fs: False)  # everything, until the gateway closes
    assert client.eof
    assert any(isinstance(f, HeadersFrame) for f in got)  # answered, the body never let out
    assert any(isinstance(f, GoAwayFrame) for f in got)
    assert refused(gw, "timeout") == 1


def test_a_client_that_does_not_read_its_responses_is_aborted_and_frees_its_slot(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["listeners"][0]["max_connections_per_ip"] = 1
    config["limits"] = {"idle_timeout": 1}
    gw = make_gateway(config)
    reader = RawClient(port_of(gw), pki.ca, receive_buffer=4096)
    big = 0x7FFFFFFF
    windows = SettingCodes.INITIAL_WINDOW_SIZE.to_bytes(2, "big") + big.to_bytes(4, "big")
    reader.send(frame(SETTINGS, 0, 0, windows))
    reader.send(frame(8, 0, 0, (big - 65535).to_bytes(4, "big")))  # connection WINDOW_UPDATE
    path = "/bytes?n=50000000"
    reader.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, reader.headers_block(path)))
    # Never read: the gateway's output waits in its write buffer. Its slot comes back only
    # once the gateway cuts (aborts) that connection.
    status = 0
    deadline = time.monotonic() + 30  # a bound for a hung gateway, not a timing assertion
    while status != 200 and time.monotonic() < deadline:
        try:
            fresh = H2Client(port_of(gw), pki.ca)
            status = fresh.get("/").status
            fresh.close()
        except (OSError, ssl.SSLError):
            time.sleep(0.2)  # refused by the per-address cap: the stalled one still holds it
    assert status == 200
    reader.close()


def test_a_small_body_is_received_before_an_upstream_is_taken_and_has_a_deadline(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = with_plain(backend, pki, tmp_path)
    config["limits"] = {"body_timeout": 1}
    config["upstreams"]["backend"].update(max_connections=1, connect_timeout=1)
    gw = make_gateway(config)
    client = RawClient(port_of(gw), pki.ca)

    def post(sid: int, length: int) -> bytes:
        headers = [(":method", "POST"), (":scheme", "https"), (":authority", "localhost")]
        headers += [(":path", "/echo"), ("content-length", str(length))]
        return frame(HEADERS, END_HEADERS, sid, client.encoder.encode(headers))

    client.send(post(1, 10))  # its body never comes
    # The stalled stream holds no upstream connection: the only one serves this.
    assert status_of(gw.urls["plain"] + "/") == 200
    # PINGs (a frame every so often) do not extend the body's deadline: 408 on that stream.
    got: list[Any] = []
    for i in range(100):  # bounded for a hung gateway; ends at the 408
        client.send(frame(PING, 0, 0, b"%08d" % i))
        got += client.frames(timeout=0.3)
        if any(isinstance(f, RstStreamFrame) for f in got):
            break
    decoder = Decoder()
    (head,) = [f for f in got if isinstance(f, HeadersFrame) and f.stream_id == 1]
    assert dict(decoder.decode(head.data, raw=True))[b":status"] == b"408"
    assert refused(gw, "timeout") == 1
    # The connection goes on: a small body sent whole goes upstream.
    client.send(post(3, 4) + frame(DATA, END_STREAM, 3, b"fits"))
    got = client.until(lambda fs: any("END_STREAM" in f.flags and f.stream_id == 3 for f in fs))
    (head,) = [f for f in got if isinstance(f, HeadersFrame) and f.stream_id == 3]
    assert dict(decoder.decode(head.data, raw=True))[b":status"] == b"200"
    assert b"".join(f.data for f in got if isinstance(f, DataFrame) and f.stream_id == 3) == b"fits"
    client.close()


def test_a_gateway_answer_waiting_on_flow_control_is_not_sent_upstream(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"max_request_body": 1000}
    config["upstreams"]["backend"].update(max_connections=1)
    gw = make_gateway(config)
    client = H2Client(port_of(gw), pki.ca)
    client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})  # answers' DATA waits
    client.flush()
    busy = client.start("/slow?s=1")  # holds the only upstream connection
    # Queued behind it, then refused (413) while queued: its answer's DATA cannot go yet.
    too_big = client.start("/echoes", "POST", end=False)
    client.send_body(too_big, b"x" * 1500, end=False)
    after = client.start("/after")  # takes the connection after `busy`, unless `too_big` did
    while client.responses[after].status == 0:
        client.pump()
    assert client.responses[after].status == 200
    assert backend_requests(backend) == 2  # /slow and /after; the refused POST never went
    client.conn.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 65535})
    client.flush()
    statuses = [r.status for r in client.wait(busy, too_big, after)]
    assert statuses == [200, 413, 200]
    client.close()


def test_a_connection_whose_handshake_ends_while_draining_gets_goaway(
    make_backend, make_gateway, pki, tmp_path
):
    backend = make_backend()
    gw = make_gateway(tls_config(backend, pki, tmp_path))
    raw = socket.create_connection(("127.0.0.1", port_of(gw)), timeout=15)  # accepted, no TLS yet
    time.sleep(0.3)  # accepted by the gateway before the reload (not a timing assertion)
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while "outwork: reloaded" not in gw.stderr():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    client = RawClient.__new__(RawClient)
    client.sock, client._buffer, client.eof = sock, b"", False
    client.encoder = Encoder()
    client.send(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0, b""))
    client.send(frame(HEADERS, END_HEADERS | END_STREAM, 1, client.headers_block("/")))
    got = client.until(lambda fs: False)
    goaways = [f for f in got if isinstance(f, GoAwayFrame)]
    assert [(f.error_code, f.last_stream_id) for f in goaways] == [(0, 0)]
    assert not [f for f in got if isinstance(f, HeadersFrame)]  # the request was not taken
    sock.close()


def test_max_requests_per_connection_counts_streams(make_backend, make_gateway, pki, tmp_path):
    backend = make_backend()
    config = tls_config(backend, pki, tmp_path)
    config["limits"] = {"max_requests_per_connection": 3}
    gw = make_gateway(config)
    client = RawClient(port_of(gw), pki.ca)
    sids = [1, 3, 5, 7, 9]
    client.send(
        b"".join(  # in one write: the gateway reads all five at once
            frame(
                HEADERS, END_HEADERS | END_STREAM, sid, client.headers_block(f"/slow?s=0.5&n={sid}")
            )
            for sid in sids
        )
    )
    got = client.until(lambda fs: False)  # everything, until the gateway closes
    assert client.eof
    goaways = [f for f in got if isinstance(f, GoAwayFrame)]
    assert [(f.error_code, f.last_stream_id) for f in goaways] == [(0, 5)]
    decoder = Decoder()
    statuses = {
        f.stream_id: dict(decoder.decode(f.data, raw=True))[b":status"]
        for f in got
        if isinstance(f, HeadersFrame)
    }
    assert statuses == {1: b"200", 3: b"200", 5: b"200"}  # the streams in flight, answered
    resets = {f.stream_id: f.error_code for f in got if isinstance(f, RstStreamFrame)}
    assert resets == {7: REFUSED_STREAM, 9: REFUSED_STREAM}  # past the last: sent again elsewhere
    fresh = H2Client(port_of(gw), pki.ca)
    assert fresh.get("/").status == 200
    fresh.close()
