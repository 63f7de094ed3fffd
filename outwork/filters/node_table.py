"""One fixed-size table in shared memory for what a node's workers count together: the `local`
rate limits' timestamps and the bans (`ban.py`).

It is an anonymous `MAP_SHARED` mapping made before the supervisor forks (`shared()`, called
by `workers.supervise`; with `workers: 1` the process makes it at its first config load), so
every worker, a replacement or a reloaded one too, sees the same memory, and a reload or a dead
worker loses no count. A `multiprocessing.Lock` per stripe of buckets guards it, once
`share_with_forks` says processes will share it; a single process (`workers: 1`) runs each
update whole, between two of its loop's callbacks, and takes no lock (an acquire and a release
were about a tenth of a rate-limited request's policy cost).

Memory is bounded whatever the peers send: keys are hashed (Python's own `hash` of bytes:
SipHash keyed by the interpreter's random secret, the same in every forked worker and unknown
to peers, so a peer choosing header values cannot aim them at one bucket; do not fix
PYTHONHASHSEED for the gateway), each hash may
live only in its bucket of `SLOTS` slots, an expired slot is reused, and when a bucket holds
only live entries the one that expires first is evicted (it carries the least: a rate-limit
entry about to expire is nearly a fresh one) and counted (`evictions`).

A slot is four 64-bit integers: the key's hash (0: free), when the entry expires (wall-clock
microseconds), and two values whose meaning is the caller's.
"""

from __future__ import annotations

import mmap
import multiprocessing
import struct
from collections.abc import Callable
from multiprocessing.synchronize import Lock
from typing import Final

SLOTS: Final = 8  # slots per bucket: the probe length
SLOT: Final = struct.Struct("<Qqqq")
BUCKET: Final = struct.Struct("<" + "Qqqq" * SLOTS)
# Only the keys of a bucket: a lookup reads 8 integers, not 32, then the slot it found.
BUCKET_KEYS: Final = struct.Struct("<" + "Q24x" * SLOTS)
HEADER: Final = struct.Struct("<Q")  # evictions, at offset 0
STRIPES: Final = 64  # locks; bucket i takes lock i % STRIPES
DEFAULT_BUCKETS: Final = 16384  # 131072 entries, 4 MiB
# The struct methods `update` calls, bound once (a method look-up each is most of their cost).
_unpack_keys: Final = BUCKET_KEYS.unpack_from
_unpack_slot: Final = SLOT.unpack_from
_pack_slot: Final = SLOT.pack_into
SLOT_SIZE: Final = SLOT.size
# The sizes as module constants: a Struct's `size` is an attribute look-up per read.
HEADER_SIZE: Final = HEADER.size
BUCKET_SIZE: Final = BUCKET.size

# change(a, b) -> (expires, a, b) to store, or None to leave the slot as it is.
Change = Callable[[int, int], "tuple[int, int, int] | None"]


class NodeTable:
    def __init__(self, buckets: int = DEFAULT_BUCKETS, forked: bool = True) -> None:
        """`forked`: processes forked later share the table (locked from the start)."""
        self.buckets = buckets
        self._memory = mmap.mmap(-1, HEADER_SIZE + buckets * BUCKET_SIZE)  # MAP_SHARED
        self._locks: list[Lock] = []
        # Each lock's acquire and release (the semaphore's own methods), looked up once: not
        # `with` (a Lock's __enter__ and __exit__ are Python functions, a frame each), and not
        # a method look-up per update either. Empty while no other process shares the table.
        self._acquire: list[Callable[[], bool]] = []
        self._release: list[Callable[[], None]] = []
        self._header_lock: Lock | None = None
        if forked:
            self.share_with_forks()

    def share_with_forks(self) -> None:
        """Guard the table with its locks from now on: called before the first fork (the
        single process's table needs none, as no other process or thread updates it)."""
        if self._locks:
            return
        self._locks = [multiprocessing.Lock() for _ in range(STRIPES)]
        self._acquire = [lock.acquire for lock in self._locks]
        self._release = [lock.release for lock in self._locks]
        self._header_lock = multiprocessing.Lock()

    def key(self, namespace: bytes, value: bytes) -> int:
        """The hash a value is stored under; `namespace` (fixed length per caller) keeps one
        limit's keys apart from another's and from the bans'."""
        return (hash(namespace + value) & 0xFFFF_FFFF_FFFF_FFFF) or 1

    def update(self, key: int, now: int, change: Change) -> tuple[int, int, bool]:
        """Apply `change` to the key's values ((0, 0) when it has none or they expired), under
        the bucket's lock. Returns the values now stored and whether a live entry was evicted."""
        bucket = key % self.buckets
        offset = HEADER_SIZE + bucket * BUCKET_SIZE
        memory = self._memory
        stripe = bucket % STRIPES
        locked = bool(self._locks)
        if locked:
            self._acquire[stripe]()
        try:
            try:
                found = _unpack_keys(memory, offset).index(key)
            except ValueError:
                found = -1
            a = b = 0
            if found >= 0:
                _, expires, a, b = _unpack_slot(memory, offset + found * SLOT_SIZE)
                if expires <= now:
                    a = b = 0
            result = change(a, b)
            if result is None:
                return a, b, False
            evicted = False
            if found < 0:
                slots = BUCKET.unpack_from(memory, offset)
                index = _free_or_oldest(slots, now)
                evicted = slots[index] != 0 and slots[index + 1] > now
                found = index // 4
            expires, a, b = result
            _pack_slot(memory, offset + found * SLOT_SIZE, key, expires, a, b)
        finally:
            if locked:
                self._release[stripe]()
        if evicted:
            header_lock = self._header_lock
            if header_lock is not None:
                header_lock.acquire()
            try:
                HEADER.pack_into(memory, 0, HEADER.unpack_from(memory, 0)[0] + 1)
            finally:
                if header_lock is not None:
                    header_lock.release()
        return a, b, evicted

    def get(self, key: int, now: int) -> tuple[int, int] | None:
        """The key's live values, or None."""
        bucket = key % self.buckets
        offset = HEADER_SIZE + bucket * BUCKET_SIZE
        if self._locks:
            with self._locks[bucket % STRIPES]:
                slots = BUCKET.unpack_from(self._memory, offset)
        else:
            slots = BUCKET.unpack_from(self._memory, offset)
        try:
            i = 4 * slots[::4].index(key)
        except ValueError:
            return None
        return (slots[i + 2], slots[i + 3]) if slots[i + 1] > now else None

    @property
    def evictions(self) -> int:
        """Live entries pushed out by a full bucket, since the table was made (all workers)."""
        return int(HEADER.unpack_from(self._memory, 0)[0])


def _free_or_oldest(slots: tuple[int, ...], now: int) -> int:
    oldest = 0
    for i in range(0, 4 * SLOTS, 4):
        if slots[i] == 0 or slots[i + 1] <= now:
            return i
        if slots[i + 1] < slots[oldest + 1]:
            oldest = i
    return oldest


_shared: NodeTable | None = None


def shared(workers: bool = False) -> NodeTable:
    """The node's table: made once per process tree. `workers`: the supervisor's call, before
    it forks them (the config it loaded first may have made the table without locks)."""
    global _shared
    if _shared is None:
        _shared = NodeTable(forked=workers)
    elif workers:
        _shared.share_with_forks()
    return _shared
