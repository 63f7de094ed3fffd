"""Counters for the admin /metrics endpoint (Prometheus text format, written by hand).

Plain dict increments on the hot path; formatting happens only when /metrics is read.
"""

from __future__ import annotations

from collections import Counter


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[int] = Counter()  # by response status
        self.handshakes_completed: Counter[str] = Counter()  # by listener
        self.handshakes_failed: Counter[str] = Counter()  # by alert name
        self.security_events: Counter[str] = Counter()  # by event name
        self.security_events_dropped: Counter[str] = Counter()  # lines not written (rate limit)
        self.refused: Counter[str] = Counter()  # requests refused by the gateway, by reason
        self.connections_accepted = 0
        self.connections_active = 0
        self.upstream_connections_opened: Counter[str] = Counter()  # by upstream
        self.upstream_errors: Counter[str] = Counter()  # by "upstream/kind"

    def render(self) -> bytes:
        lines: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")

        family("outwork_requests_total", "counter", "HTTP requests answered, by status.")
        for status, n in sorted(self.requests.items()):
            lines.append(f'outwork_requests_total{{status="{status}"}} {n}')
        family("outwork_tls_handshakes_total", "counter", "TLS handshakes completed, by listener.")
        for listener, n in sorted(self.handshakes_completed.items()):
            lines.append(f'outwork_tls_handshakes_total{{listener="{_esc(listener)}"}} {n}')
        family(
            "outwork_tls_handshake_failures_total",
            "counter",
            "TLS connections failed by the engine, by alert sent.",
        )
        for alert, n in sorted(self.handshakes_failed.items()):
            lines.append(f'outwork_tls_handshake_failures_total{{alert="{alert}"}} {n}')
        family("outwork_security_events_total", "counter", "Security events, by event.")
        events = Counter({"tls.heartbleed_probe": 0})
        events.update(self.security_events)
        for event, n in sorted(events.items()):
            lines.append(f'outwork_security_events_total{{event="{event}"}} {n}')
        family(
            "outwork_security_events_dropped_total",
            "counter",
            "Security event lines not written because of the log rate limit.",
        )
        for event, n in sorted(self.security_events_dropped.items()):
            lines.append(f'outwork_security_events_dropped_total{{event="{event}"}} {n}')
        family("outwork_requests_refused_total", "counter", "Requests refused, by reason.")
        for reason, n in sorted(self.refused.items()):
            lines.append(f'outwork_requests_refused_total{{reason="{reason}"}} {n}')
        family("outwork_connections_accepted_total", "counter", "Client connections accepted.")
        lines.append(f"outwork_connections_accepted_total {self.connections_accepted}")
        family("outwork_connections_active", "gauge", "Client connections open now.")
        lines.append(f"outwork_connections_active {self.connections_active}")
        family(
            "outwork_upstream_connections_opened_total",
            "counter",
            "Connections opened to upstreams (low means keep-alive reuse works).",
        )
        for name, n in sorted(self.upstream_connections_opened.items()):
            lines.append(
                f'outwork_upstream_connections_opened_total{{upstream="{_esc(name)}"}} {n}'
            )
        family("outwork_upstream_errors_total", "counter", "Upstream failures, by kind.")
        for key, n in sorted(self.upstream_errors.items()):
            upstream, _, kind = key.partition("/")
            lines.append(
                f'outwork_upstream_errors_total{{upstream="{_esc(upstream)}",kind="{kind}"}} {n}'
            )
        return ("\n".join(lines) + "\n").encode()


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
