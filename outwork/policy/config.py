"""The compiled, read-only configuration the proxy runs from (built once by `load.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from outwork.tls.config import ClientConfig, ServerConfig


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


@dataclass(frozen=True, slots=True)
class RouteConfig:
    upstream: str
    path_prefix: str | None = None
    path: str | None = None


@dataclass(frozen=True, slots=True)
class UpstreamTlsConfig:
    """TLS to an upstream's targets: the engine's client config, and the name to ask for."""

    client: ClientConfig
    # SNI and the name checked in the certificate; None: each target's own host.
    server_name: str | None = None
    session_resumption: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    targets: tuple[Address, ...]
    connect_timeout: float
    read_timeout: float
    max_idle_connections: int
    idle_timeout: float
    tls: UpstreamTlsConfig | None = None  # None: plain HTTP (http:// targets)


@dataclass(frozen=True, slots=True)
class Limits:
    max_request_head: int = 64 * 1024
    max_headers: int = 100
    max_request_body: int = 10 * 1024 * 1024
    header_timeout: float = 10.0
    idle_timeout: float = 60.0


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
    # Accepted but dangerous settings (`file:line: path: warning: ...`), printed by check/serve.
    warnings: tuple[str, ...] = ()
