"""The admin listener under hostile load and requests: probes always get through, idle sockets
cannot hold it, names it was not given are refused (DNS rebinding), `check` warns about a bind
beyond loopback."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from outwork.config.config import Address
from outwork.proxy.admin import MAX_ADMIN_CONNECTIONS, host_allowed
from tests.conftest import Backend, Gateway, gateway_config
from tests.proxy.test_metrics import address, get


def request(url: str, head: bytes) -> bytes:
    """One raw request on a new connection; the answer until the admin closes."""
    with socket.create_connection(address(url), timeout=10) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_idle_sockets_beyond_the_cap_do_not_lock_out_healthz(gateway: Gateway) -> None:
    admin = address(gateway.admin_url or "")
    idle = [socket.create_connection(admin, timeout=10) for _ in range(3 * MAX_ADMIN_CONNECTIONS)]
    try:
        # A probe arriving while they are all open is answered at once, every time.
        for _ in range(5):
            assert get(gateway.admin_url or "", "/healthz") == (200, b"ok\n")
        # The oldest idle sockets made room (closed), the newest are closed by the timeout.
        for sock in idle:
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in idle:
            sock.close()
    evicted = gateway.metric("outwork_requests_refused_total", reason="admin_evicted")
    assert evicted >= 2 * MAX_ADMIN_CONNECTIONS


def test_admin_max_connections_and_timeout_are_configurable(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    admin = {"bind": "127.0.0.1:0", "max_connections": 2, "timeout": 0.5}
    gw = make_gateway(gateway_config(make_backend().url, admin=admin))
    idle = [socket.create_connection(address(gw.admin_url or ""), timeout=10) for _ in range(5)]
    try:
        assert get(gw.admin_url or "", "/healthz") == (200, b"ok\n")
        # 5 idle + the probe through a cap of 2: the 4 oldest made room (the scrape itself may
        # evict the fifth, if the probe's connection is not yet gone).
        assert gw.metric("outwork_requests_refused_total", reason="admin_evicted") >= 4
        for sock in idle:  # the last one: closed by the timeout
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"localhost", 200),
        (b"localhost:1234", 200),
        (b"LOCALHOST.", 200),
        (b"127.0.0.1", 200),
        (b"127.0.0.1:9901", 200),
        (b"probe.internal:80", 200),  # admin.allowed_hosts
        (b"evil.example", 421),  # DNS rebinding: an attacker's name re-pointed at us
        (b"evil.example:9901", 421),
        (b"127.0.0.2", 421),  # not the bound address
        (b"[::1]", 421),
        (b"", 421),
    ],
)
def test_host_must_name_the_admin_listener(
    make_backend: Callable[..., Backend],
    make_gateway: Callable[..., Gateway],
    host: bytes,
    expected: int,
) -> None:
    backend = make_backend()
    config = gateway_config(
        backend.url, admin={"bind": "127.0.0.1:0", "allowed_hosts": ["Probe.Internal"]}
    )
    gw = make_gateway(config)
    answer = request(gw.admin_url or "", b"GET /metrics HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert status(answer) == expected
    if expected == 421:
        assert b"outwork_requests_total" not in answer
        assert gw.metric("outwork_requests_refused_total", reason="admin_host") == 1
        events = [json.loads(line) for line in gw.stderr().splitlines() if line.startswith("{")]
        assert any(e.get("event") == "admin.host_refused" for e in events), gw.stderr()


def test_a_request_without_host_or_with_two(gateway: Gateway) -> None:
    url = gateway.admin_url or ""
    assert status(request(url, b"GET /healthz HTTP/1.0\r\n\r\n")) == 200  # old probes
    two = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"
    assert status(request(url, two)) == 400


def test_a_wildcard_bind_accepts_any_address_of_the_host(
    make_backend: Callable[..., Backend], make_gateway: Callable[..., Gateway]
) -> None:
    gw = make_gateway(gateway_config(make_backend().url, admin={"bind": "0.0.0.0:0"}))
    port = address(gw.admin_url or "")[1]
    for host in (b"127.0.0.2", b"10.1.2.3:9901"):  # e.g. a kubelet probe: the pod's IP
        answer = request(
            f"http://127.0.0.1:{port}", b"GET /healthz HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        )
        assert status(answer) == 200
    answer = request(
        f"http://127.0.0.1:{port}", b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    )
    assert status(answer) == 421


def check(tmp_path: Path, admin: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "outwork.yaml"
    path.write_text(yaml.safe_dump(gateway_config("http://127.0.0.1:9", admin=admin)))
    return subprocess.run(
        [sys.executable, "-m", "outwork", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("bind", ["0.0.0.0:9901", "[::]:9901", "10.1.2.3:9901", "admin.lan:9901"])
def test_check_warns_about_an_admin_bind_beyond_loopback(tmp_path: Path, bind: str) -> None:
    result = check(tmp_path, {"bind": bind})
    assert (result.returncode, result.stdout) == (0, "ok\n")
    assert "admin.bind: warning: the admin listener on" in result.stderr
    assert "reachable beyond this host" in result.stderr


@pytest.mark.parametrize("bind", ["127.0.0.1:9901", "[::1]:9901", "localhost:9901"])
def test_check_is_quiet_about_a_loopback_admin(tmp_path: Path, bind: str) -> None:
    result = check(tmp_path, {"bind": bind})
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


@pytest.mark.parametrize("name", ["*.example.com", "a b", "host:80"])
def test_allowed_hosts_are_names(tmp_path: Path, name: str) -> None:
    result = check(tmp_path, {"bind": "127.0.0.1:9901", "allowed_hosts": [name]})
    assert result.returncode == 1
    assert "admin.allowed_hosts[0]" in result.stderr


@given(
    host=st.binary(max_size=60)
    | st.sampled_from(
        [b"localhost", b"127.0.0.1", b"[::1]", b"probe.internal", b"evil.example"]
    ).flatmap(lambda h: st.tuples(st.just(h), st.binary(max_size=8)).map(b"".join)),
    bind=st.sampled_from(["127.0.0.1", "::1", "0.0.0.0", "::", "localhost", "10.0.0.1"]),
)
def test_host_allowed_accepts_only_localhost_addresses_and_listed_names(
    host: bytes, bind: str
) -> None:
    allowed = host_allowed(host, Address(bind, 9901), ("probe.internal",))
    if allowed:
        text = host.decode("ascii", "replace").strip().lower()
        name = text[1:].partition("]")[0] if text.startswith("[") else text
        name = name.rpartition(":")[0] if name.count(":") == 1 else name
        name = name.removesuffix(".")
        if name not in ("localhost", "probe.internal"):
            address = ipaddress.ip_address(name)  # else: a name slipped through
            if bind == "localhost":
                assert address.is_loopback
            elif bind not in ("0.0.0.0", "::"):
                assert address == ipaddress.ip_address(bind)
    # Names are never accepted just because they look like one that is.
    assert not host_allowed(b"localhost.evil.example", Address(bind, 9901), ())
    assert not host_allowed(b"127.0.0.1.nip.io", Address(bind, 9901), ())
