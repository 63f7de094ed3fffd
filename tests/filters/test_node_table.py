"""The node's shared table: bounded whatever the keys, shared with forked processes."""

from __future__ import annotations

import os

from outwork.filters.node_table import SLOTS, Change, NodeTable


def _count(table: NodeTable, key: int, now: int) -> tuple[int, int, bool]:
    return table.update(key, now, lambda a, b: (now + 1000, a + 1, 0))


def _store(expires: int) -> Change:
    return lambda a, b: (expires, 1, 0)


def test_values_live_until_they_expire() -> None:
    table = NodeTable(buckets=4)
    key = table.key(b"12345678", b"192.0.2.1")
    assert _count(table, key, 10)[0] == 1
    assert _count(table, key, 20)[0] == 2
    assert table.get(key, 20) == (2, 0)
    assert table.get(key, 10_000) is None  # expired: as if never seen
    assert _count(table, key, 10_000)[0] == 1


def test_a_full_bucket_evicts_the_entry_expiring_first_and_counts_it() -> None:
    table = NodeTable(buckets=1)
    keys = [table.key(b"12345678", b"%d" % i) for i in range(SLOTS + 3)]
    for i, key in enumerate(keys[:SLOTS]):
        table.update(key, 0, _store(1000 + i))
    assert table.evictions == 0
    _, _, evicted = table.update(keys[SLOTS], 0, lambda a, b: (5000, 1, 0))
    assert evicted and table.evictions == 1
    assert table.get(keys[0], 0) is None  # the one expiring first went
    assert all(table.get(key, 0) == (1, 0) for key in keys[1 : SLOTS + 1])
    # An expired entry is reused without counting an eviction.
    _, _, evicted = table.update(keys[SLOTS + 1], 1001, lambda a, b: (6000, 1, 0))
    assert not evicted and table.evictions == 1


def test_many_keys_use_no_more_memory() -> None:
    table = NodeTable(buckets=64)
    for i in range(20_000):
        _count(table, table.key(b"12345678", b"%d" % i), 0)
    assert table.evictions == 20_000 - 64 * SLOTS
    assert len(table._memory) == 8 + 64 * SLOTS * 32


def test_a_single_process_table_counts_alike_without_locks() -> None:
    locked, unlocked = NodeTable(buckets=1), NodeTable(buckets=1, forked=False)
    for table in (locked, unlocked):
        for i in range(3 * SLOTS):
            _count(table, table.key(b"12345678", b"%d" % (i % (SLOTS + 2))), i)
    assert unlocked.evictions == locked.evictions > 0
    for i in range(SLOTS + 2):
        key = locked.key(b"12345678", b"%d" % i)
        assert unlocked.get(key, 3 * SLOTS) == locked.get(key, 3 * SLOTS)


def test_forked_processes_count_in_one_table() -> None:
    _count_in_three_processes(NodeTable(buckets=16))


def test_a_table_made_without_locks_takes_them_before_the_fork() -> None:
    """The supervisor's config load may make the table first (no locks: one process); it
    shares it with the workers it forks only after `share_with_forks`."""
    table = NodeTable(buckets=16, forked=False)
    table.share_with_forks()
    _count_in_three_processes(table)


def _count_in_three_processes(table: NodeTable) -> None:
    key = table.key(b"12345678", b"shared")
    children = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            for _ in range(500):
                _count(table, key, 0)
            os._exit(0)
        children.append(pid)
    for _ in range(500):
        _count(table, key, 0)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    assert table.get(key, 0) == (1500, 0)
