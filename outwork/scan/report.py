"""The scan's three outputs: a terminal table, a JSON file, a self-contained HTML page."""

from __future__ import annotations

import datetime
import html
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from outwork.scan.result import VULNERABLE, WARNING, TargetResult

VERDICT_STYLE = {
    "VULNERABLE": ("bold red", "#b71c1c", "#ffebee"),
    "UNREACHABLE": ("bold magenta", "#4a148c", "#f3e5f5"),
    "WARNINGS": ("yellow", "#8a5a00", "#fff8e1"),
    "OK": ("green", "#1b5e20", "#e8f5e9"),
}
VERDICT_WORDS = {
    "VULNERABLE": "Vulnerable: fix now",
    "UNREACHABLE": "Not reachable: could not be checked",
    "WARNINGS": "Works, with weaknesses to fix",
    "OK": "Nothing found",
}


def summary(results: list[TargetResult]) -> dict[str, int]:
    verdicts = [r.verdict for r in results]
    return {
        "targets": len(results),
        "vulnerable": verdicts.count("VULNERABLE"),
        "unreachable": sum(1 for r in results if not r.reachable),
        "warnings": verdicts.count("WARNINGS"),
        "ok": verdicts.count("OK"),
    }


def print_table(results: list[TargetResult], console: Console) -> None:
    table = Table(title="outwork scan", show_lines=False)
    for column in ("target", "verdict", "TLS", "heartbleed", "certificate", "findings"):
        table.add_column(column)
    for r in results:
        style = VERDICT_STYLE[r.verdict][0]
        cert = r.certificate
        days = "" if not cert or cert.get("days_left") is None else f"{cert['days_left']} d"
        bleed = (
            f"LEAKS ({r.leaked_bytes} B)" if r.heartbleed_vulnerable else ("no" if r.tls else "")
        )
        findings = "; ".join(f.title for f in r.findings() if f.severity in (VULNERABLE, WARNING))
        table.add_row(
            r.target,
            f"[{style}]{r.verdict}[/]",
            " ".join(r.tls_versions) or ("-" if r.tls else "none"),
            bleed,
            days,
            findings,
        )
    console.print(table)
    s = summary(results)
    console.print(
        f"{s['targets']} targets: {s['vulnerable']} vulnerable, {s['warnings']} with "
        f"warnings, {s['unreachable']} unreachable, {s['ok']} ok"
    )


def write_json(results: list[TargetResult], path: Path, now: datetime.datetime) -> None:
    document = {
        "scanned_at": now.isoformat(),
        "summary": summary(results),
        "targets": [r.to_json() for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


CSS = """
body { font-family: sans-serif; margin: 2em; color: #212121; background: #fafafa; }
h1 { font-size: 1.6em; } .summary { font-size: 1.2em; margin-bottom: 1.5em; }
.target { border-left: 12px solid; padding: 0.8em 1.2em; margin: 1em 0; border-radius: 4px; }
.verdict { font-size: 1.3em; font-weight: bold; }
table { border-collapse: collapse; margin-top: 0.5em; }
td { padding: 0.15em 1em 0.15em 0; vertical-align: top; }
td:first-child { color: #555; }
li.vulnerable { color: #b71c1c; font-weight: bold; } li.warning { color: #8a5a00; }
"""


def render_html(results: list[TargetResult], now: datetime.datetime) -> str:
    """One page, inline CSS only: no script, no link, nothing fetched from the network."""
    e = html.escape
    s = summary(results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>outwork scan report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>Backend security scan</h1>",
        f"<p>Scanned {e(now.strftime('%Y-%m-%d %H:%M UTC'))} by outwork.</p>",
        f'<p class="summary"><b>{s["targets"]}</b> servers checked: '
        f'<b style="color:#b71c1c">{s["vulnerable"]} vulnerable</b>, '
        f"{s['warnings']} with warnings, {s['unreachable']} unreachable, "
        f'<b style="color:#1b5e20">{s["ok"]} fine</b>.</p>',
    ]
    for r in results:
        _, fg, bg = VERDICT_STYLE[r.verdict]
        parts.append(
            f'<div class="target" style="border-color:{fg};background:{bg}">'
            f'<div class="verdict" style="color:{fg}">{e(r.target)}: '
            f"{e(VERDICT_WORDS[r.verdict])}</div>"
        )
        rows = [("Found in", r.source)]
        if r.reachable and r.tls:
            rows.append(("TLS versions", ", ".join(r.tls_versions)))
            rows.append(
                (
                    "Heartbleed",
                    f"VULNERABLE: {r.leaked_bytes} bytes of server memory leaked"
                    if r.heartbleed_vulnerable
                    else "not vulnerable",
                )
            )
            cert = r.certificate
            if cert and cert.get("days_left") is not None:
                rows.append(
                    (
                        "Certificate",
                        f"{', '.join(cert['names']) or cert['subject']}; {cert['key']}; "
                        f"expires in {cert['days_left']} days",
                    )
                )
        elif r.error:
            rows.append(("Problem", r.error))
        parts.append("<table>")
        parts.extend(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows)
        parts.append("</table>")
        findings = r.findings()
        if findings:
            parts.append("<ul>")
            parts.extend(
                f'<li class="{e(f.severity)}">{e(f.severity)}: {e(f.title)}</li>' for f in findings
            )
            parts.append("</ul>")
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
