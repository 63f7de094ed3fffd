"""Metrics of all workers on one /metrics page: snapshot files in the supervisor's run directory.

    <run dir>/                    made by the supervisor (mode 0700), removed when it stops
      worker-<pid>.json           a live worker's counters, rewritten about once a second and
                                  at exit (written to a temporary file, then renamed)
      retired.json                the sum of the counters of every worker that has exited
      ready, stopping             markers for /readyz: all workers started; stopping

The admin listener (in worker 0) sums, at scrape time, its own live counters, the other
workers' files and `retired.json`. When the supervisor reaps a worker it adds that worker's
last file to `retired.json` and deletes it, so the counters of a replaced or reloaded worker do
not vanish: totals only grow, like the counters of one process. What a worker counted after its
last write and before it was killed (SIGKILL, a crash) is lost: at most about a second. A
clean exit (drain, reload) writes a last snapshot first. Gauges (open connections, upstream
health) are taken from live workers only.

Why files and not shared memory: a worker only ever writes its own file, at its own pace, off
the hot path (one small JSON write a second); a worker that dies mid-write leaves a temporary
file, never a torn counter; the reader needs no lock; and the supervisor, which has no event
loop, only touches the directory when a worker exits.

`retired.json` carries a generation, bumped on every merge: a reader that saw it change while
it read the worker files reads again, so a worker merged meanwhile is not counted twice or
missed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import msgspec

from outwork.config.files import FileTooLarge, read_bounded
from outwork.observe.metrics import Labels, Snapshot, Value, merge

RETIRED = "retired.json"
READY = "ready"
STOPPING = "stopping"
_PREFIX = "worker-"
_SUFFIX = ".json"
# Our own files, but read with a cap anyway: a corrupt file must not take the admin down.
MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
_READ_ATTEMPTS = 3

# On disk: family -> [[label values, value], ...] (JSON objects need string keys).
_Wire = dict[str, list[tuple[tuple[str, ...], float | list[float]]]]


class _Retired(msgspec.Struct):
    generation: int = 0
    families: _Wire = msgspec.field(default_factory=dict)


class _WorkerFile(msgspec.Struct):
    pid: int
    families: _Wire


def _to_wire(snapshot: Snapshot) -> _Wire:
    return {name: list(samples.items()) for name, samples in snapshot.items()}


def _from_wire(wire: _Wire) -> dict[str, dict[Labels, Value]]:
    return {name: dict(samples) for name, samples in wire.items()}


def _read(path: str) -> bytes | None:
    try:
        return read_bounded(path, MAX_SNAPSHOT_BYTES)
    except (FileNotFoundError, FileTooLarge):
        return None


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _read_retired(run_dir: str) -> _Retired:
    data = _read(os.path.join(run_dir, RETIRED))
    if data is None:
        return _Retired()
    try:
        return msgspec.json.decode(data, type=_Retired)
    except msgspec.DecodeError:  # also a torn or foreign file
        return _Retired()


def make_run_dir() -> str:
    """The supervisor's run directory (private to this user)."""
    return tempfile.mkdtemp(prefix="outwork-run-")


def remove_run_dir(run_dir: str) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)


def mark(run_dir: str, name: str) -> None:
    """Create a marker file (READY, STOPPING)."""
    with open(os.path.join(run_dir, name), "wb"):
        pass


def marked(run_dir: str, name: str) -> bool:
    return os.path.exists(os.path.join(run_dir, name))


def publish(run_dir: str, snapshot: Snapshot) -> None:
    """Write this worker's snapshot (called by the worker, about once a second and at exit)."""
    pid = os.getpid()
    data = msgspec.json.encode(_WorkerFile(pid, _to_wire(snapshot)))
    try:
        _write_atomic(os.path.join(run_dir, f"{_PREFIX}{pid}{_SUFFIX}"), data)
    except OSError:
        pass  # the run directory is gone (the supervisor stopped): nothing to share with


def retire(run_dir: str, pid: int) -> None:
    """Add a reaped worker's last counters to `retired.json` and delete its file (called by
    the supervisor once the worker has exited)."""
    path = os.path.join(run_dir, f"{_PREFIX}{pid}{_SUFFIX}")
    for name in os.listdir(run_dir):  # a write it did not finish
        if name.startswith(f"{_PREFIX}{pid}{_SUFFIX}.") and name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(run_dir, name))
    data = _read(path)
    if data is None:
        return
    try:
        worker = msgspec.json.decode(data, type=_WorkerFile)
    except msgspec.DecodeError:  # also a torn or foreign file
        worker = None
    if worker is not None:
        retired = _read_retired(run_dir)
        total: Snapshot = _from_wire(retired.families)
        merge(total, _from_wire(worker.families), gauges=False)
        updated = _Retired(retired.generation + 1, _to_wire(total))
        _write_atomic(os.path.join(run_dir, RETIRED), msgspec.json.encode(updated))
    os.unlink(path)


def gather(run_dir: str, own: Snapshot) -> Snapshot:
    """The sum of this worker's live snapshot, the other workers' files and the retired
    counters (called by the admin listener at scrape time)."""
    pid = os.getpid()
    total: Snapshot = {}
    for _ in range(_READ_ATTEMPTS):
        retired = _read_retired(run_dir)
        total = {}
        merge(total, own, gauges=True)
        workers = 1
        for name in sorted(os.listdir(run_dir)):
            if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
                continue
            data = _read(os.path.join(run_dir, name))
            if data is None:
                continue  # retired meanwhile: the generation check below reads again
            try:
                worker = msgspec.json.decode(data, type=_WorkerFile)
            except msgspec.DecodeError:  # also a torn or foreign file
                continue
            if worker.pid == pid:
                continue  # this worker: its live values are already in
            merge(total, _from_wire(worker.families), gauges=True)
            workers += 1
        if _read_retired(run_dir).generation == retired.generation:
            break
    merge(total, _from_wire(retired.families), gauges=False)
    total["outwork_workers_reporting"] = {(): float(workers)}
    return total
