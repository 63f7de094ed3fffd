"""`rate_limit`: GCRA limits per client address, API key, JWT subject or request header.

    policies: {p: {rate_limit: [
        {key: client_address, rate: 10/s, burst: 20},
        {key: api_key, rate: 1000/m, store: redis, on_store_error: deny}]}}

Every limit of the list must admit a request; the first that refuses answers 429 with
`Retry-After` and the `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` fields.
Limits are checked in order and each one admitting counts the request, so a request refused
by a later limit has still used the earlier ones. A request without the limit's key (no API
key, no JWT, no such header) is not limited by that entry.

A client address counts by itself for IPv4, by its `ipv6_prefix` (default /64) for IPv6: the
addresses of one subscriber's network share a budget (`client_key.py`).

`store: local` counts in the node's shared table (`node_table.py`, every worker together);
`store: redis` in the `redis:` section's Redis, shared by every node: the exchange waits
(`Stop`) for the answer. A limit is identified by what it says (key, rate, burst, store):
the same limit in two policies counts once, and its counts survive a reload.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any, Final

from outwork.filters import FilterType, PolicyEnv, register
from outwork.filters.api import CONTINUE, Filter, Reply, RequestContext, Resume, Stop, Verdict
from outwork.filters.client_key import IPV6_PREFIX, address_key
from outwork.filters.gcra import MICROS, Decision, Rate, decide, parse_rate
from outwork.filters.node_table import NodeTable, shared
from outwork.filters.rate_limit_spec import LimitSpec, RateLimitSpec
from outwork.filters.redis_store import RedisStore, StoreUnavailable, redis_key, store_for
from outwork.http.messages import RequestHead, ResponseHead
from outwork.observe.refusals import Refusal

# A header value longer than this is limited by its first MAX_KEY_VALUE bytes (a client that
# pads its value shares a bucket with whoever sends the same prefix: it gains nothing).
MAX_KEY_VALUE: Final = 256

# The Redis checks in flight: the loop holds a task only weakly, and it must not vanish.
_in_flight: set[asyncio.Task[None]] = set()

STORE_ERROR_EVENT: Final = "rate_limit.store_error"
TABLE_FULL_EVENT: Final = "rate_limit.table_full"


@dataclass(frozen=True, slots=True)
class Limit:
    key: str
    rate: Rate
    burst: int
    store: str
    deny_on_store_error: bool
    response_headers: bool
    namespace: bytes  # 8 bytes naming the limit in the stores
    interval: int  # microseconds (the rate's)
    header: bytes = b""  # for header:NAME, the lower-case name
    ipv6_prefix: int = IPV6_PREFIX  # client_address: the bits of an IPv6 address counted
    # The RateLimit fields' lines up to the remaining count's value (`field_lines`).
    fields_start: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        start = b"RateLimit-Limit: %d\r\nRateLimit-Remaining: " % self.burst
        object.__setattr__(self, "fields_start", start)

    def field_lines(self, decision: Decision) -> bytes:
        """`_fields` as the lines an admitted request's response gets. Joined, not formatted
        with `%`: about 900 instructions less per request."""
        reset = math.ceil(decision.reset / MICROS)
        return b"".join(
            (
                self.fields_start,
                str(decision.remaining).encode(),
                b"\r\nRateLimit-Reset: ",
                str(reset).encode(),
                b"\r\n",
            )
        )

    def value(self, ctx: RequestContext, head: RequestHead) -> bytes | None:
        """The request's key for this limit, None when it has none."""
        kind = self.key
        if kind == "client_address":
            return address_key(ctx.client_ip, self.ipv6_prefix).encode()
        if kind == "api_key" or kind == "jwt_subject":
            identity = ctx.identity
            wanted = "api_key" if kind == "api_key" else "jwt"
            if identity is None or identity.kind != wanted:
                return None
            return identity.subject.encode()[:MAX_KEY_VALUE]
        name = self.header
        for header, value in head.headers:
            if len(header) == len(name) and header.lower() == name:
                return value[:MAX_KEY_VALUE]
        return None

    def detail(self) -> dict[str, Any]:
        return {"key": self.key, "rate": str(self.rate), "burst": self.burst, "store": self.store}


