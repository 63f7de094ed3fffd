"""The balancers alone: properties of the hash ring, round robin and least connections."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.upstream.balancer import ConsistentHash, LeastConnections, RoundRobin

NAMES = [f"10.0.0.{i}:8080" for i in range(1, 9)]
keys = st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=50, unique=True)


@settings(max_examples=50, deadline=None)
@given(keys=keys, count=st.integers(2, 8), removed=st.integers(0, 7))
def test_removing_a_target_moves_only_its_keys(keys: list[bytes], count: int, removed: int) -> None:
    removed %= count
    names = NAMES[:count]
    full = ConsistentHash(names, None)
    rest = [name for i, name in enumerate(names) if i != removed]
    smaller = ConsistentHash(rest, None)
    everyone = (1 << count) - 1
    for key in keys:
        before = names[full.pick_key(key, everyone)]  # type: ignore[index]
        after = rest[smaller.pick_key(key, (1 << (count - 1)) - 1)]  # type: ignore[index]
        if before != names[removed]:
            assert after == before
        # Out of rotation walks the ring to the same place as removed.
        assert names[full.pick_key(key, everyone & ~(1 << removed))] == after  # type: ignore[index]


@settings(max_examples=50, deadline=None)
@given(key=st.binary(max_size=40), allowed=st.integers(0, 255))
def test_hash_picks_only_allowed_targets(key: bytes, allowed: int) -> None:
    ring = ConsistentHash(NAMES, None)
    target = ring.pick_key(key, allowed)
    if allowed:
        assert target is not None and allowed >> target & 1
    else:
        assert target is None


def test_hash_spreads_keys_over_targets() -> None:
    ring = ConsistentHash(NAMES[:4], None)
    shares = Counter(ring.pick_key(b"key-%d" % i, 0b1111) for i in range(4000))
    # 160 points per target keep every share near a quarter.
    assert all(700 < n < 1300 for n in shares.values()), shares


def test_a_target_listed_twice_gets_two_shares() -> None:
    ring = ConsistentHash([NAMES[0], NAMES[0], NAMES[1]], None)
    shares = Counter(ring.pick_key(b"key-%d" % i, 0b111) for i in range(3000))
    assert set(shares) == {0, 1, 2}


@given(allowed=st.integers(1, 15), rounds=st.integers(1, 40))
def test_round_robin_takes_allowed_targets_in_turn(allowed: int, rounds: int) -> None:
    balancer = RoundRobin(4)
    picked = [balancer.pick(None, allowed) for _ in range(rounds)]  # type: ignore[arg-type]
    members = [t for t in range(4) if allowed >> t & 1]
    assert picked == [members[i % len(members)] for i in range(rounds)]


def test_least_connections_picks_the_least_loaded_and_rotates_ties() -> None:
    load = [2, 0, 1, 0]
    balancer = LeastConnections(load)
    assert [balancer.pick(None, 0b1111) for _ in range(4)] == [1, 3, 1, 3]  # type: ignore[arg-type]
    assert balancer.pick(None, 0b0101) == 2  # type: ignore[arg-type]
    load[1] = 5
    assert balancer.pick(None, 0b0011) == 0  # type: ignore[arg-type]
    assert balancer.pick(None, 0) is None  # type: ignore[arg-type]
