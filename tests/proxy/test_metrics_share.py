"""Snapshots of several workers summed through the run directory: real files, the real merge."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from outwork.observe import metrics_share
from outwork.observe.metrics import LATENCY_BUCKETS, Histogram, Metrics, Snapshot


def snapshot_of(requests: int, active: int, healthy: bool = True) -> Snapshot:
    return {
        "outwork_requests_total": {("api", "200"): float(requests)},
        "outwork_connections_active": {(): float(active)},
        "outwork_upstream_healthy": {("api", "127.0.0.1:1"): 1.0 if healthy else 0.0},
    }


def publish_as(run_dir: str, pid: int, snapshot: Snapshot) -> None:
    """Publish as if from another worker process (`publish` names the file by its pid)."""
    metrics_share.publish(run_dir, snapshot)
    mine = Path(run_dir, f"worker-{os.getpid()}.json")
    data = mine.read_bytes().replace(b'"pid":%d' % os.getpid(), b'"pid":%d' % pid, 1)
    mine.unlink()
    Path(run_dir, f"worker-{pid}.json").write_bytes(data)


def test_histogram_buckets_are_inclusive_upper_bounds() -> None:
    h = Histogram()
    for value in (0.0, LATENCY_BUCKETS[0], LATENCY_BUCKETS[0] * 1.01, 1e9):
        h.observe("r", value)
    series = h.series["r"]
    assert series[0] == 2  # 0 and exactly the first bound: le is inclusive
    assert series[1] == 1
    assert series[len(LATENCY_BUCKETS)] == 1  # +Inf
    assert series[-1] == 1e9 + LATENCY_BUCKETS[0] * 2.01


def test_live_workers_sum_and_a_retired_worker_is_kept(tmp_path: Path) -> None:
    run_dir = str(tmp_path)
    publish_as(run_dir, 1001, snapshot_of(5, 2))
    publish_as(run_dir, 1002, snapshot_of(7, 3, healthy=False))
    total = metrics_share.gather(run_dir, snapshot_of(1, 1))
    assert total["outwork_requests_total"][("api", "200")] == 13
    assert total["outwork_connections_active"][()] == 6
    assert total["outwork_upstream_healthy"][("api", "127.0.0.1:1")] == 0  # down in one worker
    assert total["outwork_workers_reporting"][()] == 3

    metrics_share.retire(run_dir, 1002)  # it exited: counters kept, gauges gone
    assert not Path(run_dir, "worker-1002.json").exists()
    total = metrics_share.gather(run_dir, snapshot_of(1, 1))
    assert total["outwork_requests_total"][("api", "200")] == 13
    assert total["outwork_connections_active"][()] == 3
    assert total["outwork_upstream_healthy"][("api", "127.0.0.1:1")] == 1
    assert total["outwork_workers_reporting"][()] == 2


def test_a_corrupt_or_partial_file_is_skipped(tmp_path: Path) -> None:
    run_dir = str(tmp_path)
    publish_as(run_dir, 1001, snapshot_of(5, 2))
    Path(run_dir, "worker-1003.json").write_bytes(b'{"pid": 1003, "famil')
    Path(run_dir, "worker-1004.json.1004.tmp").write_bytes(b"{")
    total = metrics_share.gather(run_dir, snapshot_of(1, 1))
    assert total["outwork_requests_total"][("api", "200")] == 6
    metrics_share.retire(run_dir, 1003)
    assert sorted(os.listdir(run_dir)) == ["worker-1001.json", "worker-1004.json.1004.tmp"]


@settings(max_examples=50, deadline=None)
@given(
    workers=st.lists(
        st.dictionaries(
            st.sampled_from(["a", "b", "c"]),
            st.lists(st.floats(0, 100, allow_nan=False), max_size=5),
            max_size=3,
        ),
        min_size=1,
        max_size=5,
    ),
    retired=st.sets(st.integers(0, 4)),
)
def test_sum_is_the_same_whichever_workers_retired(
    workers: list[dict[str, list[float]]], retired: set[int]
) -> None:
    """Counters and histograms of N workers, some of them retired: the sum never changes."""
    run_dir = tempfile.mkdtemp()  # not tmp_path: one per hypothesis example
    try:
        expected = Metrics()
        for i, observations in enumerate(workers):
            metrics = Metrics()
            for route, values in observations.items():
                for value in values:
                    for m in (metrics, expected):
                        m.requests[(route, 200)] += 1
                        m.request_seconds.observe(route, value)
            publish_as(run_dir, 2000 + i, metrics.snapshot())
        for i in retired:
            if i < len(workers):
                metrics_share.retire(run_dir, 2000 + i)
        own = Metrics().snapshot()
        total = metrics_share.gather(run_dir, own)
        want = expected.snapshot()
        for family in ("outwork_requests_total", "outwork_request_duration_seconds"):
            got = total.get(family, {})
            assert set(got) == set(want[family])
            for labels, wanted in want[family].items():
                found = got[labels]
                if isinstance(wanted, list):
                    assert isinstance(found, list) and found[:-1] == wanted[:-1]
                    assert abs(found[-1] - wanted[-1]) < 1e-6  # sums added in another order
                else:
                    assert found == wanted
    finally:
        metrics_share.remove_run_dir(run_dir)
