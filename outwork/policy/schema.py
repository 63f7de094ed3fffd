"""The config file's schema: what keys exist, their types, defaults and bounds.

Structural checks only (types, unknown keys, ranges); cross-references and files are checked in
`load.py`. Every struct forbids unknown keys: a typo in a security config must not be ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

NonEmptyStr = Annotated[str, Meta(min_length=1)]
PositiveSeconds = Annotated[float, Meta(gt=0, le=86400)]


class _Spec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class CertificateSpec(_Spec):
    cert: NonEmptyStr
    key: NonEmptyStr


class TlsSpec(_Spec):
    certificates: Annotated[list[CertificateSpec], Meta(min_length=1, max_length=16)]
    heartbeat: bool = False
    alpn: Annotated[list[NonEmptyStr], Meta(max_length=8)] = msgspec.field(
        default_factory=lambda: ["http/1.1"]
    )


class ListenerSpec(_Spec):
    name: NonEmptyStr
    bind: NonEmptyStr
    tls: TlsSpec | None = None


class MatchSpec(_Spec):
    path_prefix: str | None = None
    path: str | None = None


class RouteSpec(_Spec):
    match: MatchSpec
    upstream: NonEmptyStr


class UpstreamSpec(_Spec):
    targets: Annotated[list[NonEmptyStr], Meta(min_length=1, max_length=64)]
    connect_timeout: PositiveSeconds = 5.0
    # Longest wait for the upstream's next bytes once the request is sent (504 before a response).
    read_timeout: PositiveSeconds = 30.0
    # Idle keep-alive connections kept per target; extra ones are closed.
    max_idle_connections: Annotated[int, Meta(ge=0, le=10000)] = 64
    # Idle pooled connections older than this are closed.
    idle_timeout: PositiveSeconds = 30.0


class LoggingSpec(_Spec):
    security_events: NonEmptyStr = "-"


class AdminSpec(_Spec):
    bind: NonEmptyStr = "127.0.0.1:9901"


class LimitsSpec(_Spec):
    """Caps on what a client can make the gateway hold, each answered with its own status."""

    max_request_head: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = 64 * 1024  # 431
    max_headers: Annotated[int, Meta(ge=1, le=1000)] = 100  # 431
    max_request_body: Annotated[int, Meta(ge=0)] = 10 * 1024 * 1024  # 413
    header_timeout: PositiveSeconds = 10.0  # complete request head (and TLS handshake)
    idle_timeout: PositiveSeconds = 60.0  # keep-alive wait for the next request; body stalls


class ConfigSpec(_Spec):
    listeners: Annotated[list[ListenerSpec], Meta(min_length=1, max_length=64)]
    routes: list[RouteSpec]
    # Validated entry by entry (msgspec does not name the dict key in its error paths).
    upstreams: dict[str, Any]
    logging: LoggingSpec = msgspec.field(default_factory=LoggingSpec)
    admin: AdminSpec | None = None
    limits: LimitsSpec = msgspec.field(default_factory=LimitsSpec)
