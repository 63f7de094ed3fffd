"""An incident's plan, made from the config as written (no key is loaded, nothing changes): which
certificates, where each new key, CSR and certificate goes, and the steps in order.

Every certificate the gateway holds is in it: each one of a listener's `tls.certificates` (an RSA
and an ECDSA one, one per SNI name), named in steps by the listener (its first certificate) or
`listener#N` (the Nth), and each upstream's `tls.client_cert` (mTLS to a backend, `upstream:NAME`).
An upstream client certificate is renewed like a listener's when its key is the gateway's: on a
token, or a key file the gateway's user owns in a folder it can write; else the advisory lists it
"to renew by hand". `--ca` issues every listener's new certificate, and an upstream's only when
that CA issued the current one (the backend trusts its issuer, not any CA); the others wait for
`incident install CERT`.

New keys live where the current ones do: a `pkcs11:` key gets a new key on the same token, its
label the current one's with `-incident-<id>` (token keys are never replaced); a key file gets a
new file next to it (`<name>.incident-<id><suffix>`, 0600, encrypted with the entry's passphrase
when it has one). The CSR and the new chain go next to the current certificate.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from outwork.ops import OpsError
from outwork.ops.incident_state import (
    BY_HAND,
    LISTENER,
    PENDING,
    RENEW,
    UPSTREAM,
    WAITING,
    CertificatePlan,
    IncidentState,
    Step,
)
from outwork.ops.inventory import (
    MAX_CERT_FILE,
    CertificateEntry,
    certificate_entries,
    config_spec,
    key_location,
    leaf_names,
)
from outwork.ops.revocation import rfc3339

MAX_REASON = 2000  # characters: a sentence or a paragraph, not a document
WAITING_FOR_INSTALL = "waiting for `outwork incident install CERT`"


def key_type_of(public: object) -> str:
    """The `keys generate --type` making a key like `public` (the same algorithm and size)."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(public.curve.name)
        if curve is None:
            raise OpsError(f"no new key for curve {public.curve.name} (P-256 or P-384)")
        return curve
    if isinstance(public, rsa.RSAPublicKey):
        size = public.key_size
        return "rsa-2048" if size <= 2048 else "rsa-3072" if size <= 3072 else "rsa-4096"
    if isinstance(public, ed25519.Ed25519PublicKey):
        return "ed25519"
    raise OpsError(f"no new key for a {type(public).__name__}")


def relabel(uri: str, label: str) -> str:
    """The pkcs11: URI `uri` naming object `label` instead (same token, PIN source and module);
    its `id=` dropped: the new key gets an id of its own."""
    path, sep, query = uri[len("pkcs11:") :].partition("?")
    kept = [a for a in path.split(";") if a and a.split("=", 1)[0] not in ("object", "id")]
    return "pkcs11:" + ";".join([*kept, f"object={label}"]) + sep + query


