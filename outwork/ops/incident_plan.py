"""An incident's plan, made from the config as written (no key is loaded, nothing changes): which
listeners, where each new key, CSR and certificate goes, and the steps in order.

New keys live where the current ones do: a `pkcs11:` key gets a new key on the same token, its
label the current one's with `-incident-<id>` (token keys are never replaced); a key file gets a
new file next to it (`<name>.incident-<id><suffix>`, 0600, encrypted with the entry's passphrase
when it has one). The CSR and the new chain go next to the current certificate.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from outwork.config.schema import CertificateSpec
from outwork.ops import OpsError
from outwork.ops.incident_state import PENDING, WAITING, IncidentState, ListenerPlan, Step
from outwork.ops.inventory import MAX_CERT_FILE, key_location, leaf_names, listener_entries
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


def _leaf(path: Path, listener: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CERT_FILE + 1)
        return x509.load_pem_x509_certificates(data)[0]
    except OSError as exc:
        raise OpsError(f"listener {listener}: cannot read {path}: {exc.strerror}") from None
    except ValueError:
        raise OpsError(f"listener {listener}: {path} is not a PEM certificate") from None


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate (DER), what `openssl x509 -fingerprint -sha256` shows."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def public_key_fingerprint(public: object) -> str:
    spki = public.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def _listener_plan(name: str, entry: CertificateSpec, base: Path, incident_id: str) -> ListenerPlan:
    cert_path = (base / entry.cert).resolve()
    leaf = _leaf(cert_path, name)
    tag = f"incident-{incident_id}"
    if entry.key.startswith("pkcs11:"):
        from outwork.keys.uri import parse_pkcs11_uri

        try:
            uri = parse_pkcs11_uri(entry.key)
        except ValueError as exc:
            raise OpsError(f"listener {name}: {exc}") from None
        new_key = relabel(entry.key, f"{uri.object or name}-{tag}")
        new_display = parse_pkcs11_uri(new_key).display()
    else:
        key_path = (base / entry.key).resolve()
        new_key = new_display = str(key_path.with_name(f"{key_path.stem}.{tag}{key_path.suffix}"))
    stem = cert_path.with_name(f"{cert_path.stem}.{tag}")
    return ListenerPlan(
        name=name,
        names=leaf_names(leaf),
        subject=leaf.subject.rfc4514_string(),
        key_type=key_type_of(leaf.public_key()),
        old_key=key_location(entry.key, base),
        old_cert=str(cert_path),
        old_fingerprint=certificate_fingerprint(leaf),
        new_key=new_key,
        new_key_display=new_display,
        passphrase=entry.passphrase,
        csr=str(stem) + ".csr",
        cert=str(stem) + ".pem",
    )


def _steps(
    listeners: list[ListenerPlan], ca: Path | None, advisory: Path, report: Path
) -> list[Step]:
    steps: list[Step] = []
    for li in listeners:
        names = ", ".join(li.names)
        steps += [
            Step(
                id=f"key:{li.name}", title=f"{li.name}: new {li.key_type} key {li.new_key_display}"
            ),
            Step(id=f"csr:{li.name}", title=f"{li.name}: CSR {li.csr} for {names}"),
        ]
        if ca is not None:
            steps.append(
                Step(id=f"cert:{li.name}", title=f"{li.name}: certificate {li.cert} from CA {ca}")
            )
        steps.append(
            Step(
                id=f"install:{li.name}",
                title=f"{li.name}: install into the running gateway (admin API)",
                status=PENDING if ca is not None else WAITING,
                detail="" if ca is not None else WAITING_FOR_INSTALL,
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
    spec, entries = listener_entries(config_path)
    base = config_path.resolve().parent
    known = dict(entries)
    for name in only:
        if name not in known:
            tls = any(li.name == name for li in spec.listeners)
            raise OpsError(f"--listener {name}: " + ("has no TLS" if tls else "no such listener"))
    chosen = [(n, e) for n, e in entries if not only or n in only]
    if not chosen:
        raise OpsError("no TLS listener in the config: no key to replace")
    incident_id = now.strftime("%Y%m%dT%H%M%SZ")
    listeners = [_listener_plan(n, e, base, incident_id) for n, e in chosen]
    # Listeners that share a certificate share the new key, but each gets its own CSR and
    # certificate file: one issued for the next must not replace one already installed.
    seen: set[str] = set()
    for number, li in enumerate(listeners, 1):
        if li.cert in seen:
            li.csr, li.cert = (f"{p.removesuffix(x)}-{number}{x}" for p, x in
                               ((li.csr, ".csr"), (li.cert, ".pem")))  # fmt: skip
        seen.add(li.cert)
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
        listeners=listeners,
        steps=_steps(listeners, ca, advisory_path, report),
    )
