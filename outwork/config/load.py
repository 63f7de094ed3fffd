"""Load a config file: YAML with line numbers, schema (msgspec), cross-checks, compile.

Every problem is reported as `file:line: path: message`, all of them in one run: the schema is
checked section by section and entry by entry (`convert.py`: every unknown key, with "did you
mean", every bad value), an entry with problems is left out, and the cross-checks run on what
remains. A YAML syntax error alone stops at once (there is no tree to check).
"""

from __future__ import annotations

import ipaddress
import json
import re
import stat
import typing
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

import outwork.filters.steps  # noqa: F401  (registers every policy step, in chain order)
from outwork.config.changes import ConfigSummary, file_digest, summarize
from outwork.config.config import (
    Address,
    BanConfig,
    GatewayConfig,
    HealthCheckConfig,
    Http2Config,
    Limits,
    ListenerConfig,
    PassiveHealthConfig,
    RedisConfig,
    RouteConfig,
    ScanConfig,
    UpstreamConfig,
    UpstreamTlsConfig,
)
from outwork.config.convert import FAILED, Converter, did_you_mean, is_struct, problem_from_msgspec
from outwork.config.files import FileTooLarge, read_bounded
from outwork.config.schema import (
    BAN_WEIGHTS,
    INSTANT_BAN,
    AdminSpec,
    BanSpec,
    ConfigSpec,
    HealthCheckSpec,
    IncidentSpec,
    ListenerSpec,
    PassiveHealthSpec,
    RedisSpec,
    RouteSpec,
    SessionTicketsSpec,
    TlsSpec,
    UpstreamSpec,
    UpstreamTlsSpec,
)
from outwork.config.source import ConfigError, Problem, Source, load_yaml
from outwork.config.source import Path as KeyPath
from outwork.config.values import (  # noqa: F401  (parse_*: also imported from here)
    MAX_BODY_SIZE,
    Duration,
    Size,
    dec_hook,
    parse_cidr,
    parse_duration,
    parse_rate,
    parse_size,
)
from outwork.filters import REGISTRY, Filter, PolicyEnv
from outwork.filters.rfc3339 import parse_rfc3339
from outwork.filters.runner import Chain
from outwork.http.checks import ALLOWED_METHODS
from outwork.http.errors import HTTPError
from outwork.http.path import ESCAPED_SLASHES, PathRules, normalise_path
from outwork.keys.secret import SecretError, parse_secret_ref, read_secret
from outwork.keys.ticket_keys import MAX_TICKET_KEY_FILE
from outwork.observe.event_names import EVENTS as KNOWN_EVENTS
from outwork.tls.clientauth import ClientAuth
from outwork.tls.config import DEFAULT_GROUPS, CertifiedKey, ClientConfig, ServerConfig
from outwork.tls.config import Limits as TlsLimits
from outwork.tls.enums import NamedGroup, ProtocolVersion
from outwork.tls.tickets import RotatingTicketKeys, TicketKeySource

T = TypeVar("T")
# The old name, for code written against it (convert.py has the function now).
_problem_from_msgspec = problem_from_msgspec
_HOST = re.compile(r"^[A-Za-z0-9.-]+$")
_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----", re.DOTALL
)
# A route's host: a DNS name (or a wildcard `*.` in front of one), or an IP literal.
_ROUTE_HOST = re.compile(
    r"^(?:\*\.)?[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$"
)
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP field name (RFC 9110 5.1)
_STATUS_RANGE = re.compile(r"^([1-5]\d\d)(?:-([1-5]\d\d))?$")
LOAD_BALANCING = ("round_robin", "least_connections", "consistent_hash")
MAX_UPSTREAM_TIMEOUT = 86400.0
MIN_HEALTH_INTERVAL = 0.1  # seconds: checks more often than this load the backend for nothing

# Names in the config -> engine groups (the names other servers and tools use).
GROUP_NAMES: dict[str, NamedGroup] = {
    "X25519MLKEM768": NamedGroup.X25519MLKEM768,
    "x25519": NamedGroup.X25519,
    "secp256r1": NamedGroup.SECP256R1,
    "secp384r1": NamedGroup.SECP384R1,
    "x448": NamedGroup.X448,
    "secp521r1": NamedGroup.SECP521R1,
}
_VERSIONS = {"1.2": ProtocolVersion.TLS12, "1.3": ProtocolVersion.TLS13}
_CLIENT_AUTH = {mode.value: mode for mode in ClientAuth}

MAX_TICKET_LIFETIME = 7 * 86400  # RFC 8446 4.6.1
MAX_TICKET_ROTATION = 30 * 86400
# Bytes of the config file, checked before parsing: the largest real configs are tens of KiB,
# and PyYAML (pure Python here) takes seconds and hundreds of bytes of memory per input byte.
MAX_CONFIG_FILE = 1024 * 1024
MAX_CLIENT_CA_FILE = 1024 * 1024  # bytes of a client CA bundle
MAX_TRUST_STORE_FILE = 4 * 1024 * 1024  # bytes of an upstream CA bundle (the system one: ~220K)
# Where Debian (and its derivatives) keep the system's trusted CAs as one PEM bundle.
MIN_ADMIN_TOKEN = 16  # bytes of the admin API's bearer token
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
_TARGET_PORTS = {"http": 80, "https": 443}
# Upstream requests are HTTP/1.1: ALPN may offer nothing else.
_UPSTREAM_ALPN = ("http/1.1",)


def compiled(target: Callable[..., T], spec: msgspec.Struct, **converted: object) -> T:
    """`target` (a compiled config dataclass) from the spec's fields of the same names, with
    `converted` in place of those the loader parsed (sizes, durations). A spec field the target
    lacks is a TypeError at the first load, not a setting silently dropped."""
    values: dict[str, object] = {name: getattr(spec, name) for name in spec.__struct_fields__}
    values.update(converted)
    return target(**values)


