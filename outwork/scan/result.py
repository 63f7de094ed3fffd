"""What a scan found about one target, its findings and verdict, and the JSON form."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from outwork.scan import wire

# Certificates closer than this to expiry are a warning.
EXPIRY_WARNING_DAYS = 30
MIN_RSA_BITS = 2048

VULNERABLE = "vulnerable"
WARNING = "warning"
INFO = "info"


@dataclass
class HeartbleedCheck:
    tested: bool = False
    responses: int = 0  # heartbeat responses to a lying request (a sound server sends none)
    leaked_bytes: int = 0  # counted, never kept
    note: str = ""

    @property
    def vulnerable(self) -> bool:
        return self.leaked_bytes > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "tested": self.tested,
            "vulnerable": self.vulnerable,
            "leaked_bytes": self.leaked_bytes,
            "note": self.note,
        }


@dataclass
class CcsCheck:
    tested: bool = False
    vulnerable: bool = False
    note: str = ""


@dataclass
class Finding:
    id: str
    severity: str  # vulnerable, warning, info
    title: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "severity": self.severity, "title": self.title}


@dataclass
class TargetResult:
    host: str
    port: int
    scheme: str = "https"  # https: scanned for TLS; http: a plain-HTTP upstream (reachability)
    source: str = "command line"  # or "upstream NAME"
    server_name: str | None = None
    reachable: bool = False
    tls: bool = False
    error: str | None = None
    tls_versions: list[str] = field(default_factory=list)
    cipher_suites: dict[str, list[str]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    certificate: dict[str, Any] | None = None
    heartbeat_advertised: bool = False
    heartbleed_before: HeartbleedCheck = field(default_factory=HeartbleedCheck)
    heartbleed_in_session: HeartbleedCheck = field(default_factory=HeartbleedCheck)
    ccs_injection: CcsCheck = field(default_factory=CcsCheck)
    secure_renegotiation: bool | None = None  # None: not applicable (no TLS 1.0-1.2)
    compression: bool | None = None

    @property
    def target(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def add_version(self, version: int) -> None:
        name = wire.VERSION_NAMES.get(version)
        if name and name not in self.tls_versions:
            self.tls_versions.append(name)
            self.tls_versions.sort()

    @property
    def heartbleed_vulnerable(self) -> bool:
        return self.heartbleed_before.vulnerable or self.heartbleed_in_session.vulnerable

    @property
    def leaked_bytes(self) -> int:
        return self.heartbleed_before.leaked_bytes + self.heartbleed_in_session.leaked_bytes

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        add = out.append
        if not self.reachable:
            add(Finding("unreachable", WARNING, f"unreachable: {self.error}"))
            return out
        if not self.tls:
            if self.scheme == "http":
                add(Finding("plain-http", WARNING, "plain HTTP upstream: traffic not encrypted"))
            else:
                add(Finding("no-tls", WARNING, self.error or "no TLS"))
            return out
        leaked = self.leaked_bytes
        if self.heartbleed_vulnerable:
            where = [
                name
                for name, check in (
                    ("before the handshake", self.heartbleed_before),
                    ("inside the session", self.heartbleed_in_session),
                )
                if check.vulnerable
            ]
            add(
                Finding(
                    "heartbleed",
                    VULNERABLE,
                    f"Heartbleed (CVE-2014-0160): {leaked} bytes of memory leaked "
                    + " and ".join(where),
                )
            )
        for name, check in (
            ("before the handshake", self.heartbleed_before),
            ("inside a session", self.heartbleed_in_session),
        ):
            if not check.tested:
                add(Finding("not-tested", INFO, f"Heartbleed {name} not tested: {check.note}"))
        if self.ccs_injection.vulnerable:
            add(Finding("ccs-injection", VULNERABLE, "CCS injection (CVE-2014-0224)"))
        if self.compression:
            add(Finding("crime", VULNERABLE, "TLS compression on (CRIME, CVE-2012-4929)"))
        for old in ("1.0", "1.1"):
            if old in self.tls_versions:
                add(Finding(f"tls{old}", WARNING, f"TLS {old} offered (deprecated, RFC 8996)"))
        weak = sorted(
            {
                s
                for suites in self.cipher_suites.values()
                for s in suites
                if any(mark in s for mark in wire.WEAK_SUITE_MARKS)
            }
        )
        if weak:
            add(Finding("weak-ciphers", WARNING, "weak cipher suites: " + ", ".join(weak)))
        if self.secure_renegotiation is False:
            add(Finding("renegotiation", WARNING, "no secure renegotiation (RFC 5746)"))
        if self.heartbeat_advertised:
            add(Finding("heartbeat", INFO, "heartbeat extension advertised (not needed)"))
        cert = self.certificate
        if cert is not None and cert.get("error"):
            add(Finding("cert-unreadable", WARNING, cert["error"]))
        elif cert is not None:
            days = cert["days_left"]
            if days < 0:
                add(Finding("cert-expired", WARNING, f"certificate expired {-days} days ago"))
            elif days < EXPIRY_WARNING_DAYS:
                add(Finding("cert-expiring", WARNING, f"certificate expires in {days} days"))
            if cert.get("weak_key"):
                add(Finding("weak-key", WARNING, f"weak certificate key: {cert['key']}"))
        return out

    @property
    def verdict(self) -> str:
        """VULNERABLE, UNREACHABLE, WARNINGS or OK."""
        findings = self.findings()
        if any(f.severity == VULNERABLE for f in findings):
            return "VULNERABLE"
        if not self.reachable:
            return "UNREACHABLE"
        if any(f.severity == WARNING for f in findings):
            return "WARNINGS"
        return "OK"

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "source": self.source,
            "scheme": self.scheme,
            "reachable": self.reachable,
            "tls": self.tls,
            "error": self.error,
            "verdict": self.verdict,
            "tls_versions": list(self.tls_versions),
            "cipher_suites": {k: list(v) for k, v in self.cipher_suites.items()},
            "groups": list(self.groups),
            "certificate": self.certificate,
            "heartbeat_advertised": self.heartbeat_advertised,
            "heartbleed": {
                "vulnerable": self.heartbleed_vulnerable,
                "leaked_bytes": self.heartbleed_before.leaked_bytes
                + self.heartbleed_in_session.leaked_bytes,
                "before_handshake": self.heartbleed_before.to_json(),
                "in_session": self.heartbleed_in_session.to_json(),
            },
            "ccs_injection": {
                "tested": self.ccs_injection.tested,
                "vulnerable": self.ccs_injection.vulnerable,
                "note": self.ccs_injection.note,
            },
            "secure_renegotiation": self.secure_renegotiation,
            "compression": self.compression,
            "findings": [f.to_json() for f in self.findings()],
        }


def _key_description(cert: x509.Certificate) -> tuple[str, bool]:
    """("EC secp256r1", weak?) for the certificate's public key."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}", key.key_size < MIN_RSA_BITS
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}", key.curve.key_size < 256
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", False
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", False
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}", True
    return type(key).__name__, True


def certificate_info(
    chain_der: list[bytes], now: datetime.datetime | None = None
) -> dict[str, Any]:
    """Names, key, issuer and expiry of the leaf; the subjects of the chain."""
    now = now or datetime.datetime.now(datetime.UTC)
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError as exc:
        return {"error": f"unreadable certificate: {exc}", "days_left": None, "chain": []}
    leaf = chain[0]
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
            str(ip) for ip in san.get_values_for_type(x509.IPAddress)
        ]
    except (x509.ExtensionNotFound, ValueError):
        names = []
    key, weak = _key_description(leaf)
    not_after = leaf.not_valid_after_utc
    return {
        "subject": leaf.subject.rfc4514_string(),
        "names": names,
        "issuer": leaf.issuer.rfc4514_string(),
        "key": key,
        "weak_key": weak,
        "not_after": not_after.isoformat(),
        "days_left": (not_after - now).days,
        "self_signed": leaf.issuer == leaf.subject,
        "chain": [c.subject.rfc4514_string() for c in chain],
    }
