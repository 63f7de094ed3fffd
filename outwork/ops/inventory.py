"""`outwork certs list`: every certificate a config uses (listeners, upstream client
certificates), with its names, where its key lives, its issuer and the days it has left.

Reads the config's certificate entries only: no key is opened (no passphrase, no PIN needed), so
the list works on a host that could not serve the config, and shows what a broken one points at.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.x509.oid import NameOID

from outwork.config.files import FileTooLarge, read_bounded
from outwork.config.schema import CertificateSpec, ConfigSpec, UpstreamSpec
from outwork.config.source import ConfigError, load_yaml
from outwork.ops import OpsError

MAX_CERT_FILE = 1024 * 1024  # bytes of one PEM chain


@dataclass(frozen=True)
class CertificateInUse:
    used_by: str  # "listener" or "upstream" (its client certificate)
    name: str  # the listener's or the upstream's name
    cert: str  # the chain file
    names: list[str]  # SANs (DNS and IP), else the subject's CN
    key: str  # a key file's path, or the pkcs11: URI without its PIN
    issuer: str
    not_after: str  # ISO 8601, UTC
    days_left: int  # negative: expired that many days ago

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _spec(config_path: Path) -> ConfigSpec:
    try:
        text = config_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OpsError(f"{config_path}: cannot read: {exc}") from None
    try:
        source = load_yaml(text, str(config_path))
    except ConfigError as exc:
        raise OpsError(exc.problems[0].format()) from None
    try:
        return msgspec.convert(source.data, ConfigSpec, strict=True)
    except msgspec.ValidationError as exc:
        raise OpsError(f"{config_path}: {exc}") from None


@dataclass(frozen=True)
class CertificateEntry:
    """One certificate entry of the config as written: a listener's (its place in
    `tls.certificates`) or an upstream's `tls.client_cert`."""

    used_by: str  # "listener" or "upstream"
    name: str
    index: int
    spec: CertificateSpec


def config_spec(config_path: Path) -> ConfigSpec:
    """The config as written (checked against the schema), without loading any file it names."""
    return _spec(config_path)


def certificate_entries(spec: ConfigSpec) -> list[CertificateEntry]:
    """Every certificate entry: each listener's, in order, then each upstream client
    certificate."""
    found = []
    for listener in spec.listeners:
        if listener.tls is not None:
            found += [
                CertificateEntry("listener", listener.name, index, entry)
                for index, entry in enumerate(listener.tls.certificates)
            ]
    for name, raw in spec.upstreams.items():
        try:
            upstream = msgspec.convert(raw, UpstreamSpec, strict=True)
        except msgspec.ValidationError as exc:
            raise OpsError(f"upstreams.{name}: {exc}") from None
        if upstream.tls is not None and upstream.tls.client_cert is not None:
            found.append(CertificateEntry("upstream", name, 0, upstream.tls.client_cert))
    return found


def key_location(key: str, base: Path) -> str:
    if key.startswith("pkcs11:"):
        from outwork.keys.uri import parse_pkcs11_uri

        try:
            return parse_pkcs11_uri(key).display()  # never the pin-value
        except ValueError:
            return "pkcs11: (malformed URI)"
    return str((base / key).resolve())


def leaf_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


def short_name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()


def certificates_in_use(
    config_path: Path, now: datetime.datetime | None = None
) -> list[CertificateInUse]:
    spec = _spec(config_path)
    base = config_path.resolve().parent
    now = now or datetime.datetime.now(datetime.UTC)
    result = []
    for found in certificate_entries(spec):
        used_by, name, entry = found.used_by, found.name, found.spec
        cert_path = base / entry.cert
        try:
            leaf = x509.load_pem_x509_certificates(read_bounded(cert_path, MAX_CERT_FILE))[0]
        except OSError as exc:
            raise OpsError(f"{used_by} {name}: cannot read {cert_path}: {exc.strerror}") from None
        except FileTooLarge as exc:
            raise OpsError(str(exc)) from None
        except ValueError:
            raise OpsError(f"{used_by} {name}: {cert_path} is not a PEM certificate") from None
        not_after = leaf.not_valid_after_utc
        result.append(
            CertificateInUse(
                used_by=used_by,
                name=name,
                cert=str(cert_path.resolve()),
                names=leaf_names(leaf),
                key=key_location(entry.key, base),
                issuer=short_name(leaf.issuer),
                not_after=not_after.isoformat(),
                days_left=math.floor((not_after - now) / datetime.timedelta(days=1)),
            )
        )
    return result
