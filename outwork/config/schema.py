"""The config file's schema: what keys exist, their types, defaults and bounds.

Structural checks only (types, unknown keys, ranges); cross-references and files are checked in
`load.py`. Every struct forbids unknown keys: a typo in a security config must not be ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from outwork.config.values import Duration, Size
from outwork.tls import config as tls_caps

NonEmptyStr = Annotated[str, Meta(min_length=1)]
MAX_ROUTE_POLICIES = 32  # policies named by one route (or by default_policies)
PositiveSeconds = Annotated[float, Meta(gt=0, le=86400)]
MAX_WORKERS = 64


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class CertificateSpec(_Spec):
    cert: NonEmptyStr
    key: NonEmptyStr
    # For an encrypted key file: env:NAME or file:PATH (outwork.keys.secret), never the secret.
    passphrase: NonEmptyStr | None = None


class SessionTicketsSpec(_Spec):
    enabled: bool = True
    # Shared by the workers of a node; None: each process keeps its own keys in memory.
    key_file: NonEmptyStr | None = None
    rotation: Duration = "12h"
    lifetime: Duration = "2h"


class TlsLimitsSpec(_Spec):
    """What one client may make the TLS engine walk or write; defaults (outwork/tls/config.py)
    sit far above what real clients send, and each cap is refused with its alert."""

    max_extensions: Annotated[int, Meta(ge=8, le=1024)] = tls_caps.MAX_EXTENSIONS
    max_cipher_suites: Annotated[int, Meta(ge=2, le=4096)] = tls_caps.MAX_CIPHER_SUITES
    max_list_entries: Annotated[int, Meta(ge=4, le=4096)] = tls_caps.MAX_LIST_ENTRIES
    max_key_shares: Annotated[int, Meta(ge=1, le=64)] = tls_caps.MAX_KEY_SHARES
    max_handshake_fragments: Annotated[int, Meta(ge=4, le=4096)] = tls_caps.MAX_HANDSHAKE_FRAGMENTS
    max_pending_output: Annotated[int, Meta(ge=16384, le=1 << 24)] = tls_caps.MAX_PENDING_OUTPUT


class TlsSpec(_Spec):
    certificates: Annotated[list[CertificateSpec], Meta(min_length=1, max_length=16)]
    heartbeat: bool = False
    alpn: Annotated[list[NonEmptyStr], Meta(max_length=8)] = msgspec.field(
        default_factory=lambda: ["h2", "http/1.1"]
    )
    # Closed sets, checked in load.py (for messages that list the choices). YAML's unquoted
    # 1.2 is a float: accepted as "1.2".
    min_version: str | float = "1.2"
    require_ems: bool = True
    strict_sni: bool = False
    groups: Annotated[list[NonEmptyStr], Meta(min_length=1, max_length=8)] | None = None
    client_auth: str = "none"
    client_ca: NonEmptyStr | None = None
    session_tickets: SessionTicketsSpec = msgspec.field(default_factory=SessionTicketsSpec)
    limits: TlsLimitsSpec = msgspec.field(default_factory=TlsLimitsSpec)


class ListenerSpec(_Spec):
    name: NonEmptyStr
    bind: NonEmptyStr
    tls: TlsSpec | None = None
    # Open client connections on this listener (all gateway configs of the process together,
    # old ones draining after a reload included); beyond: closed at once, before any TLS work.
    max_connections: Annotated[int, Meta(ge=1, le=1_000_000)] = 10000
    # The same, per client address: one address cannot take every slot.
    max_connections_per_ip: Annotated[int, Meta(ge=1, le=1_000_000)] = 256


class MatchSpec(_Spec):
    # "api.example.com" or "*.example.com"; compared without port, case-insensitively.
    host: NonEmptyStr | None = None
    path_prefix: str | None = None
    path: str | None = None
    methods: Annotated[list[NonEmptyStr], Meta(min_length=1, max_length=16)] | None = None


class RouteSpec(_Spec):
    upstream: NonEmptyStr
    name: NonEmptyStr | None = None  # default: route-<index in the list>
    match: MatchSpec | None = None  # required unless default: true
    default: bool = False  # catches every request that no other route matches
    max_body_size: Size | None = None  # default: limits.max_request_body (413 beyond)
    # Names of `policies` applied to this route, after `default_policies`, in order.
    policies: Annotated[list[NonEmptyStr], Meta(max_length=MAX_ROUTE_POLICIES)] = msgspec.field(
        default_factory=list
    )


class UpstreamTlsSpec(_Spec):
    """TLS to the targets of an upstream (its targets are https://), with the engine's client
    role. Checked and compiled in load.py."""

    # PEM bundle of the CAs that issue the backends' certificates; None: the system store.
    ca: NonEmptyStr | None = None
    verify: bool = True  # false: no chain or name check at all (check and serve warn)
    # The name sent as SNI and checked in the certificate; None: the target's host (no SNI for
    # an IP address, whose certificate must then list that IP).
    sni: NonEmptyStr | None = None
    client_cert: CertificateSpec | None = None  # presented when a backend asks (mTLS)
    min_version: str | float = "1.2"
    # Upstream requests are HTTP/1.1: the only protocol that may be offered; [] offers none.
    alpn: Annotated[list[NonEmptyStr], Meta(max_length=1)] = msgspec.field(
        default_factory=lambda: ["http/1.1"]
    )
    session_resumption: bool = True  # offer the backend's last ticket on new connections


class HealthCheckSpec(_Spec):
    """Active checks: `GET path` to every target each `interval`, run by the gateway."""

    path: NonEmptyStr = "/"
    interval: Duration = "5s"
    timeout: Duration = "2s"  # for the connection and the response head together
    healthy_threshold: Annotated[int, Meta(ge=1, le=100)] = 2  # successes in a row to return
    unhealthy_threshold: Annotated[int, Meta(ge=1, le=100)] = 3  # failures in a row to leave
    # The statuses that count as healthy: "200-399", "200" or 204 (parsed in load.py).
    expect_status: str | int = "200-399"


class PassiveHealthSpec(_Spec):
    """Ejection of a target that fails real traffic (connect errors, resets, garbage, timeouts)."""

    consecutive_failures: Annotated[int, Meta(ge=1, le=1000)] = 5
    ejection_time: Duration = "30s"


class UpstreamSpec(_Spec):
    targets: Annotated[list[NonEmptyStr], Meta(min_length=1, max_length=64)]
    # For https:// targets; all targets of one upstream are http:// or all https://.
    tls: UpstreamTlsSpec | None = None
    # round_robin, least_connections or consistent_hash (a closed set, checked in load.py).
    load_balancing: str = "round_robin"
    # For consistent_hash: client_address, or header:NAME (the client address when absent).
    hash_on: str = "client_address"
    connect_timeout: Duration = 5.0
    # Longest wait for the upstream's next bytes once the request is sent (504 before a response).
    read_timeout: Duration = 30.0
    # Longest time request bytes may wait, unsent, for the upstream to read them (504).
    write_timeout: Duration = 30.0
    # Idle keep-alive connections kept per target; extra ones are closed.
    max_idle_connections: Annotated[int, Meta(ge=0, le=10000)] = 64
    # Idle pooled connections older than this are closed.
    idle_timeout: Duration = 30.0
    # Attempts on another target for an idempotent request that failed before any response.
    retries: Annotated[int, Meta(ge=0, le=10)] = 1
    # Circuit breaker: connections (open and opening, all targets) and requests waiting for
    # one; beyond both, 503 at once.
    max_connections: Annotated[int, Meta(ge=1, le=100000)] = 1024
    max_pending: Annotated[int, Meta(ge=0, le=100000)] = 1024
    health_check: HealthCheckSpec | None = None  # None: no active checks
    passive_health: PassiveHealthSpec | None = None  # None: no ejection


class LoggingSpec(_Spec):
    security_events: NonEmptyStr = "-"
    access_log: NonEmptyStr | None = None  # a file, "-" for stdout; None: no access log


class Pkcs11Spec(_Spec):
    module: NonEmptyStr | None = None  # for pkcs11: keys whose URI has no module-path


class AdminSpec(_Spec):
    bind: NonEmptyStr = "127.0.0.1:9901"
    # Host names (besides localhost and IP addresses) that admin requests may carry in `Host`;
    # any other name is refused with 421 (DNS rebinding). Checked in load.py.
    allowed_hosts: Annotated[list[NonEmptyStr], Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    # Open admin connections; a new one beyond closes the oldest (probes are never locked out).
    max_connections: Annotated[int, Meta(ge=1, le=1024)] = 32
    # Seconds an admin connection may stay open, whatever it sent (probes answer at once).
    timeout: Annotated[float, Meta(gt=0, le=60)] = 5.0
    # The admin API's bearer token, by reference (env:NAME or file:PATH); none: no change
    # endpoints at all (403). Read in load.py.
    token: NonEmptyStr | None = None


class LimitsSpec(_Spec):
    """Caps on what a client can make the gateway hold, each answered with its own status."""

    max_request_line: Annotated[int, Meta(ge=256, le=1024 * 1024)] = 8 * 1024  # 414
    max_request_head: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = 64 * 1024  # 431
    max_headers: Annotated[int, Meta(ge=1, le=1000)] = 100  # 431
    max_request_body: Size = 10 * 1024 * 1024  # 413; a route's max_body_size overrides it
    header_timeout: PositiveSeconds = 10.0  # complete request head (and TLS handshake): 408
    body_timeout: PositiveSeconds = 60.0  # longest silence inside a request body: 408
    idle_timeout: PositiveSeconds = 60.0  # keep-alive wait for the next request
    # The last response on a connection says `Connection: close`.
    max_requests_per_connection: Annotated[int, Meta(ge=1, le=10_000_000)] = 1000
    # A WebSocket tunnel with no byte either way for this long is closed (both sides).
    websocket_idle_timeout: PositiveSeconds = 300.0
    # One header field (name, value and ": ") of a request head sent upstream: 431 beyond.
    # HTTP/2 counts it after HPACK (a few bytes of table references can name a large field)
    # and after cookie crumbs are joined.
    max_header_field: Annotated[int, Meta(ge=256, le=1024 * 1024)] = 8 * 1024
    # Upstream connections paused for one client address (per worker), HTTP/1.1 and HTTP/2:
    # each holds an upstream slot while its response waits for the client. Beyond it the
    # HTTP/2 stream is reset, the HTTP/1.1 connection cut.
    max_paused_upstreams_per_address: Annotated[int, Meta(ge=1, le=100_000)] = 64


class Http2Spec(_Spec):
    """Per-connection HTTP/2 limits (advertised in SETTINGS and enforced) and flood budgets."""

    max_concurrent_streams: Annotated[int, Meta(ge=1, le=1000)] = 100  # beyond: REFUSED_STREAM
    # Decoded header list (RFC 9113 6.5.2), and the header block as it arrives; checked against
    # limits.max_request_head in load.py (one cap on request heads, whatever the protocol).
    max_header_list_size: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = 64 * 1024
    # Per-stream receive window; the connection's window is 1 MiB, which bounds the request
    # bytes held per connection. Not below the protocol's default: a client may send that
    # much before it reads our SETTINGS.
    initial_window_size: Annotated[int, Meta(ge=65535, le=1024 * 1024)] = 65535
    max_frame_size: Annotated[int, Meta(ge=16384, le=1024 * 1024)] = 16384  # RFC 9113 bounds
    # Flood budgets: how many of each costly, useless-to-a-client thing one connection may do
    # per `flood_window`; beyond it the connection gets GOAWAY ENHANCE_YOUR_CALM.
    flood_window: Duration = "10s"
    max_resets: Annotated[int, Meta(ge=1, le=10_000_000)] = 200  # streams reset by the client
    max_settings: Annotated[int, Meta(ge=1, le=10_000_000)] = 50  # SETTINGS frames
    max_pings: Annotated[int, Meta(ge=1, le=10_000_000)] = 50  # PING frames
    # Empty DATA without END_STREAM, PRIORITY, empty CONTINUATION: frames that cost work and
    # carry nothing.
    max_empty_frames: Annotated[int, Meta(ge=1, le=10_000_000)] = 200
    max_continuation_frames: Annotated[int, Meta(ge=1, le=1000)] = 32  # per header block
    # The HPACK dynamic table the gateway keeps for its responses: the client's
    # SETTINGS_HEADER_TABLE_SIZE, at most this (as nghttp2 does), so a client cannot make each
    # connection hold megabytes of response headers.
    max_encoder_table_size: Annotated[int, Meta(ge=0, le=64 * 1024)] = 4096
    # Request body bytes taken and dropped after the gateway answered a stream early (413,
    # 404, ...), before RST_STREAM NO_ERROR: a client still sending then reads the answer.
    max_discarded_body: Size = 1024 * 1024
    # A response stream whose upstream connection stays paused (the client takes too little of
    # what is held for it) this long is reset and its upstream connection closed; window
    # updates that do not drain the stream do not extend it.
    stall_timeout: Duration = "30s"
    # Upstream connections paused for one client connection's streams: a stream that pauses
    # one more is reset (see also limits.max_paused_upstreams_per_address).
    max_paused_upstreams: Annotated[int, Meta(ge=1, le=1000)] = 32


class PathsSpec(_Spec):
    """How request paths are normalised before routing and forwarding (outwork/http/path.py).
    Strict by default; each key relaxes one rule, like Envoy's options of the same meaning."""

    normalize: bool = True  # decode escaped unreserved characters, resolve `.`/`..` segments
    merge_slashes: bool = True  # `//` -> `/`
    # %2F and %5C: reject (400), keep (forwarded escaped), decode (to `/`, then normalised).
    escaped_slashes: str = "reject"
    # false: routes match paths case-insensitively (forwarded as sent); true: exactly.
    case_sensitive: bool = False


class IncidentSpec(_Spec):
    """`outwork incident`: its state file and advisory (relative: to the config's folder)."""

    state: NonEmptyStr | None = None  # default: <config name>.incident.json
    advisory: NonEmptyStr | None = None  # default: <config name>.advisory.md


class ScanSpec(_Spec):
    """`outwork scan -c` over the upstreams; its --concurrency and --timeout override these."""

    concurrency: Annotated[int, Meta(ge=1, le=64)] = 8  # targets scanned at once
    timeout: Duration = "5s"  # per connection; 0.1s to 120s


class RevocationSpec(_Spec):
    """Every credential issued before `not_before` (RFC 3339) is refused (`outwork incident`)."""

    not_before: NonEmptyStr | None = None


class RedisSpec(_Spec):
    """The Redis that nodes share rate-limit counters and bans through: exactly one of `url`
    (standalone), `sentinels` with `service`, or `cluster` (seed nodes). Checked in load.py."""

    url: NonEmptyStr | None = None  # redis://host:port/db (rediss:// for TLS)
    sentinels: Annotated[list[NonEmptyStr], Meta(min_length=1, max_length=16)] | None = None
    service: NonEmptyStr | None = None  # the Sentinel master name
    cluster: Annotated[list[NonEmptyStr], Meta(min_length=1, max_length=64)] | None = None
    username: NonEmptyStr | None = None
    password: NonEmptyStr | None = None  # by reference: env:NAME or file:PATH
    # Longest wait for one Redis operation (a rate-limit check); beyond, the limit's
    # on_store_error decides.
    timeout: Duration = 0.1
    connect_timeout: Duration = 1.0


class BanAfterSpec(_Spec):
    count: Annotated[int, Meta(ge=1, le=1_000_000)] = 5
    within: Duration = "60s"


# What one security event adds to its address's score (`ban.weights` changes single entries;
# an event not named here weighs 1). A refused attack weighs more than a mistake; the gateway's
# answers to a client over a limit (429, a connection cap) and events that are the gateway's own
# failure weigh nothing: a busy but honest client must not be banned for being told to slow
# down. `tls.heartbleed_probe` is not weighed: it bans at once.
BAN_WEIGHTS = {
    "waf.blocked": 3,
    "policy.waf_blocked": 0,  # the same request as its waf.blocked: counted once
    "waf.detected": 0,  # detect mode watches; a weight would make it block after all
    # A leaking page refused (phases 3 and 4): the backend's fault, and any honest client that
    # asks for the page gets it; an attacker provoking leaks is weighed by his requests.
    "waf.response_blocked": 0,
    "waf.report": 0,  # CRS's scores of an exchange (phase 5), blocked or not: a summary
    "h2.rapid_reset": 3,
    "h2.continuation_flood": 3,
    "h2.settings_flood": 3,
    "h2.ping_flood": 3,
    "h2.empty_frames_flood": 3,
    "policy.rate_limited": 0,
    "conn.limit_reached": 0,
    "policy.rate_limit_store": 0,
    "rate_limit.store_error": 0,
    "rate_limit.table_full": 0,
    "policy.filter_error": 0,
    "policy.response_too_large": 0,  # the backend's page, too large to inspect: not the client
}
INSTANT_BAN = frozenset({"tls.heartbleed_probe"})  # events that ban at once, whatever the count
MAX_BAN_WEIGHT = 1_000_000
EventName = Annotated[str, Meta(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$", max_length=64)]


class BanSpec(_Spec):
    """Peers with too many security events are refused at accept for `duration`."""

    # `count`: the score (the sum of the events' weights) within `within` that bans.
    after: BanAfterSpec = msgspec.field(default_factory=BanAfterSpec)
    weights: Annotated[
        dict[EventName, Annotated[int, Meta(ge=0, le=MAX_BAN_WEIGHT)]], Meta(max_length=256)
    ] = msgspec.field(default_factory=dict)
    # An IPv6 peer is counted and banned by this prefix (outwork/filters/client_key.py).
    ipv6_prefix: Annotated[int, Meta(ge=48, le=128)] = 64
    duration: Duration = "10m"
    # Addresses (IPs or CIDRs) never banned; the default: the local machine only.
    exempt: Annotated[list[NonEmptyStr], Meta(max_length=1024)] = msgspec.field(
        default_factory=lambda: ["127.0.0.1/32", "::1/128"]
    )


class ConfigSpec(_Spec):
    listeners: Annotated[list[ListenerSpec], Meta(min_length=1, max_length=64)]
    routes: list[RouteSpec]
    upstreams: dict[str, UpstreamSpec]
    logging: LoggingSpec = msgspec.field(default_factory=LoggingSpec)
    admin: AdminSpec | None = None
    limits: LimitsSpec = msgspec.field(default_factory=LimitsSpec)
    # Peers (IPs or CIDRs) whose X-Forwarded-For / Forwarded are appended to, not replaced.
    trusted_proxies: Annotated[list[NonEmptyStr], Meta(max_length=1024)] = msgspec.field(
        default_factory=list
    )
    pkcs11: Pkcs11Spec = msgspec.field(default_factory=Pkcs11Spec)
    http2: Http2Spec = msgspec.field(default_factory=Http2Spec)
    incident: IncidentSpec = msgspec.field(default_factory=IncidentSpec)
    paths: PathsSpec = msgspec.field(default_factory=PathsSpec)
    scan: ScanSpec = msgspec.field(default_factory=ScanSpec)
    # Named policies: {name: {<filter type>: {...}, ...}}, each value checked by its filter
    # type's own schema (outwork/filters); routes name them in `policies`.
    policies: dict[NonEmptyStr, dict[str, Any]] = msgspec.field(default_factory=dict)
    default_policies: Annotated[list[NonEmptyStr], Meta(max_length=MAX_ROUTE_POLICIES)] = (
        msgspec.field(default_factory=list)
    )
    revocation: RevocationSpec = msgspec.field(default_factory=RevocationSpec)
    # Worker processes sharing the listener ports (SO_REUSEPORT); 1: a single process.
    workers: Annotated[int, Meta(ge=1, le=MAX_WORKERS)] = 1
    redis: RedisSpec | None = None  # None: no Redis (rate limits with store: redis refused)
    ban: BanSpec | None = None  # None: no peer is banned