@dataclass(frozen=True, slots=True)
class RateLimitFilter(Filter):
    local: tuple[Limit, ...]
    remote: tuple[Limit, ...]
    table: NodeTable
    redis: RedisStore | None
    # Read on every request, not `ctx.now`: that clock ticks four times a second, and a limit
    # whose burst refills faster than that (100/s, burst 5) would admit a burst per tick only.
    clock: Callable[[], float] = time.time

    def on_request_head(self, ctx: RequestContext, head: RequestHead, resume: Resume) -> Verdict:
        now = int(self.clock() * MICROS)
        shown: tuple[Limit, Decision] | None = None
        for limit in self.local:
            value = limit.value(ctx, head)
            if value is None:
                continue
            decision = self._local(ctx, limit, value, now)
            if not decision.admitted:
                return refusal(limit, decision)
            if limit.response_headers:
                shown = _lower(shown, limit, decision)
        if not self.remote:
            if shown is not None:
                self._remember(ctx, shown)
            return CONTINUE
        pending = []
        # Asked once per request, and only when a limit applies: after a failure, the one
        # request that probes Redis does so for all its limits, and surely goes to Redis.
        redis_up: bool | None = None
        for limit in self.remote:
            value = limit.value(ctx, head)
            if value is None:
                continue
            if redis_up is None:
                assert self.redis is not None
                redis_up = self.redis.available()
            if not redis_up:
                verdict = self._store_failed(ctx, limit, "waiting after a failure")
                if verdict is not None:
                    return verdict
                continue
            pending.append((limit, redis_key(limit.namespace, value)))
        if not pending:
            self._remember(ctx, shown)
            return CONTINUE
        task = asyncio.get_running_loop().create_task(self._remote(ctx, pending, shown, resume))
        _in_flight.add(task)
        task.add_done_callback(_in_flight.discard)
        return Stop()

    def implements(self, hook: str) -> bool:
        if hook == "on_response_head":  # only to add the RateLimit fields of admitted requests
            return any(limit.response_headers for limit in (*self.local, *self.remote))
        return Filter.implements(self, hook)  # (slots dataclasses cannot use bare super())

    def on_response_head(self, ctx: RequestContext, head: ResponseHead, resume: Resume) -> Verdict:
        lines = ctx.filter_state.pop(id(self), None)
        if lines:
            head.block += lines
        return CONTINUE

    def _local(self, ctx: RequestContext, limit: Limit, value: bytes, now: int) -> Decision:
        step = GcraStep(now, limit.interval, limit.burst)
        _, _, evicted = self.table.update(self.table.key(limit.namespace, value), now, step)
        if evicted:
            ctx.security_event(TABLE_FULL_EVENT, {"evictions": self.table.evictions})
        assert step.decision is not None  # the table calls the change once, always
        return step.decision

    async def _remote(
        self,
        ctx: RequestContext,
        pending: list[tuple[Limit, str]],
        shown: tuple[Limit, Decision] | None,
        resume: Resume,
    ) -> None:
        assert self.redis is not None
        redis = self.redis
        results = await asyncio.gather(
            *(redis.gcra(key, limit.interval, limit.burst) for limit, key in pending),
            return_exceptions=True,
        )
        verdict: Verdict = CONTINUE
        for (limit, _), result in zip(pending, results, strict=True):
            if isinstance(result, StoreUnavailable):
                failed = self._store_failed(ctx, limit, str(result))
                if failed is not None:
                    verdict = failed
                    break
            elif isinstance(result, BaseException):
                raise result
            elif not result.admitted:
                verdict = refusal(limit, result)
                break
            else:
                shown = _lower(shown, limit, result)
        if verdict is CONTINUE:
            self._remember(ctx, shown)
        resume(verdict)

    def _store_failed(self, ctx: RequestContext, limit: Limit, reason: str) -> Reply | None:
        detail = {**limit.detail(), "error": reason, "on_store_error": _policy(limit)}
        ctx.security_event(STORE_ERROR_EVENT, detail)
        if limit.deny_on_store_error:
            return Reply(503, Refusal.RATE_LIMIT_STORE, detail=limit.detail())
        return None

    def _remember(self, ctx: RequestContext, shown: tuple[Limit, Decision] | None) -> None:
        if shown is not None:
            limit, decision = shown
            ctx.filter_state[id(self)] = limit.field_lines(decision)


