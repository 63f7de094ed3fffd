"""`Bans` in-process: counting per address within the window, Heartbleed at once, exempt
networks, IPv6 peers, and bans shared between nodes through a real Redis."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from outwork.config.config import BanConfig, RedisConfig
from outwork.config.schema import BAN_WEIGHTS
from outwork.filters.ban import Bans, peer_host
from outwork.filters.node_table import NodeTable
from outwork.filters.redis_store import RedisStore
from tests.redis_servers import RedisServer, redis_server

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


class Events:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, event: str, peer: str, listener: str, detail: dict[str, Any]) -> None:
        self.lines.append((event, peer, detail))


def _bans(
    count: int = 3,
    redis: RedisStore | None = None,
    weights: Mapping[str, int] = BAN_WEIGHTS,
    ipv6_prefix: int = 64,
) -> tuple[Bans, Events]:
    events = Events()
    config = BanConfig(count, 60.0, 600.0, LOOPBACK, weights, ipv6_prefix)
    return Bans(config, events, NodeTable(64), redis), events


@pytest.mark.parametrize(
    ("peer", "host"),
    [("192.0.2.1:443", "192.0.2.1"), ("[2001:db8::1]:443", "2001:db8::1"), ("-", "-")],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


def test_count_events_ban_and_the_ban_events_do_not_count() -> None:
    bans, events = _bans(count=3)
    for _ in range(2):
        bans.on_event("http.bad_request", "192.0.2.1:1000", "public")
    assert not bans.refuses(b"192.0.2.1")
    bans.on_event("ban.refused", "192.0.2.1:1000", "public")  # not counted
    bans.on_event("upstream.tls_failed", "192.0.2.1:443", "-")  # a backend: not counted
    assert not bans.refuses(b"192.0.2.1")
    bans.on_event("tls.handshake_failed", "192.0.2.1:1001", "public")
    assert bans.refuses(b"192.0.2.1") and not bans.refuses(b"192.0.2.2")
    bans.on_event("tls.handshake_failed", "192.0.2.1:1002", "public")  # already banned
    assert events.lines == [
        (
            "ban.added",
            "192.0.2.1:1001",
            {"address": "192.0.2.1", "cause": "tls.handshake_failed", "seconds": 600.0},
        )
    ]


def test_429s_count_nothing_by_default() -> None:
    bans, events = _bans(count=2)
    for port in range(1000, 1100):
        bans.on_event("policy.rate_limited", f"192.0.2.1:{port}", "public")
        bans.on_event("conn.limit_reached", f"192.0.2.1:{port}", "public")
    assert not bans.refuses(b"192.0.2.1") and events.lines == []
    bans.on_event("policy.unauthenticated", "192.0.2.1:1", "public")  # weighs 1: not yet
    assert not bans.refuses(b"192.0.2.1")
    bans.on_event("tls.handshake_failed", "192.0.2.1:2", "public")
    assert bans.refuses(b"192.0.2.1")


def test_an_attack_weighs_more_than_a_mistake() -> None:
    bans, events = _bans(count=5)
    bans.on_event("waf.blocked", "192.0.2.1:1", "public")  # 3
    bans.on_event("policy.waf_blocked", "192.0.2.1:1", "public")  # the same request: 0
    assert not bans.refuses(b"192.0.2.1")
    bans.on_event("h2.rapid_reset", "192.0.2.1:2", "public")  # 6: banned
    assert bans.refuses(b"192.0.2.1")
    assert events.lines[0][2]["cause"] == "h2.rapid_reset"
    for port in range(4):  # four mistakes from another address: 4, not yet
        bans.on_event("policy.forbidden", f"192.0.2.2:{port}", "public")
    assert not bans.refuses(b"192.0.2.2")


def test_configured_weights_replace_the_defaults() -> None:
    bans, _ = _bans(count=3, weights={**BAN_WEIGHTS, "policy.rate_limited": 1, "waf.blocked": 0})
    for port in range(10):
        bans.on_event("waf.blocked", f"192.0.2.1:{port}", "public")
    assert not bans.refuses(b"192.0.2.1")
    for port in range(3):
        bans.on_event("policy.rate_limited", f"192.0.2.1:{port}", "public")
    assert bans.refuses(b"192.0.2.1")


def test_a_heartbleed_probe_bans_at_once_ipv6_too() -> None:
    bans, events = _bans(count=100)
    bans.on_event("tls.heartbleed_probe", "[2001:db8::7]:5000", "public")
    assert bans.refuses(b"2001:db8::7")
    assert [e for e, _, _ in events.lines] == ["ban.added"]


def test_an_ipv6_peer_is_counted_and_banned_by_its_64() -> None:
    bans, events = _bans(count=2)
    bans.on_event("tls.handshake_failed", "[2001:db8:1:2::a]:1", "public")
    bans.on_event("tls.handshake_failed", "[2001:db8:1:2:ff::b]:2", "public")  # the same /64
    assert bans.refuses(b"2001:db8:1:2::a") and bans.refuses(b"2001:db8:1:2:1234::9")
    assert not bans.refuses(b"2001:db8:1:3::a")
    assert events.lines == [
        (
            "ban.added",
            "[2001:db8:1:2:ff::b]:2",
            {
                "address": "2001:db8:1:2:ff::b",
                "cause": "tls.handshake_failed",
                "seconds": 600.0,
                "network": "2001:db8:1:2::/64",
            },
        )
    ]


def test_with_ipv6_prefix_128_each_address_counts_alone() -> None:
    bans, _ = _bans(count=2, ipv6_prefix=128)
    bans.on_event("tls.handshake_failed", "[2001:db8:1:2::a]:1", "public")
    bans.on_event("tls.handshake_failed", "[2001:db8:1:2::b]:2", "public")
    assert not bans.refuses(b"2001:db8:1:2::a") and not bans.refuses(b"2001:db8:1:2::b")
    bans.on_event("tls.handshake_failed", "[2001:db8:1:2::a]:3", "public")
    assert bans.refuses(b"2001:db8:1:2::a") and not bans.refuses(b"2001:db8:1:2::b")


def test_an_exempt_address_inside_a_banned_network_is_let_in() -> None:
    bans, _ = _bans(count=1)
    bans.on_event("tls.heartbleed_probe", "[::2]:1", "public")  # bans ::/64, which holds ::1
    assert bans.refuses(b"::2") and not bans.refuses(b"::1")


def test_exempt_addresses_are_never_banned() -> None:
    bans, events = _bans(count=1)
    for peer in ("127.0.0.1:1", "[::1]:2"):
        bans.on_event("tls.heartbleed_probe", peer, "public")
    assert not bans.refuses(b"127.0.0.1") and not bans.refuses(b"::1")
    bans.on_event("tls.heartbleed_probe", "[::ffff:127.0.0.1]:3", "public")  # a dual-stack peer
    assert not bans.refuses(b"127.0.0.1")
    bans.on_event("tls.heartbleed_probe", "127.0.0.2:3", "public")  # not in 127.0.0.1/32
    assert bans.refuses(b"127.0.0.2")
    assert len(events.lines) == 1


def test_trusted_proxies_are_never_banned() -> None:
    proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    config = BanConfig(count=1, within=60.0, duration=600.0, exempt=LOOPBACK, weights=BAN_WEIGHTS)
    bans = Bans(config, Events(), NodeTable(64), trusted_proxies=proxies)
    bans.on_event("tls.heartbleed_probe", "10.1.2.3:443", "public")
    assert not bans.refuses(b"10.1.2.3")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


def test_a_ban_reaches_another_node_through_redis(redis: RedisServer) -> None:
    config = RedisConfig(url=redis.url, timeout=2.0)

    async def run() -> None:
        first, _ = _bans(redis=RedisStore(config))
        second, _ = _bans(redis=RedisStore(config))
        first.on_event("tls.heartbleed_probe", "203.0.113.5:4000", "public")
        await asyncio.gather(*first._tasks)  # published
        assert not second.refuses(b"203.0.113.5")  # not pulled yet: the accept never waits
        second.tick()
        await asyncio.gather(*second._tasks)
        assert second.refuses(b"203.0.113.5")

    asyncio.run(run())
    assert redis.command("ZRANGE", "outwork:bans", "0", "-1").split() == ["203.0.113.5"]
    assert 590 <= int(redis.command("TTL", "outwork:bans")) <= 600  # as long as the ban
