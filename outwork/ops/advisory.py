"""An incident's advisory in Markdown, from its state and the scan report: what happened, when,
which listeners and host names, what changed (keys, certificates, sessions, credentials), what
users must do, and the scan of the backends. Every certificate the incident renewed has its
section; those it could not (an upstream client certificate whose key is not the gateway's) are
listed "to renew by hand". Re-written whenever the state changes what it says
(`incident install` of a certificate that was pending)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from outwork.config.files import read_bounded
from outwork.ops.incident_state import BY_HAND, DONE, IncidentState

MAX_SCAN_REPORT = 16 * 1024 * 1024


def _cell(text: str) -> str:
    """Table cell text: a `|` or a line break cannot break the table."""
    return " ".join(text.replace("|", "\\|").split())


def _scan(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(read_bounded(path, MAX_SCAN_REPORT))
    except (OSError, ValueError):  # FileTooLarge included: no scan report to quote
        return None
    return report if isinstance(report, dict) else None


def render(state: IncidentState) -> str:
    lines = [
        f"# Security advisory: {_cell(state.reason.splitlines()[0])}",
        "",
        f"- Incident time: **{state.at}** (credentials issued before it are no longer accepted)",
        f"- Response started: {state.started}; incident `{state.id}`, {state.status}",
        "",
        "## What happened",
        "",
        state.reason,
        "",
        "## Affected certificates and host names",
        "",
        "| certificate | host names | previous certificate (SHA-256) |",
        "|---|---|---|",
    ]
    for plan in state.certificates:
        lines.append(
            f"| {_cell(plan.label)} | {_cell(', '.join(plan.names))} | `{plan.old_fingerprint}` |"
        )
    lines += ["", "## What changed", ""]
    for plan in state.renewed():
        installed = state.step(f"install:{plan.id}").status == DONE
        lines.append(f"### {plan.label[0].upper()}{plan.label[1:]}")
        lines.append("")
        lines.append(f"- New private key: `{plan.new_key_display}` (was `{plan.old_key}`)")
        if plan.fingerprint and installed:
            lines.append(f"- New certificate, served now: SHA-256 `{plan.fingerprint}`")
            lines.append(f"  valid until {plan.not_after}")
        elif plan.fingerprint:
            lines.append(f"- New certificate (not installed yet): SHA-256 `{plan.fingerprint}`")
        else:
            lines.append(
                f"- New certificate: pending (requested by `{plan.csr}`, to be signed by"
                f" {_cell(plan.issuer)}; then `outwork incident install`)"
            )
        lines.append("")
    by_hand = [plan for plan in state.certificates if plan.action == BY_HAND]
    if by_hand:
        lines += ["### To renew by hand", ""]
        for plan in by_hand:
            lines.append(
                f"- {_cell(plan.label)}: key `{plan.old_key}`, certificate `{plan.old_cert}`"
                f" ({', '.join(plan.names)}; issuer {_cell(plan.issuer)}): {_cell(plan.why)};"
                " make a new key and have its issuer certify it."
            )
        lines.append("")
    tickets = state.step("tickets").status == DONE
    revocation = state.step("revocation").status == DONE
    lines.append(
        "- TLS sessions: every session-ticket key was replaced; sessions from before are not"
        " resumed (clients make a full handshake, with the new certificate)."
        if tickets
        else "- TLS sessions: ticket keys not rotated yet."
    )
    if revocation:
        lines.append(f"- Tokens (JWT) issued before {state.at} are refused.")
        keys = ", ".join(f"`{k}`" for k in state.revoked_api_keys) or "none"
        lines.append(f"- API keys created before {state.at} are revoked: {keys}.")
        users = ", ".join(f"`{u}`" for u in state.flagged_users) or "none"
        lines.append(f"- Password users who must set a new password: {users}.")
    else:
        lines.append("- Credentials: not revoked yet.")
    lines += [
        "",
        "## What users must do",
        "",
        "1. Sign in again: tokens and sessions from before the incident no longer work.",
        "2. Ask for a new API key if yours was issued before the incident; the old one is"
        " refused (401).",
        "3. Change your password (basic authentication) before you use the API again.",
        "4. If you pin our certificate or key, pin the new fingerprints above.",
        "",
        "## Backend scan",
        "",
    ]
    report = _scan(Path(state.scan_report))
    if report is None:
        lines.append("Not run yet.")
    else:
        s = report.get("summary", {})
        lines.append(
            f"{s.get('targets', 0)} upstream targets: {s.get('vulnerable', 0)} vulnerable,"
            f" {s.get('warnings', 0)} with warnings, {s.get('unreachable', 0)} unreachable,"
            f" {s.get('ok', 0)} ok. Full report: `{state.scan_report}`."
        )
        targets = report.get("targets", [])
        if targets:
            lines += ["", "| target | upstream | verdict | findings |", "|---|---|---|---|"]
        for t in targets:
            findings = "; ".join(
                f.get("title", "") for f in t.get("findings", []) if f.get("severity") != "info"
            )
            lines.append(
                f"| {_cell(str(t.get('target')))} | {_cell(str(t.get('source')))}"
                f" | {_cell(str(t.get('verdict')))} | {_cell(findings) or '-'} |"
            )
    return "\n".join(lines) + "\n"
