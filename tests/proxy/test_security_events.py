"""The security-event log: one JSON object per line, counted, rate-limited per event kind."""

from __future__ import annotations

import json
import re
from pathlib import Path

from outwork.observe.metrics import Metrics
from outwork.observe.security_events import SecurityEventLog


def test_heartbleed_probe_line_format(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    metrics = Metrics()
    log = SecurityEventLog(str(path), metrics)
    detail = {
        "claimed_length": 16384,
        "actual_length": 1,
        "encrypted": False,
        "heartbeat_enabled": False,
    }
    log.emit("tls.heartbleed_probe", "127.0.0.1:5555", "public", detail)
    log.close()
    (line,) = path.read_text().splitlines()
    event = json.loads(line)
    assert list(event) == ["time", "event", "peer", "listener", "detail"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", event["time"])
    assert event["event"] == "tls.heartbleed_probe"
    assert event["peer"] == "127.0.0.1:5555" and event["listener"] == "public"
    assert event["detail"] == detail
    assert 'outwork_security_events_total{event="tls.heartbleed_probe"} 1.0' in (
        metrics.render().decode()
    )


def test_file_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"earlier": 1}\n')
    log = SecurityEventLog(str(path), Metrics())
    log.emit("x", "p", "l", {})
    log.close()
    assert path.read_text().startswith('{"earlier": 1}\n{"time"')


def test_lines_are_rate_limited_but_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    metrics = Metrics()
    log = SecurityEventLog(str(path), metrics, rate=1.0, burst=5.0)
    for _ in range(50):
        log.emit("tls.handshake_failed", "p", "l", {"alert": "decode_error"})
    log.emit("tls.heartbleed_probe", "p", "l", {})  # another kind has its own budget
    log.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 6
    assert metrics.security_events["tls.handshake_failed"] == 50
    assert metrics.security_events_dropped["tls.handshake_failed"] == 45
    assert 'outwork_security_events_dropped_total{event="tls.handshake_failed"} 45.0' in (
        metrics.render().decode()
    )
