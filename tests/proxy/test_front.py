"""The HTTP/1.1 front as a client sees it: routing (host, path, method, default, 404/405), the
limits and the status each answers, forwarding headers, hop-by-hop removal and X-Request-Id.

A raw recording backend shows the exact head the gateway sent upstream (duplicates included).
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Backend, Gateway, gateway_config
from tests.proxy.test_gateway import connect, curl, read_all, status_of


class Recorder(socketserver.ThreadingTCPServer):
    """A backend that records each raw request head (bodies by Content-Length only) and answers
    200 with `response_headers` added."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, response_headers: bytes = b"") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.response_headers = response_headers
        self.heads: list[bytes] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def header_lines(self, index: int = -1) -> list[bytes]:
        return self.heads[index].split(b"\r\n")[1:]


class _Handler(socketserver.StreamRequestHandler):
    server: Recorder

    def handle(self) -> None:
        while True:
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                line = self.rfile.readline(65536)
                if not line:
                    return
                head += line
            self.server.heads.append(head)
            length = re.search(rb"\r\ncontent-length: *(\d+)", head.lower())
            if length:
                self.rfile.read(int(length.group(1)))
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\n"
                + self.server.response_headers
                + b"content-length: 2\r\n\r\nok"
            )


@pytest.fixture
def make_recorder() -> Iterator[Callable[..., Recorder]]:
    started: list[Recorder] = []

    def make(response_headers: bytes = b"") -> Recorder:
        server = Recorder(response_headers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.shutdown()
        server.server_close()


def response_heads(data: bytes) -> list[bytes]:
    return [part.split(b"\r\n\r\n")[0] for part in data.split(b"HTTP/1.1 ")[1:]]


def header(head: bytes, name: bytes) -> list[bytes]:
    """The values of a header in a head (every line, in order)."""
    prefix = name.lower() + b":"
    return [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(prefix)
    ]


# Routing


@pytest.fixture
def routed(make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]) -> Gateway:
    backends = {name: make_backend(name) for name in ("api", "wild", "root", "writes", "dflt")}
    config = gateway_config(
        backends["root"].url,
        routes=[
            {"match": {"path_prefix": "/"}, "upstream": "root", "name": "root"},
            {"match": {"host": "*.example.com"}, "upstream": "wild"},
            {"match": {"host": "API.example.com", "path_prefix": "/v1"}, "upstream": "api"},
            {
                "match": {"path_prefix": "/orders", "methods": ["POST", "PUT"]},
                "upstream": "writes",
                "name": "orders-write",
            },
            {"match": {"path": "/only-get", "methods": ["GET"]}, "upstream": "root"},
        ],
        upstreams={name: {"targets": [b.url]} for name, b in backends.items()},
    )
    return make_gateway(config)


def served_by(gw: Gateway, path: str, host: str = "h", method: str = "GET") -> str:
    result = curl("-i", "-X", method, "-H", f"Host: {host}", gw.url + path)
    head = result.stdout.split(b"\r\n\r\n")[0]
    if not head.startswith(b"HTTP/1.1 200"):
        return head.split(b"\r\n")[0].decode()
    return header(head, b"x-backend")[0].decode()


def test_routes_match_on_host_path_and_method(routed: Gateway) -> None:
    assert served_by(routed, "/v1/users", "api.example.com:8080") == "api"
    assert served_by(routed, "/v1/users", "Api.Example.Com") == "api"
    assert served_by(routed, "/v2/users", "api.example.com") == "wild"  # exact host, no path
    assert served_by(routed, "/v1/users", "www.example.com") == "wild"
    assert served_by(routed, "/v1/users", "example.com") == "root"
    assert served_by(routed, "/orders/7", method="POST") == "writes"
    assert served_by(routed, "/orders/7", method="GET") == "root"  # methods: falls back


