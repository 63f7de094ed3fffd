"""Security events: one JSON object per line, appended to a file or written to stderr.

    {"time": "2026-11-29T06:30:00.123Z", "event": "tls.heartbleed_probe",
     "peer": "127.0.0.1:50522", "listener": "public", "detail": {...}}

Every event is counted. Lines are rate-limited per event kind (a token bucket), because the
events worth logging are what attackers and scanners cause in bulk: logging must not become
their amplifier. What the limit drops is counted too. Lines go out through a LineSink: a slow
or absent reader of a FIFO, or a full disk, never blocks the gateway (see line_sink).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from outwork.observe.event_names import EVENTS as EVENTS
from outwork.observe.line_sink import CLOSE_WAIT_SECONDS, LineSink
from outwork.observe.metrics import Metrics

# Lines per second (sustained) and burst, per event kind.
DEFAULT_RATE = 20.0
DEFAULT_BURST = 100.0


class SecurityEventLog:
    def __init__(
        self,
        target: str,
        metrics: Metrics,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
    ) -> None:
        self._metrics = metrics
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # event -> (tokens, last time)
        # Told of every event (event, peer, listener) before the line limit: the bans count them.
        self.watch: Callable[[str, str, str], None] | None = None
        self._sink = LineSink(target, sys.stderr.buffer, metrics.log_lines_lost, "security_events")

    def emit(self, event: str, peer: str, listener: str, detail: dict[str, Any]) -> None:
        self._metrics.security_events[event] += 1
        if self.watch is not None:
            self.watch(event, peer, listener)
        if not self._take(event):
            self._metrics.security_events_dropped[event] += 1
            return
        line = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "peer": peer,
            "listener": listener,
            "detail": detail,
        }
        self._sink.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
        self._sink.flush()

    def flush(self) -> int:
        """Write what a slow reader left waiting (the gateway's ticker calls this); returns the
        bytes still waiting."""
        return self._sink.flush()

    def _take(self, event: str) -> bool:
        now = time.monotonic()
        tokens, last = self._buckets.get(event, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[event] = (tokens, now)
            return False
        self._buckets[event] = (tokens - 1.0, now)
        return True

    def close(self, wait: float = CLOSE_WAIT_SECONDS) -> None:
        self._sink.close(wait)
