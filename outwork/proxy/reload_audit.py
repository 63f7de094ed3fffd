"""The audit line of a reload: one per applied or refused reload, on the security-events sink
(the writer the admin API's `admin.audit` lines use), so a SIEM sees config changes next to
the attacks:

    {"time": "...", "event": "config.reload_refused", "peer": "-", "listener": "-",
     "detail": {"file": "/etc/outwork/outwork.yaml", "hash_before": "sha256:...",
                "hash_after": "sha256:...", "changes": {"keys": {...}, "policies": {...},
                "routes": {...}}, "reason": "...", "problems": [...], "problem_count": 3}}

`changes` lists the top-level keys, policies and routes added, removed or changed (for a
refused reload: what it would have changed; null when the file is not readable YAML). A
refused reload changed nothing: the running config keeps serving.
"""

from __future__ import annotations

import json
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from outwork.config.changes import ConfigSummary, changes
from outwork.config.files import read_bounded
from outwork.observe.metrics import Metrics
from outwork.observe.security_events import SecurityEventLog

APPLIED = "config.reload_applied"
REFUSED = "config.reload_refused"
MAX_PROBLEMS = 5  # problems quoted in a refusal's line; the full list goes to stderr
POLL_INTERVAL = 0.1  # seconds between looks at the sink for a reload's line
MAX_READ = 1 << 20  # bytes of the sink read per look (a busy sink: the rest at the next)
ADMIN_TIMEOUT = 2.0  # seconds per GET /reload (the admin answers at once)


def _detail(file: str, before: ConfigSummary | None, after: ConfigSummary | None) -> dict[str, Any]:
    return {
        "file": file,
        "hash_before": before.digest if before is not None else None,
        "hash_after": after.digest if after is not None else None,
        "changes": changes(before, after),
    }


def applied_detail(
    file: str, before: ConfigSummary | None, after: ConfigSummary | None
) -> dict[str, Any]:
    return _detail(file, before, after)


def refused_detail(
    file: str,
    before: ConfigSummary | None,
    after: ConfigSummary | None,
    reason: str,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    detail = _detail(file, before, after)
    detail["reason"] = reason
    if problems is not None:
        detail["problems"] = problems[:MAX_PROBLEMS]
        detail["problem_count"] = len(problems)
    return detail


def emit(log: SecurityEventLog, event: str, detail: dict[str, Any]) -> None:
    """A reload has no peer and no listener: both are `-`."""
    log.emit(event, "-", "-", detail)


def emit_to(target: str, event: str, detail: dict[str, Any]) -> None:
    """For the supervisor of `workers: N`, which keeps no sink open (it serves no traffic):
    the line goes to `logging.security_events` (a file, or `-` for stderr) and the file is
    closed again. Its count is not in /metrics (the supervisor publishes none)."""
    log = SecurityEventLog(target, Metrics())
    try:
        emit(log, event, detail)
    finally:
        log.close()


def readable_back(target: str) -> bool:
    """Whether `outwork reload` can read the gateway's verdict back from `target`: a file (or
    none yet), not `-`, and not a FIFO, whose lines belong to its reader (and which a reader
    waits on while no gateway has it open)."""
    if target == "-":
        return False
    try:
        return stat.S_ISREG(os.stat(target).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def sink_size(target: str) -> int:
    """Where a reader of `target` starts to look for the next reload's line."""
    try:
        return Path(target).stat().st_size
    except OSError:
        return 0


def wait_for_outcome(
    target: str, offset: int, digest: str, timeout: float
) -> tuple[str, dict[str, Any]] | None:
    """The (event, detail) of the first reload line after `offset` in the sink file `target`
    about the config whose hash is `digest`, or None if none came within `timeout` seconds
    (`outwork reload` reads what the gateway decided)."""
    deadline = time.monotonic() + timeout
    pending = b""
    while True:
        try:
            with open(target, "rb") as sink:
                sink.seek(offset)
                chunk = sink.read(MAX_READ)
        except OSError:
            chunk = b""
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            found = _reload_line(line, digest)
            if found is not None:
                return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_INTERVAL)


def _reload_line(line: bytes, digest: str) -> tuple[str, dict[str, Any]] | None:
    if b'"config.reload_' not in line:
        return None  # most lines: other events, not parsed
    try:
        entry = json.loads(line)
        event, detail = entry["event"], entry["detail"]
    except (ValueError, KeyError, TypeError):
        return None
    if event in (APPLIED, REFUSED) and isinstance(detail, dict):
        if detail.get("hash_after") == digest:
            return event, detail
    return None


# ----- the last reload's verdict, for the admin API's GET /reload ------------------------

STATUS_FILE = "last-reload.json"  # in the supervisor's run directory, with `workers: N`
MAX_STATUS_BYTES = 64 * 1024


def status(serial: int, event: str, detail: dict[str, Any]) -> dict[str, Any]:
    """What GET /reload tells of a reload: its verdict, hashes and reason, not the problems
    (the admin listener has no authentication for reads; `check` shows them to whoever has the
    file)."""
    record = {
        "serial": serial,
        "result": "applied" if event == APPLIED else "refused",
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "hash_before": detail.get("hash_before"),
        "hash_after": detail.get("hash_after"),
    }
    if "reason" in detail:
        record["reason"] = detail["reason"]
    return record


def write_status(run_dir: str, record: dict[str, Any]) -> None:
    path = os.path.join(run_dir, STATUS_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(path + ".tmp", path)  # a reader sees the old record or the new, never half


def read_status(run_dir: str) -> dict[str, Any] | None:
    try:
        record = json.loads(read_bounded(os.path.join(run_dir, STATUS_FILE), MAX_STATUS_BYTES))
    except (OSError, ValueError):  # FileTooLarge included
        return None
    return record if isinstance(record, dict) else None


def admin_status(admin: str) -> dict[str, Any] | None:
    """GET /reload from the admin listener at `admin` (host:port), or None when it does not
    answer (not running, an older gateway without the endpoint)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{admin}/reload", timeout=ADMIN_TIMEOUT) as answer:
            status = json.loads(answer.read(MAX_STATUS_BYTES))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return status if isinstance(status, dict) else None


def wait_for_admin(
    admin: str, previous: Any, digest: str, timeout: float
) -> tuple[str, dict[str, Any]] | None:
    """The (event, verdict) of the first reload after `previous` (the admin's `last` before
    the signal) about the config whose hash is `digest`, or None within `timeout` seconds. The
    admin may not answer for a moment (with `workers: N`, worker 0 is replaced)."""
    deadline = time.monotonic() + timeout
    while True:
        status = admin_status(admin)
        last = status.get("last") if status is not None else None
        if isinstance(last, dict) and last != previous and last.get("hash_after") == digest:
            return (APPLIED if last.get("result") == "applied" else REFUSED), last
        if time.monotonic() >= deadline:
            return None
        time.sleep(POLL_INTERVAL)