def test_405_and_404_without_a_catch_all(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(
        gateway_config(
            backend.url,
            routes=[
                {
                    "match": {"path_prefix": "/api", "methods": ["GET", "POST"]},
                    "upstream": "backend",
                }
            ],
        )
    )
    sock = connect(gw.url)
    sock.sendall(
        b"DELETE /api/x HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n"
        b"GET /api/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    heads = response_heads(read_all(sock))
    assert [h[:3] for h in heads] == [b"405", b"404", b"200"]  # the connection stays usable
    assert header(heads[0], b"allow") == [b"GET, HEAD, POST"]
    assert header(heads[1], b"allow") == []


def test_default_route_catches_the_rest(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    a, fallback = make_backend("a"), make_backend("fallback")
    gw = make_gateway(
        gateway_config(
            a.url,
            routes=[
                {"match": {"path_prefix": "/a", "methods": ["GET"]}, "upstream": "a"},
                {"default": True, "upstream": "fallback"},
            ],
            upstreams={"a": {"targets": [a.url]}, "fallback": {"targets": [fallback.url]}},
        )
    )
    assert served_by(gw, "/a/1") == "a"
    assert served_by(gw, "/a/1", method="POST") == "fallback"
    assert served_by(gw, "/zzz") == "fallback"


# Limits


def test_route_max_body_size_is_413(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway], tmp_path: Path
) -> None:
    backend = make_backend()
    gw = make_gateway(
        gateway_config(
            backend.url,
            routes=[
                {"match": {"path_prefix": "/"}, "upstream": "backend", "max_body_size": "1KiB"},
                {"match": {"path_prefix": "/big"}, "upstream": "backend", "max_body_size": "1MiB"},
            ],
            limits={"max_request_body": 100},
        )
    )
    assert status_of(gw.url + "/echo", "--data-binary", "x" * 1024) == 200
    assert status_of(gw.url + "/echo", "--data-binary", "x" * 1025) == 413
    big = tmp_path / "big"
    big.write_bytes(b"x" * 500_000)
    assert status_of(gw.url + "/big/echo", "--data-binary", f"@{big}") == 200
    sock = connect(gw.url)
    sock.sendall(
        # /upload: the backend reads the whole body before it answers, so the 413 comes first.
        b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"400\r\n" + b"x" * 1024 + b"\r\n1\r\nx\r\n0\r\n\r\n"
    )
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 413 Content Too Large\r\n")


def test_long_request_target_is_414(gateway: Gateway) -> None:
    sock = connect(gateway.url)
    sock.sendall(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n")
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 414 URI Too Long\r\n")
    assert status_of(gateway.url + "/" + "a" * 8000) == 200  # within 8 KiB


def test_too_many_header_fields_is_431(gateway: Gateway) -> None:
    """The default cap is 100 fields (Host included)."""
    fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(99))
    sock = connect(gateway.url)
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")  # 100 fields
    sock.sendall(b"GET /no HTTP/1.1\r\nHost: h\r\nX-Extra: 1\r\n" + fields + b"\r\n")  # 101
    heads = response_heads(read_all(sock))
    assert [h[:3] for h in heads] == [b"200", b"431"]
    assert header(heads[1], b"connection") == [b"close"]


def test_stalled_body_is_408(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(gateway_config(backend.url, limits={"body_timeout": 0.5}))
    sock = connect(gw.url)
    sock.sendall(b"POST /slow?s=0 HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    response = read_all(sock)
    assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in response.lower()


def test_idle_keep_alive_connection_is_closed(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(gateway_config(backend.url, limits={"idle_timeout": 0.5}))
    sock = connect(gw.url)
    sock.sendall(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n")
    response = read_all(sock)  # the answer, then a close without a 408
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"GET /1\n")


def test_max_requests_per_connection(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    backend = make_backend()
    gw = make_gateway(gateway_config(backend.url, limits={"max_requests_per_connection": 3}))
    sock = connect(gw.url)
    sock.sendall(b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(5)))
    heads = response_heads(read_all(sock))
    assert len(heads) == 3
    assert [header(h, b"connection") for h in heads] == [[], [], [b"close"]]


# Forwarding headers


def forwarding(lines: list[bytes]) -> dict[bytes, list[bytes]]:
    result: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        if name.lower() in (
            b"x-forwarded-for",
            b"x-forwarded-proto",
            b"x-forwarded-host",
            b"forwarded",
            b"x-real-ip",
        ):
            result.setdefault(name.lower(), []).append(value.strip())
    return result


CLIENT_CLAIMS = (
    b"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: evil.example\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n"
)


def test_client_forwarding_headers_are_replaced(
    make_recorder: Callable[..., Recorder], make_gateway: Callable[..., Gateway]
) -> None:
    recorder = make_recorder()
    gw = make_gateway(gateway_config(recorder.url))
    sock = connect(gw.url)
    port = sock.getsockname()[1]
    sock.sendall(
        b"GET / HTTP/1.1\r\nHost: Shop.example:8080\r\n"
        + CLIENT_CLAIMS
        + b"Connection: close\r\n\r\n"
    )
    assert read_all(sock).startswith(b"HTTP/1.1 200 ")
    assert forwarding(recorder.header_lines()) == {
        b"x-forwarded-for": [b"127.0.0.1"],
        b"x-forwarded-proto": [b"http"],
        b"x-forwarded-host": [b"Shop.example:8080"],
        b"forwarded": [b'for="127.0.0.1:%d";proto=http;host="Shop.example:8080"' % port],
    }


def test_trusted_proxy_chain_is_appended(
    make_recorder: Callable[..., Recorder], make_gateway: Callable[..., Gateway]
) -> None:
    recorder = make_recorder()
    gw = make_gateway(gateway_config(recorder.url, trusted_proxies=["10.0.0.0/8", "127.0.0.1"]))
    sock = connect(gw.url)
    port = sock.getsockname()[1]
    sock.sendall(b"GET / HTTP/1.1\r\nHost: shop\r\n" + CLIENT_CLAIMS + b"\r\n")
    sock.sendall(b"GET / HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
    assert len(response_heads(read_all(sock))) == 2
    assert forwarding(recorder.header_lines(0)) == {
        b"x-forwarded-for": [b"6.6.6.6, 7.7.7.7, 127.0.0.1"],
        b"x-forwarded-proto": [b"https"],
        b"x-forwarded-host": [b"evil.example"],
        b"forwarded": [b'for=6.6.6.6, for="127.0.0.1:%d";proto=http;host=shop' % port],
    }
    # The same trusted peer without claims of its own: the gateway's values.
    assert forwarding(recorder.header_lines(1))[b"x-forwarded-for"] == [b"127.0.0.1"]


def test_forwarded_quotes_an_ipv6_peer(
    make_recorder: Callable[..., Recorder], make_gateway: Callable[..., Gateway]
) -> None:
    recorder = make_recorder()
    config = gateway_config(recorder.url, listeners=[{"name": "v6", "bind": "[::1]:0"}])
    gw = make_gateway(config)
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("::1", port), timeout=10) as sock:
        client_port = sock.getsockname()[1]
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")
    fwd = forwarding(recorder.header_lines())
    assert fwd[b"x-forwarded-for"] == [b"::1"]
    assert fwd[b"forwarded"] == [b'for="[::1]:%d";proto=http;host=h' % client_port]


def test_hop_by_hop_and_upgrade_removed_both_ways(
    make_recorder: Callable[..., Recorder], make_gateway: Callable[..., Gateway]
) -> None:
    recorder = make_recorder(
        b"Connection: x-internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\n"
        b"Upgrade: h2c\r\nProxy-Connection: keep-alive\r\nX-Kept: 1\r\n"
    )
    gw = make_gateway(gateway_config(recorder.url))
    # What curl sends for `--http2` on an http:// URL: an h2c upgrade, never forwarded.
    result = curl("-i", "--http2", "-H", "X-Mine: 1", gw.url + "/")
    assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")  # answered as HTTP/1.1
    sent = b"\r\n".join(recorder.header_lines()).lower()
    assert b"upgrade" not in sent and b"http2-settings" not in sent and b"x-mine: 1" in sent
    assert b"connection:" not in sent
    got = result.stdout.split(b"\r\n\r\n")[0].lower()
    for name in (b"connection:", b"x-internal", b"keep-alive", b"upgrade", b"proxy-connection"):
        assert name not in got
    assert b"x-kept: 1" in got


# X-Request-Id


def test_request_id_kept_when_sane_else_generated_and_logged(
    make_recorder: Callable[..., Recorder], make_gateway: Callable[..., Gateway]
) -> None:
    recorder = make_recorder(b"X-Request-Id: from-the-backend\r\n")
    config = gateway_config(recorder.url, logging={"access_log": "access.jsonl"})
    gw = make_gateway(config)
    sock = connect(gw.url)
    sock.sendall(
        b"GET /1 HTTP/1.1\r\nHost: h\r\nX-Request-Id: abc-123\r\n\r\n"
        b"GET /2 HTTP/1.1\r\nHost: h\r\nX-Request-Id: " + b"x" * 200 + b"\r\n\r\n"
        b'GET /3 HTTP/1.1\r\nHost: h\r\nX-Request-Id: a"b\r\n\r\n'
        b"GET /4 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    )
    heads = response_heads(read_all(sock))
    ids = [header(h, b"x-request-id") for h in heads]
    assert all(len(i) == 1 for i in ids)  # one line: the backend's own is replaced
    ids_flat = [i[0] for i in ids]
    assert ids_flat[0] == b"abc-123"
    generated = ids_flat[1:]
    assert all(re.fullmatch(rb"[0-9a-f]{12}-[0-9a-f]+", i) for i in generated)
    assert len(set(generated)) == 3
    sent = [header(h, b"x-request-id") for h in recorder.heads]
    assert sent == [[i] for i in ids_flat]  # the backend got the same ids
    gw.stop()
    lines = (Path(gw.config_file).parent / "access.jsonl").read_text().splitlines()
    assert [json.loads(line)["request_id"].encode() for line in lines] == ids_flat


def test_gateway_answers_carry_a_request_id(gateway: Gateway) -> None:
    result = curl("-i", "-H", "X-Request-Id: mine-1", gateway.url + "/" + "a" * 9000)
    head = result.stdout.split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 414 ") and header(head, b"x-request-id")
    sock = connect(gateway.url)
    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400, with an id of its own
    assert header(read_all(sock).split(b"\r\n\r\n")[0], b"x-request-id")