def _leaf(path: Path, where: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CERT_FILE + 1)
        return x509.load_pem_x509_certificates(data)[0]
    except OSError as exc:
        raise OpsError(f"{where}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise OpsError(f"{where}: {path} is not a PEM certificate") from None


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate (DER), what `openssl x509 -fingerprint -sha256` shows."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_fingerprint(public: object) -> str:
    spki = public.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _replaceable(key_path: Path) -> str:
    """Why the gateway cannot replace this key file where it lives ("" when it can): a file
    another user owns, or a folder it cannot write, was put there by someone else (a secrets
    manager, the backend's team), who must renew it."""
    try:
        owner = key_path.stat().st_uid
    except OSError as exc:
        return f"cannot read {key_path}: {exc.strerror}"
    if owner != os.geteuid():
        return f"{key_path} belongs to another user (uid {owner})"
    if not os.access(key_path.parent, os.W_OK):
        return f"the gateway cannot write to {key_path.parent}"
    return ""


def _issued_by(leaf: x509.Certificate, ca: Path | None) -> bool:
    """Whether the internal CA at `ca` issued `leaf` (then it can issue its successor)."""
    if ca is None:
        return False
    try:
        authority = x509.load_pem_x509_certificates((ca / "ca.pem").read_bytes())[0]
        leaf.verify_directly_issued_by(authority)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def _certificate_plan(
    found: CertificateEntry, base: Path, incident_id: str, ca: Path | None
) -> CertificatePlan:
    entry, name = found.spec, found.name
    if found.used_by == UPSTREAM:
        plan_id, where = f"upstream:{name}", f"upstream {name}"
    else:
        plan_id = name if found.index == 0 else f"{name}#{found.index + 1}"
        where = f"listener {name}"
    cert_path = (base / entry.cert).resolve()
    leaf = _leaf(cert_path, where)
    plan = CertificatePlan(
        id=plan_id,
        used_by=found.used_by,
        name=name,
        index=found.index,
        names=leaf_names(leaf),
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        key_type=key_type_of(leaf.public_key()),
        old_key=key_location(entry.key, base),
        old_cert=str(cert_path),
        old_fingerprint=certificate_fingerprint(leaf),
        passphrase=entry.passphrase,
        # The internal CA issues every listener's certificate; an upstream's client certificate
        # only when it issued the current one (the backend trusts that CA, not any).
        issue=ca is not None and (found.used_by == LISTENER or _issued_by(leaf, ca)),
    )
    tag = f"incident-{incident_id}"
    if entry.key.startswith("pkcs11:"):
        from outwork.keys.uri import parse_pkcs11_uri

        try:
            uri = parse_pkcs11_uri(entry.key)
        except ValueError as exc:
            raise OpsError(f"{where}: {exc}") from None
        plan.new_key = relabel(entry.key, f"{uri.object or name}-{tag}")
        plan.new_key_display = parse_pkcs11_uri(plan.new_key).display()
    else:
        key_path = (base / entry.key).resolve()
        if found.used_by == UPSTREAM and (why := _replaceable(key_path)):
            plan.action, plan.why, plan.issue = BY_HAND, why, False
            return plan
        plan.new_key = str(key_path.with_name(f"{key_path.stem}.{tag}{key_path.suffix}"))
        plan.new_key_display = plan.new_key
    stem = cert_path.with_name(f"{cert_path.stem}.{tag}")
    plan.csr, plan.cert = str(stem) + ".csr", str(stem) + ".pem"
    return plan


def _steps(
    plans: list[CertificatePlan], ca: Path | None, advisory: Path, report: Path
) -> list[Step]:
    steps: list[Step] = []
    for plan in plans:
        if plan.action != RENEW:
            continue
        label, names = plan.label, ", ".join(plan.names)
        steps += [
            Step(
                id=f"key:{plan.id}",
                title=f"{label}: new {plan.key_type} key {plan.new_key_display}",
            ),
            Step(id=f"csr:{plan.id}", title=f"{label}: CSR {plan.csr} for {names}"),
        ]
        if plan.issue:
            steps.append(
                Step(id=f"cert:{plan.id}", title=f"{label}: certificate {plan.cert} from CA {ca}")
            )
        how = "admin API" if plan.used_by == LISTENER else "config; the reload applies it"
        steps.append(
            Step(
                id=f"install:{plan.id}",
                title=f"{label}: install into the running gateway ({how})",
                status=PENDING if plan.issue else WAITING,
                detail="" if plan.issue else WAITING_FOR_INSTALL,
            )
        )
    steps += [
        Step(id="tickets", title="session tickets: ticket keys rotated, old ones dropped"),
        Step(id="revocation", title="credentials issued before the incident refused (config)"),
        Step(id="reload", title="gateway reloads the config (SIGHUP)"),
        Step(id="scan", title=f"scan of every upstream, report {report}"),
        Step(id="advisory", title=f"advisory {advisory}"),
    ]
    return steps


def make_plan(
    config_path: Path,
    reason: str,
    only: tuple[str, ...],
    ca: Path | None,
    at: datetime,
    advisory: Path | None,
    admin: str | None,
    pid_file: Path,
    now: datetime | None = None,
) -> IncidentState:
    """The incident's state before its first step; OpsError for a plan that cannot be made."""
    from outwork.config.load import incident_files

    reason = reason.strip()
    if not reason:
        raise OpsError("--reason: say what happened")
    if len(reason) > MAX_REASON:
        raise OpsError(f"--reason: at most {MAX_REASON} characters")
    now = now or datetime.now(UTC)
    if at > now:
        raise OpsError(f"--at {rfc3339(at)} is in the future")
    if ca is not None and not (ca / "ca.pem").is_file():
        raise OpsError(f"--ca {ca}: no internal CA there (outwork ca init {ca})")
    spec = config_spec(config_path)
    entries = certificate_entries(spec)
    base = config_path.resolve().parent
    with_tls = {e.name for e in entries if e.used_by == LISTENER}
    for name in only:
        if name not in with_tls:
            known = any(li.name == name for li in spec.listeners)
            raise OpsError(f"--listener {name}: " + ("has no TLS" if known else "no such listener"))
    # `--listener` narrows the listeners; the upstream client certificates are always in: the
    # process that leaked held them all.
    chosen = [e for e in entries if e.used_by == UPSTREAM or not only or e.name in only]
    if not any(e.used_by == LISTENER for e in chosen):
        raise OpsError("no TLS listener in the config: no key to replace")
    incident_id = now.strftime("%Y%m%dT%H%M%SZ")
    plans = [_certificate_plan(e, base, incident_id, ca) for e in chosen]
    ids = [plan.id for plan in plans]
    if len(set(ids)) != len(ids):
        raise OpsError(f"two certificates would have the same name in the plan: {sorted(ids)}")
    # Entries that share a certificate share the new key, but each gets its own CSR and
    # certificate file: one issued for the next must not replace one already installed.
    seen: set[str] = set()
    for number, plan in enumerate(plans, 1):
        if not plan.cert:
            continue
        if plan.cert in seen:
            plan.csr, plan.cert = (f"{p.removesuffix(x)}-{number}{x}" for p, x in
                                   ((plan.csr, ".csr"), (plan.cert, ".pem")))  # fmt: skip
        seen.add(plan.cert)
    _, default_advisory = incident_files(config_path, spec.incident)
    advisory_path = (advisory or Path(default_advisory)).resolve()
    report = advisory_path.with_name(advisory_path.stem + ".scan.json")
    return IncidentState(
        id=incident_id,
        reason=reason,
        at=rfc3339(at),
        started=rfc3339(now),
        config=str(config_path.resolve()),
        ca=str(ca.resolve()) if ca is not None else None,
        admin=admin,
        pid_file=str(pid_file.resolve()),
        advisory=str(advisory_path),
        scan_report=str(report),
        certificates=plans,
        steps=_steps(plans, ca, advisory_path, report),
    )
