"""`ban:` peers that cause too many security events are refused at accept for a while.

    ban: {after: {count: 5, within: 60s}, duration: 10m, exempt: [127.0.0.1/32, "::1/128"],
          weights: {waf.blocked: 5, policy.unauthenticated: 2}}

Every security event the gateway writes (`SecurityEventLog.emit`, before its own rate limit
on lines) adds its weight to the peer's address's score (`BanConfig.weights`: an attack such as
a WAF block or an HTTP/2 flood weighs 3, a 429 nothing, any other event 1); the score reaching
`count` within `within` of the first event bans the address for `duration`, and a Heartbleed
probe (`tls.heartbleed_probe`) bans it at once. The ban's own events (`ban.added`,
`ban.refused`) do not count, nor those about an upstream (`upstream.tls_failed`: its peer is a
backend, its listener `-`). Exempt addresses
are never banned (by default only this machine: 127.0.0.1 and ::1; 127.0.0.2 is not exempt),
nor are `trusted_proxies`: the events of every client behind a load balancer carry its address,
and banning it would refuse them all.

An IPv6 peer is counted and banned by its network (`ipv6_prefix`, default /64: one
subscriber's, all of whose addresses it has for free); `ban.added` then names the `network`.
Nodes that share bans through Redis should agree on `ipv6_prefix` (a ban is published as the
key it is kept under: an address, or a network).

Counts and bans live in the node's shared table (`node_table.py`), so a ban made in one worker
refuses on every other. With `redis:` a new ban is published to Redis (a sorted set scored by
its end) and every worker pulls the set each `PULL_SECONDS` into its table: the accept path
reads only the table, never waits on Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from outwork.config.config import BanConfig, GatewayConfig
from outwork.config.schema import INSTANT_BAN
from outwork.filters.access import client_address
from outwork.filters.client_key import address_key
from outwork.filters.node_table import NodeTable, shared
from outwork.filters.redis_store import RedisStore, StoreUnavailable, store_for

MICROS = 1_000_000
BANNED = b"ban\0\0\0\0\0"  # namespaces in the table (8 bytes each)
COUNTS = b"banevts\0"
PULL_SECONDS = 1.0  # how often a worker pulls the bans of other nodes from Redis

Emit = Callable[[str, str, str, dict[str, Any]], None]  # SecurityEventLog.emit


def peer_host(peer: str) -> str:
    """The address of a `host:port` or `[v6]:port` peer string."""
    if peer.startswith("["):
        return peer[1:].partition("]")[0]
    return peer.rpartition(":")[0] if peer.count(":") == 1 else peer


class Bans:
    def __init__(
        self,
        config: BanConfig,
        emit: Emit,
        table: NodeTable | None = None,
        redis: RedisStore | None = None,
        trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = (),
    ) -> None:
        self.config = config
        self.emit = emit
        self.table = table if table is not None else shared()
        self.redis = redis
        self._exempt: tuple[IPv4Network | IPv6Network, ...] = config.exempt + trusted_proxies
        self._next_pull = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def refuses(self, host: bytes) -> bool:
        """Whether a connection from `host` is refused at accept (the hot path: one lookup)."""
        now = int(time.time() * MICROS)
        text = host.decode("ascii", "replace")
        key = address_key(text, self.config.ipv6_prefix).encode()
        if self.table.get(self.table.key(BANNED, key), now) is None:
            return False
        # An exempt address inside a banned IPv6 network (::1 in ::/64) is still let in.
        return not self._exempted(text)

    def on_event(self, event: str, peer: str, listener: str) -> None:
        """A security event from `peer`: count it, and ban when it is one too many."""
        if event.startswith("ban.") or listener == "-":
            return  # the ban's own events; events about upstreams (their peer is a backend)
        weight = self.config.weights.get(event, 1)
        instant = event in INSTANT_BAN
        if not weight and not instant:
            return
        host = peer_host(peer)
        if self._exempted(host):
            return
        key = address_key(host, self.config.ipv6_prefix)
        now = int(time.time() * MICROS)
        if not instant:
            within = int(self.config.within * MICROS)

            def count(start: int, score: int) -> tuple[int, int, int]:
                start = start if score else now
                return start + within, start, score + weight

            _, score, _ = self.table.update(self.table.key(COUNTS, key.encode()), now, count)
            if score < self.config.count:
                return
        until = now + int(self.config.duration * MICROS)
        if self._ban(key, now, until):
            detail = {"address": host, "cause": event, "seconds": self.config.duration}
            if "/" in key:
                detail["network"] = key  # an IPv6 peer: its network is banned
            self.emit("ban.added", peer, listener, detail)
            if self.redis is not None:
                self._spawn(self._publish(key, until / MICROS))

    def tick(self) -> None:
        """Called a few times a second by the worker: pull the other nodes' bans from Redis."""
        if self.redis is None or time.monotonic() < self._next_pull:
            return
        self._next_pull = time.monotonic() + PULL_SECONDS
        if self.redis.available():
            self._spawn(self._pull())

    def _ban(self, host: str, now: int, until: int) -> bool:
        """Ban `host` until `until`; False when it already was."""

        added = []

        def ban(banned_until: int, _: int) -> tuple[int, int, int] | None:
            if banned_until:
                return None
            added.append(True)
            return until, until, 0

        self.table.update(self.table.key(BANNED, host.encode()), now, ban)
        return bool(added)

    def _exempted(self, host: str) -> bool:
        address = client_address(host)  # a dual-stack socket's ::ffff:127.0.0.1 is 127.0.0.1
        if address is None:
            return False
        return any(address in network for network in self._exempt)

    def _spawn(self, coroutine: Any) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop (a test calling in directly): nothing to share with
            coroutine.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(self, host: str, until: float) -> None:
        assert self.redis is not None
        try:
            await self.redis.add_ban(host, until)
        except StoreUnavailable as exc:
            self.emit("ban.store_error", "-", "-", {"address": host, "error": str(exc)})

    async def _pull(self) -> None:
        assert self.redis is not None
        try:
            bans = await self.redis.bans()
        except StoreUnavailable:
            return  # counted by the store's backoff; the local bans still hold
        now = int(time.time() * MICROS)
        for host, until in bans:
            if not self._exempted(host):
                self._ban(host, now, int(until * MICROS))


def for_config(config: GatewayConfig, emit: Emit) -> Bans | None:
    if config.ban is None:
        return None
    redis = store_for(config.redis) if config.redis is not None else None
    return Bans(config.ban, emit, redis=redis, trusted_proxies=config.trusted_proxies)
