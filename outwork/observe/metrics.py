"""Counters and histograms for the admin /metrics endpoint (Prometheus text format).

The hot path only does dict and list increments (`metrics.refused[Refusal.TIMEOUT] += 1`, a
search for a histogram's bucket); nothing of prometheus_client runs there. At scrape time (and
about once a second when a worker publishes its share, see `metrics_share.py`) the counters are
turned into a `Snapshot` with label values as strings, snapshots of several workers are summed,
and `SnapshotCollector` hands the sum to prometheus_client's exposition (`generate_latest`).

prometheus_client's own metric objects are not used on the hot path: each `inc()` takes a lock
and, in its multiprocess mode, writes to an mmap'd file, several times the cost of a dict
increment for every request, and its multiprocess mode also needs an environment variable set
before import and its own cleanup of dead processes' files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from outwork.observe.refusals import Refusal
from outwork.waf import counters as waf_counters

if TYPE_CHECKING:
    from outwork.proxy.exchange import Exchange
    from outwork.upstream.pool import UpstreamPool

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST.encode()

# Request latency buckets, in seconds: from a cached answer on loopback to a slow upload.
# Typed as a tuple of any length: mypyc keeps a fixed-length tuple of floats unboxed and boxed
# every float again at each use (two bucket searches per request).
LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# One sample's label values, and a family's samples: a number, or for a histogram the bucket
# counts (not cumulative, the last one is +Inf) followed by the sum.
Labels = tuple[str, ...]
Value = float | list[float]
Snapshot = dict[str, dict[Labels, Value]]


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...]


CERTIFICATE_EXPIRY: Final = "outwork_certificate_expiry_seconds"

FAMILIES: Final = (
    Family(
        CERTIFICATE_EXPIRY,
        "gauge",
        "Seconds until a served certificate expires (negative: expired), by listener and subject.",
        ("listener", "subject"),
    ),
    Family(
        "outwork_requests_total",
        "counter",
        "HTTP requests answered, by route and status.",
        ("route", "status"),
    ),
    Family(
        "outwork_request_duration_seconds",
        "histogram",
        "From the request head received to the response's last byte written, by route.",
        ("route",),
    ),
    Family(
        "outwork_upstream_response_seconds",
        "histogram",
        "From the request head received to the upstream's response head, by route.",
        ("route",),
    ),
    Family(
        "outwork_upstream_healthy",
        "gauge",
        "1 while the target is in rotation (in every worker), else 0.",
        ("upstream", "target"),
    ),
    Family(
        "outwork_upstream_connections_opened_total",
        "counter",
        "Connections opened to upstreams (low means keep-alive reuse works).",
        ("upstream",),
    ),
    Family(
        "outwork_upstream_errors_total",
        "counter",
        "Upstream failures, by upstream and kind.",
        ("upstream", "kind"),
    ),
    Family(
        "outwork_tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by listener, version, cipher suite and key-exchange group.",
        ("listener", "version", "cipher", "group"),
    ),
    Family(
        "outwork_tls_handshake_failures_total",
        "counter",
        "TLS connections failed by the engine, by alert sent.",
        ("alert",),
    ),
    Family(
        "outwork_requests_refused_total",
        "counter",
        "Requests refused by the gateway, by reason.",
        ("reason",),
    ),
    Family(
        "outwork_policy_refused_total",
        "counter",
        "Requests refused by a route's policy (a filter's answer), by route and reason.",
        ("route", "reason"),
    ),
    Family(
        "outwork_security_events_total",
        "counter",
        "Security events, by event.",
        ("event",),
    ),
    Family(
        "outwork_security_events_dropped_total",
        "counter",
        "Security event lines not written because of the log rate limit.",
        ("event",),
    ),
    Family(
        "outwork_log_lines_lost_total",
        "counter",
        "Log lines lost, by log: the reader of a FIFO too far behind, or a failed write.",
        ("log",),
    ),
    Family(
        "outwork_waf_matches_total",
        "counter",
        "WAF rules matched, by CRS rule family (942: SQL injection, ...).",
        ("family",),
    ),
    Family(
        "outwork_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        (),
    ),
    Family(
        "outwork_connections_active",
        "gauge",
        "Client connections open now.",
        (),
    ),
    Family(
        "outwork_workers_reporting",
        "gauge",
        "Worker processes whose metrics this page sums.",
        (),
    ),
)
FAMILY_KINDS: Final = {family.name: family.kind for family in FAMILIES}
# Gauges describe live processes: a dead worker's last values are not kept (see metrics_share).
GAUGES: Final = frozenset(family.name for family in FAMILIES if family.kind == "gauge")


def bucket_index(bounds: tuple[float, ...], value: float) -> int:
    """`bisect.bisect_left(bounds, value)` (`le` is inclusive), as a scan from the smallest
    bound: a latency falls in the first few buckets, and the compiled loop costs a tenth of the
    call into bisect (argument parsing, a rich compare of boxed floats per step)."""
    index = 0
    for bound in bounds:
        if not bound < value:  # bisect's own test: the same answer for a NaN
            return index
        index += 1
    return index


class Histogram:
    """Per key (a route): how many observations fell in each bucket, and their sum."""

    __slots__ = ("bounds", "series")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        # key -> [count per bucket (not cumulative; the last is +Inf)..., sum]
        self.series: dict[Hashable, list[float]] = {}

    def observe(self, key: Hashable, value: float) -> None:
        series = self.series.get(key) or self.start(key)
        series[bucket_index(self.bounds, value)] += 1
        series[-1] += value

    def start(self, key: Hashable) -> list[float]:
        series = self.series[key] = [0] * (len(self.bounds) + 2)
        return series


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()  # by (route, status)
        self.request_seconds = Histogram()  # by route
        self.upstream_seconds = Histogram()  # by route: time to the upstream's response head
        # By (listener, version, cipher suite, group) as the engine gives them (names are
        # looked up at scrape time).
        self.handshakes_completed: Counter[tuple[str, int, Any, Any]] = Counter()
        self.handshakes_failed: Counter[str] = Counter()  # by alert name
        self.security_events: Counter[str] = Counter()  # by event name
        self.security_events_dropped: Counter[str] = Counter()  # lines not written (rate limit)
        self.log_lines_lost: Counter[str] = Counter()  # by log (access, security_events)
        # Requests (and connections) refused by the gateway, by reason: every reason at 0 from
        # the start, so that /metrics declares them all.
        self.refused: Counter[Refusal] = Counter(dict.fromkeys(Refusal, 0))
        # Refused by a route's filters, by (route, reason); also counted in `refused`.
        self.policy_refused: Counter[tuple[str, Refusal]] = Counter()
        self.connections_accepted = 0
        self.connections_active = 0
        self.upstream_connections_opened: Counter[str] = Counter()  # by upstream
        self.upstream_errors: Counter[str] = Counter()  # by "upstream/kind"

    def request_done(self, ex: Exchange, now: float) -> None:
        """Count an answered exchange; `now` is `time.monotonic()` at its last byte. The route
        is as in `exchange.route_label`."""
        # Histogram.observe inlined (once per request: the method calls cost a third).
        route = ex.route
        if not route:
            pool = ex.pool
            route = pool.config.name if pool is not None else "none"
        self.requests[(route, ex.status)] += 1
        started = ex.started
        histogram = self.request_seconds
        series = histogram.series.get(route) or histogram.start(route)
        value = now - started
        series[bucket_index(LATENCY_BUCKETS, value)] += 1
        series[-1] += value
        upstream_at = ex.upstream_at
        if upstream_at:
            histogram = self.upstream_seconds
            series = histogram.series.get(route) or histogram.start(route)
            value = upstream_at - started
            series[bucket_index(LATENCY_BUCKETS, value)] += 1
            series[-1] += value

    def snapshot(self, pools: Iterable[UpstreamPool] = ()) -> Snapshot:
        """This process's values, labelled, ready to be summed with other workers'."""
        from outwork.observe.access_log import tls_names

        requests: dict[Labels, Value] = {}
        for key, n in self.requests.items():
            # An int key (a status alone) is tolerated: counted under route "none".
            route, status = key if isinstance(key, tuple) else ("none", key)
            _add(requests, (route, str(status)), n)
        handshakes: dict[Labels, Value] = {}
        for hkey, n in self.handshakes_completed.items():
            if isinstance(hkey, tuple):
                listener, version, suite, group = hkey
                _add(handshakes, (listener, *tls_names(version, suite, group)), n)
            else:
                _add(handshakes, (str(hkey), "", "", ""), n)
        errors: dict[Labels, Value] = {}
        for ekey, n in self.upstream_errors.items():
            upstream, _, kind = ekey.partition("/")
            _add(errors, (upstream, kind), n)
        healthy: dict[Labels, Value] = {}
        for pool in pools:
            states = getattr(pool, "healthy", None) or [True] * len(pool.config.targets)
            for address, up in zip(pool.config.targets, states, strict=False):
                healthy[(pool.config.name, str(address))] = 1.0 if up else 0.0
        return {
            "outwork_requests_total": requests,
            "outwork_request_duration_seconds": _histogram(self.request_seconds),
            "outwork_upstream_response_seconds": _histogram(self.upstream_seconds),
            "outwork_upstream_healthy": healthy,
            "outwork_upstream_connections_opened_total": _by_one(self.upstream_connections_opened),
            "outwork_upstream_errors_total": errors,
            "outwork_tls_handshakes_total": handshakes,
            "outwork_tls_handshake_failures_total": _by_one(self.handshakes_failed),
            "outwork_requests_refused_total": _by_one(self.refused),
            "outwork_policy_refused_total": {
                (route, str(reason)): float(n) for (route, reason), n in self.policy_refused.items()
            },
            # Always shown, also at 0: what an alert on probes would watch.
            "outwork_security_events_total": {
                ("tls.heartbleed_probe",): 0.0,
                **_by_one(self.security_events),
            },
            "outwork_security_events_dropped_total": _by_one(self.security_events_dropped),
            "outwork_log_lines_lost_total": _by_one(self.log_lines_lost),
            "outwork_waf_matches_total": _by_one(waf_counters.MATCHES),
            "outwork_connections_accepted_total": {(): float(self.connections_accepted)},
            "outwork_connections_active": {(): float(self.connections_active)},
            "outwork_workers_reporting": {(): 1.0},
        }

    def render(self, pools: Iterable[UpstreamPool] = ()) -> bytes:
        """This process's metrics in the Prometheus text format."""
        snapshot = self.snapshot(pools)
        return generate_latest(SnapshotCollector(lambda: snapshot))


