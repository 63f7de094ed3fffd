"""Load a config file: YAML with line numbers, schema (msgspec), cross-checks, compile.

Every problem is reported as `file:line: path: message`. Structural errors stop at the first
one (msgspec reports one); the checks after that collect every problem they find.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from outwork.policy.config import (
    Address,
    GatewayConfig,
    Limits,
    ListenerConfig,
    RouteConfig,
    UpstreamConfig,
)
from outwork.policy.schema import ConfigSpec, ListenerSpec, UpstreamSpec
from outwork.policy.source import ConfigError, Problem, Source, load_yaml
from outwork.policy.source import Path as KeyPath
from outwork.tls.config import CertifiedKey, ServerConfig

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")


def load_config(path: str | Path) -> GatewayConfig:
    """Read, validate and compile a config file. Raises ConfigError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(file, None, "", f"cannot read: {exc}")]) from None
    source = load_yaml(text, file)
    base = Path(path).resolve().parent
    return _Loader(source, base).load()


def _convert(source: Source, data: Any, type_: Any, prefix: KeyPath) -> Any:
    try:
        return msgspec.convert(data, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise ConfigError([_problem_from_msgspec(source, str(exc), prefix)]) from None


def _problem_from_msgspec(source: Source, message: str, prefix: KeyPath) -> Problem:
    path: KeyPath = prefix
    match = _AT.search(message)
    if match:
        message = message[: match.start()]
        for name, index in _PATH_PART.findall(match.group("path")):
            path += (int(index),) if index else (name,)
    unknown = _UNKNOWN.match(message)
    if unknown:
        return source.problem(path + (unknown.group("name"),), "unknown key", at_key=True)
    missing = _MISSING.match(message)
    if missing:
        return source.problem(path, f"missing required key `{missing.group('name')}`")
    message = message.replace("Expected `array`", "Expected a list")
    message = message.replace("Expected `object`", "Expected a mapping")
    return source.problem(path, message[:1].lower() + message[1:], at_key=False)


def parse_address(text: str) -> Address:
    """`host:port` or `[v6]:port`. Raises ValueError with a message for the user."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError("expected [ipv6]:port")
        ipaddress.IPv6Address(host)
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError("expected host:port")
        if not _HOST.match(host):
            raise ValueError(f"invalid host {host!r}")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r} (expected 0-65535)")
    return Address(host, int(port))


class _Loader:
    def __init__(self, source: Source, base: Path) -> None:
        self.source = source
        self.base = base
        self.problems: list[Problem] = []

    def error(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.source.problem(path, message))

    def load(self) -> GatewayConfig:
        if not isinstance(self.source.data, dict):
            raise ConfigError([self.source.problem((), "the config must be a mapping")])
        spec: ConfigSpec = _convert(self.source, self.source.data, ConfigSpec, ())
        upstream_specs: dict[str, UpstreamSpec] = {}
        for name, raw in spec.upstreams.items():
            upstream_specs[name] = _convert(self.source, raw, UpstreamSpec, ("upstreams", name))

        listeners = self._listeners(spec.listeners)
        upstreams = {name: self._upstream(name, u) for name, u in upstream_specs.items() if name}
        routes = self._routes(spec, upstreams)
        security_events = spec.logging.security_events
        if security_events != "-":
            security_events = str(self.base / security_events)
        admin = None
        if spec.admin is not None:
            admin = self._address(("admin", "bind"), spec.admin.bind)
        if self.problems:
            raise ConfigError(self.problems)
        lim = spec.limits
        limits = Limits(
            max_request_head=lim.max_request_head,
            max_headers=lim.max_headers,
            max_request_body=lim.max_request_body,
            header_timeout=lim.header_timeout,
            idle_timeout=lim.idle_timeout,
        )
        return GatewayConfig(
            file=self.source.file,
            listeners=tuple(listeners),
            routes=tuple(routes),
            upstreams=upstreams,
            security_events=security_events,
            admin=admin,
            limits=limits,
        )

    def _address(self, path: KeyPath, text: str) -> Address | None:
        try:
            return parse_address(text)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def _listeners(self, specs: list[ListenerSpec]) -> list[ListenerConfig]:
        result = []
        names: set[str] = set()
        binds: set[Address] = set()
        for i, spec in enumerate(specs):
            path: KeyPath = ("listeners", i)
            if spec.name in names:
                self.error(path + ("name",), f"duplicate listener name {spec.name!r}")
            names.add(spec.name)
            bind = self._address(path + ("bind",), spec.bind)
            if bind is not None and bind.port != 0:
                if bind in binds:
                    self.error(path + ("bind",), f"{spec.bind} is already used by a listener")
                binds.add(bind)
            tls = None
            if spec.tls is not None:
                keys: list[CertifiedKey] = []
                for j, entry in enumerate(spec.tls.certificates):
                    key = self._certified_key(
                        path + ("tls", "certificates", j), entry.cert, entry.key
                    )
                    if key is not None:
                        keys.append(key)
                for j, proto in enumerate(spec.tls.alpn):
                    if len(proto.encode()) > 255:
                        self.error(path + ("tls", "alpn", j), "ALPN names are 1-255 bytes")
                tls = ServerConfig(
                    certificates=tuple(keys),
                    alpn_protocols=tuple(spec.tls.alpn),
                    heartbeat=spec.tls.heartbeat,
                )
            if bind is not None:
                result.append(ListenerConfig(name=spec.name, bind=bind, tls=tls))
        return result

    def _certified_key(self, path: KeyPath, cert: str, key: str) -> CertifiedKey | None:
        from outwork.keys.file_signer import load_certified_key

        cert_path = self.base / cert
        key_path = self.base / key
        for name, file in (("cert", cert_path), ("key", key_path)):
            if not file.is_file():
                self.error(path + (name,), f"file not found: {file}")
                return None
        try:
            return load_certified_key(cert_path, key_path)
        except Exception as exc:  # any loading failure is a config error, shown to the user
            self.error(path, f"cannot load certificate/key: {exc}")
            return None

    def _upstream(self, name: str, spec: UpstreamSpec) -> UpstreamConfig:
        targets = []
        for i, target in enumerate(spec.targets):
            path: KeyPath = ("upstreams", name, "targets", i)
            url = urlsplit(target)
            if url.scheme != "http":
                self.error(path, "only http:// targets are supported for now")
                continue
            if url.path not in ("", "/") or url.query or url.fragment or url.username:
                self.error(path, "a target is scheme://host:port, without path or credentials")
                continue
            try:
                port = url.port or 80
            except ValueError:
                self.error(path, "invalid port")
                continue
            if not url.hostname:
                self.error(path, "missing host")
                continue
            targets.append(Address(url.hostname, port))
        return UpstreamConfig(
            name=name,
            targets=tuple(targets),
            connect_timeout=spec.connect_timeout,
            read_timeout=spec.read_timeout,
            max_idle_connections=spec.max_idle_connections,
            idle_timeout=spec.idle_timeout,
        )

    def _routes(self, spec: ConfigSpec, upstreams: dict[str, UpstreamConfig]) -> list[RouteConfig]:
        routes = []
        for i, route in enumerate(spec.routes):
            path: KeyPath = ("routes", i)
            match = route.match
            if (match.path_prefix is None) == (match.path is None):
                self.error(path + ("match",), "give exactly one of path_prefix or path")
                continue
            value = match.path_prefix if match.path_prefix is not None else match.path
            key = "path_prefix" if match.path_prefix is not None else "path"
            if not value or not value.startswith("/"):
                self.error(path + ("match", key), "must start with /")
                continue
            if route.upstream not in upstreams:
                known = ", ".join(sorted(upstreams)) or "none defined"
                self.error(
                    path + ("upstream",), f"unknown upstream {route.upstream!r} (known: {known})"
                )
                continue
            routes.append(
                RouteConfig(upstream=route.upstream, path_prefix=match.path_prefix, path=match.path)
            )
        return routes
