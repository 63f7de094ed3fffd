"""Routes a backend cannot walk around: two real backends, `/admin` (prefix) and `/secret`
(exact) on one, a default route on the other. Every spelling of those paths that some server
(nginx, Node, Spring) would serve as its /admin or /secret either reaches the private backend,
which receives exactly the normalised path, or is refused with 400 and reaches nobody; over
HTTP/1.1 and HTTP/2 alike. Host and :authority that are not host[:port] are 400."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Gateway
from tests.proxy import test_listener_tls
from tests.proxy.h2_client import H2Client, Response
from tests.proxy.test_front import Recorder, make_recorder, read_all
from tests.proxy.test_listener_tls import Pki, tls_config
from tests.proxy.test_upstream_tls import start_nginx

pki = test_listener_tls.pki
__all__ = ["make_recorder", "pki"]  # fixtures used by name

# (what the client sends, what the private backend must receive; None: 400, nobody receives it)
BYPASSES: list[tuple[str, str | None]] = [
    ("/admin", "/admin"),
    ("/admin/users?id=1", "/admin/users?id=1"),
    ("/%61dmin", "/admin"),
    ("/%41dmin", "/Admin"),  # routes fold case (Express serves /Admin as /admin)
    ("/ADMIN/x", "/ADMIN/x"),
    ("/SeCrEt", "/SeCrEt"),
    ("//admin", "/admin"),
    ("///admin//users", "/admin/users"),
    ("/public/../admin", "/admin"),
    ("/public/%2e%2e/admin", "/admin"),
    ("/public/.%2E/admin?x=/../y", "/admin?x=/../y"),
    ("/public/..%2fadmin", None),
    ("/public%2f..%2fadmin", None),
    ("/public%2F..%2Fadmin", None),
    ("/public/..%5cadmin", None),
    ("/public\\..\\admin", None),
    ("/secre%74", "/secret"),
    ("/./secret", "/secret"),
    ("/secret;jsessionid=1", "/secret;jsessionid=1"),  # Tomcat serves it as /secret
    ("/public/..;/admin", None),  # Tomcat reads `..;` as `..`
    ("/%2e%2e/admin", "/admin"),
    ("/admin%00", None),
    ("/%C0%AE%C0%AE/admin", None),  # overlong UTF-8 dots
    ("/admin%", None),
]
# What the default backend sees for a case above that is not the private route.
TO_DEFAULT: dict[str, str] = {}


def routing_config(private: Recorder, public: Recorder, pki: Pki, tmp_path: Path) -> dict:
    config = tls_config(private, pki, tmp_path)  # type: ignore[arg-type]  # only .url is used
    config["listeners"].append({"name": "plain", "bind": "127.0.0.1:0"})
    config["routes"] = [
        {"match": {"path_prefix": "/admin"}, "upstream": "private", "name": "admin"},
        {"match": {"path": "/secret"}, "upstream": "private", "name": "secret"},
        {"default": True, "upstream": "public", "name": "rest"},
    ]
    config["upstreams"] = {
        "private": {"targets": [private.url]},
        "public": {"targets": [public.url]},
    }
    return config


@pytest.fixture
def routed(
    make_recorder: Callable[..., Recorder],
    make_gateway: Callable[..., Gateway],
    pki: Pki,
    tmp_path: Path,
) -> tuple[Gateway, Recorder, Recorder]:
    private = make_recorder(b"x-backend: private\r\n")
    public = make_recorder(b"x-backend: public\r\n")
    return make_gateway(routing_config(private, public, pki, tmp_path)), private, public


def _target(head: bytes) -> str:
    return head.split(b"\r\n", 1)[0].split(b" ")[1].decode()


def h1(gw: Gateway, target: str, host: bytes = b"localhost") -> int:
    parts = urlsplit(gw.urls["plain"])
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    response = read_all(sock)
    sock.close()
    return int(response.split(b" ", 2)[1])


def check(
    send: Callable[[str], int],
    private: Recorder,
    public: Recorder,
    cases: list[tuple[str, str | None]],
) -> list[str]:
    """Each case through `send`; the list of what went wrong (empty: all good)."""
    wrong = []
    for sent, expected in cases:
        private.heads.clear()
        public.heads.clear()
        status = send(sent)
        got_private = [_target(h) for h in private.heads]
        got_public = [_target(h) for h in public.heads]
        if expected is not None:
            ok = status == 200 and got_private == [expected] and not got_public
        elif sent in TO_DEFAULT:
            ok = status == 200 and got_public == [TO_DEFAULT[sent]] and not got_private
        else:
            ok = status == 400 and not got_private and not got_public
        if not ok:
            wrong.append(f"{sent!r}: {status}, private {got_private}, public {got_public}")
    return wrong


def test_http11_bypass_forms_reach_the_route_or_400(routed) -> None:
    gw, private, public = routed
    cases = BYPASSES + [("/secret#x", "/secret")]  # HTTP/1.1: the fragment is cut, then routed
    assert check(lambda t: h1(gw, t), private, public, cases) == []
    refused = sum(1 for _, expected in cases if expected is None) - len(TO_DEFAULT)
    assert gw.metric("outwork_requests_refused_total", reason="400") == refused


def test_http2_bypass_forms_reach_the_route_or_400(routed, pki: Pki) -> None:
    gw, private, public = routed
    client = H2Client(urlsplit(gw.urls["public"]).port or 0, pki.ca)
    client.conn.config.validate_outbound_headers = False
    client.conn.config.normalize_outbound_headers = False

    def send(path: str) -> int:
        return client.get(path).status

    cases = BYPASSES + [("/secret#x", None)]  # RFC 9113 8.3.1: no fragment in :path
    assert check(send, private, public, cases) == []
    client.close()


def test_access_log_shows_the_normalised_path(routed, tmp_path: Path) -> None:
    gw, private, _ = routed
    assert h1(gw, "//public/%2e%2E/%61dmin/x?q=1") == 200
    log = tmp_path / "access.jsonl"
    deadline = time.monotonic() + 5
    while not (log.exists() and log.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    entry = json.loads(log.read_text().splitlines()[-1])
    assert (entry["path"], entry["route"]) == ("/admin/x", "admin")
    assert _target(private.heads[-1]) == "/admin/x?q=1"


@pytest.mark.parametrize(
    ("host", "status"),
    [
        (b"a b", 400),
        (b"evil.com@x", 400),
        (b"x/y", 400),
        (b"exa_mple.com", 400),
        (b"a..b", 400),
        (b"x:99999", 400),
        (b"[::1]:8443", 200),
        (b"example.com.", 200),
        (b"127.0.0.1:80", 200),
    ],
)
def test_host_must_be_host_and_port(routed, pki: Pki, host: bytes, status: int) -> None:
    gw, private, public = routed
    assert h1(gw, "/admin", host) == status
    client = H2Client(urlsplit(gw.urls["public"]).port or 0, pki.ca)
    client.conn.config.validate_outbound_headers = False
    sid = client.conn.get_next_available_stream_id()
    request = [(":method", "GET"), (":scheme", "https"), (":authority", host.decode())]
    client.conn.send_headers(sid, [*request, (":path", "/admin")], end_stream=True)
    client.responses[sid] = Response()
    client.flush()
    (response,) = client.wait(sid)
    assert response.status == status
    client.close()
    # Only the accepted ones reached the backend, each over both protocols.
    assert len(private.heads) == (2 if status == 200 else 0)


def test_connection_cannot_hide_host(routed) -> None:
    gw, private, public = routed
    parts = urlsplit(gw.urls["plain"])
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(b"GET /admin HTTP/1.1\r\nHost: localhost\r\nConnection: close, Host\r\n\r\n")
    assert read_all(sock).startswith(b"HTTP/1.1 400 ")
    sock.close()
    assert not private.heads and not public.heads


def test_underscore_forwarding_headers_do_not_reach_the_backend(routed) -> None:
    gw, private, _ = routed
    parts = urlsplit(gw.urls["plain"])
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        b"GET /admin HTTP/1.1\r\nHost: localhost\r\nX_Forwarded_For: 6.6.6.6\r\n"
        b"X_Real_IP: 6.6.6.6\r\nX_Forwarded_Host: evil.test\r\nConnection: close\r\n\r\n"
    )
    assert read_all(sock).startswith(b"HTTP/1.1 200 ")
    sock.close()
    head = private.heads[-1].lower()
    assert b"6.6.6.6" not in head and b"evil.test" not in head
    assert b"x-forwarded-for: 127.0.0.1\r\n" in head


@pytest.mark.parametrize(
    ("paths", "sent", "backend", "received"),
    [
        ({"escaped_slashes": "decode"}, "/public%2f..%2fadmin", "private", "/admin"),
        ({"escaped_slashes": "keep"}, "/public%2f..%2fadmin", "public", "/public%2F..%2Fadmin"),
        ({"merge_slashes": False}, "//admin", "public", "//admin"),
        ({"normalize": False}, "/%61dmin", "public", "/%61dmin"),
        ({"normalize": False}, "/public/../admin", None, None),  # not resolved: still 400
        ({"case_sensitive": True}, "/ADMIN", "public", "/ADMIN"),
    ],
)
def test_relaxed_paths_forward_what_they_routed(
    make_recorder, make_gateway, pki: Pki, tmp_path: Path, paths, sent, backend, received
) -> None:
    private = make_recorder(b"x-backend: private\r\n")
    public = make_recorder(b"x-backend: public\r\n")
    config = routing_config(private, public, pki, tmp_path)
    config["paths"] = paths
    gw = make_gateway(config)
    expected: dict[str, list[str]] = {"private": [], "public": []}
    if backend is not None:
        expected[backend] = [received]
    assert h1(gw, sent) == (200 if backend else 400)
    got = {
        "private": [_target(h) for h in private.heads],
        "public": [_target(h) for h in public.heads],
    }
    assert got == expected


# nginx behind the default route: it decodes, merges and resolves before it matches its
# locations, so on the old gateway every form above reached its /admin or /secret.

NGINX_LOCATIONS = """\
    default_type text/plain;
    location = /admin { return 200 "nginx-admin\\n"; }
    location /admin/ { return 200 "nginx-admin\\n"; }
    location = /secret { return 200 "nginx-secret\\n"; }
    location / { return 200 "nginx-public\\n"; }
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[str]:
    workdir = tmp_path / "nginx"
    workdir.mkdir()
    proc, port = start_nginx(workdir, ";\n" + NGINX_LOCATIONS)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()  # the master stops its worker (SIGKILL would leave the worker running)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def h1_body(url: str, target: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(
        b"GET " + target.encode() + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    response = read_all(sock)
    sock.close()
    return int(response.split(b" ", 2)[1]), response.partition(b"\r\n\r\n")[2]


def test_nginx_behind_the_default_route_never_serves_its_admin(
    make_recorder, make_gateway, pki: Pki, tmp_path: Path, nginx: str
) -> None:
    forms = [sent for sent, _ in BYPASSES] + ["/secret#x"]
    # The class is real: nginx itself serves these as its /admin or /secret.
    direct = {
        f: h1_body(nginx, f)[1] for f in ("/%61dmin", "//admin", "/public/..%2fadmin", "/secre%74")
    }
    assert set(direct.values()) <= {b"nginx-admin\n", b"nginx-secret\n"}, direct
    private = make_recorder(b"x-backend: private\r\n")
    config = routing_config(private, private, pki, tmp_path)
    config["upstreams"]["public"] = {"targets": [nginx]}
    gw = make_gateway(config)
    answers = {f: h1_body(gw.urls["plain"], f) for f in forms}
    leaked = {
        f: a for f, a in answers.items() if a[1].startswith((b"nginx-admin", b"nginx-secret"))
    }
    assert leaked == {}
    assert {status for status, _ in answers.values()} <= {200, 400}