class GcraStep:
    """One request against a local limit, as the change the node table applies to the key's
    entry (its TAT), keeping the decision: one object per request, not a closure, its cell
    and a list."""

    __slots__ = ("now", "interval", "burst", "decision")

    def __init__(self, now: int, interval: int, burst: int) -> None:
        self.now = now
        self.interval = interval
        self.burst = burst
        self.decision: Decision | None = None

    def __call__(self, tat: int, _: int) -> tuple[int, int, int] | None:
        decision = self.decision = decide(tat, self.now, self.interval, self.burst)
        return (decision.tat, decision.tat, 0) if decision.admitted else None


def _policy(limit: Limit) -> str:
    return "deny" if limit.deny_on_store_error else "allow"


def _lower(
    shown: tuple[Limit, Decision] | None, limit: Limit, decision: Decision
) -> tuple[Limit, Decision] | None:
    """The admitted decision reported in the response: the limit closest to refusing."""
    if not limit.response_headers:
        return shown
    if shown is None or decision.remaining < shown[1].remaining:
        return limit, decision
    return shown


def _fields(limit: Limit, decision: Decision) -> list[tuple[bytes, bytes]]:
    reset = math.ceil(decision.reset / MICROS)
    return [
        (b"RateLimit-Limit", b"%d" % limit.burst),
        (b"RateLimit-Remaining", b"%d" % decision.remaining),
        (b"RateLimit-Reset", b"%d" % reset),
    ]


def refusal(limit: Limit, decision: Decision) -> Reply:
    retry_after = max(1, math.ceil(decision.retry_after / MICROS))
    headers = [(b"retry-after", b"%d" % retry_after)]
    headers += [(name.lower(), value) for name, value in _fields(limit, decision)]
    return Reply(429, Refusal.RATE_LIMITED, headers=tuple(headers), detail=limit.detail())


def compile_limit(spec: LimitSpec) -> Limit:
    rate = parse_rate(spec.rate)
    burst = spec.burst if spec.burst is not None else rate.count
    ipv6_prefix = spec.ipv6_prefix if spec.ipv6_prefix is not None else IPV6_PREFIX
    identity = f"{spec.key}\0{rate}\0{burst}\0{spec.store}"
    if spec.key == "client_address" and ipv6_prefix != IPV6_PREFIX:
        identity += f"\0{ipv6_prefix}"  # another budget (the default's stays as it was)
    header = spec.key.removeprefix("header:").lower().encode() if spec.key[:7] == "header:" else b""
    return Limit(
        key=spec.key,
        rate=rate,
        burst=burst,
        store=spec.store,
        deny_on_store_error=spec.on_store_error == "deny",
        response_headers=spec.response_headers,
        namespace=blake2b(identity.encode(), digest_size=8).digest(),
        interval=rate.interval,
        header=header,
        ipv6_prefix=ipv6_prefix,
    )


def build(specs: list[LimitSpec], env: PolicyEnv) -> RateLimitFilter:
    limits = [compile_limit(spec) for spec in specs]
    remote = tuple(limit for limit in limits if limit.store == "redis")
    if remote and env.redis is None:
        raise ValueError("a limit with store: redis needs the redis: section")
    return RateLimitFilter(
        local=tuple(limit for limit in limits if limit.store == "local"),
        remote=remote,
        table=shared(),
        redis=store_for(env.redis) if remote and env.redis is not None else None,
    )


def _build_without_env(specs: list[LimitSpec]) -> RateLimitFilter:
    return build(specs, PolicyEnv())


RATE_LIMIT: Final = register(FilterType("rate_limit", RateLimitSpec, _build_without_env, build))
