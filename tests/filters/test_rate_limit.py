"""`rate_limit` in-process with the local store: a burst admitted, then 429 with Retry-After and
the RateLimit fields; keys by address, API key, JWT subject and header; config mistakes at
their key."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from outwork.filters import CONTINUE, Identity, PolicyEnv, Reply, Stop
from outwork.filters.gcra import Decision
from outwork.filters.node_table import NodeTable
from outwork.filters.rate_limit import LimitSpec, RateLimitFilter, build, compile_limit
from outwork.http.messages import Framing, ResponseHead
from outwork.observe.refusals import Refusal
from tests.filters.fake import FakeContext, request

START = 1.8e9  # the fake clock's time, unless a test moves it


def context(**fields: Any) -> FakeContext:
    """A context at a fixed time (GCRA reads `now`) from a documentation address."""
    return FakeContext(
        **{"client_ip": "192.0.2.7", "peer": "192.0.2.7:50000", "now": 1.8e9, **fields}
    )


def _filter(*limits: dict[str, Any], clock: Callable[[], float] | None = None) -> RateLimitFilter:
    specs = msgspec.convert(list(limits), list[LimitSpec], strict=True)
    rate_limit = build(specs, PolicyEnv())
    # Each test its own table (counts of one test do not leak into another) and a fake clock.
    return RateLimitFilter(
        rate_limit.local, rate_limit.remote, NodeTable(64), None, clock or (lambda: START)
    )


def _never(verdict: Any) -> None:
    raise AssertionError("a local limit never waits")


def _verdicts(f: RateLimitFilter, ctx: FakeContext, n: int, headers: Any = None) -> list[Any]:
    pairs = [(name.decode(), value.decode()) for name, value in headers or []]
    return [f.on_request_head(ctx, request(*pairs), _never) for _ in range(n)]


def test_a_burst_is_admitted_then_429_with_retry_after_and_ratelimit_fields() -> None:
    ctx = context()
    f = _filter({"key": "client_address", "rate": "10/s", "burst": 20}, clock=lambda: ctx.now)
    verdicts = _verdicts(f, ctx, 25)
    assert verdicts[:20] == [CONTINUE] * 20
    refused = verdicts[20]
    assert isinstance(refused, Reply)
    assert refused.status == 429 and refused.refusal is Refusal.RATE_LIMITED
    assert dict(refused.headers) == {
        b"retry-after": b"1",  # 100 ms, rounded up
        b"ratelimit-limit": b"20",
        b"ratelimit-remaining": b"0",
        b"ratelimit-reset": b"2",
    }
    assert refused.detail == {
        "key": "client_address",
        "rate": "10/s",
        "burst": 20,
        "store": "local",
    }
    ctx.now += 0.1  # one interval later: one more
    assert _verdicts(f, ctx, 2) == [CONTINUE, refused]


def test_the_burst_defaults_to_the_rate_and_addresses_count_apart() -> None:
    f = _filter({"key": "client_address", "rate": "3/m"})
    first, second = context(client_ip="192.0.2.1"), context(client_ip="192.0.2.2")
    assert [v is CONTINUE for v in _verdicts(f, first, 4)] == [True, True, True, False]
    refused = _verdicts(f, first, 1)[0]
    assert dict(refused.headers)[b"retry-after"] == b"20"
    assert _verdicts(f, second, 3) == [CONTINUE] * 3


def test_ipv6_clients_count_by_their_64_by_default() -> None:
    f = _filter({"key": "client_address", "rate": "2/h"})
    one, same_64 = context(client_ip="2001:db8:1:2::a"), context(client_ip="2001:db8:1:2:ff::b")
    assert _verdicts(f, one, 2) == [CONTINUE] * 2
    assert isinstance(_verdicts(f, same_64, 1)[0], Reply)  # a fresh /128 gains nothing
    assert _verdicts(f, context(client_ip="2001:db8:1:3::a"), 2) == [CONTINUE] * 2
    # A dual-stack socket's IPv4-mapped address is the IPv4 client.
    assert _verdicts(f, context(client_ip="192.0.2.1"), 2) == [CONTINUE] * 2
    assert isinstance(_verdicts(f, context(client_ip="::ffff:192.0.2.1"), 1)[0], Reply)


@pytest.mark.parametrize(("prefix", "shared"), [(48, True), (56, True), (64, False), (128, False)])
def test_the_ipv6_prefix_is_configurable(prefix: int, shared: bool) -> None:
    f = _filter({"key": "client_address", "rate": "1/h", "ipv6_prefix": prefix})
    assert _verdicts(f, context(client_ip="2001:db8:1:100::1"), 1) == [CONTINUE]
    second = _verdicts(f, context(client_ip="2001:db8:1:1ff::1"), 1)[0]  # another /64, same /56
    assert isinstance(second, Reply) is shared


@pytest.mark.parametrize(("key", "kind"), [("api_key", "api_key"), ("jwt_subject", "jwt")])
def test_an_identity_key_limits_only_requests_with_that_identity(key: str, kind: str) -> None:
    f = _filter({"key": key, "rate": "1/h"})
    anonymous = context()
    assert _verdicts(f, anonymous, 5) == [CONTINUE] * 5  # no such key: not limited
    other = context(identity=Identity("basic", "ops"))
    assert _verdicts(f, other, 5) == [CONTINUE] * 5
    alice = context(identity=Identity(kind, "alice"), client_ip="192.0.2.1")
    bob = context(identity=Identity(kind, "bob"), client_ip="192.0.2.1")
    assert [v is CONTINUE for v in _verdicts(f, alice, 2)] == [True, False]
    assert _verdicts(f, bob, 1) == [CONTINUE]
    # The same subject from another address shares its budget.
    moved = context(identity=Identity(kind, "alice"), client_ip="198.51.100.9")
    assert isinstance(_verdicts(f, moved, 1)[0], Reply)


def test_a_header_key_matches_any_case_and_is_bounded() -> None:
    f = _filter({"key": "header:X-User", "rate": "1/d"})
    ctx = context()
    assert _verdicts(f, ctx, 3) == [CONTINUE] * 3  # no header: not limited
    assert _verdicts(f, ctx, 1, [(b"x-user", b"carol")]) == [CONTINUE]
    assert isinstance(_verdicts(f, ctx, 1, [(b"X-USER", b"carol")])[0], Reply)
    long = b"a" * 256
    assert _verdicts(f, ctx, 1, [(b"X-User", long + b"1")]) == [CONTINUE]
    # Only the first 256 bytes count: padding makes no new key.
    assert isinstance(_verdicts(f, ctx, 1, [(b"X-User", long + b"2")])[0], Reply)


def test_every_limit_must_admit() -> None:
    f = _filter(
        {"key": "client_address", "rate": "100/s"},
        {"key": "header:X-Tenant", "rate": "2/s", "response_headers": True},
    )
    ctx = context()
    tenant = [(b"X-Tenant", b"t1")]
    assert [v is CONTINUE for v in _verdicts(f, ctx, 3, tenant)] == [True, True, False]
    assert _verdicts(f, ctx, 5) == [CONTINUE] * 5  # without the header only the first limits


def test_admitted_responses_carry_the_fields_when_asked() -> None:
    f = _filter({"key": "client_address", "rate": "10/s", "response_headers": True})
    ctx = context()
    assert _verdicts(f, ctx, 1) == [CONTINUE]
    head = ResponseHead(200, b"OK", b"Server: x\r\n", Framing.LENGTH, 0)
    assert f.on_response_head(ctx, head, _never) is CONTINUE
    assert head.block == (
        b"Server: x\r\nRateLimit-Limit: 10\r\nRateLimit-Remaining: 9\r\nRateLimit-Reset: 1\r\n"
    )
    quiet = _filter({"key": "client_address", "rate": "10/s"})
    ctx = context()
    quiet.on_request_head(ctx, request(), _never)
    head = ResponseHead(200, b"OK", b"", Framing.LENGTH, 0)
    quiet.on_response_head(ctx, head, _never)
    assert head.block == b""


def test_a_full_table_is_evented() -> None:
    specs = msgspec.convert([{"key": "header:X-K", "rate": "1/s"}], list[LimitSpec])
    f = RateLimitFilter(build(specs, PolicyEnv()).local, (), NodeTable(1), None, lambda: START)
    ctx = context()
    for i in range(9):
        assert not isinstance(_verdicts(f, ctx, 1, [(b"X-K", b"%d" % i)])[0], Stop)
    assert ctx.events == [("rate_limit.table_full", {"evictions": 1})]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ({"key": "cookie", "rate": "1/s"}, "invalid key 'cookie'"),
        ({"key": "header:", "rate": "1/s"}, "invalid key"),
        ({"key": "client_address", "rate": "1/w"}, "invalid rate '1/w'"),
        ({"key": "client_address", "rate": "1/s", "burst": 0}, "Expected `int` >= 1"),
        ({"key": "client_address", "rate": "1/s", "store": "disk"}, "Invalid enum value .disk."),
        ({"key": "client_address", "rate": "1/s", "brust": 3}, "unknown field `brust`"),
        ({"key": "client_address", "rate": "1/s", "ipv6_prefix": 32}, "Expected `int` >= 48"),
        ({"key": "client_address", "rate": "1/s", "ipv6_prefix": 129}, "Expected `int` <= 128"),
        ({"key": "api_key", "rate": "1/s", "ipv6_prefix": 64}, "with key: client_address only"),
    ],
)
def test_rejects_a_malformed_limit(limit: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=message):
        msgspec.convert([limit], list[LimitSpec], strict=True)


def test_a_redis_limit_needs_the_redis_section() -> None:
    specs = msgspec.convert([{"key": "api_key", "rate": "1/s", "store": "redis"}], list[LimitSpec])
    with pytest.raises(ValueError, match="needs the redis: section"):
        build(specs, PolicyEnv())


@given(
    st.integers(1, 1_000_000_000),
    st.integers(0, 1_000_000_000),
    st.integers(0, 10**17),
)
def test_the_ratelimit_lines_are_the_fields_formatted(
    burst: int, remaining: int, reset: int
) -> None:
    """The lines joined per request say what formatting the three fields says."""
    limit = compile_limit(LimitSpec(key="client_address", rate="10/s", burst=burst))
    decision = Decision(True, 0, 0, remaining, reset)
    assert limit.field_lines(decision) == (
        b"RateLimit-Limit: %d\r\nRateLimit-Remaining: %d\r\nRateLimit-Reset: %d\r\n"
        % (burst, remaining, math.ceil(reset / 1_000_000))
    )
