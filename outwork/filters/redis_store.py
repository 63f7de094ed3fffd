"""The `redis:` connection of one worker: rate-limit checks (one atomic Lua GCRA per check)
and the bans that nodes share.

A worker makes its client lazily, on its own event loop, at the first use after the fork
(`store_for`): connections are never inherited from the supervisor. Every operation has the
config's `timeout`. When Redis fails, the store backs off (0.1 s doubling to 5 s): until then
every check fails at once without touching the network, and when the wait is over one check
alone probes Redis while the others keep failing fast, so a Redis that is down costs no
connection attempt per request.

The GCRA runs in Redis on Redis's clock (`TIME`), so gateways whose clocks differ still count
on one; the arithmetic is `gcra.decide`'s.
"""

from __future__ import annotations

import asyncio
import math
import time
from hashlib import blake2b
from typing import Any

from outwork.config.config import RedisConfig
from outwork.filters.gcra import Decision

# KEYS[1]: the key; ARGV[1]: the interval, ARGV[2]: the burst. Times in microseconds; Lua
# numbers are doubles, exact to 2^53, and are written with %.0f (tostring would round).
# Returns {admitted, retry_after, remaining, reset}.
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
local base = tat
if base < now then base = now end
local new_tat = base + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, allow_at - now, 0, base - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.ceil((new_tat - now) / 1000))
return {1, 0, math.floor((now - allow_at) / interval), new_tat - now}
"""
# A sorted set: member the address, score when its ban ends; expires with its last ban.
BANS_KEY = "outwork:bans"
FIRST_BACKOFF = 0.1
MAX_BACKOFF = 5.0


class StoreUnavailable(Exception):
    """Redis failed (or is being waited out after a failure)."""


class RedisStore:
    def __init__(self, config: RedisConfig) -> None:
        # redis-py costs every worker some 20 MiB of memory: it is loaded by the configs that
        # use Redis, when they are compiled (not on a request), and by no other.
        import redis.asyncio  # noqa: F401

        self.config = config
        self._client: Any = None  # Redis or RedisCluster, made on first use
        self._script: Any = None
        self._failures = 0
        self._retry_at = 0.0  # monotonic
        self._probing = False

    def available(self) -> bool:
        """Whether an operation may go to Redis now; False while backing off after a failure
        (and, once the wait is over, for all but the one operation that probes)."""
        if not self._failures:
            return True
        if self._probing or time.monotonic() < self._retry_at:
            return False
        self._probing = True
        return True

    async def gcra(self, key: str, interval: int, burst: int) -> Decision:
        """Raises StoreUnavailable."""
        result = await self._run(self._gcra(key, interval, burst))
        admitted, retry_after, remaining, reset = (int(v) for v in result)
        return Decision(bool(admitted), 0, retry_after, remaining, reset)

    async def _gcra(self, key: str, interval: int, burst: int) -> Any:
        client = self._connect()
        if self._script is None:
            self._script = client.register_script(GCRA_SCRIPT)  # EVALSHA, loaded on NOSCRIPT
        return await self._script(keys=[key], args=[interval, burst], client=client)

    async def add_ban(self, address: str, until: float) -> None:
        """Publish a ban (until: wall-clock seconds); raises StoreUnavailable."""

        async def add() -> None:
            client = self._connect()
            now = time.time()
            await client.zadd(BANS_KEY, {address: until})
            await client.zremrangebyscore(BANS_KEY, "-inf", now)
            # The set lives as long as its last ban: it expires, never grows without end.
            seconds = max(1, math.ceil(until - now))
            await client.expire(BANS_KEY, seconds, nx=True)
            await client.expire(BANS_KEY, seconds, gt=True)

        await self._run(add())

    async def bans(self) -> list[tuple[str, float]]:
        """Every ban in force (address, until); raises StoreUnavailable."""

        async def fetch() -> list[tuple[bytes, float]]:
            result: list[tuple[bytes, float]] = await self._connect().zrangebyscore(
                BANS_KEY, time.time(), "+inf", withscores=True
            )
            return result

        return [(a.decode(), until) for a, until in await self._run(fetch())]

    async def _run(self, operation: Any) -> Any:
        try:
            result = await asyncio.wait_for(operation, self.config.timeout)
        except Exception as exc:  # timeouts, connection and protocol errors, cluster errors
            self._failures += 1
            backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (self._failures - 1))
            self._retry_at = time.monotonic() + backoff
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._probing = False  # also when cancelled: another request may probe
        self._failures = 0
        return result

    def _connect(self) -> Any:
        if self._client is None:
            self._client = _client(self.config)
        return self._client


def _client(config: RedisConfig) -> Any:
    # Loaded already: RedisStore imported the package.
    from redis.asyncio import Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff

    password = config.password.decode() if config.password is not None else None
    common: dict[str, Any] = {
        "username": config.username,
        "password": password,
        "socket_timeout": config.timeout,
        "socket_connect_timeout": config.connect_timeout,
    }
    # No retries inside redis-py: the timeout is the whole budget of a check, and the
    # store's own backoff decides when to try again.
    if config.cluster:
        nodes = [ClusterNode(a.host, a.port) for a in config.cluster]
        return RedisCluster(startup_nodes=nodes, retry=Retry(NoBackoff(), 0), **common)
    if config.sentinels:
        assert config.service is not None
        sentinel = Sentinel(
            [(a.host, a.port) for a in config.sentinels],
            sentinel_kwargs={"socket_timeout": config.timeout},
            **common,
        )
        return sentinel.master_for(config.service, retry=Retry(NoBackoff(), 0))
    assert config.url is not None
    return Redis.from_url(config.url, retry=Retry(NoBackoff(), 0), **common)


def redis_key(namespace: bytes, value: bytes) -> str:
    """The Redis key of one limit's key value: hashed (the same on every node, unkeyed), so
    that a header value or an address is not stored as sent."""
    return "outwork:rl:" + blake2b(namespace + value, digest_size=16).hexdigest()


_stores: dict[RedisConfig, RedisStore] = {}


def store_for(config: RedisConfig) -> RedisStore:
    """This process's store for `config` (kept across reloads that keep the section)."""
    store = _stores.get(config)
    if store is None:
        store = _stores[config] = RedisStore(config)
    return store
