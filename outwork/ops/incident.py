"""`outwork incident`: run an incident's plan step by step, recording each result in its state
file, so that a crash or a restart resumes (or reports) exactly where it stopped.

Every step can run again without harm: a key already made for this incident (its location
names the incident) is reused, CSR and certificate are written again, installing the same
certificate twice is one install, ticket keys dropped twice only drop the tickets issued in
between, and the config edits set values. The steps talk to the running gateway only through
its admin API (certificates, ticket keys) and its pid file (SIGHUP: there is no reload in the
admin API).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from outwork.ops import OpsError
from outwork.ops.advisory import render
from outwork.ops.files import PUBLIC, write_file
from outwork.ops.incident_plan import certificate_fingerprint, public_key_fingerprint
from outwork.ops.incident_state import (
    CLOSED,
    DONE,
    FAILED,
    OPEN,
    RUNNING,
    UPSTREAM,
    WAITING,
    CertificatePlan,
    IncidentState,
    Step,
    now_text,
    save_state,
)
from outwork.ops.inventory import MAX_CERT_FILE
from outwork.ops.revocation import parse_rfc3339

if TYPE_CHECKING:  # the config modules load when a step needs them
    from outwork.config.config import GatewayConfig


def _passphrase(plan: CertificatePlan, config: Path) -> bytes | None:
    from outwork.keys.secret import SecretError, parse_secret_ref, read_secret

    if plan.passphrase is None:
        return None
    try:
        return read_secret(parse_secret_ref(plan.passphrase), config.parent)
    except SecretError as exc:
        raise OpsError(f"{plan.label}: passphrase: {exc}") from None


def _loaded(config: Path) -> GatewayConfig:
    from outwork.config.load import load_config
    from outwork.config.source import ConfigError

    try:
        return load_config(config)
    except ConfigError as exc:
        raise OpsError(exc.problems[0].format()) from None


class Incident:
    """Runs the steps of `state`, saving it to `path` after each change."""

    def __init__(
        self, path: Path, state: IncidentState, on_step: Callable[[Step], None] | None = None
    ) -> None:
        self.path = path
        self.state = state
        self.config = Path(state.config)
        self.on_step = on_step or (lambda step: None)

    def save(self) -> None:
        save_state(self.path, self.state)

    def run(self, before: Callable[[Step], None] = lambda step: None) -> Step | None:
        """Every step left, in order (`before` is told each one as it starts; `on_step` as it
        ends); the step that failed (the rest wait), or None."""
        for step in self.state.left():
            before(step)
            if not self.run_step(step):
                return step
        return None

    def run_step(self, step: Step) -> bool:
        step.status, step.detail = RUNNING, ""
        self.save()  # a crash now leaves "running": the next run does this step again
        try:
            detail = self._do(step)
        except OpsError as exc:
            step.status, step.detail = FAILED, str(exc)
        except Exception as exc:  # noqa: BLE001 - recorded; the operator resumes after a fix
            step.status, step.detail = FAILED, f"{type(exc).__name__}: {exc}"
        else:
            step.status, step.detail = DONE, detail
        step.ended = now_text()
        self.save()
        self.on_step(step)
        return step.status == DONE

    def _do(self, step: Step) -> str:
        kind, _, plan_id = step.id.partition(":")
        if plan_id:
            plan = self.state.certificate(plan_id)
            return {
                "key": self._key,
                "csr": self._csr,
                "cert": self._cert,
                "install": self._install,
            }[kind](plan)
        return {
            "tickets": self._tickets,
            "revocation": self._revocation,
            "reload": self._reload,
            "scan": self._scan,
            "advisory": self._advisory,
        }[kind]()

    # one listener

    def _key(self, plan: CertificatePlan) -> str:
        from outwork.ops.csr import open_signer
        from outwork.ops.keygen import generate_file, generate_on_token

        passphrase = _passphrase(plan, self.config)
        made = "made"
        if plan.new_key.startswith("pkcs11:") or Path(plan.new_key).exists():
            try:  # made by an earlier run of this incident (its location names the incident)
                with open_signer(plan.new_key, passphrase) as signer:
                    public: object = signer.public_key()
                made = "already made"
            except OpsError:
                if not plan.new_key.startswith("pkcs11:"):
                    raise
                public = generate_on_token(plan.key_type, plan.new_key).public_key
        else:
            public = generate_file(plan.key_type, Path(plan.new_key), passphrase).public_key
        plan.key_fingerprint = public_key_fingerprint(public)
        return f"{made}: {plan.new_key_display} (public key sha256 {plan.key_fingerprint[:16]}…)"

    def _csr(self, plan: CertificatePlan) -> str:
        from outwork.ops.csr import make_csr

        passphrase = _passphrase(plan, self.config)
        make_csr(plan.new_key, plan.names, plan.subject or None, Path(plan.csr), passphrase, True)
        return plan.csr

    def _cert(self, plan: CertificatePlan) -> str:
        from outwork.ops.ca import DEFAULT_LEAF_DAYS, issue

        assert self.state.ca is not None
        cert = issue(Path(self.state.ca), Path(plan.csr), Path(plan.cert), DEFAULT_LEAF_DAYS, True)
        self._record_certificate(plan, cert)
        return f"{plan.cert} (serial {cert.serial_number:x}, until {plan.not_after})"

    def _record_certificate(self, plan: CertificatePlan, leaf: x509.Certificate) -> None:
        plan.fingerprint = certificate_fingerprint(leaf)
        plan.not_after = leaf.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _install(self, plan: CertificatePlan) -> str:
        from outwork.ops.install import install, prepare_client_certificate

        if plan.used_by == UPSTREAM:
            # Pools read their client certificate when the config loads: the reload applies it.
            staged = prepare_client_certificate(self.config, plan.name, plan.cert, plan.new_key)
            staged.commit()
            return f"upstreams.{plan.name}.tls.client_cert: {plan.cert}"
        result = install(
            self.config, plan.name, plan.cert, plan.new_key, self.state.admin, plan.index
        )
        return f"serial {result['serial']}, {result['workers']} worker(s) serving it"

    # the gateway

    def _tickets(self) -> str:
        from outwork.ops.install import admin_post

        config = _loaded(self.config)
        result = admin_post(config, self.state.admin, "/tickets/rotate", {})
        self.state.tickets_listeners = list(result.get("listeners", []))
        listeners = ", ".join(self.state.tickets_listeners) or "none issue tickets"
        return f"{listeners}; {result.get('workers', 1)} worker(s)"

    def _revocation(self) -> str:
        from outwork.ops.config_edit import read_config, stage
        from outwork.ops.revocation import revoke

        text, revoked = revoke(read_config(self.config), parse_rfc3339(self.state.at))
        staged = stage(self.config, text)
        staged.commit()
        self.state.revoked_api_keys = revoked.api_keys
        self.state.flagged_users = revoked.users
        return (
            f"revocation.not_before: {self.state.at}; {len(revoked.api_keys)} API key(s)"
            f" revoked, {len(revoked.users)} user(s) must change their password"
        )

    def _reload(self) -> str:
        pid_file = Path(self.state.pid_file)
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise OpsError(
                f"cannot signal the gateway ({pid_file}): {exc}; reload it, then resume"
            ) from None
        self.state.reload = f"SIGHUP to pid {pid} ({pid_file})"
        return self.state.reload

    def _scan(self) -> str:
        from outwork.scan.report import summary, write_json
        from outwork.scan.runner import config_targets, dedupe, scan_targets

        config = _loaded(self.config)
        targets = dedupe(config_targets(config))
        results = scan_targets(targets, config.scan.concurrency, config.scan.timeout)
        write_json(results, Path(self.state.scan_report), datetime.now(UTC))
        self.state.scan_summary = summary(results)
        s = self.state.scan_summary
        return (
            f"{s['targets']} target(s): {s['vulnerable']} vulnerable, {s['warnings']} with"
            f" warnings, {s['unreachable']} unreachable; {self.state.scan_report}"
        )

    def _advisory(self) -> str:
        self.write_advisory()
        return self.state.advisory

    def write_advisory(self) -> None:
        write_file(Path(self.state.advisory), render(self.state).encode(), PUBLIC, True)

    # later commands

    def match_chains(self, paths: list[Path]) -> list[tuple[CertificatePlan, Path]]:
        """The new key each chain certifies (by its public key), before anything is installed:
        OpsError, nothing changed, for a chain that certifies none still waiting."""
        matched: list[tuple[CertificatePlan, Path]] = []
        for cert_path in paths:
            key = public_key_fingerprint(_chain_leaf(cert_path).public_key())
            found = [p for p in self.state.renewed() if p.key_fingerprint == key]
            if not found:
                raise OpsError(f"{cert_path}: not for any new key of incident {self.state.id}")
            # Entries sharing a key share the chain: the first whose install is still to do.
            taken = {id(p) for p, _ in matched}
            left = [
                p
                for p in found
                if self.state.step(f"install:{p.id}").status != DONE and id(p) not in taken
            ]
            if not left:
                raise OpsError(f"{found[0].label}: its new certificate is already installed")
            matched.append((left[0], cert_path))
        return matched

    def install_later(self, plan: CertificatePlan, cert_path: Path) -> Step:
        """`incident install CERT`: the chain for `plan`'s new key (`match_chains`), now."""
        step = self.state.step(f"install:{plan.id}")
        plan.cert = str(cert_path.resolve())
        self._record_certificate(plan, _chain_leaf(cert_path))
        self.run_step(step)
        if step.status == DONE and plan.used_by == UPSTREAM and self._reloaded():
            self.run_step(self.state.step("reload"))  # the pools take it from the new config
        if step.status == DONE:
            self.write_advisory()
        return step

    def _reloaded(self) -> bool:
        return self.state.step("reload").status == DONE

    def close(self) -> None:
        self.state.status, self.state.closed = CLOSED, now_text()
        self.save()
        if Path(self.state.advisory).exists():
            self.write_advisory()


def _chain_leaf(cert_path: Path) -> x509.Certificate:
    try:
        with open(cert_path, "rb") as f:
            return x509.load_pem_x509_certificates(f.read(MAX_CERT_FILE + 1))[0]
    except OSError as exc:
        raise OpsError(f"{cert_path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise OpsError(f"{cert_path}: not a PEM certificate chain") from None


def waiting(state: IncidentState) -> list[Step]:
    return [s for s in state.steps if s.status == WAITING]


def is_open(state: IncidentState | None) -> bool:
    return state is not None and state.status == OPEN
