"""`rate_limit` with `store: redis`, in-process against a real redis-server (standalone and a
3-master cluster): the exchange waits for Redis, limits are shared by every gateway that uses
the same Redis, and a Redis that is down follows `on_store_error` without a connection
attempt per request."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from outwork.config.config import Address, RedisConfig
from outwork.filters import CONTINUE, PolicyEnv, Reply, Stop, Verdict
from outwork.filters.node_table import NodeTable
from outwork.filters.rate_limit import LimitSpec, RateLimitFilter, build
from outwork.filters.redis_store import RedisStore
from outwork.observe.refusals import Refusal
from tests.filters.fake import FakeContext, request
from tests.redis_servers import RedisServer, SentinelServer, redis_cluster, redis_server

START = 1.8e9  # the contexts' clock


def context(**fields: Any) -> FakeContext:
    """A context at a fixed time (GCRA reads `now`) from a documentation address."""
    return FakeContext(
        **{"client_ip": "192.0.2.7", "peer": "192.0.2.7:50000", "now": 1.8e9, **fields}
    )


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RedisServer]]:
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


def _gateway(config: RedisConfig, **limit: Any) -> RateLimitFilter:
    """One gateway's filter: its own table and its own Redis connection."""
    spec = {"key": "client_address", "store": "redis", **limit}
    specs = msgspec.convert([spec], list[LimitSpec], strict=True)
    built = build(specs, PolicyEnv(redis=config))
    return RateLimitFilter(built.local, built.remote, NodeTable(64), RedisStore(config))


async def _check(f: RateLimitFilter, ctx: FakeContext) -> tuple[Verdict, bool]:
    """The verdict, and whether the filter waited for it."""
    answer: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
    verdict = f.on_request_head(ctx, request(), answer.set_result)
    if isinstance(verdict, Stop):
        return await answer, True
    return verdict, False


async def _admitted(gateways: list[RateLimitFilter], ctx: FakeContext, requests: int) -> int:
    admitted = 0
    for i in range(requests):
        verdict, waited = await _check(gateways[i % len(gateways)], ctx)
        assert waited
        admitted += verdict is CONTINUE
    return admitted


def test_two_gateways_share_one_standalone_limit(redis: RedisServer) -> None:
    config = RedisConfig(url=redis.url, timeout=2.0)  # generous: 8 helpers share 2 cores

    async def run() -> None:
        gateways = [_gateway(config, rate="5/m", burst=10) for _ in range(2)]
        ctx = context(client_ip="192.0.2.10")
        assert await _admitted(gateways, ctx, 30) == 10
        refused, _ = await _check(gateways[0], ctx)
        assert isinstance(refused, Reply)
        assert refused.status == 429 and refused.refusal is Refusal.RATE_LIMITED
        headers = dict(refused.headers)
        assert headers[b"retry-after"] == b"12"  # 60 s / 5, rounded up
        assert headers[b"ratelimit-limit"] == b"10" and headers[b"ratelimit-remaining"] == b"0"
        other = context(client_ip="192.0.2.11")
        assert await _admitted(gateways, other, 3) == 3

    asyncio.run(run())
    # Keys are hashed, and expire when their burst is whole again.
    keys = redis.command("KEYS", "outwork:rl:*").split()
    assert len(keys) == 2 and not any("192.0.2" in key for key in keys)
    assert 0 < int(redis.command("PTTL", keys[0])) <= 120_000


def test_two_gateways_share_one_cluster_limit(cluster: list[RedisServer]) -> None:
    nodes = tuple(Address("127.0.0.1", n.port) for n in cluster)
    config = RedisConfig(cluster=nodes, timeout=2.0)

    async def run() -> None:
        gateways = [_gateway(config, rate="1/h", burst=3) for _ in range(2)]
        for i in range(20):  # addresses whose keys land on every master
            ctx = context(client_ip=f"198.51.100.{i}")
            assert await _admitted(gateways, ctx, 6) == 3

    asyncio.run(run())
    per_node = [int(n.command("DBSIZE")) for n in cluster]
    assert sum(per_node) == 20 and all(per_node)


@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_a_redis_that_stops_follows_on_store_error(tmp_path: Path, policy: str) -> None:
    with redis_server(tmp_path) as server:
        config = RedisConfig(url=server.url, timeout=0.5)

        async def run() -> None:
            f = _gateway(config, rate="100/s", on_store_error=policy)
            ctx = context()
            assert await _check(f, ctx) == (CONTINUE, True)
            server.stop()
            failed, waited = await _check(f, ctx)
            assert waited  # the failure is found by trying
            # Then the store waits before trying again: answered at once, no connection.
            again, waited = await _check(f, ctx)
            assert not waited
            for verdict in (failed, again):
                if policy == "allow":
                    assert verdict is CONTINUE
                else:
                    assert isinstance(verdict, Reply)
                    assert (verdict.status, verdict.refusal) == (503, Refusal.RATE_LIMIT_STORE)
            assert [e for e, _ in ctx.events] == ["rate_limit.store_error"] * 2
            assert ctx.events[1][1]["on_store_error"] == policy
            # Redis back: after the backoff one request probes, and the limit works again.
            assert server.start()
            for _ in range(200):
                verdict, waited = await _check(f, ctx)
                if waited and verdict is CONTINUE:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the store did not reconnect")

        asyncio.run(run())


def test_a_limit_through_sentinel(redis: RedisServer, tmp_path: Path) -> None:
    sentinel = SentinelServer(tmp_path, redis, "main")
    before = set(redis.command("KEYS", "outwork:rl:*").split())
    try:
        config = RedisConfig(
            sentinels=(Address("127.0.0.1", sentinel.port),), service="main", timeout=2.0
        )

        async def run() -> None:
            gateway = _gateway(config, rate="1/h", burst=2)
            ctx = context(client_ip="203.0.113.77")
            assert await _admitted([gateway], ctx, 4) == 2

        asyncio.run(run())
        # The count went to the master the Sentinel named.
        assert len(set(redis.command("KEYS", "outwork:rl:*").split()) - before) == 1
    finally:
        sentinel.stop()