def _add(samples: dict[Labels, Value], labels: Labels, n: float) -> None:
    samples[labels] = float(samples.get(labels, 0.0)) + n  # type: ignore[arg-type]


def _by_one(counter: Mapping[Any, int]) -> dict[Labels, Value]:
    return {(str(key),): float(n) for key, n in counter.items()}


def _histogram(histogram: Histogram) -> dict[Labels, Value]:
    return {(str(key),): [float(x) for x in series] for key, series in histogram.series.items()}


def merge(into: Snapshot, other: Mapping[str, Mapping[Labels, Value]], *, gauges: bool) -> None:
    """Add `other` to `into`. Gauges: 0/1 health values take the minimum (in rotation only when
    in every worker); other gauges are summed. `gauges=False` leaves them out (a dead worker)."""
    for name, samples in other.items():
        kind = FAMILY_KINDS.get(name)
        if kind is None or (kind == "gauge" and not gauges):
            continue  # a family this version does not know (a newer worker): ignored
        mine = into.setdefault(name, {})
        for labels, value in samples.items():
            old = mine.get(labels)
            if old is None:
                mine[labels] = list(value) if isinstance(value, list) else value
            elif isinstance(old, list):
                if isinstance(value, list) and len(value) == len(old):
                    mine[labels] = [a + b for a, b in zip(old, value, strict=True)]
            elif isinstance(value, list):
                continue
            elif name == "outwork_upstream_healthy":
                mine[labels] = min(old, value)
            else:
                mine[labels] = old + value


class SnapshotCollector(Collector):
    """A prometheus_client collector over a snapshot made when it is collected."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self._source = source

    def describe(self) -> Iterable[Metric]:
        return []  # the samples are made at collect time; nothing to check in a registry

    def collect(self) -> Iterator[Metric]:
        snapshot = self._source()
        for family in FAMILIES:
            samples = snapshot.get(family.name, {})
            labels = list(family.labels)
            metric: Any
            if family.kind == "counter":
                metric = CounterMetricFamily(family.name, family.help, labels=labels)
            elif family.kind == "gauge":
                metric = GaugeMetricFamily(family.name, family.help, labels=labels)
            else:
                metric = HistogramMetricFamily(family.name, family.help, labels=labels)
            for key in sorted(samples):
                value = samples[key]
                if family.kind == "histogram":
                    if isinstance(value, list) and len(value) == len(LATENCY_BUCKETS) + 2:
                        metric.add_metric(list(key), _cumulative(value), value[-1])
                elif not isinstance(value, list):
                    metric.add_metric(list(key), value)
            yield metric


def _cumulative(series: list[float]) -> list[tuple[str, float]]:
    buckets: list[tuple[str, float]] = []
    total = 0.0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), series, strict=False):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return buckets
