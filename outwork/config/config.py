"""The compiled, read-only configuration the proxy runs from (built once by `load.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING

from outwork.http.path import STRICT, PathRules
from outwork.tls.config import ClientConfig, ServerConfig

if TYPE_CHECKING:
    from outwork.config.changes import ConfigSummary
    from outwork.filters import Filter


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    name: str
    bind: Address
    tls: ServerConfig | None  # None: plain HTTP
    max_connections: int = 10000  # open connections on this listener (all configs together)
    max_connections_per_ip: int = 256  # the same, per client address


@dataclass(frozen=True, slots=True)
class RouteConfig:
    upstream: str
    path_prefix: str | None = None
    path: str | None = None
    name: str = ""  # load.py gives every route one (route-<index> when not set)
    host: str | None = None  # lower case, no port; "*.example.com" for a wildcard
    methods: frozenset[str] | None = None  # None: any method
    default: bool = False  # matches every request, below every other route
    max_body_size: int = 10 * 1024 * 1024
    filters: tuple[Filter, ...] = ()  # default_policies', then its own, compiled at load


@dataclass(frozen=True, slots=True)
class UpstreamTlsConfig:
    """TLS to an upstream's targets: the engine's client config, and the name to ask for."""

    client: ClientConfig
    # SNI and the name checked in the certificate; None: each target's own host.
    server_name: str | None = None
    session_resumption: bool = True


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    path: str
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    expect_status: tuple[int, int]  # inclusive range of healthy statuses


@dataclass(frozen=True, slots=True)
class PassiveHealthConfig:
    consecutive_failures: int
    ejection_time: float


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    targets: tuple[Address, ...]
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_idle_connections: int = 64
    idle_timeout: float = 30.0
    write_timeout: float = 30.0
    load_balancing: str = "round_robin"  # round_robin, least_connections, consistent_hash
    hash_header: bytes | None = None  # consistent_hash on this header (lower case); None: address
    retries: int = 1
    max_connections: int = 1024
    max_pending: int = 1024
    health_check: HealthCheckConfig | None = None
    passive_health: PassiveHealthConfig | None = None
    tls: UpstreamTlsConfig | None = None  # None: plain HTTP (http:// targets)


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_head: int = 64 * 1024
    max_headers: int = 100
    max_request_body: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    max_request_line: int = 8 * 1024
    body_timeout: float = 60.0
    max_requests_per_connection: int = 1000
    websocket_idle_timeout: float = 300.0
    max_header_field: int = 8 * 1024
    max_paused_upstreams_per_address: int = 64


@dataclass(frozen=True, slots=True)
class Http2Config:
    max_concurrent_streams: int = 100
    max_header_list_size: int = 64 * 1024
    initial_window_size: int = 65535
    max_frame_size: int = 16384
    flood_window: float = 10.0
    max_resets: int = 200
    max_settings: int = 50
    max_pings: int = 50
    max_empty_frames: int = 200
    max_continuation_frames: int = 32
    max_encoder_table_size: int = 4096
    max_discarded_body: int = 1024 * 1024
    stall_timeout: float = 30.0
    max_paused_upstreams: int = 32


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Defaults of `outwork scan -c` (outwork/scan/runner.py has the caps)."""

    concurrency: int = 8
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """One of: `url` (standalone), `sentinels` + `service`, `cluster` (seed nodes)."""

    url: str | None = None
    sentinels: tuple[Address, ...] = ()
    service: str | None = None
    cluster: tuple[Address, ...] = ()
    username: str | None = None
    password: bytes | None = None  # read from its reference at load
    timeout: float = 0.1  # one operation
    connect_timeout: float = 1.0


@dataclass(frozen=True, slots=True)
class BanConfig:
    count: int = 5  # a score of security events (each adds its weight) from one address ...
    within: float = 60.0  # ... within this many seconds (from its first one) ban it
    duration: float = 600.0
    exempt: tuple[IPv4Network | IPv6Network, ...] = ()
    # event -> what it adds to the score (BAN_WEIGHTS with the config's `weights` over them);
    # an event not in it adds 1.
    weights: Mapping[str, int] = field(default_factory=dict)
    ipv6_prefix: int = 64  # an IPv6 peer is counted and banned by its network of this prefix


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    file: str
    listeners: tuple[ListenerConfig, ...]
    routes: tuple[RouteConfig, ...]
    upstreams: dict[str, UpstreamConfig]
    security_events: str  # a file path (absolute) or "-" for stderr
    access_log: str | None  # a file path (absolute), "-" for stdout, None: no access log
    admin: Address | None
    limits: Limits
    workers: int = 1  # processes; 1: no supervisor
    incident_state: str = ""  # `outwork incident`'s state file (absolute)
    incident_advisory: str = ""  # and its advisory (absolute)
    # Accepted but dangerous settings (`file:line: path: warning: ...`), printed by check/serve.
    warnings: tuple[str, ...] = ()
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    http2: Http2Config = Http2Config()
    # Names the admin listener accepts in `Host` besides localhost and IP addresses (lower case).
    admin_hosts: tuple[str, ...] = ()
    admin_max_connections: int = 32  # beyond: the oldest admin connection is closed
    admin_timeout: float = 5.0  # seconds an admin connection may stay open
    admin_token: bytes | None = None  # the admin API's bearer token; None: no change endpoints
    admin_token_ref: str | None = None  # where it comes from (env:NAME, file:PATH): for the CLI
    paths: PathRules = STRICT  # request path normalisation (routing and forwarding)
    scan: ScanConfig = ScanConfig()
    # The file's hash and parts as loaded: what a reload's audit line compares against.
    summary: ConfigSummary | None = None
    # `revocation.not_before`, seconds since the epoch: credentials issued before it are refused.
    revoked_before: float | None = None
    redis: RedisConfig | None = None
    ban: BanConfig | None = None  # None: no bans