def load_config(path: str | Path) -> GatewayConfig:
    """Read, validate and compile a config file. Raises ConfigError, and nothing else: whatever
    the file holds, `check` prints problems and a reload keeps the running config."""
    file = str(path)
    try:
        data = read_bounded(path, MAX_CONFIG_FILE)
    except FileTooLarge:
        message = f"larger than {MAX_CONFIG_FILE} bytes (1 MiB): not read"
        raise ConfigError([Problem(file, None, "", message)]) from None
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(file, None, "", f"cannot read: {exc}")]) from None
    summary = ConfigSummary(file_digest(data))
    try:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise ConfigError([Problem(file, line, "", f"not UTF-8: {exc.reason}")]) from None
        source = load_yaml(text, file)
        summary = summarize(summary.digest, source.data)
        base = Path(path).resolve().parent
        return replace(_Loader(source, base).load(), summary=summary)
    except ConfigError as exc:
        exc.summary = summary
        raise
    except Exception as exc:  # noqa: BLE001 - a check we missed must not become a traceback
        problem = f"cannot load the config ({type(exc).__name__}: {exc}); please report this"
        error = ConfigError([Problem(file, None, "", problem)])
        error.summary = summary
        raise error from exc


def parse_route_host(text: str) -> str:
    """A route's host, normalised (lower case, no trailing dot). Raises ValueError."""
    host = text.strip().lower()
    if host.endswith("."):
        host = host[:-1]
    if host.startswith("[") and host.endswith("]"):
        ipaddress.IPv6Address(host[1:-1])
        return "[" + str(ipaddress.IPv6Address(host[1:-1])) + "]"
    if ":" in host:
        raise ValueError(f"invalid host {text!r}: give the name without a port (ports are ignored)")
    if len(host) > 253 or not _ROUTE_HOST.match(host):
        raise ValueError(f"invalid host {text!r} (expected api.example.com or *.example.com)")
    return host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


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
        self.warnings: list[Problem] = []
        self.convert = Converter(source, self.problems, dec_hook(base))
        # For a list section some of whose entries failed (and were dropped): the index in the
        # file of each entry kept, so later problems name the right one.
        self.positions: dict[str, list[int]] = {}
        # Names of the mapping entries that failed (upstreams, policies): a route naming one
        # is not told the name is unknown on top.
        self.broken: dict[str, set[str]] = {}

    def error(self, path: KeyPath, message: str) -> None:
        self.problems.append(self.source.problem(path, message))

    def warn(self, path: KeyPath, message: str) -> None:
        """Accepted, but dangerous enough that `check` and `serve` must say so."""
        self.warnings.append(self.source.problem(path, f"warning: {message}"))

    def load(self) -> GatewayConfig:
        if not isinstance(self.source.data, dict):
            raise ConfigError([self.source.problem((), "the config must be a mapping")])
        spec = self._structure(self.source.data)
        upstream_specs: dict[str, UpstreamSpec] = spec.upstreams

        self.pkcs11_module = self._pkcs11_module(spec.pkcs11.module)
        self.ticket_files: dict[Path, str] = {}  # key file -> the listener that uses it
        listeners = self._listeners(spec.listeners)
        upstreams = {name: self._upstream(name, u) for name, u in upstream_specs.items() if name}
        max_request_body = self._size(("limits", "max_request_body"), spec.limits.max_request_body)
        paths = self._paths(spec)
        self.redis = self._redis(spec.redis)
        ban = self._ban(spec.ban)
        self.env = PolicyEnv(self.base, self._revoked_before(spec), self.redis)
        routes = self._routes(spec, upstreams, max_request_body or 0, paths)
        trusted_proxies = self._trusted_proxies(spec.trusted_proxies)
        security_events = spec.logging.security_events
        if security_events != "-":
            security_events = str(self.base / security_events)
        access_log = spec.logging.access_log
        if access_log is not None and access_log != "-":
            access_log = str(self.base / access_log)
            if not Path(access_log).parent.is_dir():
                self.error(
                    ("logging", "access_log"), f"no such directory: {Path(access_log).parent}"
                )
        admin = None
        admin_hosts: tuple[str, ...] = ()
        admin_token: bytes | None = None
        admin_spec = spec.admin or AdminSpec()
        if spec.admin is not None:
            admin = self._address(("admin", "bind"), spec.admin.bind)
            if admin is not None and not _is_loopback(admin.host):
                self.warn(
                    ("admin", "bind"),
                    f"the admin listener on {admin} is reachable beyond this host: /metrics and"
                    " /readyz are plain HTTP without authentication (bind it to 127.0.0.1 or a"
                    " management network)",
                )
            admin_hosts = self._admin_hosts(spec.admin.allowed_hosts)
            admin_token = self._admin_token(spec.admin.token)
        http2 = self._http2(spec)
        incident_state, incident_advisory = incident_files(Path(self.source.file), spec.incident)
        self._paused_cap_below_pools(spec, upstreams)
        scan_timeout = self._duration(("scan", "timeout"), spec.scan.timeout, 120)
        if scan_timeout is not None and scan_timeout < 0.1:
            self.error(("scan", "timeout"), f"{spec.scan.timeout!r} is below the minimum 0.1s")
        if self.problems:
            # In file order, whichever check found them (the structure's, then the others).
            raise ConfigError(sorted(self.problems, key=lambda p: p.line or 0))
        limits = compiled(Limits, spec.limits, max_request_body=max_request_body or 0)
        return GatewayConfig(
            file=self.source.file,
            listeners=tuple(listeners),
            routes=tuple(routes),
            upstreams=upstreams,
            security_events=security_events,
            access_log=access_log,
            admin=admin,
            limits=limits,
            workers=spec.workers,
            incident_state=incident_state,
            incident_advisory=incident_advisory,
            warnings=tuple(w.format() for w in self.warnings),
            trusted_proxies=trusted_proxies,
            http2=http2,
            admin_hosts=admin_hosts,
            admin_max_connections=admin_spec.max_connections,
            admin_timeout=admin_spec.timeout,
            admin_token=admin_token,
            admin_token_ref=admin_spec.token,
            paths=paths,
            scan=ScanConfig(spec.scan.concurrency, scan_timeout or 5.0),
            revoked_before=self.env.revoked_before,
            redis=self.redis,
            ban=ban,
        )

    def _structure(self, data: dict[str, Any]) -> ConfigSpec:
        """The schema's checks, section by section and entry by entry, every problem reported:
        a listener, route, upstream or policy with a problem is left out (the rest is still
        checked), a section with one falls back to its defaults."""
        fields = {f.encode_name: f for f in msgspec.structs.fields(ConfigSpec)}
        values: dict[str, Any] = {}
        for key, raw in data.items():
            field = fields.get(key)
            if field is None:
                message = "unknown key" + did_you_mean(key, fields)
                self.problems.append(self.source.problem((key,), message, at_key=True))
                continue
            value = self.convert.convert(raw, field.type, (key,))
            if value is FAILED:
                value = self._salvage(key, raw, field.type)
            if value is not FAILED:
                values[key] = value
        for key, field in fields.items():
            if key in values or not field.required:
                continue
            if key not in data:
                self.error((), f"missing required key `{key}`")
            values[key] = {} if _origin(field.type)[0] is dict else []  # the checks go on
        return ConfigSpec(**values)

    def _salvage(self, key: str, raw: Any, type_: Any) -> Any:
        """The entries of a failed list or mapping section that convert on their own (their
        problems are already reported), or FAILED for any other section."""
        origin, args = _origin(type_)
        if origin is list and isinstance(raw, list) and is_struct(args[0]):
            kept = [(i, self.convert.quiet(item, args[0])) for i, item in enumerate(raw)]
            kept = [(i, item) for i, item in kept if item is not FAILED]
            self.positions[key] = [i for i, _ in kept]
            return [item for _, item in kept]
        if origin is dict and isinstance(raw, dict):
            good = {}
            for name, item in raw.items():
                value = self.convert.quiet(item, args[1])
                if value is FAILED or self.convert.quiet(name, args[0]) is FAILED:
                    self.broken.setdefault(key, set()).add(str(name))
                else:
                    good[name] = value
            return good
        return FAILED

    def _indexed(self, key: str, items: list[T]) -> list[tuple[int, T]]:
        """Each entry of a list section with its index in the file."""
        return list(zip(self.positions.get(key, range(len(items))), items, strict=True))

    def _revoked_before(self, spec: ConfigSpec) -> float | None:
        if spec.revocation.not_before is None:
            return None
        try:
            return parse_rfc3339(spec.revocation.not_before)
        except ValueError as exc:
            self.error(("revocation", "not_before"), str(exc))
            return None

    def _paths(self, spec: ConfigSpec) -> PathRules:
        paths = spec.paths
        if paths.escaped_slashes not in ESCAPED_SLASHES:
            self.error(
                ("paths", "escaped_slashes"),
                f"unknown escaped_slashes {paths.escaped_slashes!r} (expected"
                f" {', '.join(ESCAPED_SLASHES)})",
            )
        # Relaxed rules let a backend read a path differently from the router: said aloud.
        if not paths.normalize:
            self.warn(("paths", "normalize"), "routes match paths as sent (no normalisation)")
        if not paths.merge_slashes:
            self.warn(("paths", "merge_slashes"), "`//` reaches routes and upstreams as sent")
        if paths.escaped_slashes == "keep":
            self.warn(("paths", "escaped_slashes"), "%2F and %5C are forwarded as sent")
        if paths.case_sensitive:
            self.warn(("paths", "case_sensitive"), "/ADMIN does not match a route for /admin")
        return PathRules(
            paths.normalize, paths.merge_slashes, paths.escaped_slashes, paths.case_sensitive
        )

    def _paused_cap_below_pools(
        self, spec: ConfigSpec, upstreams: dict[str, UpstreamConfig]
    ) -> None:
        # A client that stops reading holds the upstream connections its responses came on, up
        # to this cap per address; at an upstream's own cap that one address starves the rest.
        cap = spec.limits.max_paused_upstreams_per_address
        for name, upstream in upstreams.items():
            if cap >= upstream.max_connections:
                self.warn(
                    ("limits", "max_paused_upstreams_per_address"),
                    f"{cap} is not below upstream {name!r}'s max_connections"
                    f" ({upstream.max_connections}): one client address that stops reading can"
                    " hold all its connections",
                )

    def _admin_token(self, reference: str | None) -> bytes | None:
        if reference is None:
            return None
        from outwork.keys.secret import SecretError, parse_secret_ref, read_secret

        try:
            token = read_secret(parse_secret_ref(reference), self.base)
        except SecretError as exc:
            self.error(("admin", "token"), str(exc))
            return None
        if len(token) < MIN_ADMIN_TOKEN:
            # A short token can be guessed over the network; refuse rather than warn.
            self.error(("admin", "token"), f"the token is shorter than {MIN_ADMIN_TOKEN} bytes")
            return None
        return token

    def _admin_hosts(self, names: list[str]) -> tuple[str, ...]:
        hosts = []
        for i, name in enumerate(names):
            try:
                host = parse_route_host(name)
            except ValueError as exc:
                self.error(("admin", "allowed_hosts", i), str(exc))
                continue
            if host.startswith("*."):
                self.error(("admin", "allowed_hosts", i), "give exact names (no wildcard)")
                continue
            hosts.append(host)
        return tuple(hosts)

    def _http2(self, spec: ConfigSpec) -> Http2Config:
        h2 = spec.http2
        if h2.max_header_list_size > spec.limits.max_request_head:
            self.error(
                ("http2", "max_header_list_size"),
                f"{h2.max_header_list_size} is above limits.max_request_head "
                f"({spec.limits.max_request_head}): one cap for request heads",
            )
        window = self._duration(("http2", "flood_window"), h2.flood_window, 3600)
        stall = self._duration(("http2", "stall_timeout"), h2.stall_timeout, 86400)
        discarded = self._size(("http2", "max_discarded_body"), h2.max_discarded_body)
        return compiled(
            Http2Config,
            h2,
            flood_window=window or 10.0,
            max_discarded_body=discarded or 0,
            stall_timeout=stall or 30.0,
        )

    def _size(self, path: KeyPath, value: Size) -> int | None:
        try:
            return parse_size(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None

    def _trusted_proxies(
        self, entries: list[str]
    ) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = []
        for i, entry in enumerate(entries):
            try:
                networks.append(parse_cidr(entry))
            except ValueError as exc:
                self.error(("trusted_proxies", i), str(exc))
        return tuple(networks)

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
        for i, spec in self._indexed("listeners", specs):
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
                tls = self._tls(path + ("tls",), spec.name, spec.tls)
            if bind is not None:
                result.append(
                    ListenerConfig(
                        name=spec.name,
                        bind=bind,
                        tls=tls,
                        max_connections=spec.max_connections,
                        max_connections_per_ip=spec.max_connections_per_ip,
                    )
                )
        return result

    def _tls(self, path: KeyPath, listener: str, spec: TlsSpec) -> ServerConfig:
        """Compile a listener's TLS settings into the engine's read-only ServerConfig."""
        keys: list[CertifiedKey] = []
        for j, entry in enumerate(spec.certificates):
            key = self._certified_key(
                path + ("certificates", j), entry.cert, entry.key, entry.passphrase
            )
            if key is not None:
                keys.append(key)
        for j, proto in enumerate(spec.alpn):
            if len(proto.encode()) > 255:
                self.error(path + ("alpn", j), "ALPN names are 1-255 bytes")

        version = self._min_version(path + ("min_version",), spec.min_version)

        groups: tuple[NamedGroup, ...] = DEFAULT_GROUPS
        if spec.groups is not None:
            chosen: list[NamedGroup] = []
            for j, name in enumerate(spec.groups):
                group = GROUP_NAMES.get(name)
                if group is None:
                    self.error(
                        path + ("groups", j),
                        f"unknown group {name!r} (known: {', '.join(GROUP_NAMES)})",
                    )
                elif group in chosen:
                    self.error(path + ("groups", j), f"group {name!r} is listed twice")
                else:
                    chosen.append(group)
            groups = tuple(chosen)

        client_auth = _CLIENT_AUTH.get(spec.client_auth)
        if client_auth is None:
            self.error(
                path + ("client_auth",),
                f"invalid value {spec.client_auth!r} (expected none, optional or required)",
            )
        client_ca: tuple[x509.Certificate, ...] = ()
        if spec.client_ca is not None:
            if client_auth is ClientAuth.NONE:
                # A CA with nobody asked for a certificate: the admin believes clients are
                # checked while they are not.
                self.error(
                    path + ("client_ca",),
                    "client_ca is set but client_auth is none: set client_auth to optional"
                    " or required (or remove client_ca)",
                )
            else:
                client_ca = self._client_ca(path + ("client_ca",), spec.client_ca)
        elif client_auth is not None and client_auth is not ClientAuth.NONE:
            self.error(
                path + ("client_auth",),
                f"client_auth: {client_auth.value} needs client_ca (the CA bundle that issues"
                " client certificates)",
            )

        tickets = self._tickets(path + ("session_tickets",), listener, spec.session_tickets)
        if tickets is None:
            ticket_keys, lifetime = None, 7200
        else:
            ticket_keys, lifetime = tickets
        return ServerConfig(
            certificates=tuple(keys),
            alpn_protocols=tuple(spec.alpn),
            heartbeat=spec.heartbeat,
            groups=groups,
            min_version=version or ProtocolVersion.TLS12,
            require_ems=spec.require_ems,
            strict_sni=spec.strict_sni,
            client_auth=client_auth or ClientAuth.NONE,
            client_ca=client_ca,
            ticket_keys=ticket_keys,
            ticket_lifetime=lifetime,
            limits=compiled(TlsLimits, spec.limits),
        )

    def _min_version(self, path: KeyPath, value: object) -> ProtocolVersion | None:
        # YAML reads an unquoted 1.2 as a number: the same version.
        version = _VERSIONS.get(value if isinstance(value, str) else str(value))
        if version is None:
            self.error(path, f'unsupported TLS version {value!r} (expected "1.2" or "1.3")')
        return version

    def _read_bounded(self, path: KeyPath, file: Path, limit: int, hint: str = "") -> bytes | None:
        """A file of at most `limit` bytes, or None with the problem reported at `path`."""
        try:
            return read_bounded(file, limit)
        except OSError as exc:
            self.error(path, f"cannot read {file}: {exc.strerror}{hint}")
        except FileTooLarge as exc:
            self.error(path, str(exc))
        return None

    def _client_ca(self, path: KeyPath, name: str) -> tuple[x509.Certificate, ...]:
        file = self.base / name
        data = self._read_bounded(path, file, MAX_CLIENT_CA_FILE)
        if data is None:
            return ()
        try:
            certs = tuple(x509.load_pem_x509_certificates(data))
        except ValueError as exc:
            self.error(path, f"{file}: not a PEM certificate bundle: {exc}")
            return ()
        for cert in certs:
            try:
                constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            except x509.ExtensionNotFound:
                constraints = None
            if constraints is None or not constraints.value.ca:
                self.error(path, f"{file}: {cert.subject.rfc4514_string()} is not a CA certificate")
                return ()
        return certs

    def _tickets(
        self, path: KeyPath, listener: str, spec: SessionTicketsSpec
    ) -> tuple[TicketKeySource, int] | None:
        """The listener's ticket key source (one per listener per process) and lifetime."""
        rotation = self._duration(path + ("rotation",), spec.rotation, MAX_TICKET_ROTATION)
        lifetime = self._duration(path + ("lifetime",), spec.lifetime, MAX_TICKET_LIFETIME)
        if lifetime is not None and lifetime < 1:
            self.error(path + ("lifetime",), "must be at least 1s")
        if not spec.enabled or rotation is None or lifetime is None:
            return None
        if spec.key_file is None:
            return RotatingTicketKeys(rotation), int(lifetime)
        file = (self.base / spec.key_file).resolve()
        key_path = path + ("key_file",)
        other = self.ticket_files.get(file)
        if other is not None:
            # A ticket from one listener must not resume a session on another (another
            # certificate, another client_auth).
            self.error(key_path, f"{file} is already the key file of listener {other!r}")
            return None
        self.ticket_files[file] = listener
        if not file.parent.is_dir():
            self.error(key_path, f"no such directory: {file.parent}")
            return None
        if file.exists():
            problem = _check_ticket_key_file(file, rotation)
            if problem:
                self.error(key_path, problem)
                return None
            self._check_secret(key_path, file)
        from outwork.keys.ticket_keys import FileTicketKeys

        return FileTicketKeys(file, rotation), int(lifetime)

    def _duration(self, path: KeyPath, value: Duration, maximum: float) -> float | None:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.error(path, str(exc))
            return None
        if seconds > maximum:
            self.error(path, f"{value!r} is longer than the maximum {maximum:g}s")
            return None
        return seconds

    def _check_secret(self, path: KeyPath, file: Path) -> None:
        """Warn when a secret (a private key, ticket keys, a PIN file) can be read by other users
        than its owner: anyone who can read it can impersonate the gateway or decrypt its
        sessions. A warning, not an error: group-readable keys (`ssl-cert`) are a common,
        deliberate setup."""
        try:
            mode = file.stat().st_mode
        except OSError:
            return  # reported where it is read
        bits = (("its group", stat.S_IRGRP), ("others", stat.S_IROTH))
        readers = [who for who, bit in bits if mode & bit]
        if readers:
            self.warn(
                path,
                f"{file} is readable by {' and '.join(readers)} (mode"
                f" {stat.S_IMODE(mode):04o}): only its owner should read it (chmod 600)",
            )

    def _pkcs11_module(self, module: str | None) -> str | None:
        if module is None:
            return None
        file = self.base / module
        if not file.is_file():
            self.error(("pkcs11", "module"), f"PKCS#11 module not found: {file}")
        return str(file)

    def _certified_key(
        self, path: KeyPath, cert: str, key: str, passphrase_ref: str | None = None
    ) -> CertifiedKey | None:
        cert_path = self.base / cert
        if not cert_path.is_file():
            self.error(path + ("cert",), f"file not found: {cert_path}")
            return None
        if key.startswith("pkcs11:"):
            if passphrase_ref is not None:
                self.error(
                    path + ("passphrase",), "a pkcs11: key has a PIN (in its URI), not a passphrase"
                )
                return None
            return self._pkcs11_key(path, cert_path, key)
        from outwork.keys.file_signer import load_certified_key
        from outwork.keys.secret import SecretError, parse_secret_ref, read_secret

        passphrase = None
        if passphrase_ref is not None:
            try:
                passphrase = read_secret(parse_secret_ref(passphrase_ref), self.base)
            except SecretError as exc:
                self.error(path + ("passphrase",), str(exc))
                return None

        key_path = self.base / key
        if not key_path.is_file():
            self.error(path + ("key",), f"file not found: {key_path}")
            return None
        self._check_secret(path + ("key",), key_path)
        try:
            return load_certified_key(cert_path, key_path, passphrase)
        except Exception as exc:  # any loading failure is a config error, shown to the user
            self.error(path, f"cannot load certificate/key: {exc}")
            return None

    def _pkcs11_key(self, path: KeyPath, cert_path: Path, key: str) -> CertifiedKey | None:
        """A key held in a PKCS#11 token. The signer (its module, login and session) is made
        here, in the process that serves: nothing forks after config load."""
        from outwork.keys.uri import parse_pkcs11_uri

        try:
            uri = parse_pkcs11_uri(key)
        except ValueError as exc:
            self.error(path + ("key",), str(exc))
            return None
        if uri.pin_source is not None:
            pin_file = uri.pin_source.removeprefix("file://").removeprefix("file:")
            if pin_file.startswith("/"):
                self._check_secret(path + ("key",), Path(pin_file))
        from outwork.keys.pkcs11_signer import load_pkcs11_certified_key

        try:
            return load_pkcs11_certified_key(cert_path, uri, module=self.pkcs11_module)
        except Exception as exc:  # Pkcs11KeyError, a bad certificate: shown to the user
            self.error(path + ("key",), f"cannot load the PKCS#11 key: {exc}")
            return None

    def _upstream(self, name: str, spec: UpstreamSpec) -> UpstreamConfig:
        targets = []
        schemes: list[str] = []  # of the valid targets, in order
        for i, target in enumerate(spec.targets):
            path: KeyPath = ("upstreams", name, "targets", i)
            try:
                url = urlsplit(target)
            except ValueError as exc:  # `http://[::1`: an unclosed IPv6 literal
                self.error(path, f"a target is http://host:port or https://host:port: {exc}")
                continue
            if url.scheme not in _TARGET_PORTS:
                self.error(path, "a target is http://host:port or https://host:port")
                continue
            if url.path not in ("", "/") or url.query or url.fragment or url.username:
                self.error(path, "a target is scheme://host:port, without path or credentials")
                continue
            try:
                port = url.port or _TARGET_PORTS[url.scheme]
            except ValueError:
                self.error(path, "invalid port")
                continue
            if not url.hostname:
                self.error(path, "missing host")
                continue
            if schemes and url.scheme != schemes[0]:
                # One TLS setting per upstream: a pool that is half plaintext is a downgrade
                # nobody notices. Two upstreams make the intent explicit.
                self.error(
                    path,
                    f"{url.scheme}:// after {schemes[0]}:// targets: the targets of an upstream"
                    " are all http:// or all https:// (use two upstreams)",
                )
                continue
            schemes.append(url.scheme)
            targets.append(Address(url.hostname, port))
        tls = None
        tls_path: KeyPath = ("upstreams", name, "tls")
        if schemes and schemes[0] == "https":
            tls = self._upstream_tls(tls_path, spec.tls or UpstreamTlsSpec())
        elif spec.tls is not None and schemes:
            self.error(tls_path, "tls is set but the targets are http:// (use https:// targets)")
        return self._upstream_policy(name, spec, tuple(targets), tls)

    def _upstream_policy(
        self,
        name: str,
        spec: UpstreamSpec,
        targets: tuple[Address, ...],
        tls: UpstreamTlsConfig | None,
    ) -> UpstreamConfig:
        """Everything of an upstream but its targets: balancing, timeouts, health, limits."""
        path: KeyPath = ("upstreams", name)
        if spec.load_balancing not in LOAD_BALANCING:
            self.error(
                path + ("load_balancing",),
                f"unknown load_balancing {spec.load_balancing!r} (expected"
                f" {', '.join(LOAD_BALANCING)})",
            )
        hash_header = None
        if spec.hash_on != "client_address":
            kind, sep, header = spec.hash_on.partition(":")
            if kind != "header" or not sep or not _TOKEN.match(header.strip()):
                self.error(
                    path + ("hash_on",),
                    f"invalid hash_on {spec.hash_on!r} (expected client_address or header:NAME)",
                )
            else:
                hash_header = header.strip().lower().encode()
            if spec.load_balancing != "consistent_hash":
                self.error(path + ("hash_on",), "hash_on needs load_balancing: consistent_hash")

        def timeout(key: str, value: Duration) -> float:
            seconds = self._duration(path + (key,), value, MAX_UPSTREAM_TIMEOUT)
            return seconds if seconds is not None else 1.0  # an error is already recorded

        return UpstreamConfig(
            name=name,
            targets=targets,
            connect_timeout=timeout("connect_timeout", spec.connect_timeout),
            read_timeout=timeout("read_timeout", spec.read_timeout),
            write_timeout=timeout("write_timeout", spec.write_timeout),
            max_idle_connections=spec.max_idle_connections,
            idle_timeout=timeout("idle_timeout", spec.idle_timeout),
            tls=tls,
            load_balancing=spec.load_balancing,
            hash_header=hash_header,
            retries=spec.retries,
            max_connections=spec.max_connections,
            max_pending=spec.max_pending,
            health_check=(
                self._health_check(path + ("health_check",), spec.health_check)
                if spec.health_check is not None
                else None
            ),
            passive_health=(
                self._passive_health(path + ("passive_health",), spec.passive_health)
                if spec.passive_health is not None
                else None
            ),
        )

    def _health_check(self, path: KeyPath, spec: HealthCheckSpec) -> HealthCheckConfig:
        if not spec.path.startswith("/") or not all(33 <= ord(c) < 127 for c in spec.path):
            self.error(path + ("path",), "must start with / and hold only visible ASCII")
        interval = self._duration(path + ("interval",), spec.interval, MAX_UPSTREAM_TIMEOUT)
        if interval is not None and interval < MIN_HEALTH_INTERVAL:
            self.error(path + ("interval",), f"must be at least {MIN_HEALTH_INTERVAL:g}s")
        timeout = self._duration(path + ("timeout",), spec.timeout, MAX_UPSTREAM_TIMEOUT)
        statuses = (200, 399)
        match = _STATUS_RANGE.match(str(spec.expect_status).strip())
        if match is None:
            self.error(
                path + ("expect_status",),
                f"invalid status range {spec.expect_status!r} (expected e.g. 200-399 or 204)",
            )
        else:
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if high < low:
                self.error(path + ("expect_status",), f"empty status range {spec.expect_status!r}")
            statuses = (low, high)
        return HealthCheckConfig(
            path=spec.path,
            interval=interval or 5.0,
            timeout=timeout or 2.0,
            healthy_threshold=spec.healthy_threshold,
            unhealthy_threshold=spec.unhealthy_threshold,
            expect_status=statuses,
        )

    def _passive_health(self, path: KeyPath, spec: PassiveHealthSpec) -> PassiveHealthConfig:
        ejection = self._duration(
            path + ("ejection_time",), spec.ejection_time, MAX_UPSTREAM_TIMEOUT
        )
        return PassiveHealthConfig(
            consecutive_failures=spec.consecutive_failures, ejection_time=ejection or 30.0
        )

    def _upstream_tls(self, path: KeyPath, spec: UpstreamTlsSpec) -> UpstreamTlsConfig:
        """Compile an upstream's TLS settings into the engine's read-only ClientConfig."""
        trust_roots: tuple[x509.Certificate, ...] = ()
        if spec.verify:
            if spec.ca is not None:
                trust_roots = self._trust_roots(path + ("ca",), self.base / spec.ca)
            else:
                trust_roots = self._trust_roots(path, Path(SYSTEM_CA_BUNDLE), system=True)
        else:
            self.warn(
                path + ("verify",),
                "verify: false: the backends' certificates and names are NOT checked; anyone"
                " on the path can read and change this traffic",
            )
            if spec.ca is not None:
                self.warn(path + ("ca",), "ca is ignored with verify: false")
        if spec.sni is not None:
            try:
                ipaddress.ip_address(spec.sni)
            except ValueError:
                if not _HOST.match(spec.sni) or len(spec.sni) > 253:
                    self.error(path + ("sni",), f"invalid server name {spec.sni!r}")
        client_certificate = None
        if spec.client_cert is not None:
            entry = spec.client_cert
            client_certificate = self._certified_key(
                path + ("client_cert",), entry.cert, entry.key, entry.passphrase
            )
        version = self._min_version(path + ("min_version",), spec.min_version)
        for j, proto in enumerate(spec.alpn):
            if proto not in _UPSTREAM_ALPN:
                self.error(
                    path + ("alpn", j),
                    f"{proto!r}: upstream requests are HTTP/1.1 (alpn: [http/1.1] or [])",
                )
        client = ClientConfig(
            trust_roots=trust_roots,
            verify=spec.verify,
            alpn_protocols=tuple(spec.alpn),
            min_version=version or ProtocolVersion.TLS12,
            client_certificate=client_certificate,
        )
        return UpstreamTlsConfig(
            client=client, server_name=spec.sni, session_resumption=spec.session_resumption
        )

    def _trust_roots(
        self, path: KeyPath, file: Path, system: bool = False
    ) -> tuple[x509.Certificate, ...]:
        """A PEM bundle of trusted certificates (CAs, or a backend's self-signed one)."""
        hint = " (no tls.ca given: the system trust store is used; set tls.ca)" if system else ""
        data = self._read_bounded(path, file, MAX_TRUST_STORE_FILE, hint)
        if data is None:
            return ()
        blocks = _PEM_CERTIFICATE.findall(data)
        if not blocks:
            self.error(path, f"{file}: not a PEM certificate bundle (no certificate found){hint}")
            return ()
        roots = []
        for index, block in enumerate(blocks):
            try:
                with warnings.catch_warnings():
                    # Old roots in system stores carry quirks (a negative serial number) that
                    # cryptography warns about; what matters is that they parse.
                    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                    roots.append(x509.load_pem_x509_certificate(block))
            except ValueError as exc:
                if system:
                    continue  # one odd root in the OS bundle must not stop the gateway
                self.error(path, f"{file}: certificate {index + 1} cannot be parsed: {exc}")
                return ()
        return tuple(roots)

    def _routes(
        self,
        spec: ConfigSpec,
        upstreams: dict[str, UpstreamConfig],
        default_body: int,
        rules: PathRules,
    ) -> list[RouteConfig]:
        policies = self._policies(spec)
        defaults = self._chain(("default_policies",), spec.default_policies, policies)
        routes = []
        names: set[str] = set()
        default_at: int | None = None
        folded: dict[tuple[object, ...], tuple[int, str]] = {}  # same match but for case
        for i, route in self._indexed("routes", spec.routes):
            path: KeyPath = ("routes", i)
            # An unnamed route is named after its upstream (metrics and the access log count
            # it there; several unnamed routes to one upstream share it). A name given must be
            # unique, and may be an upstream's name only for a route to that upstream.
            name = route.upstream if route.name is None else route.name
            if route.name is not None:
                if name in names:
                    self.error(path + ("name",), f"duplicate route name {name!r}")
                elif name in upstreams and name != route.upstream:
                    self.error(
                        path + ("name",),
                        f"{name!r} is the name of another upstream (the name of its unnamed"
                        " routes): choose another",
                    )
                names.add(name)
            if route.default:
                if default_at is not None:
                    self.error(path + ("default",), f"routes[{default_at}] is already the default")
                default_at = i
            compiled = self._route(path, route, name, default_body, rules)
            if compiled is not None:
                own = self._chain(path + ("policies",), route.policies, policies)
                compiled = replace(compiled, filters=Chain(defaults + own))
            if route.upstream in self.broken.get("upstreams", ()):
                continue  # its problems are reported where it is defined
            if route.upstream not in upstreams:
                known = ", ".join(sorted(upstreams)) or "none defined"
                self.error(
                    path + ("upstream",), f"unknown upstream {route.upstream!r} (known: {known})"
                )
                continue
            if compiled is not None:
                routes.append(compiled)
                key, spelled = _path_key(compiled)
                if key is not None and not rules.case_sensitive:
                    first, other = folded.setdefault(key, (i, spelled))
                    if other != spelled:
                        self.error(
                            path + ("match",),
                            f"differs from routes[{first}] only in the case of its path; routes"
                            " match paths case-insensitively (paths.case_sensitive: false)",
                        )
        return routes

    def _policies(self, spec: ConfigSpec) -> dict[str, tuple[Filter, ...]]:
        """Each policy's chain, built once. Its steps run in the registry's order (as
        documented), whatever the order they are written in. A step with problems is left out
        (each reported); its policy stays known, so routes naming it are not told otherwise."""
        compiled: dict[str, tuple[Filter, ...]] = {}
        for name, steps in spec.policies.items():
            path: KeyPath = ("policies", name)
            for step in steps:
                if step not in REGISTRY:
                    known = ", ".join(REGISTRY)
                    message = f"unknown policy step {step!r} (known: {known})"
                    self.problems.append(
                        self.source.problem(
                            path + (step,), message + did_you_mean(step, REGISTRY), at_key=True
                        )
                    )
            chain = []
            for step, filter_type in REGISTRY.items():
                if step not in steps:
                    continue
                step_spec = self.convert.convert(steps[step], filter_type.schema, path + (step,))
                if step_spec is FAILED:
                    continue
                try:
                    if filter_type.build_in_env is not None:
                        chain.append(filter_type.build_in_env(step_spec, self.env))
                    else:
                        chain.append(filter_type.build(step_spec))
                except ValueError as exc:  # what only the build can check (a file it reads)
                    self.error(path + (step,), str(exc))
            compiled[name] = tuple(chain)
        return compiled

    def _redis(self, spec: RedisSpec | None) -> RedisConfig | None:
        if spec is None:
            return None
        path: KeyPath = ("redis",)
        kinds = [k for k in ("url", "sentinels", "cluster") if getattr(spec, k) is not None]
        if len(kinds) != 1:
            self.error(path, "give exactly one of url, sentinels (with service) or cluster")
        if spec.url is not None and urlsplit(spec.url).scheme not in ("redis", "rediss"):
            self.error(path + ("url",), f"{spec.url!r} is not a redis:// or rediss:// URL")
        if (spec.sentinels is not None) != (spec.service is not None):
            self.error(path, "sentinels and service go together")
        sentinels = [
            self._address(path + ("sentinels", i), a) for i, a in enumerate(spec.sentinels or [])
        ]
        cluster = [
            self._address(path + ("cluster", i), a) for i, a in enumerate(spec.cluster or [])
        ]
        password = None
        if spec.password is not None:
            try:
                password = read_secret(parse_secret_ref(spec.password), self.base)
            except SecretError as exc:
                self.error(path + ("password",), str(exc))
        timeout = self._duration(path + ("timeout",), spec.timeout, 60)
        connect_timeout = self._duration(path + ("connect_timeout",), spec.connect_timeout, 60)
        return RedisConfig(
            url=spec.url,
            sentinels=tuple(a for a in sentinels if a is not None),
            service=spec.service,
            cluster=tuple(a for a in cluster if a is not None),
            username=spec.username,
            password=password,
            timeout=timeout or 0.1,
            connect_timeout=connect_timeout or 1.0,
        )

    def _ban(self, spec: BanSpec | None) -> BanConfig | None:
        if spec is None:
            return None
        path: KeyPath = ("ban",)
        within = self._duration(path + ("after", "within"), spec.after.within, 86400)
        duration = self._duration(path + ("duration",), spec.duration, 365 * 86400)
        exempt = []
        for i, entry in enumerate(spec.exempt):
            try:
                exempt.append(ipaddress.ip_network(entry, strict=True))
            except ValueError as exc:
                self.error(path + ("exempt", i), f"not an IP address or CIDR: {exc}")
        for event in spec.weights:
            if event in INSTANT_BAN:
                self.error(path + ("weights", event), f"{event} is not weighed: it bans at once")
            elif event not in KNOWN_EVENTS:
                known = did_you_mean(event, KNOWN_EVENTS)
                self.warn(
                    path + ("weights", event),
                    f"{event} is not an event the gateway writes (see README, Security events)"
                    + known,
                )
        weights = {**BAN_WEIGHTS, **spec.weights}
        return BanConfig(
            spec.after.count,
            within or 60.0,
            duration or 600.0,
            tuple(exempt),
            weights,
            spec.ipv6_prefix,
        )

    def _chain(
        self, path: KeyPath, names: list[str], policies: dict[str, tuple[Filter, ...]]
    ) -> tuple[Filter, ...]:
        chain: list[Filter] = []
        for i, name in enumerate(names):
            if name in self.broken.get("policies", ()):
                continue  # its problems are reported where it is defined
            if name not in policies:
                known = ", ".join(sorted(policies)) or "none defined"
                message = f"unknown policy {name!r} (known: {known})"
                self.error(path + (i,), message + did_you_mean(name, policies))
                continue
            chain += policies[name]
        return tuple(chain)

    def _route(
        self, path: KeyPath, route: RouteSpec, name: str, default_body: int, rules: PathRules
    ) -> RouteConfig | None:
        max_body = default_body
        if route.max_body_size is not None:
            size = self._size(path + ("max_body_size",), route.max_body_size)
            if size is None:
                return None
            max_body = size
        match = route.match
        if route.default:
            if match is not None:
                self.error(path + ("match",), "a default route matches everything: remove match")
                return None
            return RouteConfig(
                upstream=route.upstream, name=name, default=True, max_body_size=max_body
            )
        if match is None:
            self.error(path, "missing required key `match` (or set default: true)")
            return None
        if match.path_prefix is not None and match.path is not None:
            self.error(path + ("match",), "give at most one of path_prefix or path")
            return None
        if match.host is None and match.path is None and match.path_prefix is None:
            self.error(path + ("match",), "give host, path or path_prefix (or use default: true)")
            return None
        for key in ("path_prefix", "path"):
            value = getattr(match, key)
            if value is not None and not value.startswith("/"):
                self.error(path + ("match", key), "must start with /")
                return None
            if value is not None and not _normal_route_path(value, rules):
                # Requests are matched in normal form (http/path.py): this could never match.
                self.error(path + ("match", key), "not a normalised path (see paths: in README)")
                return None
        host = None
        if match.host is not None:
            try:
                host = parse_route_host(match.host)
            except ValueError as exc:
                self.error(path + ("match", "host"), str(exc))
                return None
        methods = None
        if match.methods is not None:
            methods = frozenset(m.upper() for m in match.methods)
            unknown = sorted(m for m in methods if m.encode() not in ALLOWED_METHODS)
            if unknown:
                allowed = ", ".join(sorted(m.decode() for m in ALLOWED_METHODS))
                self.error(
                    path + ("match", "methods"),
                    f"method {unknown[0]} is not served by the gateway (allowed: {allowed})",
                )
                return None
        return RouteConfig(
            upstream=route.upstream,
            path_prefix=match.path_prefix,
            path=match.path,
            name=name,
            host=host,
            methods=methods,
            max_body_size=max_body,
        )


def _origin(type_: Any) -> tuple[Any, tuple[Any, ...]]:
    """`list`, `dict` (or None) and the arguments of a type, without its Annotated constraints."""
    while typing.get_origin(type_) is typing.Annotated:
        type_ = typing.get_args(type_)[0]
    return typing.get_origin(type_), typing.get_args(type_)


def _path_key(route: RouteConfig) -> tuple[tuple[object, ...] | None, str]:
    """What a route matches, with its path folded to lower case, and the path as written."""
    spelled = route.path if route.path is not None else route.path_prefix
    if spelled is None:
        return None, ""
    return (route.host, route.path is not None, spelled.lower()), spelled


def _normal_route_path(value: str, rules: PathRules) -> bool:
    """A route's path or prefix is one a normalised request path can match: itself in normal
    form, without `;` parameters (routes compare paths without them) and without a query."""
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return not set(";?#") & set(value) and normalise_path(raw, rules) == raw
    except HTTPError:
        return False


def _check_ticket_key_file(file: Path, rotation: float) -> str | None:
    """Read-only check of an existing ticket key file (`outwork check` must not write it)."""
    try:
        data = json.loads(read_bounded(file, MAX_TICKET_KEY_FILE))
        period = data["period_seconds"]
        entries = data["keys"]
        for entry in entries:
            if len(bytes.fromhex(entry["name"])) != 16 or len(bytes.fromhex(entry["key"])) != 32:
                raise ValueError("malformed key entry")
            int(entry["period"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable ticket key file {file}: {exc}"
    if period != rotation:
        # Workers that disagree on the period would each make and drop the other's keys.
        return (
            f"{file} was made with rotation {period:g}s, not {rotation:g}s: every user of a key"
            " file must use the same rotation (delete the file to change it)"
        )
    return None


def incident_files(config_file: Path, spec: IncidentSpec) -> tuple[str, str]:
    """`outwork incident`'s state file and advisory: the config's `incident:` paths (relative
    to its folder), by default `<config name>.incident.json` and `<config name>.advisory.md`."""
    base = config_file.resolve().parent
    state = spec.state or f"{config_file.stem}.incident.json"
    advisory = spec.advisory or f"{config_file.stem}.advisory.md"
    return str((base / state).resolve()), str((base / advisory).resolve())
