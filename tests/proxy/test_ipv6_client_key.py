"""IPv6 clients through a real gateway listening on ::1: a rate limit by `client_address`
counts a /64 as one client (behind a trusted proxy, the X-Forwarded-For addresses of one /64
share a budget, another /64 has its own), and a ban from ::1 bans its network."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.conftest import Backend, Gateway, gateway_config


def _status(gw: Gateway, forwarded_for: str | None = None) -> int:
    """One GET from ::1 (with X-Forwarded-For when given): the status, 0 when cut at accept."""
    port = int(gw.url.rsplit(":", 1)[1])
    xff = f"X-Forwarded-For: {forwarded_for}\r\n" if forwarded_for else ""
    request = f"GET /x HTTP/1.1\r\nHost: h\r\n{xff}Connection: close\r\n\r\n".encode()
    with socket.create_connection(("::1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError:  # reset at accept
            return 0
    return int(answer.split(b" ", 2)[1]) if answer else 0


def _gateway(make_gateway: Any, backend: Backend, **overrides: Any) -> Gateway:
    config = gateway_config(
        backend.url,
        listeners=[{"name": "v6", "bind": "[::1]:0"}],
        logging={"security_events": "events.jsonl"},
        **overrides,
    )
    return make_gateway(config)


def _limited(limit: dict[str, Any]) -> dict[str, Any]:
    return {
        "routes": [{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}],
        "policies": {"p": {"rate_limit": [limit]}},
        "trusted_proxies": ["::1/128"],
    }


def test_the_addresses_of_one_64_share_a_budget(make_gateway: Any, backend: Backend) -> None:
    limit = {"key": "client_address", "rate": "2/h"}
    gw = _gateway(make_gateway, backend, **_limited(limit))
    assert [_status(gw, "2001:db8:1:2::a"), _status(gw, "2001:db8:1:2::b")] == [200, 200]
    assert _status(gw, "2001:db8:1:2:ffff::c") == 429  # a fresh /128 of the same /64
    assert _status(gw, "2001:db8:1:3::a") == 200  # the next /64: another subscriber
    assert [_status(gw), _status(gw)] == [200, 200]  # ::1 itself (no forwarding header)
    assert _status(gw) == 429


@pytest.mark.parametrize(("prefix", "statuses"), [(128, [200, 200, 200]), (48, [200, 429, 429])])
def test_the_prefix_is_configurable(
    make_gateway: Any, backend: Backend, prefix: int, statuses: list[int]
) -> None:
    limit = {"key": "client_address", "rate": "1/h", "ipv6_prefix": prefix}
    gw = _gateway(make_gateway, backend, **_limited(limit))
    clients = ["2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:3::a"]
    assert [_status(gw, client) for client in clients] == statuses


def test_a_ban_of_an_ipv6_peer_bans_its_network(make_gateway: Any, backend: Backend) -> None:
    gw = _gateway(
        make_gateway,
        backend,
        routes=[{"match": {"path_prefix": "/"}, "upstream": "backend", "policies": ["p"]}],
        policies={"p": {"access": {"deny": ["::1/128"]}}},
        ban={"after": {"count": 2, "within": "60s"}, "exempt": []},
    )
    assert [_status(gw), _status(gw)] == [403, 403]  # two policy.access_denied: weight 2
    assert _status(gw) == 0  # ::1's /64 is banned: cut at accept
    lines = (gw.config_file.parent / "events.jsonl").read_text().splitlines()
    added = [e for e in map(json.loads, lines) if e["event"] == "ban.added"]
    assert [(e["detail"]["address"], e["detail"]["network"]) for e in added] == [("::1", "::/64")]
