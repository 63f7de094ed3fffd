"""Which target of an upstream gets a request: round robin, least connections, consistent hash.

A balancer only chooses; the pool tells it which targets may be chosen (in rotation, and not
already tried by this request) as a bit mask, and keeps the per-target load it reads.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outwork.proxy.exchange import Exchange

# Points per target on the hash ring: enough that each target's share stays within a few
# percent of even, few enough that building the ring (at config load) stays cheap.
VIRTUAL_NODES = 160
# Bytes of a header value hashed for consistent_hash; a longer value is hashed by its prefix.
MAX_HASH_KEY = 256


class Balancer:
    def pick(self, ex: Exchange, allowed: int) -> int | None:
        """A target index whose bit is set in `allowed`, or None when there is none."""
        raise NotImplementedError


class RoundRobin(Balancer):
    def __init__(self, count: int) -> None:
        self._count = count
        self._next = 0

    def pick(self, ex: Exchange, allowed: int) -> int | None:
        count = self._count
        target = self._next if self._next < count else 0
        if allowed >> target & 1:  # the usual case, every target in rotation: no loop
            self._next = target + 1
            return target
        for step in range(1, count):
            target = (self._next + step) % count
            if allowed >> target & 1:
                self._next = target + 1
                return target
        return None


class LeastConnections(Balancer):
    """The target with the fewest requests in flight; ties go round robin, so an idle upstream
    still spreads its requests."""

    def __init__(self, load: list[int]) -> None:
        self._load = load  # the pool's list, updated by the pool
        self._next = 0

    def pick(self, ex: Exchange, allowed: int) -> int | None:
        load = self._load
        count = len(load)
        best = None
        best_load = 0
        for step in range(count):
            target = (self._next + step) % count
            if allowed >> target & 1 and (best is None or load[target] < best_load):
                best = target
                best_load = load[target]
        if best is not None:
            self._next = best + 1
        return best


def ring_point(key: bytes) -> int:
    """A stable 64-bit hash: every worker process, and every restart, places keys alike
    (Python's own hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class ConsistentHash(Balancer):
    """A hash ring with virtual nodes. A target's points depend only on its own name, so
    adding or removing a target moves only the keys of the arcs it gains or loses. A request
    whose target is out of rotation walks on along the ring to the next allowed one."""

    def __init__(self, names: list[str], header: bytes | None) -> None:
        self._header = header  # lower case; None: hash on the client address
        points: list[tuple[int, int]] = []
        seen: dict[str, int] = {}
        for target, name in enumerate(names):
            # A target listed twice gets its own points for each listing.
            copy = seen[name] = seen.get(name, -1) + 1
            for i in range(VIRTUAL_NODES):
                points.append((ring_point(f"{name}#{copy}#{i}".encode()), target))
        points.sort()
        self._hashes = [p[0] for p in points]
        self._targets = [p[1] for p in points]

    def key(self, ex: Exchange) -> bytes:
        header = self._header
        if header is not None and ex.head is not None:
            for name, value in ex.head.headers:
                if len(name) == len(header) and name.lower() == header:
                    return b"h:" + value[:MAX_HASH_KEY]
        return b"a:" + ex.client.peer_host

    def pick(self, ex: Exchange, allowed: int) -> int | None:
        return self.pick_key(self.key(ex), allowed)

    def pick_key(self, key: bytes, allowed: int) -> int | None:
        if not allowed:
            return None
        hashes = self._hashes
        targets = self._targets
        start = bisect.bisect_left(hashes, ring_point(key))
        size = len(hashes)
        for step in range(size):
            target = targets[(start + step) % size]
            if allowed >> target & 1:
                return target
        return None


def make_balancer(kind: str, names: list[str], header: bytes | None, load: list[int]) -> Balancer:
    if kind == "least_connections":
        return LeastConnections(load)
    if kind == "consistent_hash":
        return ConsistentHash(names, header)
    return RoundRobin(len(names))
